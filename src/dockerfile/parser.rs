//! Dockerfile text to instructions, with the rules of moby/buildkit's parser: parser
//! directives only at the very top (`# escape=`, `# syntax=`; the first comment that is not a
//! directive, empty line or instruction ends them), whole-line comments dropped (also between
//! continued lines), line continuation by the escape character at the end of a line (empty
//! lines inside a continuation skipped), instruction names case-insensitive, leading `--flag`
//! words split off, JSON form when the arguments parse as a JSON array of strings (anything
//! else, even `[broken`, is shell form), and heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) for RUN,
//! COPY and ADD.

use super::{Args, Dockerfile, Heredoc, Instruction, ParseError};

const KNOWN: &[&str] = &[
    "from",
    "run",
    "cmd",
    "entrypoint",
    "env",
    "arg",
    "label",
    "expose",
    "user",
    "workdir",
    "volume",
    "copy",
    "add",
    "shell",
    "stopsignal",
    "healthcheck",
    "onbuild",
    "maintainer",
];

/// `# key=value` at the top of the file.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?.trim();
    let (k, v) = rest.split_once('=')?;
    let k = k.trim();
    if k.is_empty()
        || !k.starts_with(|c: char| c.is_ascii_alphabetic())
        || !k.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strip a trailing escape (plus whitespace after it): `(text, continues)`.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(s) => (s, true),
        None => (line, false),
    }
}

/// The heredoc markers in an instruction's arguments: (name, quoted, strip tabs).
fn heredoc_markers(args: &str) -> Vec<(String, bool, bool)> {
    let b = args.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < b.len() + 1 {
        if b.get(i) == Some(&b'<') && b.get(i + 1) == Some(&b'<') {
            let mut j = i + 2;
            let strip = b.get(j) == Some(&b'-');
            if strip {
                j += 1;
            }
            let quote = b.get(j).copied().filter(|c| *c == b'"' || *c == b'\'');
            if quote.is_some() {
                j += 1;
            }
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let name = &args[start..j];
            let closed = match quote {
                Some(q) => b.get(j) == Some(&q),
                None => true,
            };
            if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) && closed {
                out.push((name.to_string(), quote.is_some(), strip));
                i = j + usize::from(quote.is_some());
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Splits `--flag[=value]` words off the front of the arguments.
fn split_flags(rest: &str) -> (Vec<String>, String) {
    let mut flags = Vec::new();
    let mut s = rest.trim_start();
    while s.starts_with("--") {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        let word = &s[..end];
        if word == "--" {
            s = s[end..].trim_start();
            break;
        }
        flags.push(word.to_string());
        s = s[end..].trim_start();
    }
    (flags, s.to_string())
}

/// JSON form when the text is a JSON array of strings, else shell form (Docker's fallback).
pub fn json_or_shell(rest: &str) -> Args {
    let t = rest.trim();
    if t.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(t)
    {
        return Args::Json(v);
    }
    Args::Shell(rest.trim().to_string())
}

/// Parse one instruction line (already joined); `heredocs` are filled by the caller.
pub fn parse_line(file: &str, line_no: usize, text: &str) -> Result<Instruction, ParseError> {
    let err = |msg: String| ParseError {
        file: file.to_string(),
        line: line_no,
        msg,
    };
    let text = text.trim();
    let (word, rest) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let cmd = word.to_ascii_lowercase();
    if !KNOWN.contains(&cmd.as_str()) {
        return Err(err(format!("unknown instruction: {word}")));
    }
    let (flags, rest) = split_flags(rest);
    let args = match cmd.as_str() {
        "run" | "cmd" | "entrypoint" | "copy" | "add" | "volume" => json_or_shell(&rest),
        "shell" => match json_or_shell(&rest) {
            a @ Args::Json(_) => a,
            Args::Shell(_) => {
                return Err(err("SHELL requires the arguments to be in JSON form".into()));
            }
        },
        _ => Args::Shell(rest.trim().to_string()),
    };
    let needs_args = !matches!(cmd.as_str(), "cmd" | "entrypoint" | "run");
    if needs_args && matches!(&args, Args::Shell(s) if s.is_empty()) {
        return Err(err(format!(
            "{} requires at least one argument",
            cmd.to_uppercase()
        )));
    }
    Ok(Instruction {
        line: line_no,
        cmd,
        flags,
        args,
        original: text.to_string(),
        heredocs: Vec::new(),
    })
}

/// Parse a whole Dockerfile; `file` names it in errors.
pub fn parse(file: &str, src: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = src.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Directives: only before anything else.
    while i < lines.len() {
        match directive(lines[i]) {
            Some((k, v)) => {
                if k == "escape" {
                    escape = match v.as_str() {
                        "\\" => '\\',
                        "`" => '`',
                        _ => {
                            return Err(ParseError {
                                file: file.into(),
                                line: i + 1,
                                msg: format!("invalid escape token '{v}' does not match ` or \\"),
                            });
                        }
                    };
                }
                i += 1;
            }
            None => break,
        }
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start();
        i += 1;
        if first.trim().is_empty() || is_comment(first) {
            continue;
        }
        let (mut text, mut cont) = {
            let (t, c) = trim_continuation(first, escape);
            (t.to_string(), c)
        };
        while cont && i < lines.len() {
            let l = lines[i];
            i += 1;
            if is_comment(l) || l.trim().is_empty() {
                continue;
            }
            let (t, c) = trim_continuation(l, escape);
            text.push_str(t);
            cont = c;
        }
        let mut ins = parse_line(file, start + 1, &text)?;
        if matches!(ins.cmd.as_str(), "run" | "copy" | "add") {
            for (name, quoted, strip) in heredoc_markers(&text) {
                let mut content = String::new();
                let mut found = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if strip { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        found = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !found {
                    return Err(ParseError {
                        file: file.into(),
                        line: start + 1,
                        msg: format!("unterminated heredoc {name}"),
                    });
                }
                ins.heredocs.push(Heredoc {
                    name,
                    content,
                    expand: !quoted,
                });
            }
        }
        out.push(ins);
    }
    Ok(Dockerfile {
        name: file.to_string(),
        escape,
        instructions: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Dockerfile {
        parse("Dockerfile", s).unwrap()
    }

    #[test]
    fn continuations_comments_case() {
        let d = p("from busybox\nRUN echo a \\\n# comment\n\n  b\ncmd [\"x\", \"y\"]\n");
        assert_eq!(d.instructions.len(), 3);
        assert_eq!(d.instructions[0].cmd, "from");
        assert_eq!(d.instructions[1].args, Args::Shell("echo a   b".into()));
        assert_eq!(d.instructions[1].line, 2);
        assert_eq!(
            d.instructions[2].args,
            Args::Json(vec!["x".into(), "y".into()])
        );
        assert_eq!(d.instructions[2].line, 6);
    }

    #[test]
    fn json_fallback_and_flags() {
        let d = p("FROM x\nCMD [broken\nCOPY --from=b --chown=1:2 a /b\n");
        assert_eq!(d.instructions[1].args, Args::Shell("[broken".into()));
        assert_eq!(d.instructions[2].flags, ["--from=b", "--chown=1:2"]);
        assert_eq!(d.instructions[2].args, Args::Shell("a /b".into()));
    }

    #[test]
    fn directives() {
        let d = p("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN a `\n  b\n");
        assert_eq!(d.escape, '`');
        assert_eq!(d.instructions[1].args, Args::Shell("a   b".into()));
        // After an instruction, a directive is a comment.
        let d = p("FROM x\n# escape=`\nRUN a \\\n b\n");
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instructions[1].args, Args::Shell("a  b".into()));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("Dockerfile.x", "FROM x\n\nFOO bar\n").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile.x:3: unknown instruction: FOO");
        let e = parse("D", "FROM x\nSHELL sh -c\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn heredocs() {
        let d = p(
            "FROM x\nRUN <<EOF\necho hi\necho there\nEOF\nCOPY <<-'END' /f\n\tkeep $X\n\tEND\nCMD x\n",
        );
        let r = &d.instructions[1];
        assert_eq!(r.heredocs[0].name, "EOF");
        assert_eq!(r.heredocs[0].content, "echo hi\necho there\n");
        assert!(r.heredocs[0].expand);
        let c = &d.instructions[2];
        assert_eq!(c.heredocs[0].content, "keep $X\n");
        assert!(!c.heredocs[0].expand);
        assert_eq!(d.instructions[3].cmd, "cmd");
        assert!(parse("D", "FROM x\nRUN <<EOF\nno end\n").is_err());
    }
}
