//! Docker's word expansion (`shell.Lex` in moby/buildkit's frontend): quotes, escapes and
//! `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?msg}`, `${VAR?msg}`.
//!
//! Why not a POSIX shell: Dockerfile instructions other than RUN/CMD/ENTRYPOINT are expanded by
//! the builder itself with these narrower rules (no command substitution, no globbing,
//! unset variables expand to nothing), and images built by Docker depend on exactly them:
//! a `\` inside double quotes only escapes `"`, `$` and the escape character; a trailing
//! escape is dropped; `$` before a non-name character stays literal; special parameters
//! (`$*`, `$@`, `$$`…) are looked up like any name (and so are empty).

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    SingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    DoubleQuote,
    #[error("missing '}}' in substitution")]
    MissingBrace,
    #[error("unsupported modifier ({0}) in substitution")]
    Modifier(char),
    #[error("{0}: {1}")]
    Unset(String, String),
}

/// The expander: the escape character (`\`, or `` ` `` by the `# escape=` directive).
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    pub escape: char,
    /// Heredoc bodies (buildkit's `RawQuotes`/`RawEscapes`): quotes and escapes stay in the
    /// text; only `$` substitutions happen (not inside single quotes).
    pub raw: bool,
}

impl Default for Lex {
    fn default() -> Self {
        Lex {
            escape: '\\',
            raw: false,
        }
    }
}

/// Looks a name up in `KEY=VALUE` pairs; the last definition wins, as Docker's.
pub fn lookup<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        (k == name).then_some(v)
    })
}

/// Words being accumulated for `process_words`: whitespace outside quotes separates words,
/// quoted text (even empty `""`) makes a word.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    cur: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word {
                self.words.push(std::mem::take(&mut self.cur));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.cur.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.cur.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if self.in_word {
            self.words.push(self.cur);
        }
        self.words
    }
}

struct Scan<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a [String],
    escape: char,
    raw: bool,
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Everything up to `stop` (consumed) or the end; `(expanded text, words)`.
    fn process_stop_on(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' => {
                    let s = self.single_quote()?;
                    words.add_raw_string(&s);
                    result.push_str(&s);
                }
                '"' => {
                    let s = self.double_quote()?;
                    words.add_raw_string(&s);
                    result.push_str(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    words.add_string(&s);
                    result.push_str(&s);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        // The escape takes the next character literally; at the end it is dropped.
                        if self.raw {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        let Some(n) = self.next() else { break };
                        words.add_raw_char(n);
                        result.push(n);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if stop.is_some() {
            return Err(LexError::MissingBrace);
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, LexError> {
        self.next();
        let mut s = String::new();
        if self.raw {
            s.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(LexError::SingleQuote),
                Some('\'') => {
                    if self.raw {
                        s.push('\'');
                    }
                    return Ok(s);
                }
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, LexError> {
        self.next();
        let mut s = String::new();
        if self.raw {
            s.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(LexError::DoubleQuote),
                Some('"') => {
                    self.next();
                    if self.raw {
                        s.push('"');
                    }
                    return Ok(s);
                }
                Some('$') => s.push_str(&self.dollar()?),
                Some(c) => {
                    self.next();
                    if c == self.escape {
                        match self.peek() {
                            None => return Err(LexError::DoubleQuote),
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.next();
                                if self.raw {
                                    s.push(c);
                                }
                                s.push(n);
                            }
                            Some(_) => s.push(c),
                        }
                    } else {
                        s.push(c);
                    }
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && "*#@?-$!".contains(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn dollar(&mut self) -> Result<String, LexError> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(lookup(self.env, &name).unwrap_or("").to_string());
        }
        self.next(); // '{'
        let name = self.name();
        let value = lookup(self.env, &name);
        match self.next() {
            Some('}') => Ok(value.unwrap_or("").to_string()),
            Some(':') => {
                let m = self.next().ok_or(LexError::MissingBrace)?;
                let (word, _) = self.process_stop_on(Some('}'))?;
                let set = value.is_some_and(|v| !v.is_empty());
                modifier(m, &name, value, set, word)
            }
            Some(m @ ('-' | '+' | '?')) => {
                let (word, _) = self.process_stop_on(Some('}'))?;
                modifier(m, &name, value, value.is_some(), word)
            }
            Some(c) => Err(LexError::Modifier(c)),
            None => Err(LexError::MissingBrace),
        }
    }
}

fn modifier(
    m: char,
    name: &str,
    value: Option<&str>,
    set: bool,
    word: String,
) -> Result<String, LexError> {
    match m {
        '-' => Ok(if set {
            value.unwrap_or("").to_string()
        } else {
            word
        }),
        '+' => Ok(if set { word } else { String::new() }),
        '?' if set => Ok(value.unwrap_or("").to_string()),
        '?' => Err(LexError::Unset(
            name.to_string(),
            if word.is_empty() {
                "is not allowed to be unset".into()
            } else {
                word
            },
        )),
        c => Err(LexError::Modifier(c)),
    }
}

impl Lex {
    pub fn new(escape: char) -> Lex {
        Lex { escape, raw: false }
    }

    /// The heredoc variant (see `raw`).
    pub fn raw(self) -> Lex {
        Lex { raw: true, ..self }
    }

    fn scan<'a>(&self, word: &str, env: &'a [String]) -> Scan<'a> {
        Scan {
            chars: word.chars().collect(),
            pos: 0,
            env,
            escape: self.escape,
            raw: self.raw,
        }
    }

    /// One word, quotes removed and variables substituted (`ProcessWord`).
    pub fn process_word(&self, word: &str, env: &[String]) -> Result<String, LexError> {
        Ok(self.scan(word, env).process_stop_on(None)?.0)
    }

    /// Several words: unquoted whitespace (also from unquoted substitutions) separates them
    /// (`ProcessWords`).
    pub fn process_words(&self, word: &str, env: &[String]) -> Result<Vec<String>, LexError> {
        Ok(self.scan(word, env).process_stop_on(None)?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<String> {
        ["A=a", "E=", "SP=x y", "PATH=/bin"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
    fn w(s: &str) -> String {
        Lex::default().process_word(s, &env()).unwrap()
    }

    #[test]
    fn variables() {
        assert_eq!(w("$A"), "a");
        assert_eq!(w("${A}b"), "ab");
        assert_eq!(w("$Ab"), "");
        assert_eq!(w("$NOPE"), "");
        assert_eq!(w("x$"), "x$");
        assert_eq!(w("$/x"), "$/x");
        assert_eq!(w("$$"), "");
        assert_eq!(w("${NOPE:-d}"), "d");
        assert_eq!(w("${E:-d}"), "d");
        assert_eq!(w("${E-d}"), "");
        assert_eq!(w("${A:-d}"), "a");
        assert_eq!(w("${A:+x}"), "x");
        assert_eq!(w("${E:+x}"), "");
        assert_eq!(w("${E+x}"), "x");
        assert_eq!(w("${NOPE+x}"), "");
        assert_eq!(w("${NOPE:-$A}"), "a");
        assert_eq!(w("${NOPE:-'q'}"), "q");
        assert_eq!(w("${A:?msg}"), "a");
        assert_eq!(
            Lex::default().process_word("${NOPE:?gone}", &env()),
            Err(LexError::Unset("NOPE".into(), "gone".into()))
        );
        assert!(Lex::default().process_word("${A", &env()).is_err());
        assert!(Lex::default().process_word("${A/x}", &env()).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A\""), "a");
        assert_eq!(w(r#""a\"b""#), "a\"b");
        assert_eq!(w(r#""a\nb""#), "a\\nb");
        assert_eq!(w(r#""\$A""#), "$A");
        assert_eq!(w(r"\$A"), "$A");
        assert_eq!(w(r"a\ b"), "a b");
        assert_eq!(w(r"a\"), "a");
        assert_eq!(w(r"'a\b'"), r"a\b");
        assert_eq!(
            Lex::default().process_word("'abc", &env()),
            Err(LexError::SingleQuote)
        );
        assert_eq!(
            Lex::default().process_word("\"abc", &env()),
            Err(LexError::DoubleQuote)
        );
        let bt = Lex::new('`');
        assert_eq!(
            bt.process_word(r"C:\dir `$A", &env()).unwrap(),
            r"C:\dir $A"
        );
    }

    #[test]
    fn raw_heredoc_bodies() {
        let l = Lex::default().raw();
        assert_eq!(
            l.process_word("say \"$A\" 'as $A' \\$A\n", &env()).unwrap(),
            "say \"a\" 'as $A' \\$A\n"
        );
    }

    #[test]
    fn words() {
        let l = Lex::default();
        assert_eq!(l.process_words("a  b", &env()).unwrap(), ["a", "b"]);
        assert_eq!(l.process_words("$SP z", &env()).unwrap(), ["x", "y", "z"]);
        assert_eq!(l.process_words("\"$SP\" z", &env()).unwrap(), ["x y", "z"]);
        assert_eq!(l.process_words("\"\" z", &env()).unwrap(), ["", "z"]);
        assert_eq!(l.process_words(r"a\ b", &env()).unwrap(), ["a b"]);
    }
}
