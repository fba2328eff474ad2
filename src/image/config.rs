//! The parts of an image config (OCI / Docker) that strata reads. The original bytes are
//! always kept and hashed: re-serializing would change the image ID.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Kept as JSON: Docker-only fields (Healthcheck, OnBuild, ArgsEscaped…) must survive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid image config: {0}")]
pub struct ConfigError(pub String);

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
        let c: ImageConfig =
            serde_json::from_slice(bytes).map_err(|e| ConfigError(e.to_string()))?;
        if c.rootfs.kind != "layers" {
            return Err(ConfigError(format!(
                "rootfs type {:?} is not \"layers\"",
                c.rootfs.kind
            )));
        }
        Ok(c)
    }

    /// A config field from the container config (`Cmd`, `Env`…), if present.
    pub fn field(&self, name: &str) -> Option<&serde_json::Value> {
        self.config.as_ref()?.get(name).filter(|v| !v.is_null())
    }

    /// A string-list field of the container config (`Cmd`, `Entrypoint`, `Env`…).
    pub fn strings(&self, name: &str) -> Vec<String> {
        string_list(self.field(name))
    }

    pub fn created_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        parse_time(self.created.as_deref()?)
    }
}

/// A JSON list of strings; a lone string counts as a one-item list (as Docker accepts it),
/// anything else as empty.
pub fn string_list(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The config of an image made from `base` by one step (`commit`, a build step): `run_config`
/// as its `config`, `created`, history entry `entry` appended (marked `empty_layer` when the
/// step added no layer), and the new layer's diffID appended to `rootfs.diff_ids`. What else
/// a caller drops or sets (`container`, `author`…) is its own.
pub fn child_config(
    mut base: serde_json::Map<String, serde_json::Value>,
    run_config: serde_json::Map<String, serde_json::Value>,
    created: &str,
    mut entry: serde_json::Map<String, serde_json::Value>,
    new_diff_id: Option<&Digest>,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{Value, json};
    let array = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    let mut diff_ids = array(base.get("rootfs").and_then(|r| r.get("diff_ids")));
    match new_diff_id {
        Some(d) => diff_ids.push(json!(d.to_string())),
        None => {
            entry.insert("empty_layer".into(), json!(true));
        }
    }
    let mut history = array(base.get("history"));
    history.push(Value::Object(entry));
    base.insert("config".into(), Value::Object(run_config));
    base.insert("created".into(), json!(created));
    base.insert("history".into(), Value::Array(history));
    base.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    base
}
