//! The HTTP server of the local API (axum, on 127.0.0.1): token and Host checks, then one
//! [`Request`] per call handed to the node's core.

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::Request;
use crate::node::NodeHandle;

/// Largest request body accepted (a batch of notes).
const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Api {
    node: NodeHandle,
    token: String,
}

/// A new random API token (256 bits, hex).
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for the API token: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Serves the API on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, node: NodeHandle, token: String) {
    let app = Router::new()
        .route("/api/v1/call", post(call))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Api { node, token });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the local API stopped");
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Why a call is refused, if it is: the token must match and the Host must be this
/// machine's loopback name.
fn refusal(api: &Api, headers: &HeaderMap) -> Option<Response> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
    if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the local API answers only to 127.0.0.1 or localhost",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared in constant time: the token is a secret.
    let same = given.len() == api.token.len()
        && given
            .bytes()
            .zip(api.token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    (!same).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (it is in the home's api.json)",
        )
    })
}

async fn call(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a valid request: {e}"),
            );
        }
    };
    match api.node.call(request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn status(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    match api.node.call(Request::Status).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

/// Node events as JSON lines, for as long as the client listens.
async fn events(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    let rx = api.node.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let mut line = serde_json::to_vec(&event).unwrap_or_default();
                    line.push(b'\n');
                    return Some((Ok::<_, Infallible>(Bytes::from(line)), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "an event listener fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}
