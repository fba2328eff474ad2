//! `.dockerignore` and COPY source globs, with Docker's pattern rules (moby's
//! `patternmatcher`): `*` and `?` never cross `/`, `**` crosses any number of directories,
//! `[a-z]` classes, `\` escapes; patterns are cleaned (`./a/../b` → `b`, leading `/`
//! dropped); a pattern that matches a parent directory matches everything under it; `!`
//! lines re-include; the last matching line decides.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    One,
    Star,
    /// `**` (any characters, `/` included)
    Any,
    /// `**/` (zero or more whole directories)
    AnyDirs,
    Class(Vec<(char, char)>, bool),
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let c: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < c.len() {
            match c[i] {
                '*' if c.get(i + 1) == Some(&'*') => {
                    i += 2;
                    if c.get(i) == Some(&'/') {
                        i += 1;
                        toks.push(Tok::AnyDirs);
                    } else {
                        toks.push(Tok::Any);
                    }
                    continue;
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '\\' if i + 1 < c.len() => {
                    i += 1;
                    toks.push(Tok::Lit(c[i]));
                }
                '[' => {
                    let mut j = i + 1;
                    let neg = matches!(c.get(j), Some('^' | '!'));
                    if neg {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    while j < c.len() {
                        if c[j] == ']' && !(ranges.is_empty() && j == i + 1 + usize::from(neg)) {
                            closed = true;
                            break;
                        }
                        let mut lo = c[j];
                        if lo == '\\' && j + 1 < c.len() {
                            j += 1;
                            lo = c[j];
                        }
                        let mut hi = lo;
                        if c.get(j + 1) == Some(&'-') && c.get(j + 2).is_some_and(|&h| h != ']') {
                            hi = c[j + 2];
                            j += 2;
                        }
                        ranges.push((lo, hi));
                        j += 1;
                    }
                    if closed {
                        toks.push(Tok::Class(ranges, neg));
                        i = j + 1;
                        continue;
                    }
                    toks.push(Tok::Lit('['));
                }
                ch => toks.push(Tok::Lit(ch)),
            }
            i += 1;
        }
        Glob { toks }
    }

    pub fn matches(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        m(&self.toks, &s)
    }

    /// Whether the pattern has any wildcard (else it names one path).
    pub fn is_literal(pattern: &str) -> bool {
        !pattern.contains(['*', '?', '[', '\\'])
    }
}

fn m(t: &[Tok], s: &[char]) -> bool {
    let Some(first) = t.first() else {
        return s.is_empty();
    };
    let rest = &t[1..];
    match first {
        Tok::Lit(c) => s.first() == Some(c) && m(rest, &s[1..]),
        Tok::One => s.first().is_some_and(|&c| c != '/') && m(rest, &s[1..]),
        Tok::Class(r, neg) => {
            s.first()
                .is_some_and(|&c| c != '/' && r.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg)
                && m(rest, &s[1..])
        }
        Tok::Star => {
            for k in 0..=s.len() {
                if m(rest, &s[k..]) {
                    return true;
                }
                if k < s.len() && s[k] == '/' {
                    break;
                }
            }
            false
        }
        Tok::Any => (0..=s.len()).any(|k| m(rest, &s[k..])),
        Tok::AnyDirs => {
            m(rest, s)
                || (0..s.len())
                    .filter(|&k| s[k] == '/')
                    .any(|k| m(rest, &s[k + 1..]))
        }
    }
}

/// Clean a path as Go's `filepath.Clean`, relative result without a leading `/`.
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !p.starts_with('/') {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        ".".into()
    } else {
        out.join("/")
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    glob: Glob,
    exclusion: bool,
}

/// The rules of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exclusion, p) = match l.strip_prefix('!') {
                Some(r) => (true, r.trim()),
                None => (false, l),
            };
            let p = clean(p);
            if p == "." && !exclusion {
                // `.` would ignore the whole context; Docker ignores such a line for the
                // Dockerfile's sake too. Keep it as a pattern matching everything.
            }
            patterns.push(Pattern {
                glob: Glob::new(&p),
                exclusion,
            });
        }
        Ignore { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.glob.matches(path);
            if !hit && parents.len() > 1 {
                hit = (1..parents.len()).any(|i| p.glob.matches(&parents[..i].join("/")));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether an excluded directory may still hold re-included entries (so a walk must
    /// descend into it).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(Glob::new("*.txt").matches("a.txt"));
        assert!(!Glob::new("*.txt").matches("d/a.txt"));
        assert!(Glob::new("**/*.txt").matches("a.txt"));
        assert!(Glob::new("**/*.txt").matches("d/e/a.txt"));
        assert!(Glob::new("d/**").matches("d/e/f"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(!Glob::new("a?c").matches("a/c"));
        assert!(Glob::new("[a-c]x").matches("bx"));
        assert!(!Glob::new("[!a-c]x").matches("bx"));
        assert!(Glob::new(r"\*").matches("*"));
    }

    #[test]
    fn dockerignore_rules() {
        let i = Ignore::parse("# c\n*.log\n!keep.log\nbuild/\n/tmp/**\ndocs\n!docs/README.md\n");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("keep.log"));
        assert!(!i.excluded("d/a.log"));
        assert!(i.excluded("build/x/y"));
        assert!(i.excluded("tmp/a"));
        assert!(i.excluded("docs/a"));
        assert!(!i.excluded("docs/README.md"));
        assert!(!i.excluded("src/main.rs"));
        let i = Ignore::parse("**/node_modules\n");
        assert!(i.excluded("a/b/node_modules/x"));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("./a/../b/"), "b");
        assert_eq!(clean("/x/y"), "x/y");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("/../x"), "x");
        assert_eq!(clean("."), ".");
    }
}
