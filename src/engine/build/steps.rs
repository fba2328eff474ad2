//! The instructions: what each one does to the stage's image, and the history text the
//! classic builder records for it (`/bin/sh -c #(nop)  CMD ["sh"]`, `/bin/sh -c echo hi`,
//! `/bin/sh -c #(nop) COPY dir:<hash> in /app `).

use super::{BuildError, Builder, State, go_quote_list};
use crate::container::{Container, RunConfig};
use crate::digest::Digest;
use crate::dockerfile::{self, Args, Instruction};
use crate::engine::{Engine, EngineError, run};
use crate::image::platform::{WantedPlatform, normalize_arch, normalize_os};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Build args Docker accepts without an ARG line.
pub const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A container the build made; removed when dropped (also when the step failed).
pub(super) struct Temp<'e> {
    pub(super) engine: &'e Engine,
    pub(super) c: Container,
    pub(super) ran: bool,
    pub(super) mounted: bool,
}

impl<'e> Temp<'e> {
    /// A temporary container on `image` (removed when dropped).
    pub(super) fn create(
        engine: &'e Engine,
        image: &Digest,
        cfg: RunConfig,
    ) -> Result<Temp<'e>, BuildError> {
        let c = engine.create_container(None, &image.to_string(), cfg)?;
        Ok(Temp {
            engine,
            c,
            ran: false,
            mounted: false,
        })
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        let store = self.engine.containers();
        if self.mounted {
            let _ = store.unmount(&self.c, false);
        }
        if self.ran {
            let _ = run::prepare_remove(self.engine, &self.c, true);
        }
        let _ = store.remove(&self.c);
    }
}

pub(super) fn bad(msg: impl Into<String>) -> BuildError {
    BuildError::Invalid(msg.into())
}

fn check_flags(ins: &Instruction, allowed: &[&str]) -> Result<(), BuildError> {
    for f in &ins.flags {
        let name = f.trim_start_matches('-').split('=').next().unwrap_or("");
        if !allowed.contains(&name) {
            return Err(bad(format!("Unknown flag: {name}")));
        }
    }
    Ok(())
}

fn shell_text(ins: &Instruction) -> &str {
    match &ins.args {
        Args::Shell(s) => s,
        Args::Json(_) => "",
    }
}

/// Go's duration syntax (`30s`, `1m30s`, `500ms`) in nanoseconds.
fn parse_duration(s: &str) -> Result<i64, BuildError> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s == "0" {
        return Ok(0);
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() || n == '.' {
                break;
            }
            unit.push(n);
            chars.next();
        }
        let v: f64 = num
            .parse()
            .map_err(|_| bad(format!("time: invalid duration {s:?}")))?;
        num.clear();
        let mult = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(bad(format!(
                    "time: unknown unit {unit:?} in duration {s:?}"
                )));
            }
        };
        total += v * mult;
    }
    if !num.is_empty() {
        return Err(bad(format!("time: missing unit in duration {s:?}")));
    }
    Ok(total as i64)
}

fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let secs = ns / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut o = String::new();
    if h > 0 {
        o.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        o.push_str(&format!("{m}m"));
    }
    o.push_str(&format!("{s}s"));
    o
}

impl Builder<'_, '_> {
    pub(super) fn expand(&self, st: &State, w: &str) -> Result<String, BuildError> {
        self.lex
            .process_word(w, &st.expansion_env())
            .map_err(|e| bad(e.to_string()))
    }

    /// FROM: the base's state (a stage, an image — pulled if missing — or scratch), then
    /// its ONBUILD triggers.
    pub(super) fn from(
        &mut self,
        ins: Instruction,
        base: &str,
        prev: Option<State>,
        meta_env: &[String],
        lookup: &dyn Fn(&str) -> Option<Option<Digest>>,
    ) -> Result<State, BuildError> {
        self.step_header(&ins)?;
        check_flags(&ins, &["platform"]).map_err(|e| self.at(&ins, e))?;
        self.meta_env = meta_env.to_vec();
        // `FROM --platform=…` (build args of the global scope expanded), else `--platform`.
        let platform = match ins.flag("platform") {
            Some(f) => Some(
                self.lex
                    .process_word(f, &self.meta_env)
                    .map_err(|e| self.at(&ins, bad(e.to_string())))?,
            ),
            None => self.o.platform.clone(),
        };
        let want = WantedPlatform::parse(platform.as_deref())
            .map_err(|e| self.at(&ins, bad(e.to_string())))?;
        let mut st = if let Some(p) = prev {
            p
        } else if base.eq_ignore_ascii_case("scratch") {
            let mut config = Map::new();
            config.insert("architecture".into(), json!(want.arch));
            config.insert("os".into(), json!(want.os));
            if let Some(v) = &want.variant {
                config.insert("variant".into(), json!(v));
            }
            config.insert("config".into(), json!({}));
            config.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
            config.insert("history".into(), json!([]));
            State {
                config,
                ..State::default()
            }
        } else {
            self.base_image(base, &want).map_err(|e| self.at(&ins, e))?
        };
        st.args.clear();
        st.cmd_set = false;
        if let Some(id) = &st.image {
            self.say(format!(" ---> {}", &id.hex()[..12]));
        }
        let mut rc = st.run_config();
        if crate::image::config::string_list(rc.get("Env")).is_empty() {
            rc.insert("Env".into(), json!([DEFAULT_PATH]));
        }
        let triggers = crate::image::config::string_list(rc.get("OnBuild"));
        rc.remove("OnBuild");
        st.config.insert("config".into(), Value::Object(rc));
        if !triggers.is_empty() {
            self.say(format!(
                "# Executing {} build trigger{}",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            for t in triggers {
                let sub = dockerfile::parser::parse_line(&self.file, ins.line, &t)?;
                self.dispatch(&mut st, &sub, lookup)
                    .map_err(|e| self.at(&ins, e))?;
            }
        }
        Ok(st)
    }

    /// The image a stage starts from: the local one when it is of the wanted platform, else
    /// pulled for that platform (as Docker's classic builder does).
    pub(super) fn base_image(
        &mut self,
        name: &str,
        want: &WantedPlatform,
    ) -> Result<State, BuildError> {
        let images = self.engine.images();
        let mut mismatch = None;
        let local = match images.resolve(name) {
            Ok(r) if want.explicit => {
                let (_, cfg) = images.config(&r.id).map_err(EngineError::from)?;
                let (arch, variant) = normalize_arch(&cfg.architecture, cfg.variant.as_deref());
                let os = normalize_os(&cfg.os);
                if want.matches(&os, &arch, variant.as_deref()) {
                    Ok(r)
                } else {
                    let v = variant.map(|v| format!("/{v}")).unwrap_or_default();
                    mismatch = Some(format!(
                        "the local image is {os}/{arch}{v}, not the wanted {want}, and "
                    ));
                    Err(crate::image::ImageError::NotFound(name.to_string()))
                }
            }
            other => other,
        };
        let rec = match local {
            Ok(r) => r,
            Err(crate::image::ImageError::NotFound(_)) => {
                let opts = crate::engine::pull::PullOptions {
                    platform: want.explicit.then(|| want.to_string()),
                    ..Default::default()
                };
                let progress: Arc<dyn crate::registry::progress::Progress> =
                    Arc::new(crate::registry::progress::Silent);
                self.engine.pull(name, &opts, progress).map_err(|e| {
                    match &mismatch {
                        Some(m) => bad(format!("{name}: {m}pulling it failed: {e}")),
                        None => bad(format!("pull access denied for {name}, repository does not exist or may require 'docker login': {e}")),
                    }
                })?;
                images.resolve(name).map_err(EngineError::from)?
            }
            Err(e) => return Err(EngineError::from(e).into()),
        };
        self.state_of_image(&rec.id)
    }

    /// An image's state, its layers leased and its config blob too (so `image prune`
    /// leaves the record alone while this build may still start containers from it).
    pub(super) fn state_of_image(&mut self, id: &Digest) -> Result<State, BuildError> {
        self.lease.hold(crate::lease::Held::Blob, &id.to_string())?;
        self.held_blobs.push(id.to_string());
        let (bytes, cfg) = self.engine.images().config(id).map_err(EngineError::from)?;
        let layers = self
            .engine
            .layers()
            .acquire_chain(&self.lease, &cfg.rootfs.diff_ids)
            .map_err(EngineError::from)?;
        let config: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("image {id}: {e}")))?;
        Ok(State {
            image: Some(id.clone()),
            config,
            layers,
            ..State::default()
        })
    }

    /// Run one instruction on the stage.
    pub(super) fn dispatch(
        &mut self,
        st: &mut State,
        ins: &Instruction,
        lookup: &dyn Fn(&str) -> Option<Option<Digest>>,
    ) -> Result<(), BuildError> {
        let text = shell_text(ins).to_string();
        let mut rc = st.run_config();
        match ins.cmd.as_str() {
            "run" => {
                check_flags(ins, &["network"])?;
                self.run(st, ins)
            }
            "copy" | "add" => {
                check_flags(
                    ins,
                    &["from", "chown", "chmod", "link", "checksum", "keep-git-dir"],
                )?;
                self.copy(st, ins, lookup)
            }
            "workdir" => {
                let p = self.expand(st, &text)?;
                let cur = rc.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
                let joined = if p.starts_with('/') {
                    p
                } else {
                    format!("{}/{p}", cur.trim_end_matches('/'))
                };
                let abs = format!("/{}", crate::dockerfile::ignore::clean(&joined));
                let abs = if abs == "/." { "/".to_string() } else { abs };
                rc.insert("WorkingDir".into(), json!(abs));
                self.workdir(st, &abs, rc)
            }
            "cmd" | "entrypoint" => {
                let list = match &ins.args {
                    Args::Json(l) => l.clone(),
                    Args::Shell(s) if s.is_empty() => Vec::new(),
                    Args::Shell(s) => {
                        let mut l = st.shell();
                        l.push(s.clone());
                        l
                    }
                };
                let key = if ins.cmd == "cmd" {
                    "Cmd"
                } else {
                    "Entrypoint"
                };
                rc.insert(key.into(), json!(list));
                if ins.cmd == "cmd" {
                    st.cmd_set = true;
                } else if !st.cmd_set {
                    rc.insert("Cmd".into(), Value::Null);
                }
                let comment = format!("{} {}", key.to_uppercase(), go_quote_list(&list));
                self.config_step(st, &comment, rc)
            }
            "env" | "label" => {
                let what = ins.cmd.to_uppercase();
                let kvs = dockerfile::key_values(&text, self.lex.escape, &what).map_err(bad)?;
                let env = st.expansion_env();
                let mut comment = what.clone();
                let mut pairs = Vec::new();
                for (k, v) in kvs {
                    let k = self
                        .lex
                        .process_word(&k, &env)
                        .map_err(|e| bad(e.to_string()))?;
                    let v = self
                        .lex
                        .process_word(&v, &env)
                        .map_err(|e| bad(e.to_string()))?;
                    comment.push_str(&format!(" {k}={v}"));
                    pairs.push((k, v));
                }
                if ins.cmd == "env" {
                    let mut list = crate::image::config::string_list(rc.get("Env"));
                    for (k, v) in pairs {
                        list.retain(|e| e.split('=').next() != Some(k.as_str()));
                        list.push(format!("{k}={v}"));
                    }
                    rc.insert("Env".into(), json!(list));
                } else {
                    let mut labels = rc
                        .get("Labels")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    for (k, v) in pairs {
                        labels.insert(k, json!(v));
                    }
                    rc.insert("Labels".into(), Value::Object(labels));
                }
                self.config_step(st, &comment, rc)
            }
            "arg" => {
                let words = dockerfile::split_words(&text, self.lex.escape);
                let mut comment = String::from("ARG");
                for w in words {
                    let (k, default) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(self.expand(st, v)?)),
                        None => (w.clone(), None),
                    };
                    comment.push_str(&format!(
                        " {k}{}",
                        default
                            .as_ref()
                            .map(|d| format!("={d}"))
                            .unwrap_or_default()
                    ));
                    let given = self
                        .o
                        .build_args
                        .iter()
                        .rev()
                        .find(|(a, _)| *a == k)
                        .map(|(_, v)| v.clone());
                    if given.is_some() {
                        self.used_args.insert(k.clone());
                    }
                    let global =
                        crate::dockerfile::shell::lookup(&self.meta_env, &k).map(str::to_string);
                    let v = given.or(default).or(global);
                    st.args.retain(|(a, _)| *a != k);
                    st.args.push((k, v));
                }
                self.config_step(st, &comment, rc)
            }
            "expose" => {
                let mut ports = rc
                    .get("ExposedPorts")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut shown = Vec::new();
                // EXPOSE alone splits expansions into words ($PORTS="80 443"), as Docker's.
                // Docker's parser sorts the words as written, before expanding them: the
                // history line is `EXPOSE 443/udp 80` for `EXPOSE 80 443/udp`.
                let mut written: Vec<&str> = text.split_whitespace().collect();
                written.sort_unstable();
                let mut words = Vec::new();
                for w in written {
                    words.extend(
                        self.lex
                            .process_words(w, &st.expansion_env())
                            .map_err(|e| bad(e.to_string()))?,
                    );
                }
                for p in words {
                    let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let (lo, hi) = match num.split_once('-') {
                        Some((a, b)) => (a, b),
                        None => (num, num),
                    };
                    let (lo, hi): (u16, u16) = match (lo.parse(), hi.parse()) {
                        (Ok(a), Ok(b)) if a <= b => (a, b),
                        _ => return Err(bad(format!("Invalid containerPort: {num}"))),
                    };
                    for n in lo..=hi {
                        ports.insert(format!("{n}/{}", proto.to_ascii_lowercase()), json!({}));
                    }
                    shown.push(p);
                }
                rc.insert("ExposedPorts".into(), Value::Object(ports));
                self.config_step(st, &format!("EXPOSE {}", shown.join(" ")), rc)
            }
            "user" => {
                let u = self.expand(st, &text)?;
                rc.insert("User".into(), json!(u));
                self.config_step(st, &format!("USER {u}"), rc)
            }
            "volume" => {
                let raw = match &ins.args {
                    Args::Json(l) => l.clone(),
                    Args::Shell(s) => s.split_whitespace().map(str::to_string).collect(),
                };
                let mut vols = rc
                    .get("Volumes")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut list = Vec::new();
                for v in raw {
                    let v = self.expand(st, &v)?;
                    if v.trim().is_empty() {
                        return Err(bad("VOLUME specified can not be an empty string"));
                    }
                    vols.insert(v.clone(), json!({}));
                    list.push(v);
                }
                rc.insert("Volumes".into(), Value::Object(vols));
                self.config_step(st, &format!("VOLUME [{}]", list.join(" ")), rc)
            }
            "stopsignal" => {
                let s = self.expand(st, &text)?;
                run::parse_signal(&s).map_err(|e| bad(e.to_string()))?;
                rc.insert("StopSignal".into(), json!(s));
                self.config_step(st, &format!("STOPSIGNAL {s}"), rc)
            }
            "shell" => {
                let Args::Json(l) = &ins.args else {
                    return Err(bad("SHELL requires the arguments to be in JSON form"));
                };
                rc.insert("Shell".into(), json!(l));
                self.config_step(st, &format!("SHELL [{}]", l.join(" ")), rc)
            }
            "maintainer" => {
                let m = self.expand(st, &text)?;
                st.config.insert("author".into(), json!(m));
                self.config_step(st, &format!("MAINTAINER {m}"), rc)
            }
            "healthcheck" => {
                check_flags(
                    ins,
                    &[
                        "interval",
                        "timeout",
                        "start-period",
                        "start-interval",
                        "retries",
                    ],
                )?;
                let (kind, rest) = match text.split_once(char::is_whitespace) {
                    Some((k, r)) => (k.to_ascii_uppercase(), r.trim().to_string()),
                    None => (text.to_ascii_uppercase(), String::new()),
                };
                let test: Vec<String> = match kind.as_str() {
                    "NONE" if rest.is_empty() && ins.flags.is_empty() => vec!["NONE".into()],
                    "NONE" => return Err(bad("HEALTHCHECK NONE takes no arguments")),
                    "CMD" => match dockerfile::parser::json_or_shell(&rest) {
                        Args::Json(l) => std::iter::once("CMD".to_string()).chain(l).collect(),
                        Args::Shell(s) if s.is_empty() => {
                            return Err(bad("Missing command after HEALTHCHECK CMD"));
                        }
                        Args::Shell(s) => vec!["CMD-SHELL".into(), s],
                    },
                    _ => {
                        return Err(bad(format!(
                            "Unknown type {kind:?} in HEALTHCHECK (try CMD)"
                        )));
                    }
                };
                let mut hc = Map::new();
                hc.insert("Test".into(), json!(test));
                let mut durs = [0i64; 3];
                for (i, f) in ["interval", "timeout", "start-period"].iter().enumerate() {
                    if let Some(v) = ins.flag(f) {
                        durs[i] = parse_duration(v)?;
                    }
                }
                let retries: i64 = match ins.flag("retries") {
                    Some(r) => r
                        .parse()
                        .map_err(|_| bad(format!("invalid retries {r:?}")))?,
                    None => 0,
                };
                for (k, v) in ["Interval", "Timeout", "StartPeriod"].iter().zip(durs) {
                    if v != 0 {
                        hc.insert((*k).into(), json!(v));
                    }
                }
                if retries != 0 {
                    hc.insert("Retries".into(), json!(retries));
                }
                rc.insert("Healthcheck".into(), Value::Object(hc));
                let comment = format!(
                    "HEALTHCHECK &{{{} \"{}\" \"{}\" \"{}\" '\\x{:02x}'}}",
                    go_quote_list(&test),
                    go_duration(durs[0]),
                    go_duration(durs[1]),
                    go_duration(durs[2]),
                    retries
                );
                self.config_step(st, &comment, rc)
            }
            "onbuild" => {
                let sub = dockerfile::parser::parse_line(&self.file, ins.line, &text)?;
                if matches!(sub.cmd.as_str(), "onbuild" | "from" | "maintainer") {
                    return Err(bad(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        sub.cmd.to_uppercase()
                    )));
                }
                let mut list = crate::image::config::string_list(rc.get("OnBuild"));
                list.push(text.clone());
                rc.insert("OnBuild".into(), json!(list));
                self.config_step(st, &format!("ONBUILD {text}"), rc)
            }
            other => Err(bad(format!(
                "unknown instruction: {}",
                other.to_uppercase()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("5").is_err());
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(0), "0s");
    }
}
