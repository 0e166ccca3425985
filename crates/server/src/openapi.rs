//! The OpenAPI 3.1 document, generated from the same operation table the
//! router is built from and from the record tables the store uses, so it
//! says what the server does. Every record field carries
//! `x-partnerdb-class` (general, financial, pii, legal), so that API
//! consumers know which fields a role may not see.

use partnerdb_policy::ResourceType;
use partnerdb_store::schema::{Column, Kind, RECORD_TYPES, Table};
use serde_json::{Map, Value, json};

use crate::api::{Shape, operations};

fn column_schema(column: &Column) -> Value {
    let mut schema = match column.kind {
        Kind::Text { max } => json!({"type": "string", "maxLength": max}),
        Kind::Enum(values) => json!({"type": "string", "enum": values}),
        Kind::Money => {
            json!({"type": "integer", "format": "int64", "description": "amount in minor units (cents)"})
        }
        Kind::Currency => json!({"type": "string", "pattern": "^[A-Z]{3}$"}),
        Kind::Rate => {
            json!({"type": "string", "pattern": "^[01](\\.[0-9]{1,6})?$", "description": "decimal rate between 0 and 1"})
        }
        Kind::Date => json!({"type": "string", "format": "date"}),
        Kind::Timestamp => json!({"type": "string", "format": "date-time"}),
        Kind::Email => json!({"type": "string", "format": "email", "maxLength": 254}),
        Kind::Ref(target) => json!({"type": "string", "description": format!("id of a {target}")}),
    };
    if let Value::Object(object) = &mut schema {
        object.insert("x-partnerdb-class".into(), Value::from(column.class.name()));
        if !column.writable {
            object.insert("readOnly".into(), Value::Bool(true));
        }
        if let Some(default) = column.default {
            object.insert("default".into(), Value::from(default));
        }
    }
    if column.required || !column.writable || column.default.is_some() {
        schema
    } else {
        json!({"anyOf": [schema, {"type": "null"}]})
    }
}

fn record_schema(table: &Table, input: bool) -> Value {
    let mut properties = Map::new();
    if !input {
        properties.insert(
            "id".into(),
            json!({"type": "string", "readOnly": true, "x-partnerdb-class": "always"}),
        );
    }
    properties.insert(
        "partner_id".into(),
        json!({"type": "string", "x-partnerdb-class": "always", "readOnly": !table.is_child()}),
    );
    properties.insert(
        "owner".into(),
        json!({"anyOf": [{"type": "string"}, {"type": "null"}], "x-partnerdb-class": "always", "readOnly": table.is_child(), "description": "principal id of the partner's account manager"}),
    );
    let mut required = Vec::new();
    for column in table.columns {
        if input && !column.writable {
            continue;
        }
        properties.insert(column.name.into(), column_schema(column));
        if input && column.required {
            required.push(column.name);
        }
    }
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "description": if input {
            "Fields to write: each must be of a class the caller may write, or the request is refused with 403 field_not_writable."
        } else {
            "A record as one caller sees it: fields of classes its roles may not read are absent."
        },
    });
    if input {
        schema["additionalProperties"] = Value::Bool(false);
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
    }
    schema
}

fn name(kind: ResourceType) -> String {
    let mut chars = kind.name().chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn problem_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// The whole document.
pub fn document() -> Value {
    let mut schemas = Map::new();
    for kind in RECORD_TYPES {
        let Some(table) = Table::of(kind) else {
            continue;
        };
        schemas.insert(name(kind), record_schema(&table, false));
        schemas.insert(format!("{}Input", name(kind)), record_schema(&table, true));
        schemas.insert(
            format!("{}Page", name(kind)),
            json!({"type": "object", "properties": {
                "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", name(kind))}},
                "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "opaque; valid only with the same filters, sort and credentials"}
            }}),
        );
    }
    schemas.insert(
        "Problem".into(),
        json!({"type": "object", "description": "RFC 9457 problem details", "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "code": {"type": "string", "description": "stable machine-readable code"},
            "detail": {"type": "string"},
            "path": {"type": "string", "description": "JSON pointer (body) or parameter name of the offending input"},
            "field": {"type": "string"}, "class": {"type": "string"}
        }, "required": ["type", "title", "status", "code", "detail"]}),
    );

    let mut paths: Map<String, Value> = Map::new();
    for op in operations() {
        let mut parameters = Vec::new();
        for param in ["id", "role", "credential"] {
            if op.path.contains(&format!("{{{param}}}")) {
                parameters.push(json!({"name": param, "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}));
            }
        }
        let record_ref = op
            .record
            .map(|k| format!("#/components/schemas/{}", name(k)));
        let mut responses = Map::new();
        let mut operation =
            json!({"operationId": op.id, "summary": op.summary, "security": [{"bearer": []}]});
        match (op.shape, &record_ref) {
            (Shape::List, Some(r)) => {
                let page = r.replace(
                    &name(op.record.unwrap_or(ResourceType::Partner)),
                    &format!("{}Page", name(op.record.unwrap_or(ResourceType::Partner))),
                );
                parameters.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}));
                parameters.push(json!({"name": "sort", "in": "query", "schema": {"type": "string"}, "description": "a sortable field, `-field` for descending; default id"}));
                parameters
                    .push(json!({"name": "cursor", "in": "query", "schema": {"type": "string"}}));
                operation["description"] = Value::from(
                    "Any other parameter filters: `field=value`, or `field.gt|gte|lt|lte=value` on amounts, dates and times. Filtering or sorting on a field of a class the caller may not read is refused (403 field_not_readable).",
                );
                responses.insert("200".into(), json!({"description": "a page", "content": {"application/json": {"schema": {"$ref": page}}}}));
            }
            (Shape::Get, Some(r)) => {
                responses.insert("200".into(), json!({"description": "the record", "headers": {"ETag": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": r}}}}));
            }
            (Shape::Create | Shape::Update, Some(r)) => {
                let input = format!("{r}Input");
                operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": input}}}});
                if op.shape == Shape::Create {
                    parameters.push(json!({"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 200}, "description": "the same key and body answer the same response for 24 h; another body answers 422"}));
                    responses.insert("201".into(), json!({"description": "created", "content": {"application/json": {"schema": {"$ref": r}}}}));
                } else {
                    parameters.push(json!({"name": "If-Match", "in": "header", "schema": {"type": "string"}, "description": "the ETag read; 412 if the record changed"}));
                    responses.insert("200".into(), json!({"description": "updated", "content": {"application/json": {"schema": {"$ref": r}}}}));
                    responses.insert(
                        "412".into(),
                        problem_response("the record changed since it was read"),
                    );
                }
            }
            (Shape::Delete, _) => {
                parameters.push(
                    json!({"name": "If-Match", "in": "header", "schema": {"type": "string"}}),
                );
                responses.insert("204".into(), json!({"description": "deleted"}));
            }
            _ => {
                responses.insert("200".into(), json!({"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}));
            }
        }
        responses.insert(
            "400".into(),
            problem_response("invalid input: `code` and `path` say what and where"),
        );
        responses.insert("401".into(), problem_response("no valid bearer token"));
        responses.insert("403".into(), problem_response("refused by the policy (forbidden, field_not_writable, field_not_readable, elevation_required)"));
        responses.insert(
            "404".into(),
            problem_response("not found, or not visible to the caller (the same answer)"),
        );
        operation["parameters"] = Value::Array(parameters);
        operation["responses"] = Value::Object(responses);
        let entry = paths.entry(op.path.clone()).or_insert_with(|| json!({}));
        entry[op.method.to_ascii_lowercase()] = operation;
    }
    for (path, summary) in [
        ("/healthz", "Liveness"),
        ("/readyz", "Readiness: the database answers"),
        ("/openapi.json", "This document"),
    ] {
        paths.insert(path.into(), json!({"get": {"summary": summary, "security": [], "responses": {"200": {"description": "OK"}}}}));
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "partnerdb",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Commercial Partner Database. Every request is decided by the role policy; reads return only the field classes the caller's roles grant (see `x-partnerdb-class` on each field). Errors are problem+json with a stable `code`."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}
