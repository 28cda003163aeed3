//! Checks origin-tracer's output against its contract, schema version 1
//! (docs/SCHEMA.md): every line against docs/schema-v1.json, the schema
//! `cargo xtask schema` derives from the agent's line types, with the
//! `jsonschema` validator (formats checked too); then what a JSON Schema
//! cannot say. Within one line ([`beyond`]): numbers that must agree with
//! each other. Across a run ([`check_run`]): first line `start`, last
//! `summary`, counts agree, one source throughout, and the `analyze` forms.
//!
//! Causes and classes are read from the published schema, not restated here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::{json, Value};

mod beyond;

/// The `source` of `analyze` lines.
pub const CAPTURE: &str = "capture";

/// docs/schema-v1.json.
fn published() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(include_str!("../../docs/schema-v1.json"))
            .expect("docs/schema-v1.json is JSON")
    })
}

fn compile(schema: &Value) -> Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("docs/schema-v1.json is a valid schema")
}

/// docs/schema-v1.json, compiled once.
pub fn published_schema() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(published()))
}

/// The definition the schema gives for one line type, compiled alone: its
/// errors say which field is wrong where the whole schema's `oneOf` over
/// line types cannot.
fn line_type_schema(line_type: &str) -> Option<&'static Validator> {
    static BY_TYPE: OnceLock<BTreeMap<String, Validator>> = OnceLock::new();
    BY_TYPE
        .get_or_init(|| {
            let schema = published();
            let mut by_type = BTreeMap::new();
            for variant in schema["oneOf"].as_array().into_iter().flatten() {
                let (Some(t), Some(r)) = (
                    variant["properties"]["type"]["const"].as_str(),
                    variant["$ref"].as_str(),
                ) else {
                    continue;
                };
                let alone = json!({
                    "$schema": schema["$schema"],
                    "$defs": schema["$defs"],
                    "$ref": r,
                });
                by_type.insert(t.to_owned(), compile(&alone));
            }
            by_type
        })
        .get(line_type)
}

/// The values of a string enum of the schema (`enum`, or `oneOf` of `const`
/// when its variants are documented).
fn enum_values(def: &Value) -> Vec<&str> {
    if let Some(values) = def["enum"].as_array() {
        return values.iter().filter_map(Value::as_str).collect();
    }
    def["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["const"].as_str())
        .collect()
}

/// Every cause the schema names.
pub fn causes() -> Vec<&'static str> {
    enum_values(&published()["$defs"]["Cause"])
}

/// The class the schema ties a cause to; for a cause whose class is the
/// origin's own status (any 5xx but Cloudflare's), an example: `502`.
pub fn class_of(cause: &str) -> Option<&'static str> {
    let rule = published()["$defs"]["FindingLine"]["oneOf"]
        .as_array()?
        .iter()
        .find(|rule| enum_values(&rule["properties"]["cause"]).contains(&cause))?;
    let class = &rule["properties"]["class"];
    class["const"].as_str().or(Some("502"))
}

/// Checks one line; returns what is wrong (empty when valid).
pub fn check_line(line: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if !published_schema().is_valid(line) {
        let detail = line["type"].as_str().and_then(line_type_schema);
        match detail.map(|v| v.iter_errors(line).collect::<Vec<_>>()) {
            Some(found) if !found.is_empty() => {
                for e in found {
                    errors.push(format!(
                        "docs/schema-v1.json: {e} (at `{}`)",
                        e.instance_path()
                    ));
                }
            }
            _ => errors.push(format!(
                "docs/schema-v1.json rejects the line (its `type` is {})",
                line["type"]
            )),
        }
    }
    errors.extend(beyond::check(line));
    errors
}

fn is_capture(line: &Value) -> bool {
    line.get("source").is_some_and(|s| s == CAPTURE)
}

/// Checks a whole run, live or `analyze`: every line valid, first `start`,
/// last `summary` (`cert_check`, `event`, `loss` ... lines anywhere between),
/// `start` only once, the summary's counts equal the finding lines (unless
/// lines were dropped), every `source` the run's (`capture` when `start` says
/// so, else `kernel`), `inconclusive` lines only from a capture, as many as
/// the summary's `pending_at_exit`, each needing the start's `syn_timeout_ms`
/// or, as its reason says, the response timeout, and the summary's
/// `capture.file` the start's `capture_file`. Returns what is wrong.
pub fn check_run(lines: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        for err in check_line(line) {
            errors.push(format!("line {}: {err}\n    {line}", i + 1));
        }
    }
    if lines.first().is_none_or(|l| l["type"] != "start") {
        errors.push("the first line is not `start`".to_owned());
    }
    if lines.last().is_none_or(|l| l["type"] != "summary") {
        errors.push("the last line is not `summary`".to_owned());
    }
    let starts = lines.iter().filter(|l| l["type"] == "start").count();
    let summaries = lines.iter().filter(|l| l["type"] == "summary").count();
    if starts != 1 || summaries != 1 {
        errors.push(format!(
            "{starts} `start` and {summaries} `summary` lines, want 1 each"
        ));
    }
    let capture = lines.first().is_some_and(is_capture);
    let source = if capture { CAPTURE } else { "kernel" };
    for (i, line) in lines.iter().enumerate() {
        if line
            .get("source")
            .is_some_and(|s| s.is_string() && s != source)
        {
            errors.push(format!(
                "line {}: source {} in a run whose source is {source}\n    {line}",
                i + 1,
                line["source"]
            ));
        }
    }
    let inconclusive = lines.iter().filter(|l| l["type"] == "inconclusive").count();
    if !capture && inconclusive > 0 {
        errors.push(format!(
            "{inconclusive} `inconclusive` lines in a live run (analyze only)"
        ));
    }
    if let Some(syn_timeout) = lines.first().and_then(|l| l["syn_timeout_ms"].as_u64()) {
        for (i, line) in lines.iter().enumerate() {
            if line["type"] == "inconclusive" {
                if let Some(err) = needed_mismatch(line, syn_timeout) {
                    errors.push(format!("line {}: {err}\n    {line}", i + 1));
                }
            }
        }
    }
    if let Some(summary) = lines.iter().rev().find(|l| l["type"] == "summary") {
        check_summary_against(&mut errors, summary, lines, capture, inconclusive);
    }
    errors
}

/// The summary against the lines before it.
fn check_summary_against(
    errors: &mut Vec<String>,
    summary: &Value,
    lines: &[Value],
    capture: bool,
    inconclusive: usize,
) {
    if capture {
        if !is_capture(summary) {
            errors.push(format!(
                "the summary of a capture run has source {}, want \"capture\"",
                summary["source"]
            ));
        }
        if summary["capture"]["file"] != lines[0]["capture_file"] {
            errors.push(format!(
                "summary capture.file {} is not start's capture_file {}",
                summary["capture"]["file"], lines[0]["capture_file"]
            ));
        }
    }
    if summary["lines_dropped"] != 0 {
        return;
    }
    if capture {
        let pending = summary["pending_at_exit"].as_u64().unwrap_or(0);
        if pending != inconclusive as u64 {
            errors.push(format!(
                "summary pending_at_exit {pending}, {inconclusive} `inconclusive` lines were written"
            ));
        }
    }
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["type"] == "finding") {
        // A line with a `count` stands for that many (the origin's 5xx).
        *seen.entry(l["cause"].as_str().unwrap_or("?")).or_default() +=
            l["count"].as_u64().unwrap_or(1);
    }
    for cause in causes() {
        let counted = summary["findings"][cause].as_u64().unwrap_or(0);
        let written = seen.get(cause).copied().unwrap_or(0);
        if counted != written {
            errors.push(format!(
                "summary counts {counted} `{cause}` findings, {written} were written"
            ));
        }
    }
}

/// What is wrong with an `inconclusive` line's `needed_ms` in a run whose
/// `--syn-timeout` is `syn_timeout` ms: it is that, or the response timeout,
/// which the reason then names.
fn needed_mismatch(line: &Value, syn_timeout: u64) -> Option<String> {
    let needed = line["needed_ms"].as_u64()?;
    let reason = line["reason"].as_str().unwrap_or_default();
    if needed == syn_timeout || reason.to_ascii_lowercase().contains("response") {
        return None;
    }
    Some(format!(
        "inconclusive needed_ms {needed} is neither start's syn_timeout_ms {syn_timeout} nor, by its reason, the response timeout"
    ))
}

#[cfg(test)]
mod tests;
