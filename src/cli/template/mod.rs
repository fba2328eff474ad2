//! Go templates as Docker's `--format` takes them, evaluated over JSON-like [`Value`]s.
//!
//! Written here rather than taken from a crate: gtmpl (the Rust Go-template crate) keeps maps
//! in a HashMap, so `{{json .Config}}` would come out in random key order where Docker prints
//! struct field order, and it has no struct/map distinction for Go's `<no value>` versus
//! "can't evaluate field" behaviour.

mod exec;
mod parse;
pub mod value;

pub use value::Value;

use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template parsing error: {0}")]
    Parse(String),
    #[error("{0}")]
    Exec(String),
}

pub struct Template {
    nodes: Vec<parse::Node>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let nodes = parse::parse(src, &|name| exec::FUNCS.contains(&name))?;
        Ok(Template { nodes })
    }

    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        exec::Exec::new(data).run(&self.nodes)
    }
}

/// How a listing command prints its rows, from its `--format`.
pub enum RowFormat {
    /// No format, or `table`: the command's own table.
    Default,
    /// `json`: one JSON object per row.
    Json,
    /// `table TEMPLATE`: a header from the template run over the column names, then the rows,
    /// laid out as Docker's tabwriter.
    Table(Template),
    /// Any other template: run once per row, each followed by a newline.
    Plain(Template),
}

impl RowFormat {
    pub fn parse(format: Option<&str>) -> Result<RowFormat, TemplateError> {
        let Some(f) = format else {
            return Ok(RowFormat::Default);
        };
        if f.is_empty() || f == "table" {
            return Ok(RowFormat::Default);
        }
        if f == "json" {
            return Ok(RowFormat::Json);
        }
        // Docker's preFormat: `\t` and `\n` typed literally become tab and newline.
        let unescape = |s: &str| s.replace("\\t", "\t").replace("\\n", "\n");
        if let Some(rest) = f.strip_prefix("table") {
            return Ok(RowFormat::Table(Template::parse(&unescape(rest.trim()))?));
        }
        Ok(RowFormat::Plain(Template::parse(&unescape(f))?))
    }

    pub fn is_default(&self) -> bool {
        matches!(self, RowFormat::Default)
    }

    /// Prints `rows`; `headers` maps each field name to its column title (`ID` → `CONTAINER ID`).
    pub fn write(
        &self,
        out: &mut impl Write,
        rows: &[Value],
        headers: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        match self {
            RowFormat::Default => unreachable!("the caller prints its own table"),
            RowFormat::Json => {
                for r in rows {
                    writeln!(out, "{}", r.to_json())?;
                }
            }
            RowFormat::Plain(t) => {
                let mut text = String::new();
                for r in rows {
                    text.push_str(&t.execute(r)?);
                    text.push('\n');
                }
                out.write_all(text.as_bytes())?;
            }
            RowFormat::Table(t) => {
                let header = Value::Map(
                    headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), Value::str(*v)))
                        .collect(),
                );
                let mut text = t.execute(&header)?;
                text.push('\n');
                for r in rows {
                    text.push_str(&t.execute(r)?);
                    text.push('\n');
                }
                let lines: Vec<Vec<String>> = text
                    .lines()
                    .map(|l| l.split('\t').map(str::to_string).collect())
                    .collect();
                super::format::table(out, &lines)?;
            }
        }
        Ok(())
    }
}

/// One object per template run, as `inspect -f` prints: the template's text and a newline;
/// without a template, the objects as an indented JSON array (Go's `json.MarshalIndent` with
/// four spaces, HTML characters escaped as the daemon's encoder writes them).
pub fn write_objects(
    out: &mut impl Write,
    format: Option<&str>,
    objects: &[Value],
) -> anyhow::Result<()> {
    match format {
        None | Some("") => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(objects, &mut ser)?;
            let text = String::from_utf8(buf)?;
            let text = if objects.is_empty() {
                "[]".to_string()
            } else {
                value::escape_html(&text)
            };
            writeln!(out, "{text}")?;
        }
        Some("json") => {
            for o in objects {
                writeln!(out, "{}", o.to_json())?;
            }
        }
        Some(f) => {
            let t = Template::parse(f)?;
            let mut text = String::new();
            for o in objects {
                text.push_str(&t.execute(o)?);
                text.push('\n');
            }
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
