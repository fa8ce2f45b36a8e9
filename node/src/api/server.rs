//! The HTTP server of the local API (axum, on 127.0.0.1): token and Host checks, then one
//! [`Request`] per call handed to the node's core; the OpenAPI description; and the web
//! UI's routes from [`super::web`], whose login puts the token in a cookie named after the
//! port (so the nodes of one machine, all on 127.0.0.1, keep apart).

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::session::Sessions;
use super::token::{ApiToken, NONCE_BYTES};
use super::{ApiFile, Request};
use crate::node::NodeHandle;
use crate::ops::{ErrorKind, NodeError};

/// Largest request body accepted (a batch of notes, a document as hex).
pub const MAX_BODY: usize = 20 * 1024 * 1024;
/// Calls carried out at once, at most; beyond, a call is refused as unavailable (503)
/// rather than queued, so a flood of calls cannot hold memory.
pub const MAX_CONCURRENT_CALLS: usize = 64;

#[derive(Debug, Clone)]
pub(super) struct Api {
    pub(super) node: NodeHandle,
    pub(super) token: ApiToken,
    /// The web UI's signed-in browsers.
    pub(super) sessions: Sessions,
    /// The name of the session cookie: `cercle_<port>`.
    pub(super) cookie: String,
    /// Permits for calls under way.
    pub(super) calls: std::sync::Arc<tokio::sync::Semaphore>,
    /// The home, whose `api.json` a rotation of the token rewrites.
    pub(super) home: std::path::PathBuf,
    /// The member's paired phones (shared by the loopback and the LAN servers).
    pub(super) phones: super::phones::Phones,
    /// Where the LAN server answers, when it runs: the QR the desktop page shows.
    pub(super) lan: Option<std::sync::Arc<LanInfo>>,
    /// This server is the LAN one: only paired phones' sessions get in.
    pub(super) on_lan: bool,
}

impl Api {
    /// A server's state, on 127.0.0.1 with no LAN server known.
    pub(super) fn new(
        node: NodeHandle,
        token: ApiToken,
        home: std::path::PathBuf,
        phones: super::phones::Phones,
        cookie: String,
    ) -> Api {
        Api {
            node,
            token,
            sessions: Sessions::default(),
            cookie,
            calls: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CALLS)),
            home,
            phones,
            lan: None,
            on_lan: false,
        }
    }
}

/// The LAN server, as the desktop page tells the phone.
#[derive(Debug, Clone)]
pub struct LanInfo {
    /// `https://ADDRESS:PORT`.
    pub base: String,
    /// The certificate's fingerprint (see [`super::lan`]).
    pub fingerprint: String,
}

/// Serves the API on `listener` until the task is aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: NodeHandle,
    token: ApiToken,
    home: std::path::PathBuf,
    phones: super::phones::Phones,
    lan: Option<LanInfo>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let app = Router::new()
        .route("/api/v1/call", post(call))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/hello", get(hello))
        .route("/api/v1/token/rotate", post(rotate_token))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/phones", get(phones_list))
        .route("/api/v1/phones/pair", post(phones_pair))
        .route("/api/v1/phones/revoke", post(phones_revoke))
        .merge(super::web::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Api {
            lan: lan.map(std::sync::Arc::new),
            ..Api::new(node, token, home, phones, format!("cercle_{port}"))
        });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the local API stopped");
    }
}

/// Serves the web UI, and nothing of the JSON API, to paired phones on the LAN over TLS
/// (see [`super::lan`], [`super::phones`]) until the task is aborted.
pub async fn serve_lan(
    listener: super::lan::TlsListener,
    node: NodeHandle,
    token: ApiToken,
    home: std::path::PathBuf,
    phones: super::phones::Phones,
) {
    let app = Router::new()
        .merge(super::web::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Api {
            on_lan: true,
            ..Api::new(node, token, home, phones, super::web::PHONE_COOKIE.into())
        });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the web UI on the LAN stopped");
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// A refusal of the node, with the status of its kind.
fn refusal_of(e: &NodeError) -> Response {
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e)).into_response()
}

/// The answer to one request, once a permit for it is free.
async fn answer(api: &Api, request: Request) -> Response {
    let Ok(_permit) = api.calls.try_acquire() else {
        let busy = NodeError::new(
            ErrorKind::Unavailable,
            "the node is busy with other calls; try again in a moment",
        );
        return refusal_of(&busy);
    };
    match api.node.call(request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => refusal_of(&e),
    }
}

/// Whether the Host header names this machine's loopback (so a web page cannot reach the
/// API through DNS rebinding).
pub(super) fn loopback_host(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

pub(super) fn wrong_host() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "the local API answers only to 127.0.0.1 or localhost",
    )
}

/// Why a call is refused, if it is: the Host must be this machine's loopback name and the
/// bearer token must match.
fn refusal(api: &Api, headers: &HeaderMap) -> Option<Response> {
    if !loopback_host(headers) {
        return Some(wrong_host());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    (!api.token.matches(given)).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (it is in the home's api-token file)",
        )
    })
}

/// A phone's pairing link, for the CLI (`cercle phone pair`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PhoneLink {
    pub link: String,
    pub fingerprint: String,
}

/// The paired phones.
async fn phones_list(headers: HeaderMap, State(api): State<Api>) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    Json(api.phones.list()).into_response()
}

/// A one-time pairing link for a phone (the LAN server must run).
async fn phones_pair(headers: HeaderMap, State(api): State<Api>) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    let Some(lan) = api.lan.clone() else {
        return refusal_of(&NodeError::unavailable(
            "the web UI is not served on the LAN: start the node with `cercle up --ui-listen ADDRESS:PORT`",
        ));
    };
    match api.phones.start_pairing(std::time::Instant::now()) {
        Ok(secret) => Json(PhoneLink {
            link: format!("{}/phone/pair?code={}", lan.base, secret.as_str()),
            fingerprint: lan.fingerprint.clone(),
        })
        .into_response(),
        Err(e) => refusal_of(&NodeError::internal(e.to_string())),
    }
}

#[derive(Debug, serde::Deserialize)]
struct PhoneId {
    id: String,
}

/// Revokes a phone's session.
async fn phones_revoke(
    headers: HeaderMap,
    State(api): State<Api>,
    Json(phone): Json<PhoneId>,
) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    if api.phones.revoke(phone.id.trim()) {
        Json(serde_json::json!({ "revoked": phone.id.trim() })).into_response()
    } else {
        refusal_of(&NodeError::not_found(
            "no paired phone has this id; `cercle phone list` shows them",
        ))
    }
}

#[derive(Debug, serde::Deserialize)]
struct HelloQuery {
    #[serde(default)]
    nonce: String,
}

/// The proof that this listener knows the token, for the caller's nonce: a client checks
/// it before sending the token, so a stale `api.json` naming a port another program now
/// holds leaks nothing. Needs no token and reveals nothing about it.
async fn hello(
    headers: HeaderMap,
    State(api): State<Api>,
    Query(q): Query<HelloQuery>,
) -> Response {
    if !loopback_host(&headers) {
        return wrong_host();
    }
    match hex::decode(&q.nonce) {
        Ok(nonce) if nonce.len() == NONCE_BYTES => {
            Json(serde_json::json!({ "proof": api.token.proof(&nonce) })).into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            &format!("hello takes a nonce of {NONCE_BYTES} bytes in hex"),
        ),
    }
}

/// Replaces the token (`cercle config rotate-token`): the home's files get the new one,
/// and every web session ends. The caller reads the new token from the home.
async fn rotate_token(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    let token = match api.token.rotate() {
        Ok(t) => t,
        Err(e) => return refusal_of(&NodeError::internal(e.to_string())),
    };
    api.sessions.end_all();
    match ApiFile::read(&api.home) {
        Ok(Some(mut file)) => {
            file.token = token.to_string();
            if let Err(e) = file.write(&api.home) {
                return refusal_of(&NodeError::internal(e.to_string()));
            }
        }
        Ok(None) => {}
        Err(e) => return refusal_of(&NodeError::internal(e.to_string())),
    }
    tracing::info!("the API token was replaced; web sessions ended");
    Json(serde_json::json!({ "rotated": true })).into_response()
}

async fn openapi(headers: HeaderMap) -> Response {
    if !loopback_host(&headers) {
        return wrong_host();
    }
    Json(super::openapi::document()).into_response()
}

/// One request. The Host and the token are checked before the body is read: a caller
/// without the token makes the node read nothing.
async fn call(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request is larger than the {MAX_BODY} bytes the API takes"),
            );
        }
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let bad = NodeError::bad_input(format!("not a valid request: {e}"));
            return refusal_of(&bad);
        }
    };
    answer(&api, request).await
}

async fn status(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&api, &headers) {
        return r;
    }
    answer(&api, crate::ops::status::Status {}.into()).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_beyond_the_bound_are_refused_as_unavailable_not_queued() {
        let (node, mut core) = NodeHandle::detached();
        let home = tempfile::tempdir().unwrap();
        let api = Api::new(
            node,
            ApiToken::load(home.path()).unwrap(),
            home.path().to_path_buf(),
            crate::api::phones::Phones::load(home.path()),
            "cercle_1".into(),
        );
        // Every permit is held by a call under way.
        let held: Vec<_> = (0..MAX_CONCURRENT_CALLS)
            .map(|_| api.calls.clone().try_acquire_owned().unwrap())
            .collect();
        let refused = answer(&api, crate::ops::status::Status {}.into()).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(core.try_recv().is_err(), "nothing reached the core");
        drop(held);
        // With a permit free, the call goes to the core.
        let call =
            tokio::spawn(async move { answer(&api, crate::ops::status::Status {}.into()).await });
        let got = core.recv().await;
        assert!(got.is_some());
        // The core goes away without answering (its reply is dropped with the request).
        drop(got);
        drop(core);
        let stopped = call.await.unwrap();
        assert_eq!(
            stopped.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is stopping"
        );
    }
}
