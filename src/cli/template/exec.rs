//! Running a parsed template over a [`Value`]: Go's text/template semantics for fields,
//! variables, pipelines and control, with Go's builtins and Docker's functions.

use super::TemplateError;
use super::parse::{Arg, Command, Node, Pipeline, Pos};
use super::value::Value;

/// Go's builtins and the functions Docker's CLI adds (cli/templates).
pub const FUNCS: &[&str] = &[
    "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "slice", "print",
    "printf", "println", "html", "urlquery", "json", "join", "split", "lower", "upper", "title",
    "truncate", "pad",
];

enum Flow {
    Normal,
    Break,
    Continue,
}

pub struct Exec<'a> {
    out: String,
    vars: Vec<(String, Value)>,
    root: &'a Value,
}

impl<'a> Exec<'a> {
    pub fn new(root: &'a Value) -> Exec<'a> {
        Exec {
            out: String::new(),
            vars: vec![(String::new(), root.clone())],
            root,
        }
    }

    pub fn run(mut self, nodes: &[Node]) -> Result<String, TemplateError> {
        let dot = self.root.clone();
        self.walk(nodes, &dot)?;
        Ok(self.out)
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p, pos) => {
                    let v = self.pipeline(p, dot, pos)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&v.go_string());
                    }
                }
                Node::If(p, body, alt, pos) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot, pos)?;
                    let f = if v.truthy() {
                        self.walk(body, dot)?
                    } else {
                        self.walk(alt, dot)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(f, Flow::Normal) {
                        return Ok(f);
                    }
                }
                Node::With(p, body, alt, pos) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(p, dot, pos)?;
                    let f = if v.truthy() {
                        self.walk(body, &v)?
                    } else {
                        self.walk(alt, dot)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(f, Flow::Normal) {
                        return Ok(f);
                    }
                }
                Node::Range(p, body, alt, pos) => {
                    let mark = self.vars.len();
                    // The pipeline's own declarations name the key/index and the element.
                    let mut plain = p.clone();
                    let decl = std::mem::take(&mut plain.decl);
                    let v = self.pipeline(&plain, dot, pos)?;
                    let items: Vec<(Value, Value)> = match &v {
                        Value::List(l) => l
                            .iter()
                            .enumerate()
                            .map(|(i, e)| (Value::Int(i as i64), e.clone()))
                            .collect(),
                        Value::Map(m) => {
                            let mut m = m.clone();
                            m.sort_by(|a, b| a.0.cmp(&b.0));
                            m.into_iter().map(|(k, e)| (Value::Str(k), e)).collect()
                        }
                        Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
                        Value::Null | Value::Missing => Vec::new(),
                        other => {
                            return Err(self.exec_err(
                                pos,
                                &p.cmds[0].args[0],
                                format!("range can't iterate over {}", other.go_string()),
                            ));
                        }
                    };
                    if items.is_empty() {
                        self.walk(alt, dot)?;
                    }
                    for (k, e) in items {
                        let inner = self.vars.len();
                        match decl.len() {
                            0 => {}
                            1 => self.vars.push((decl[0].clone(), e.clone())),
                            _ => {
                                self.vars.push((decl[0].clone(), k));
                                self.vars.push((decl[1].clone(), e.clone()));
                            }
                        }
                        let f = self.walk(body, &e)?;
                        self.vars.truncate(inner);
                        if matches!(f, Flow::Break) {
                            break;
                        }
                    }
                    self.vars.truncate(mark);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn exec_err(&self, pos: &Pos, at: &Arg, msg: impl std::fmt::Display) -> TemplateError {
        TemplateError::Exec(format!(
            "template: :{}:{}: executing \"\" at <{}>: {msg}",
            pos.line,
            pos.col + 2,
            at.describe()
        ))
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value, pos: &Pos) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for c in &p.cmds {
            last = Some(self.command(c, dot, last, pos)?);
        }
        let v = last.unwrap_or(Value::Missing);
        for name in &p.decl {
            if p.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(
        &mut self,
        c: &Command,
        dot: &Value,
        piped: Option<Value>,
        pos: &Pos,
    ) -> Result<Value, TemplateError> {
        let first = &c.args[0];
        if let Arg::Func(name) = first {
            let mut args = Vec::with_capacity(c.args.len());
            for a in &c.args[1..] {
                args.push(self.operand(a, dot, pos)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return call(name, &args)
                .map_err(|m| self.exec_err(pos, first, format!("error calling {name}: {m}")));
        }
        // A method with arguments: Docker's `{{.Label "key"}}` on ps rows.
        if let Arg::Field(f) = first
            && (c.args.len() > 1 || piped.is_some())
            && f.last().is_some_and(|m| m == "Label")
        {
            let recv = self.fields(dot.clone(), &f[..f.len() - 1], first, pos)?;
            let mut args = Vec::new();
            for a in &c.args[1..] {
                args.push(self.operand(a, dot, pos)?);
            }
            args.extend(piped);
            if let (Some(Value::Map(labels)), [Value::Str(k)]) = (recv.get("\0Labels"), &args[..]) {
                return Ok(labels
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(Value::str(""), |(_, v)| v.clone()));
            }
            return Err(self.exec_err(pos, first, "wrong number of args for Label: want 1"));
        }
        if c.args.len() > 1 || piped.is_some() {
            return Err(self.exec_err(
                pos,
                first,
                format!("can't give argument to non-function {}", first.describe()),
            ));
        }
        self.operand(first, dot, pos)
    }

    fn operand(&mut self, a: &Arg, dot: &Value, pos: &Pos) -> Result<Value, TemplateError> {
        match a {
            Arg::Field(f) => self.fields(dot.clone(), f, a, pos),
            Arg::Var(n, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(name, _)| name == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Value::Missing);
                self.fields(v, f, a, pos)
            }
            Arg::Func(name) => call(name, &[])
                .map_err(|m| self.exec_err(pos, a, format!("error calling {name}: {m}"))),
            Arg::Str(s) => Ok(Value::Str(s.clone())),
            Arg::Int(i) => Ok(Value::Int(*i)),
            Arg::Float(x) => Ok(Value::Float(*x)),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Nil => Ok(Value::Null),
            Arg::Sub(p, f) => {
                let v = self.pipeline(p, dot, pos)?;
                self.fields(v, f, a, pos)
            }
        }
    }

    fn fields(
        &self,
        mut v: Value,
        path: &[String],
        at: &Arg,
        pos: &Pos,
    ) -> Result<Value, TemplateError> {
        for name in path {
            v = match &v {
                Value::Map(m) => m
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or(Value::Missing, |(_, x)| x.clone()),
                Value::Struct(ty, m) => match m.iter().find(|(k, _)| k == name) {
                    Some((_, x)) => x.clone(),
                    None => {
                        return Err(self.exec_err(
                            pos,
                            at,
                            format!("can't evaluate field {name} in type {ty}"),
                        ));
                    }
                },
                Value::Null | Value::Missing => {
                    return Err(self.exec_err(
                        pos,
                        at,
                        format!("nil pointer evaluating interface {{}}.{name}"),
                    ));
                }
                other => {
                    return Err(self.exec_err(
                        pos,
                        at,
                        format!("can't evaluate field {name} in type {}", go_type(other)),
                    ));
                }
            };
        }
        Ok(v)
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null | Value::Missing => "interface {}",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::List(_) => "[]interface {}",
        Value::Map(_) => "map[string]interface {}",
        Value::Struct(t, _) => t,
    }
}

fn want_str<'v>(v: &'v Value, what: &str) -> Result<&'v str, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!(
            "wrong type for value; expected string; got {} for {what}",
            go_type(other)
        )),
    }
}

fn want_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => Err(format!(
            "wrong type for value; expected int; got {}",
            go_type(other)
        )),
    }
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn basic_eq(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null | Value::Missing, Value::Null | Value::Missing) => true,
        (Value::Null | Value::Missing, _) | (_, Value::Null | Value::Missing) => false,
        (Value::List(_) | Value::Map(_) | Value::Struct(..), _)
        | (_, Value::List(_) | Value::Map(_) | Value::Struct(..)) => {
            return Err("non-comparable type".into());
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn order(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Float(_) | Value::Int(_), Value::Float(_) | Value::Int(_)) => {
            let f = |v: &Value| match v {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                _ => 0.0,
            };
            f(a).partial_cmp(&f(b))
                .ok_or_else(|| "incomparable".to_string())
        }
        _ => Err("incompatible types for comparison".into()),
    }
}

/// `fmt.Sprint`: a space between operands when neither side is a string.
fn sprint(args: &[Value]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            s.push(' ');
        }
        s.push_str(&a.go_string());
    }
    s
}

/// `fmt.Sprintf` for the verbs templates use: %v %s %d %q %t %x %X %f %g %e %%, with flags,
/// width and precision.
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let body = match (verb, a) {
            ('d', Value::Int(i)) => i.to_string(),
            ('d', Value::Float(f)) if f.fract() == 0.0 => format!("{f:.0}"),
            ('x', Value::Int(i)) => format!("{i:x}"),
            ('X', Value::Int(i)) => format!("{i:X}"),
            ('x', Value::Str(s)) => hex::encode(s),
            ('f' | 'F', Value::Int(i)) => format!("{:.*}", prec.unwrap_or(6), *i as f64),
            ('f' | 'F', Value::Float(f)) => format!("{:.*}", prec.unwrap_or(6), f),
            ('e', Value::Float(f)) => format!("{:.*e}", prec.unwrap_or(6), f),
            ('g', Value::Float(_) | Value::Int(_)) => a.go_string(),
            ('t', Value::Bool(b)) => b.to_string(),
            ('q', Value::Str(s)) => format!("{s:?}"),
            ('s' | 'v', v) => {
                let s = v.go_string();
                match (verb, prec) {
                    ('s', Some(p)) => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            (v, a) => format!("%!{v}({}={})", go_type(a), a.go_string()),
        };
        let w: usize = width.parse().unwrap_or(0);
        let n = body.chars().count();
        if n >= w {
            out.push_str(&body);
        } else if flags.contains('-') {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', w - n));
        } else if flags.contains('0') && matches!(a, Value::Int(_) | Value::Float(_)) {
            out.extend(std::iter::repeat_n('0', w - n));
            out.push_str(&body);
        } else {
            out.extend(std::iter::repeat_n(' ', w - n));
            out.push_str(&body);
        }
    }
    let extra: Vec<&Value> = args.collect();
    if !extra.is_empty() {
        out.push_str("%!(EXTRA ");
        let parts: Vec<String> = extra
            .iter()
            .map(|a| format!("{}={}", go_type(a), a.go_string()))
            .collect();
        out.push_str(&parts.join(", "));
        out.push(')');
    }
    out
}

/// Go's `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        let is_letter = c.is_alphanumeric() || c == '_' || c == '\'';
        if is_letter && !prev_letter {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = is_letter;
    }
    out
}

fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    Ok(match name {
        "and" => {
            if args.is_empty() {
                return Err("wrong number of args for and: want at least 1 got 0".into());
            }
            args.iter()
                .find(|a| !a.truthy())
                .unwrap_or(args.last().expect("one arg"))
                .clone()
        }
        "or" => {
            if args.is_empty() {
                return Err("wrong number of args for or: want at least 1 got 0".into());
            }
            args.iter()
                .find(|a| a.truthy())
                .unwrap_or(args.last().expect("one arg"))
                .clone()
        }
        "not" => {
            arity(name, args, 1)?;
            Value::Bool(!args[0].truthy())
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for b in &args[1..] {
                any |= basic_eq(&args[0], b)?;
            }
            Value::Bool(any)
        }
        "ne" => {
            arity(name, args, 2)?;
            Value::Bool(!basic_eq(&args[0], &args[1])?)
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(name, args, 2)?;
            let o = order(&args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "len" => {
            arity(name, args, 1)?;
            Value::Int(match &args[0] {
                Value::Str(s) => s.len() as i64,
                Value::List(l) => l.len() as i64,
                Value::Map(m) => m.len() as i64,
                other => return Err(format!("len of type {}", go_type(other))),
            })
        }
        "index" => {
            if args.is_empty() {
                return Err("wrong number of args for index: want at least 1 got 0".into());
            }
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (&v, k) {
                    (Value::List(l), k) => {
                        let i = want_int(k)?;
                        if i < 0 || i as usize >= l.len() {
                            return Err(format!("index out of range: {i}"));
                        }
                        l[i as usize].clone()
                    }
                    (Value::Str(s), k) => {
                        let i = want_int(k)?;
                        match s.as_bytes().get(i as usize) {
                            Some(b) if i >= 0 => Value::Int(*b as i64),
                            _ => return Err(format!("index out of range: {i}")),
                        }
                    }
                    (Value::Map(m), Value::Str(k)) => m
                        .iter()
                        .find(|(n, _)| n == k)
                        .map_or(Value::Missing, |(_, x)| x.clone()),
                    (Value::Null | Value::Missing, _) => {
                        return Err("index of untyped nil".into());
                    }
                    (other, _) => {
                        return Err(format!("can't index item of type {}", go_type(other)));
                    }
                };
            }
            v
        }
        "slice" => {
            if args.is_empty() || args.len() > 3 {
                return Err("wrong number of args for slice".into());
            }
            let idx: Vec<i64> = args[1..].iter().map(want_int).collect::<Result<_, _>>()?;
            match &args[0] {
                Value::Str(s) => {
                    let from = *idx.first().unwrap_or(&0) as usize;
                    let to = idx.get(1).map_or(s.len(), |x| *x as usize);
                    if from > to
                        || to > s.len()
                        || !s.is_char_boundary(from)
                        || !s.is_char_boundary(to)
                    {
                        return Err(format!("index out of range: {to}"));
                    }
                    Value::str(&s[from..to])
                }
                Value::List(l) => {
                    let from = *idx.first().unwrap_or(&0) as usize;
                    let to = idx.get(1).map_or(l.len(), |x| *x as usize);
                    if from > to || to > l.len() {
                        return Err(format!("index out of range: {to}"));
                    }
                    Value::List(l[from..to].to_vec())
                }
                other => return Err(format!("can't slice item of type {}", go_type(other))),
            }
        }
        "print" => Value::Str(sprint(args)),
        "println" => {
            let parts: Vec<String> = args.iter().map(Value::go_string).collect();
            Value::Str(format!("{}\n", parts.join(" ")))
        }
        "printf" => {
            if args.is_empty() {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            }
            Value::Str(sprintf(want_str(&args[0], "format")?, &args[1..]))
        }
        "html" => Value::Str(
            sprint(args)
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&#34;")
                .replace('\'', "&#39;"),
        ),
        "urlquery" => Value::Str(
            sprint(args)
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".into(),
                    b => format!("%{b:02X}"),
                })
                .collect(),
        ),
        "json" => {
            arity(name, args, 1)?;
            Value::Str(args[0].to_json())
        }
        "join" => {
            arity(name, args, 2)?;
            let sep = want_str(&args[1], "sep")?;
            match &args[0] {
                Value::List(l) => {
                    let parts: Vec<String> = l
                        .iter()
                        .map(|e| want_str(e, "elems").map(str::to_string))
                        .collect::<Result<_, _>>()?;
                    Value::Str(parts.join(sep))
                }
                Value::Null | Value::Missing => Value::str(""),
                other => {
                    return Err(format!(
                        "wrong type for value; expected []string; got {}",
                        go_type(other)
                    ));
                }
            }
        }
        "split" => {
            arity(name, args, 2)?;
            let s = want_str(&args[0], "s")?;
            let sep = want_str(&args[1], "sep")?;
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::Str(c.to_string())).collect()
            } else {
                s.split(sep).map(Value::str).collect()
            };
            Value::List(parts)
        }
        "lower" => {
            arity(name, args, 1)?;
            Value::Str(want_str(&args[0], "s")?.to_lowercase())
        }
        "upper" => {
            arity(name, args, 1)?;
            Value::Str(want_str(&args[0], "s")?.to_uppercase())
        }
        "title" => {
            arity(name, args, 1)?;
            Value::Str(title(want_str(&args[0], "s")?))
        }
        "truncate" => {
            arity(name, args, 2)?;
            let s = want_str(&args[0], "source")?;
            let n = want_int(&args[1])?.max(0) as usize;
            if s.len() < n {
                Value::str(s)
            } else {
                let mut cut = n;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                Value::str(&s[..cut])
            }
        }
        "pad" => {
            arity(name, args, 3)?;
            let s = want_str(&args[0], "source")?;
            if s.is_empty() {
                Value::str("")
            } else {
                let pre = want_int(&args[1])?.max(0) as usize;
                let post = want_int(&args[2])?.max(0) as usize;
                Value::Str(format!("{}{s}{}", " ".repeat(pre), " ".repeat(post)))
            }
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}
