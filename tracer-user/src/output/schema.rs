//! The JSON Schema of the output, derived from the line types
//! ([`crate::output::line`]) by schemars: `origin-tracer schema` prints it and
//! docs/schema-v1.json is that print (`cargo xtask schema --check`). What a
//! type cannot say on its own is added here from the code's own tables: each
//! class with its causes, which findings carry `tls` or `http`, the alert a
//! TLS cause names, the header size of `headers_too_large`, and that only
//! host-wide events have no flow.

use schemars::{generate::SchemaSettings, json_schema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::line::{Line, SCHEMA_VERSION};
use crate::{
    diagnose::{
        finding::{Cause, Class, Side},
        payload::HEADER_LIMIT,
    },
    source::capture::decode::Skip,
};

/// Timestamps of lines and reported times: RFC 3339, UTC, microseconds.
pub const TIMESTAMP_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$";

/// Certificate validity times: RFC 3339 with any offset.
pub const DATE_TIME_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// The event whose observation is host-wide: it has no `flow`.
const HOST_WIDE_EVENT: &str = "listen_overflow_counter";

/// The whole schema, as docs/schema-v1.json holds it.
pub fn generate() -> Value {
    let mut root = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Line>();
    root.insert(
        "title".into(),
        json!(format!(
            "origin-tracer output line, schema version {SCHEMA_VERSION}"
        )),
    );
    root.insert(
        "description".into(),
        json!(
            "One line of origin-tracer's NDJSON output (--format json), live or from \
             `origin-tracer analyze FILE`; see docs/SCHEMA.md. Generated from the line \
             types by `cargo xtask schema`. New optional fields, line types, causes and \
             classes may appear within a version, so objects allow additional properties."
        ),
    );
    root.to_value()
}

/// `schema_version`: always this version.
pub fn version(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "const": SCHEMA_VERSION })
}

/// An IPv4 or IPv6 address, as the standard formats check it.
pub fn ip_address(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "anyOf": [{ "format": "ipv4" }, { "format": "ipv6" }],
    })
}

/// `capture.packets_skipped`: a count per reason a frame was skipped.
pub fn skipped(g: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "propertyNames": g.subschema_for::<Skip>(),
        "additionalProperties": g.subschema_for::<u64>(),
    })
}

fn name<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("a schema name serializes")
}

/// `summary.findings`: a count for every cause.
pub fn every_cause(g: &mut SchemaGenerator) -> Schema {
    let count = g.subschema_for::<u64>().to_value();
    let causes: Vec<Value> = Cause::ALL.into_iter().map(name).collect();
    let properties: serde_json::Map<String, Value> = causes
        .iter()
        .map(|c| (c.as_str().unwrap_or_default().to_owned(), count.clone()))
        .collect();
    json_schema!({
        "description": "findings per cause, every cause present (0 when none)",
        "type": "object",
        "properties": properties,
        "required": causes,
        "additionalProperties": count,
    })
}

/// A finding's rules across fields, from [`Cause::class`], [`Class::is_tls`],
/// [`Class::is_http`] and the diagnoser's header limit.
pub fn finding_rules(schema: &mut Schema) {
    let mut one_of: Vec<Value> = Class::ALL
        .into_iter()
        .map(|class| {
            let causes: Vec<Value> = Cause::ALL
                .into_iter()
                .filter(|c| c.class() == class)
                .map(name)
                .collect();
            json!({ "properties": { "class": { "const": name(class) }, "cause": { "enum": causes } } })
        })
        .collect();
    // The origin's own status: any 5xx that is not one of Cloudflare's.
    let origin: Vec<Value> = Cause::ALL
        .into_iter()
        .filter(|c| c.class() == Class::OriginStatus)
        .map(name)
        .collect();
    // (An origin behind another proxy may answer 520-526 itself: its own
    // status still, told apart by the cause.)
    one_of.push(json!({
        "properties": { "class": { "pattern": "^5[0-9]{2}$" }, "cause": { "enum": origin } },
        "required": ["http", "count"]
    }));
    // (An origin status's finding requires `http` by its own branch above.)
    let classes = |keep: fn(Class) -> bool| -> Vec<Value> {
        Class::ALL
            .into_iter()
            .filter(|c| keep(*c))
            .map(name)
            .collect()
    };
    let alert_from = |cause: Cause, side: Side, why: &str| {
        json!({
            "description": why,
            "if": { "required": ["cause"], "properties": { "cause": { "const": name(cause) } } },
            "then": {
                "required": ["tls"],
                "properties": { "tls": { "properties": { "alert": {
                    "type": "object", "required": ["from"], "properties": { "from": { "const": name(side) } }
                } } } }
            }
        })
    };
    let all_of = json!([
        {
            "description": "findings about TLS carry a tls object",
            "if": { "required": ["class"], "properties": { "class": { "enum": classes(Class::is_tls) } } },
            "then": { "required": ["tls"] }
        },
        {
            "description": "findings about HTTP carry an http object",
            "if": { "required": ["class"], "properties": { "class": { "enum": classes(Class::is_http) } } },
            "then": { "required": ["http"] }
        },
        alert_from(Cause::TlsAlertFromOrigin, Side::Origin, "tls.alert names the origin's alert"),
        alert_from(Cause::EdgeRejectedCertificate, Side::Edge, "tls.alert names the edge's certificate alert"),
        {
            "description": "the header block is over the limit (or at least that much was seen)",
            "if": { "required": ["cause"], "properties": { "cause": { "const": name(Cause::HeadersTooLarge) } } },
            "then": {
                "required": ["http"],
                "properties": { "http": {
                    "required": ["header_bytes"],
                    "properties": { "header_bytes": { "type": "integer", "minimum": HEADER_LIMIT } }
                } }
            }
        }
    ]);
    schema.insert("oneOf".into(), Value::Array(one_of));
    schema.insert("allOf".into(), all_of);
}

/// An event line's flow: absent exactly on host-wide observations.
pub fn event_rules(schema: &mut Schema) {
    schema.insert(
        "if".into(),
        json!({ "required": ["event"], "properties": { "event": { "const": HOST_WIDE_EVENT } } }),
    );
    schema.insert(
        "then".into(),
        json!({ "description": "host-wide: the counter belongs to no connection", "not": { "required": ["flow"] } }),
    );
    schema.insert("else".into(), json!({ "required": ["flow"] }));
}

/// The schema as docs/schema-v1.json writes it: pretty, one final newline.
pub fn to_file_text() -> String {
    let mut text = serde_json::to_string_pretty(&generate()).expect("the schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
