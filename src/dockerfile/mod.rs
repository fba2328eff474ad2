//! The Dockerfile language: parsing (`parser`), Docker's word expansion (`shell`),
//! `.dockerignore` patterns (`ignore`) and the helpers instructions need to split their
//! arguments (`ENV`/`LABEL` key-value pairs). Knows nothing of images or the store.

pub mod ignore;
pub mod parser;
pub mod shell;

pub use parser::parse;
pub use shell::{Lex, LexError};

/// A parse error, naming the file and the line as Docker's (`Dockerfile:3: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]`
    Json(Vec<String>),
    /// The rest of the line, as written.
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// Unquoted delimiter: variables in the content are expanded.
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of the instruction's first line.
    pub line: usize,
    /// Lower case (`from`, `run`…).
    pub cmd: String,
    /// Leading `--name[=value]` words.
    pub flags: Vec<String>,
    pub args: Args,
    /// The joined instruction text (continuations removed), for messages and ONBUILD.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
}

impl Instruction {
    /// The value of `--name=value` (or `Some("")` for a bare `--name`).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find_map(|f| {
            let f = f.strip_prefix("--")?;
            match f.split_once('=') {
                Some((k, v)) if k == name => Some(v),
                None if f == name => Some(""),
                _ => None,
            }
        })
    }

    /// The step text the classic builder prints: the instruction as written (continuations
    /// joined), `Step 2/4 : COPY . /app`.
    pub fn display(&self) -> String {
        self.original.trim().to_string()
    }
}

#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub name: String,
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// Words of a shell-form argument list, quotes kept (as Docker's `parseWords`): whitespace
/// outside quotes separates words; the escape character protects the next character.
pub fn split_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            continue;
        }
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// `ENV`/`LABEL` arguments as (key, value) pairs, unexpanded: the legacy `KEY value…` form
/// (first word has no `=`: the rest of the line is the value) or `K=V K2="v 2"` pairs.
pub fn key_values(s: &str, escape: char, what: &str) -> Result<Vec<(String, String)>, String> {
    let words = split_words(s, escape);
    let Some(first) = words.first() else {
        return Err(format!("{what} requires at least one argument"));
    };
    if !first.contains('=') {
        let rest = s.trim_start()[first.len()..].trim();
        if rest.is_empty() {
            return Err(format!("{what} names can not be blank"));
        }
        return Ok(vec![(first.clone(), rest.to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(format!("{what} names can not be blank")),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_forms() {
        assert_eq!(
            key_values("A b c", '\\', "ENV").unwrap(),
            [("A".to_string(), "b c".to_string())]
        );
        assert_eq!(
            key_values(r#"A="x y" B=z\ w"#, '\\', "ENV").unwrap(),
            [
                ("A".to_string(), "\"x y\"".to_string()),
                ("B".to_string(), "z\\ w".to_string())
            ]
        );
        assert!(key_values("A=1 B", '\\', "ENV").is_err());
    }

    #[test]
    fn flags_and_display() {
        let d = parse("D", "FROM x\ncopy --from=b a /c\n").unwrap();
        let i = &d.instructions[1];
        assert_eq!(i.flag("from"), Some("b"));
        assert_eq!(i.flag("chown"), None);
        assert_eq!(i.display(), "copy --from=b a /c");
    }
}
