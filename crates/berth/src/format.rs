//! Output formats as docker's: Go templates for `--format` (with docker's
//! `table` and `json` forms and its template functions), aligned tables,
//! and docker's spelling of sizes and ages.

use std::collections::HashMap;
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use gtmpl::{Context, Template};
use gtmpl_value::{FuncError, Number, Value};
use serde::Serialize;
use tabwriter::TabWriter;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("template parsing error: {0}")]
    Parse(String),
    #[error("template: {0}")]
    Exec(String),
    #[error("writing output: {0}")]
    Write(#[from] io::Error),
}

/// A parsed `--format` value.
pub enum Format {
    /// `table` or `table TEMPLATE`: a header row, then aligned rows.
    Table(Template),
    /// `json`: each item as one JSON line.
    Json,
    /// A Go template, applied to each item.
    Raw(Template),
}

impl Format {
    /// Parses `--format`; `default_table` is used for "" and "table".
    pub fn parse(spec: Option<&str>, default_table: &str) -> Result<Format, FormatError> {
        let spec = spec.unwrap_or("");
        if spec.is_empty() || spec == "table" {
            return Ok(Format::Table(template(default_table)?));
        }
        if spec == "json" {
            return Ok(Format::Json);
        }
        if let Some(rest) = spec.strip_prefix("table ") {
            return Ok(Format::Table(template(rest)?));
        }
        Ok(Format::Raw(template(spec)?))
    }

    /// Writes `rows` (docker's per-row field names) to stdout; `headers`
    /// names the column of each field for table output.
    pub fn write_rows<T: Serialize>(
        &self,
        rows: &[T],
        headers: &[(&str, &str)],
    ) -> Result<(), FormatError> {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        match self {
            Format::Json => {
                for row in rows {
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string(row).expect("rows serialise")
                    )?;
                }
            }
            Format::Raw(t) => {
                for row in rows {
                    writeln!(
                        out,
                        "{}",
                        render(t, &serde_json::to_value(row).expect("rows serialise"))?
                    )?;
                }
            }
            Format::Table(t) => {
                // docker's table writer: minimum width 10, padding 3.
                let mut tw = TabWriter::new(out).minwidth(10).padding(3);
                let header: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), (*v).into()))
                    .collect();
                writeln!(tw, "{}", render(t, &serde_json::Value::Object(header))?)?;
                for row in rows {
                    writeln!(
                        tw,
                        "{}",
                        render(t, &serde_json::to_value(row).expect("rows serialise"))?
                    )?;
                }
                tw.flush()?;
            }
        }
        Ok(())
    }
}

/// Parses a Go template with docker's extra functions.
pub fn template(text: &str) -> Result<Template, FormatError> {
    let mut t = Template::default();
    t.add_funcs(&[
        (GO_PRINT, go_print as gtmpl_value::Func),
        ("json", json),
        ("upper", upper),
        ("lower", lower),
        ("title", title),
        ("join", join),
        ("split", split),
        ("truncate", truncate),
        ("pad", pad),
    ]);
    // docker lets "\t" in a --format stand for a tab.
    t.parse(print_as_go(&text.replace("\\t", "\t")))
        .map_err(|e| FormatError::Parse(e.to_string()))?;
    Ok(t)
}

/// Applies a template to one JSON value.
pub fn render(t: &Template, value: &serde_json::Value) -> Result<String, FormatError> {
    t.render(&Context::from(to_gtmpl(value)))
        .map_err(|e| FormatError::Exec(e.to_string()))
}

/// Writes `items` as `inspect` does: a pretty JSON array by default, else
/// the template applied to each item.
pub fn write_inspect<T: Serialize>(items: &[T], format: Option<&str>) -> Result<(), FormatError> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match format {
        None | Some("") | Some("json") => {
            let mut buf = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(
                &mut buf,
                serde_json::ser::PrettyFormatter::with_indent(b"    "),
            );
            items
                .serialize(&mut ser)
                .expect("inspect output serialises");
            out.write_all(&buf)?;
            writeln!(out)?;
        }
        Some(spec) => {
            let t = template(spec)?;
            for item in items {
                let value = serde_json::to_value(item).expect("inspect output serialises");
                // `{{json .}}` keeps docker's field order, which a template
                // map would lose.
                let text = if spec.trim() == "{{json .}}" {
                    serde_json::to_string(&value).expect("json")
                } else {
                    render(&t, &value)?
                };
                writeln!(out, "{text}")?;
            }
        }
    }
    Ok(())
}

/// The function every printing action ends in (see [`print_as_go`]).
const GO_PRINT: &str = "berthGoPrint";

/// Pipes what each action prints through [`GO_PRINT`]: gtmpl prints a list
/// or a map in Rust's debug form, docker's templates as Go's fmt does
/// (`[-c sleep 100]`, `map[a:1 b:2]`). Actions that print nothing
/// (if, range, else, end, assignments, comments...) are left as written;
/// quoted strings are skipped over when looking for an action's end.
fn print_as_go(text: &str) -> String {
    const SILENT: &[&str] = &[
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let body = &rest[open + 2..];
        // The action's end, outside quotes; whether it assigns a variable.
        let (mut quote, mut escaped, mut assigns, mut end) = (None, false, false, None);
        for (i, c) in body.char_indices() {
            match quote {
                Some(q) => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' && q != '`' {
                        escaped = true;
                    } else if c == q {
                        quote = None;
                    }
                }
                None if c == '"' || c == '`' || c == '\'' => quote = Some(c),
                None if c == '=' => assigns = true,
                None if body[i..].starts_with("}}") => {
                    end = Some(i);
                    break;
                }
                None => {}
            }
        }
        let Some(end) = end else {
            // Unclosed: the parser reports it.
            out.push_str(&rest[open..]);
            return out;
        };
        let action = &body[..end];
        let (lead, inner) = match action.strip_prefix('-') {
            Some(a) if a.starts_with(char::is_whitespace) => ("- ", a),
            _ => ("", action),
        };
        let (inner, trail) = match inner.trim_end().strip_suffix('-') {
            Some(a) if a.ends_with(char::is_whitespace) => (a, " -"),
            _ => (inner, ""),
        };
        let inner = inner.trim();
        let first = inner
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        if inner.is_empty() || inner.starts_with("/*") || assigns || SILENT.contains(&first) {
            out.push_str(&rest[open..open + 2 + end + 2]);
        } else {
            out.push_str(&format!("{{{{{lead}{inner} | {GO_PRINT}{trail}}}}}"));
        }
        rest = &body[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A value as Go's fmt prints it.
fn go_string(v: &Value) -> String {
    let joined = |items: Vec<String>| items.join(" ");
    match v {
        Value::Array(a) => format!("[{}]", joined(a.iter().map(go_string).collect())),
        Value::Map(m) | Value::Object(m) => {
            let sorted: std::collections::BTreeMap<_, _> = m.iter().collect();
            let items = sorted
                .into_iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect();
            format!("map[{}]", joined(items))
        }
        other => other.to_string(),
    }
}

fn go_print(args: &[Value]) -> Result<Value, FuncError> {
    match arg(args, 0, GO_PRINT)? {
        // Kept as they are: what prints the same, and <no value>.
        v @ (Value::Array(_) | Value::Map(_) | Value::Object(_)) => Ok(Value::String(go_string(v))),
        other => Ok(other.clone()),
    }
}

fn to_gtmpl(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::Number(Number::from(u)),
            (_, Some(i), _) => Value::Number(Number::from(i)),
            (_, _, f) => Value::Number(Number::from(f.unwrap_or(0.0))),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_gtmpl).collect()),
        serde_json::Value::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), to_gtmpl(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn from_gtmpl(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::String(s) => s.clone().into(),
        Value::Number(n) => n
            .as_u64()
            .map(serde_json::Value::from)
            .or_else(|| n.as_i64().map(serde_json::Value::from))
            .or_else(|| n.as_f64().map(serde_json::Value::from))
            .unwrap_or(serde_json::Value::Null),
        Value::Array(a) => a.iter().map(from_gtmpl).collect(),
        // Go's encoding/json sorts map keys; so does this.
        Value::Map(m) | Value::Object(m) => {
            let sorted: std::collections::BTreeMap<_, _> =
                m.iter().map(|(k, v)| (k.clone(), from_gtmpl(v))).collect();
            serde_json::to_value(sorted).expect("json map")
        }
    }
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::Generic(format!("{name}: missing argument {}", i + 1)))
}

fn string_arg(args: &[Value], i: usize, name: &str) -> Result<String, FuncError> {
    Ok(match arg(args, i, name)? {
        Value::String(s) => s.clone(),
        other => go_string(other),
    })
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        serde_json::to_string(&from_gtmpl(arg(args, 0, "json")?)).expect("json"),
    ))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args, 0, "upper")?.to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args, 0, "lower")?.to_lowercase()))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "title")?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        out.extend(if start {
            c.to_uppercase().collect::<Vec<_>>()
        } else {
            vec![c]
        });
        start = !c.is_alphanumeric();
    }
    Ok(Value::String(out))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg(args, 1, "join")?;
    match arg(args, 0, "join")? {
        Value::Array(a) => Ok(Value::String(
            a.iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        Value::Nil | Value::NoValue => Ok(Value::String(String::new())),
        _ => Err(FuncError::Generic(
            "join: first argument must be a list".into(),
        )),
    }
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "split")?;
    let sep = string_arg(args, 1, "split")?;
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.into()))
            .collect(),
    ))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "truncate")?;
    let n = string_arg(args, 1, "truncate")?
        .parse::<usize>()
        .map_err(|_| FuncError::Generic("truncate: length must be a number".into()))?;
    Ok(Value::String(s.chars().take(n).collect()))
}

fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "pad")?;
    let n = |i| {
        string_arg(args, i, "pad").and_then(|v| {
            v.parse::<usize>()
                .map_err(|_| FuncError::Generic("pad: counts must be numbers".into()))
        })
    };
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(n(1)?),
        " ".repeat(n(2)?)
    )))
}

/// Go's `%.{precision}g`: significant digits, trailing zeros dropped.
fn go_g(v: f64, precision: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    let rounded: f64 = format!("{:.*e}", precision - 1, v).parse().unwrap_or(v);
    let exp = if rounded.abs() >= 10f64.powi(exp + 1) {
        exp + 1
    } else {
        exp
    };
    if exp < -4 || exp >= precision as i32 {
        let mantissa = rounded / 10f64.powi(exp);
        let m = trim_zeros(format!("{:.*}", precision - 1, mantissa));
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    trim_zeros(format!("{rounded:.decimals$}"))
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn scaled(size: f64, base: f64, units: &[&str], precision: usize) -> String {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", go_g(size, precision), units[i])
}

/// docker's `HumanSizeWithPrecision`: decimal units ("1.99MB").
pub fn human_size(bytes: u64, precision: usize) -> String {
    scaled(
        bytes as f64,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB", "EB"],
        precision,
    )
}

/// docker's `BytesSize`: binary units ("23.54GiB").
pub fn binary_size(bytes: u64) -> String {
    scaled(
        bytes as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
        4,
    )
}

/// docker's `HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    let minutes = d.num_minutes();
    let hours = (d.num_seconds() as f64 / 3600.0 + 0.5) as i64;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", d.num_hours() / 24 / 365),
    }
}

/// "2 weeks ago", or "N/A" for an unknown time, as docker prints ages.
pub fn since(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!("{} ago", human_duration(Utc::now() - t)),
        None => "N/A".into(),
    }
}

/// docker's `CreatedAt`: "2026-11-27 18:35:25 +0000 UTC".
pub fn created_at(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(1985581, 3), "1.99MB");
        assert_eq!(human_size(0, 3), "0B");
        assert_eq!(human_size(512, 3), "512B");
        assert_eq!(human_size(4_300_000_000, 3), "4.3GB");
        assert_eq!(human_size(1985581, 4), "1.986MB");
        assert_eq!(binary_size(25_276_000_000), "23.54GiB");
    }

    #[test]
    fn durations_as_docker_prints_them() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(45)), "45 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(d(800 * 86400)), "2 years");
    }

    #[test]
    fn lists_and_maps_print_as_go_prints_them() {
        let v = serde_json::json!({
            "Args": ["-c", "sleep 100"],
            "State": {"Status": "running", "Pid": 7, "Dead": false},
            "Empty": [],
            "Name": "box"
        });
        let r = |t: &str| render(&template(t).unwrap(), &v).unwrap();
        assert_eq!(r("{{.Args}}"), "[-c sleep 100]");
        assert_eq!(r("{{.State}}"), "map[Dead:false Pid:7 Status:running]");
        assert_eq!(r("{{.Empty}} {{- .Name -}} !"), "[]box!");
        // Actions that print nothing, strings holding braces, functions.
        assert_eq!(
            r("{{range .Args}}<{{.}}>{{end}}{{if .Name}}{{\"}}\"}}{{end}}"),
            "<-c><sleep 100>}}"
        );
        assert_eq!(r("{{$a := .Args}}{{index $a 1}}"), "sleep 100");
        assert_eq!(
            r("{{/* a comment */}}{{len .Args}} {{json .Args}}"),
            "2 [\"-c\",\"sleep 100\"]"
        );
        assert_eq!(r("{{upper .State.Status}}"), "RUNNING");
    }

    #[test]
    fn templates_with_docker_functions() {
        let v = serde_json::json!({"ID": "abc", "Tags": ["a", "b"], "Config": {"Cmd": ["sh"]}});
        assert_eq!(render(&template("{{.ID}}").unwrap(), &v).unwrap(), "abc");
        assert_eq!(
            render(&template("{{join .Tags \",\"}}").unwrap(), &v).unwrap(),
            "a,b"
        );
        assert_eq!(
            render(&template("{{json .Config}}").unwrap(), &v).unwrap(),
            r#"{"Cmd":["sh"]}"#
        );
        assert_eq!(
            render(&template("{{upper .ID}}").unwrap(), &v).unwrap(),
            "ABC"
        );
        assert!(template("{{.ID").is_err());
    }
}
