//! The OpenAPI 3.1 description of the local API, served at `GET /api/v1/openapi.json`.
//!
//! Generated from the types themselves (`schemars`, JSON Schema 2020-12 as OpenAPI 3.1
//! takes it): every [`Request`] and [`Answer`] with its fields and their documentation,
//! and [`NodeError`] with its kinds. Adding an operation or a field changes it with no
//! other edit.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::NodeEvent;
use crate::ops::{Answer, NodeError, Request};

/// The description as JSON.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let request = generator.subschema_for::<Request>();
    let answer = generator.subschema_for::<Answer>();
    let error = generator.subschema_for::<NodeError>();
    let event = generator.subschema_for::<NodeEvent>();
    let schemas = generator.take_definitions(true);
    let error_response = |what: &str| json!({ "description": what, "content": { "application/json": { "schema": error } } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Cercle node local API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The API of one Cercle node, on 127.0.0.1 only. Every call carries the token kept in the node's home (api-token, mode 0600) as a bearer token, and a Host header naming 127.0.0.1 or localhost. A refusal is {\"kind\": \"<kind>\", \"error\": \"<one sentence>\"} with the status of its kind."
        },
        "servers": [{ "url": "http://127.0.0.1:{port}", "variables": { "port": { "default": "0" } } }],
        "security": [{ "token": [] }],
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas,
        },
        "paths": {
            "/api/v1/call": {
                "post": {
                    "summary": "One request to the node; answered once any write it made is durable.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": request } } },
                    "responses": {
                        "200": { "description": "The answer.", "content": { "application/json": { "schema": answer } } },
                        "400": error_response("The request is wrong (kind bad_input)."),
                        "401": { "description": "Missing or wrong token." },
                        "403": error_response("Not allowed (kind not_allowed), or a Host that is not this machine's loopback name."),
                        "404": error_response("What the request names does not exist here (kind not_found)."),
                        "409": error_response("It contradicts what is already there (kind conflict)."),
                        "413": { "description": "The body is larger than the API takes." },
                        "500": error_response("Something is wrong with this node (kind internal)."),
                        "503": error_response("The node cannot now, or is busy (kind unavailable).")
                    }
                }
            },
            "/api/v1/status": {
                "get": { "summary": "The node's status (as the status request).", "responses": { "200": { "description": "The status.", "content": { "application/json": { "schema": answer } } } } }
            },
            "/api/v1/events": {
                "get": { "summary": "Node events as JSON lines, for as long as the client listens.", "responses": { "200": { "description": "One event per line.", "content": { "application/x-ndjson": { "schema": event } } } } }
            },
            "/api/v1/hello": {
                "get": {
                    "summary": "Proof that this listener knows the token, for a client's nonce (32 bytes, hex): the keyed BLAKE3 hash of the nonce under blake3::derive_key(\"cercle local API proof v1\", token). Check it before sending the token.",
                    "security": [],
                    "parameters": [{ "name": "nonce", "in": "query", "required": true, "schema": { "type": "string", "pattern": "^[0-9a-fA-F]{64}$" } }],
                    "responses": {
                        "200": { "description": "{\"proof\": \"<64 hex digits>\"}" },
                        "400": { "description": "The nonce is not 32 bytes in hex." }
                    }
                }
            },
            "/api/v1/token/rotate": {
                "post": {
                    "summary": "Replace the token: the home's api-token and api.json get the new one, every web session ends, the old token stops working.",
                    "responses": { "200": { "description": "{\"rotated\": true}" }, "401": { "description": "Missing or wrong token." } }
                }
            },
            "/api/v1/openapi.json": {
                "get": { "summary": "This description.", "security": [], "responses": { "200": { "description": "OpenAPI 3.1 JSON." } } }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"const"` value under `value`: the tags of requests and answers.
    fn constants(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(s)) = map.get("const") {
                    out.push(s.clone());
                }
                map.values().for_each(|v| constants(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| constants(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_request_the_server_accepts_is_described_with_its_fields() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = &doc["components"]["schemas"];
        let mut tags = Vec::new();
        constants(&schemas["Request"], &mut tags);
        for name in ["status", "circle_create", "note_add", "doc_get", "export"] {
            assert!(
                tags.iter().any(|t| t == name),
                "{name} missing from {tags:?}"
            );
        }
        // Each described request is one the server takes.
        for tag in &tags {
            let e = serde_json::from_value::<Request>(json!({ "request": tag }))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!e.contains("unknown variant"), "{tag}: {e}");
        }
        // A request's fields come from its type, with their documentation.
        let note_add = serde_json::to_string(&schemas["NoteAdd"]).unwrap_or_default();
        assert!(
            note_add.contains("texts") && note_add.contains("future"),
            "{note_add}"
        );
        let kinds = serde_json::to_string(&schemas["ErrorKind"]).unwrap_or_default();
        assert!(kinds.contains("not_allowed"), "{kinds}");
    }
}
