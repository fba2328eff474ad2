//! `--change 'CMD …'` for `import` (and later `commit`): the Dockerfile instructions that
//! only set image config, applied to a config's `config` object.

use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
#[error("invalid --change {input:?}: {reason}")]
pub struct ChangeError {
    pub input: String,
    pub reason: String,
}

/// `["a","b"]` (JSON form) or a shell form run by `/bin/sh -c`.
fn command(arg: &str, input: &str) -> Result<Value, ChangeError> {
    let t = arg.trim();
    if t.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(t)
    {
        return Ok(json!(v));
    }
    if t.is_empty() {
        return Err(ChangeError {
            input: input.into(),
            reason: "missing command".into(),
        });
    }
    Ok(json!(["/bin/sh", "-c", t]))
}

/// Split `K=V K2="v 2"` or the legacy `K V` form into pairs.
fn pairs(arg: &str, input: &str) -> Result<Vec<(String, String)>, ChangeError> {
    let err = |r: &str| ChangeError {
        input: input.into(),
        reason: r.into(),
    };
    let t = arg.trim();
    if !t.contains('=')
        || t.split_whitespace()
            .next()
            .is_some_and(|w| !w.contains('='))
    {
        let (k, v) = t
            .split_once(char::is_whitespace)
            .ok_or_else(|| err("expected KEY=VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = t.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, '"') | (None, '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '\\') => word.extend(chars.next()),
                (None, c) if c.is_whitespace() => break,
                (_, c) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err(err("unterminated quote"));
        }
        if word.is_empty() {
            continue;
        }
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| err("expected KEY=VALUE"))?;
        if k.is_empty() {
            return Err(err("empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Apply one change to the container config object.
pub fn apply(config: &mut Map<String, Value>, change: &str) -> Result<(), ChangeError> {
    let (instr, arg) = change
        .trim()
        .split_once(char::is_whitespace)
        .unwrap_or((change.trim(), ""));
    let err = |r: String| ChangeError {
        input: change.into(),
        reason: r,
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), command(arg, change)?);
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), command(arg, change)?);
        }
        "ENV" => {
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let list = env
                .as_array_mut()
                .ok_or_else(|| err("Env is not a list".into()))?;
            for (k, v) in pairs(arg, change)? {
                list.retain(|e| {
                    e.as_str().and_then(|s| s.split_once('=')).map(|(ek, _)| ek) != Some(k.as_str())
                });
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            let m = labels
                .as_object_mut()
                .ok_or_else(|| err("Labels is not an object".into()))?;
            for (k, v) in pairs(arg, change)? {
                m.insert(k, json!(v));
            }
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" => {
            let key = match instr.to_ascii_uppercase().as_str() {
                "WORKDIR" => "WorkingDir",
                "USER" => "User",
                _ => "StopSignal",
            };
            if arg.trim().is_empty() {
                return Err(err(format!("{instr} needs an argument")));
            }
            config.insert(key.into(), json!(arg.trim()));
        }
        "EXPOSE" | "VOLUME" => {
            let key = if instr.eq_ignore_ascii_case("EXPOSE") {
                "ExposedPorts"
            } else {
                "Volumes"
            };
            let items: Vec<String> = match serde_json::from_str::<Vec<String>>(arg.trim()) {
                Ok(v) => v,
                Err(_) => arg.split_whitespace().map(str::to_string).collect(),
            };
            if items.is_empty() {
                return Err(err(format!("{instr} needs an argument")));
            }
            let m = config.entry(key).or_insert_with(|| json!({}));
            let m = m
                .as_object_mut()
                .ok_or_else(|| err(format!("{key} is not an object")))?;
            for mut i in items {
                if key == "ExposedPorts" && !i.contains('/') {
                    i.push_str("/tcp");
                }
                m.insert(i, json!({}));
            }
        }
        "" => return Err(err("empty change".into())),
        other => {
            return Err(err(format!(
                "{other} is not a config instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_changes() {
        let mut m = Map::new();
        apply(&mut m, r#"CMD ["/bin/bash"]"#).unwrap();
        apply(&mut m, "ENTRYPOINT echo hi").unwrap();
        apply(&mut m, "ENV PATH=/bin A=\"b c\"").unwrap();
        apply(&mut m, "ENV PATH /usr/bin").unwrap();
        apply(&mut m, "EXPOSE 80").unwrap();
        assert_eq!(m["Cmd"], json!(["/bin/bash"]));
        assert_eq!(m["Entrypoint"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(m["Env"], json!(["A=b c", "PATH=/usr/bin"]));
        assert_eq!(m["ExposedPorts"], json!({"80/tcp": {}}));
        assert!(apply(&mut m, "RUN rm -rf /").is_err());
        assert!(apply(&mut m, "ENV A=\"x").is_err());
    }
}
