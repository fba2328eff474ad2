//! Go's text/template syntax, the part Docker's `--format` uses: text and `{{actions}}` with
//! trim markers and comments; pipelines of commands joined by `|`; fields (`.A.B`), variables
//! (`$`, `$x.A`, `$i, $e := …`), literals and parenthesised pipelines; `if`/`else if`/`range`/
//! `with` ... `else` ... `end`, and `break`/`continue`.

use super::TemplateError;

#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    /// A pipeline whose value is printed (unless it only declares variables).
    Action(Pipeline, Pos),
    If(Pipeline, Vec<Node>, Vec<Node>, Pos),
    Range(Pipeline, Vec<Node>, Vec<Node>, Pos),
    With(Pipeline, Vec<Node>, Vec<Node>, Pos),
    Break,
    Continue,
}

/// Line and the action's text, for error messages (`template: :1:2: executing "" at <.Foo>`).
#[derive(Debug, Clone)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub decl: Vec<String>,
    /// `=` rather than `:=`: assigns to variables declared before.
    pub assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
pub struct Command {
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B`; empty for `.`.
    Field(Vec<String>),
    /// `$x.A.B`; the name without `$` (empty for `$`).
    Var(String, Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `(pipeline).A.B`
    Sub(Box<Pipeline>, Vec<String>),
}

impl Arg {
    /// The text Go names an operand by in `executing "" at <…>`.
    pub fn describe(&self) -> String {
        match self {
            Arg::Field(f) if f.is_empty() => ".".into(),
            Arg::Field(f) => f.iter().map(|x| format!(".{x}")).collect(),
            Arg::Var(n, f) => format!(
                "${n}{}",
                f.iter().map(|x| format!(".{x}")).collect::<String>()
            ),
            Arg::Func(n) => n.clone(),
            Arg::Str(s) => format!("{s:?}"),
            Arg::Int(i) => i.to_string(),
            Arg::Float(x) => x.to_string(),
            Arg::Bool(b) => b.to_string(),
            Arg::Nil => "nil".into(),
            Arg::Sub(_, f) => format!(
                "(…){}",
                f.iter().map(|x| format!(".{x}")).collect::<String>()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
    Str(String),
    Num(String),
    Ident(String),
    /// `.Name` starting an operand (`Dot` alone is `.`).
    Field(String),
    /// `.Name` right after a field, variable or `)`: a further step of that operand.
    Chain(String),
    Dot,
    Var(String),
}

/// Text or one action's tokens, with the action's position.
enum Item {
    Text(String),
    Action(Vec<Tok>, Pos),
}

fn err(pos: &Pos, msg: impl std::fmt::Display) -> TemplateError {
    TemplateError::Parse(format!("template: :{}: {msg}", pos.line))
}

fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut consumed = 0usize;
    let mut trim_next_text = false;
    loop {
        let Some(open) = rest.find("{{") else {
            let mut t = rest.to_string();
            if trim_next_text {
                t = t.trim_start().to_string();
            }
            if !t.is_empty() {
                items.push(Item::Text(t));
            }
            return Ok(items);
        };
        let mut text = rest[..open].to_string();
        if trim_next_text {
            text = text.trim_start().to_string();
        }
        let after = &rest[open + 2..];
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end().to_string();
        }
        if !text.is_empty() {
            items.push(Item::Text(text));
        }
        let start = consumed + open;
        let line = src[..start].matches('\n').count() + 1;
        let col = start - src[..start].rfind('\n').map_or(0, |i| i + 1);
        let pos = Pos { line, col };
        let body_start = if trim_left { 1 } else { 0 };
        let body = &after[body_start..];
        // A comment: `{{/* … */}}`, possibly with trim markers.
        let trimmed_body = body.trim_start();
        if trimmed_body.starts_with("/*") {
            let Some(end) = trimmed_body.find("*/") else {
                return Err(err(&pos, "unclosed comment"));
            };
            let tail = trimmed_body[end + 2..].trim_start();
            let (trim_right, skip) = if let Some(t) = tail.strip_prefix("-}}") {
                (true, t)
            } else if let Some(t) = tail.strip_prefix("}}") {
                (false, t)
            } else {
                return Err(err(&pos, "comment ends before closing delimiter"));
            };
            trim_next_text = trim_right;
            consumed += rest.len() - skip.len();
            rest = skip;
            continue;
        }
        let (toks, used, trim_right) = lex_action(body, &pos)?;
        items.push(Item::Action(toks, pos));
        trim_next_text = trim_right;
        let skip = &body[used..];
        consumed += rest.len() - skip.len();
        rest = skip;
    }
}

/// Tokens of one action up to its `}}`: the tokens, bytes used, and whether it ended with `-}}`.
fn lex_action(s: &str, pos: &Pos) -> Result<(Vec<Tok>, usize, bool), TemplateError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    loop {
        if i >= b.len() {
            return Err(err(pos, "unclosed action"));
        }
        let c = b[i];
        if s[i..].starts_with(" -}}") || s[i..].starts_with("\t-}}") || s[i..].starts_with("\n-}}")
        {
            return Ok((toks, i + 4, true));
        }
        if s[i..].starts_with("}}") {
            return Ok((toks, i + 2, false));
        }
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            b'(' => {
                toks.push(Tok::Open);
                i += 1
            }
            b')' => {
                toks.push(Tok::Close);
                i += 1
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                toks.push(Tok::Declare);
                i += 2
            }
            b'=' => {
                toks.push(Tok::Assign);
                i += 1
            }
            b'"' => {
                let mut out = String::new();
                let mut j = i + 1;
                let chars: Vec<char> = s[j..].chars().collect();
                let mut k = 0;
                loop {
                    let Some(&ch) = chars.get(k) else {
                        return Err(err(pos, "unterminated quoted string"));
                    };
                    k += 1;
                    match ch {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(k).copied().unwrap_or('\\');
                            k += 1;
                            out.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '0' => '\0',
                                other => other,
                            });
                        }
                        '\n' => return Err(err(pos, "unterminated quoted string")),
                        other => out.push(other),
                    }
                }
                j += chars[..k].iter().map(|c| c.len_utf8()).sum::<usize>();
                toks.push(Tok::Str(out));
                i = j;
            }
            b'`' => {
                let Some(end) = s[i + 1..].find('`') else {
                    return Err(err(pos, "unterminated raw quoted string"));
                };
                toks.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'.' => {
                let mut j = i + 1;
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                if j == i + 1 {
                    if b.get(j).is_some_and(u8::is_ascii_digit) {
                        return Err(err(pos, "bad number syntax"));
                    }
                    toks.push(Tok::Dot);
                } else {
                    let name = s[i + 1..j].to_string();
                    let attached = i > 0
                        && !b[i - 1].is_ascii_whitespace()
                        && matches!(
                            toks.last(),
                            Some(Tok::Field(_) | Tok::Chain(_) | Tok::Var(_) | Tok::Close)
                        );
                    toks.push(if attached {
                        Tok::Chain(name)
                    } else {
                        Tok::Field(name)
                    });
                }
                i = j;
            }
            b'$' => {
                let mut j = i + 1;
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                toks.push(Tok::Var(s[i + 1..j].to_string()));
                i = j;
            }
            b'-' | b'+' | b'0'..=b'9' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.' || b[j] == b'_')
                {
                    j += 1;
                }
                toks.push(Tok::Num(s[i..j].to_string()));
                i = j;
            }
            c if ident(c) => {
                let mut j = i;
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                toks.push(Tok::Ident(s[i..j].to_string()));
                i = j;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(err(pos, format!("unexpected {ch:?} in command")));
            }
        }
    }
}

/// The parsed template.
pub fn parse(src: &str, is_func: &dyn Fn(&str) -> bool) -> Result<Vec<Node>, TemplateError> {
    let items = lex(src)?;
    let mut p = Parser {
        items: items.into_iter().collect(),
        i: 0,
        is_func,
        vars: vec![vec![String::new()]],
        range_depth: 0,
    };
    let (nodes, end) = p.list()?;
    match end {
        None => Ok(nodes),
        Some((kw, pos)) => Err(err(&pos, format!("unexpected {{{{{kw}}}}}"))),
    }
}

/// The `{{end}}` or `{{else}}` that closed a list, and where.
type BlockEnd = (String, Pos);

struct Parser<'a> {
    items: Vec<Item>,
    i: usize,
    is_func: &'a dyn Fn(&str) -> bool,
    /// Variables in scope, one frame per control block (Go checks names at parse time).
    vars: Vec<Vec<String>>,
    range_depth: usize,
}

impl Parser<'_> {
    /// Nodes up to an `{{else…}}` or `{{end}}` (returned with the else's remaining tokens).
    fn list(&mut self) -> Result<(Vec<Node>, Option<BlockEnd>), TemplateError> {
        let mut nodes = Vec::new();
        while self.i < self.items.len() {
            let i = self.i;
            self.i += 1;
            let (toks, pos) = match &self.items[i] {
                Item::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    continue;
                }
                Item::Action(t, p) => (t.clone(), p.clone()),
            };
            match toks.first() {
                Some(Tok::Ident(k)) if k == "end" => {
                    if toks.len() > 1 {
                        return Err(err(&pos, "unexpected token in end"));
                    }
                    return Ok((nodes, Some(("end".into(), pos))));
                }
                Some(Tok::Ident(k)) if k == "else" => {
                    // Keep the rest (`else if …`) for the caller.
                    if let Item::Action(t, _) = &mut self.items[i] {
                        t.remove(0);
                    }
                    self.i = i;
                    return Ok((nodes, Some(("else".into(), pos))));
                }
                Some(Tok::Ident(k)) if k == "if" || k == "range" || k == "with" => {
                    let kw = k.clone();
                    nodes.push(self.control(&kw, &toks[1..], pos)?);
                }
                Some(Tok::Ident(k)) if k == "break" || k == "continue" => {
                    if self.range_depth == 0 {
                        return Err(err(&pos, format!("{{{{{k}}}}} outside {{{{range}}}}")));
                    }
                    nodes.push(if k == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                Some(Tok::Ident(k)) if matches!(k.as_str(), "define" | "template" | "block") => {
                    return Err(err(&pos, format!("{{{{{k}}}}} is not supported")));
                }
                _ => {
                    let pipe = self.pipeline(&toks, &pos, true)?;
                    nodes.push(Node::Action(pipe, pos));
                }
            }
        }
        Ok((nodes, None))
    }

    fn control(&mut self, kw: &str, toks: &[Tok], pos: Pos) -> Result<Node, TemplateError> {
        self.vars.push(Vec::new());
        let pipe = self.pipeline(toks, &pos, true)?;
        if kw == "range" {
            self.range_depth += 1;
        }
        let (body, end) = self.list()?;
        if kw == "range" {
            self.range_depth -= 1;
        }
        self.vars.pop();
        let mut alt = Vec::new();
        match end {
            None => return Err(err(&pos, format!("unexpected EOF in {kw}"))),
            Some((e, _)) if e == "end" => {}
            Some((_, epos)) => {
                // `{{else}}` or `{{else if …}}` / `{{else with …}}`.
                let Item::Action(rest, _) = &self.items[self.i] else {
                    unreachable!("else is an action")
                };
                let rest = rest.clone();
                self.i += 1;
                if let Some(Tok::Ident(k2)) = rest.first()
                    && (k2 == "if" || k2 == "with")
                {
                    // `else if` is an if nested in the else branch, closed by the same end.
                    let k2 = k2.clone();
                    alt.push(self.control(&k2, &rest[1..], epos)?);
                } else {
                    if !rest.is_empty() {
                        return Err(err(&epos, "unexpected token in else"));
                    }
                    self.vars.push(Vec::new());
                    let (b, end2) = self.list()?;
                    self.vars.pop();
                    match end2 {
                        Some((e, _)) if e == "end" => alt = b,
                        Some((_, p)) => return Err(err(&p, "expected end; found {{else}}")),
                        None => return Err(err(&pos, format!("unexpected EOF in {kw}"))),
                    }
                }
            }
        }
        Ok(match kw {
            "if" => Node::If(pipe, body, alt, pos),
            "range" => Node::Range(pipe, body, alt, pos),
            _ => Node::With(pipe, body, alt, pos),
        })
    }

    fn pipeline(
        &mut self,
        toks: &[Tok],
        pos: &Pos,
        allow_decl: bool,
    ) -> Result<Pipeline, TemplateError> {
        let mut toks = toks;
        let mut decl = Vec::new();
        let mut assign = false;
        if allow_decl {
            // `$x :=`, `$i, $e :=`, `$x =`
            let mut j = 0;
            let mut names = Vec::new();
            while let Some(Tok::Var(n)) = toks.get(j) {
                names.push(n.clone());
                match toks.get(j + 1) {
                    Some(Tok::Comma) => j += 2,
                    Some(Tok::Declare) | Some(Tok::Assign) => {
                        assign = toks[j + 1] == Tok::Assign;
                        decl = names.clone();
                        toks = &toks[j + 2..];
                        break;
                    }
                    _ => break,
                }
            }
            for n in &decl {
                if assign {
                    if !self.vars.iter().any(|f| f.contains(n)) {
                        return Err(err(pos, format!("undefined variable \"${n}\"")));
                    }
                } else {
                    self.vars.last_mut().expect("a frame").push(n.clone());
                }
            }
        }
        let mut cmds = Vec::new();
        let mut i = 0;
        while i <= toks.len() {
            let mut args = Vec::new();
            while i < toks.len() && toks[i] != Tok::Pipe {
                let (a, used) = self.operand(&toks[i..], pos)?;
                args.push(a);
                i += used;
            }
            if args.is_empty() {
                return Err(err(pos, "missing value for command"));
            }
            cmds.push(Command { args });
            i += 1;
        }
        if cmds.is_empty() {
            return Err(err(pos, "missing value for command"));
        }
        Ok(Pipeline { decl, assign, cmds })
    }

    /// One operand and how many tokens it used.
    fn operand(&mut self, toks: &[Tok], pos: &Pos) -> Result<(Arg, usize), TemplateError> {
        let fields = |from: usize| -> (Vec<String>, usize) {
            let mut f = Vec::new();
            let mut j = from;
            while let Some(Tok::Chain(n)) = toks.get(j) {
                f.push(n.clone());
                j += 1;
            }
            (f, j)
        };
        match &toks[0] {
            Tok::Dot => Ok((Arg::Field(Vec::new()), 1)),
            Tok::Field(n) => {
                let (mut f, j) = fields(1);
                f.insert(0, n.clone());
                Ok((Arg::Field(f), j))
            }
            Tok::Chain(n) => Err(err(pos, format!("unexpected .{n} in operand"))),
            Tok::Var(n) => {
                if !self.vars.iter().any(|fr| fr.contains(n)) {
                    return Err(err(pos, format!("undefined variable \"${n}\"")));
                }
                let (f, j) = fields(1);
                Ok((Arg::Var(n.clone(), f), j))
            }
            Tok::Str(s) => Ok((Arg::Str(s.clone()), 1)),
            Tok::Num(n) => {
                if let Ok(i) = n.parse::<i64>() {
                    Ok((Arg::Int(i), 1))
                } else if let Some(h) = n.strip_prefix("0x")
                    && let Ok(i) = i64::from_str_radix(h, 16)
                {
                    Ok((Arg::Int(i), 1))
                } else if let Ok(f) = n.parse::<f64>() {
                    Ok((Arg::Float(f), 1))
                } else {
                    Err(err(pos, format!("bad number syntax: {n:?}")))
                }
            }
            Tok::Ident(k) => match k.as_str() {
                "true" => Ok((Arg::Bool(true), 1)),
                "false" => Ok((Arg::Bool(false), 1)),
                "nil" => Ok((Arg::Nil, 1)),
                name if (self.is_func)(name) => Ok((Arg::Func(name.to_string()), 1)),
                name => Err(err(pos, format!("function {name:?} not defined"))),
            },
            Tok::Open => {
                let mut depth = 0;
                let mut end = None;
                for (j, t) in toks.iter().enumerate() {
                    match t {
                        Tok::Open => depth += 1,
                        Tok::Close => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(end) = end else {
                    return Err(err(pos, "unclosed left paren"));
                };
                let inner = self.pipeline(&toks[1..end], pos, false)?;
                let (f, j) = fields(end + 1);
                Ok((Arg::Sub(Box::new(inner), f), j))
            }
            Tok::Close => Err(err(pos, "unexpected right paren")),
            Tok::Pipe => Err(err(pos, "missing value for command")),
            Tok::Declare | Tok::Assign => Err(err(pos, "unexpected \":=\" in operand")),
            Tok::Comma => Err(err(pos, "unexpected \",\" in operand")),
        }
    }
}
