//! The OpenAPI 3.1 description of the local API, served at `GET /api/v1/openapi.json`.
//!
//! Every call is one JSON object whose `request` field names it; [`REQUESTS`] lists them
//! with what they do, and a unit test checks each name is a [`super::Request`] the server
//! accepts, so the description cannot name a request that does not exist.

use serde_json::{Value, json};

/// Every request name, and what it does.
pub const REQUESTS: &[(&str, &str)] = &[
    (
        "status",
        "The node's peer id, addresses and connected peers.",
    ),
    (
        "card",
        "This member's contact card, with the node's addresses.",
    ),
    ("circle_list", "The circles held here."),
    (
        "circle_create",
        "A new circle around a patient: {patient, birth_date?}.",
    ),
    (
        "circle_show",
        "A circle's members, roles, relays and key epoch: {circle}.",
    ),
    (
        "member_add",
        "Adds a member from a contact card: {circle, card, role}.",
    ),
    ("member_remove", "Removes a member: {circle, member}."),
    (
        "role_change",
        "Changes a member's role: {circle, member, role}.",
    ),
    ("relays_set", "Names the circle's relays: {circle, relays}."),
    (
        "invite_create",
        "A one-time invite code: {circle, role, expires_in (seconds)}.",
    ),
    ("join", "Joins a circle with an invite code: {code}."),
    ("join_status", "Where a join stands: {invite}."),
    ("patient_show", "The patient file: {circle}."),
    ("patient_set", "Changes the patient file: {circle, change}."),
    (
        "note_add",
        "Adds notes to the liaison notebook: {circle, texts, kind, at?}.",
    ),
    ("note_list", "The notebook's notes, oldest first: {circle}."),
    (
        "note_amend",
        "Corrects one of this member's notes: {circle, note, text}.",
    ),
    ("note_ack", "Acknowledges an alert: {circle, note}."),
    ("msg_send", "Sends a message: {circle, text, attachments?}."),
    ("msg_list", "The circle's messages: {circle, mark_read?}."),
    ("task_add", "Adds a task: {circle, title, owner?, due?}."),
    ("task_list", "The care plan's tasks: {circle}."),
    ("task_done", "Marks a task done: {circle, task}."),
    (
        "doc_add",
        "Adds a document: {circle, name, media_type, content (hex)}.",
    ),
    ("doc_list", "The patient file's documents: {circle}."),
    (
        "doc_get",
        "A document's content (hex), fetched from members if needed: {circle, doc}.",
    ),
    (
        "export",
        "The circle's documents: {circle, format: automerge | json | fhir}.",
    ),
    ("connect", "Dials a peer's multiaddress: {address}."),
];

/// The description as JSON.
pub fn document() -> Value {
    let request_names: Vec<&str> = REQUESTS.iter().map(|(n, _)| *n).collect();
    let described: Vec<Value> = REQUESTS
        .iter()
        .map(|(n, d)| json!({ "const": n, "description": d }))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Cercle node local API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The API of one Cercle node, on 127.0.0.1 only. Every call carries the token kept in the node's home (api-token, mode 0600) as a bearer token, and a Host header naming 127.0.0.1 or localhost. Errors are {\"error\": \"<one sentence>\"}."
        },
        "servers": [{ "url": "http://127.0.0.1:{port}", "variables": { "port": { "default": "0" } } }],
        "security": [{ "token": [] }],
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Request": {
                    "type": "object",
                    "required": ["request"],
                    "properties": {
                        "request": { "type": "string", "enum": request_names, "oneOf": described }
                    },
                    "additionalProperties": true
                },
                "Answer": {
                    "type": "object",
                    "required": ["answer"],
                    "properties": { "answer": { "type": "string" } },
                    "additionalProperties": true
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "string" } }
                }
            }
        },
        "paths": {
            "/api/v1/call": {
                "post": {
                    "summary": "One request to the node; answered once any write it made is durable.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Request" } } } },
                    "responses": {
                        "200": { "description": "The answer.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Answer" } } } },
                        "400": { "description": "The request was refused.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                        "401": { "description": "Missing or wrong token." },
                        "403": { "description": "The Host header is not this machine's loopback name." }
                    }
                }
            },
            "/api/v1/status": {
                "get": { "summary": "The node's status (as the status request).", "responses": { "200": { "description": "The status." } } }
            },
            "/api/v1/events": {
                "get": { "summary": "Node events as JSON lines, for as long as the client listens.", "responses": { "200": { "description": "application/x-ndjson stream." } } }
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

    #[test]
    fn every_described_request_exists() {
        for (name, _) in REQUESTS {
            let e = serde_json::from_value::<super::super::Request>(json!({ "request": name }))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!e.contains("unknown variant"), "{name}: {e}");
        }
        assert_eq!(document()["openapi"], "3.1.0");
    }
}
