//! The HTTP server of the local API (axum, on 127.0.0.1): token and Host checks, then one
//! [`Request`] per call handed to the node's core; the OpenAPI description; and the web
//! pages, whose login puts the token in a cookie named after the port (so the nodes of one
//! machine, all on 127.0.0.1, keep apart).

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::{Answer, Request};
use crate::node::NodeHandle;

/// Largest request body accepted (a batch of notes).
const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Api {
    node: NodeHandle,
    token: String,
    /// The name of the session cookie: `cercle_<port>`.
    cookie: String,
}

/// A new random API token (256 bits, hex).
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for the API token: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Serves the API on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, node: NodeHandle, token: String) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/api/v1/call", post(call))
        .route("/api/v1/status", get(status))
        .route("/api/v1/events", get(events))
        .route("/api/v1/openapi.json", get(openapi))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(Api {
            node,
            token,
            cookie: format!("cercle_{port}"),
        });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the local API stopped");
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Whether the Host header names this machine's loopback (so a web page cannot reach the
/// API through DNS rebinding).
fn loopback_host(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

fn wrong_host() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "the local API answers only to 127.0.0.1 or localhost",
    )
}

/// Whether `given` is the token, compared in constant time (the token is a secret).
fn is_token(api: &Api, given: &str) -> bool {
    given.len() == api.token.len()
        && given
            .bytes()
            .zip(api.token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
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
    (!is_token(api, given)).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API token (it is in the home's api-token file)",
        )
    })
}

/// The session cookie holding the token, for the web pages.
fn session_cookie(api: &Api, token: &str) -> Cookie<'static> {
    Cookie::build((api.cookie.clone(), token.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
}

#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The web UI's first page: with the token (in the link, once, or in the session cookie)
/// the circles; without it the login page.
async fn home(
    State(api): State<Api>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(q): Query<TokenQuery>,
) -> Response {
    if !loopback_host(&headers) {
        return wrong_host();
    }
    let from_link = q.token.as_deref().filter(|t| is_token(&api, t));
    let from_cookie = jar
        .get(&api.cookie)
        .map(Cookie::value)
        .filter(|t| is_token(&api, t));
    let Some(token) = from_link.or(from_cookie).map(str::to_string) else {
        return (
            StatusCode::UNAUTHORIZED,
            super::ui::login(q.token.is_some()),
        )
            .into_response();
    };
    let circles = match api.node.call(Request::CircleList).await {
        Ok(Answer::Circles { circles }) => circles,
        Ok(_) => Vec::new(),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let mut shown = Vec::with_capacity(circles.len());
    for c in circles {
        let notes = match api
            .node
            .call(Request::NoteList {
                circle: c.id.clone(),
            })
            .await
        {
            Ok(Answer::Notes { notes }) => notes,
            _ => Vec::new(),
        };
        shown.push((c, notes));
    }
    let me = api.node.call(Request::Status).await.ok();
    let page = super::ui::circles(&shown, me.as_ref());
    (jar.add(session_cookie(&api, &token)), page).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// The login form: a right token sets the session cookie.
async fn login(
    State(api): State<Api>,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    if !loopback_host(&headers) {
        return wrong_host();
    }
    let token = form.token.trim();
    if !is_token(&api, token) {
        return (StatusCode::UNAUTHORIZED, super::ui::login(true)).into_response();
    }
    (
        jar.add(session_cookie(&api, token)),
        axum::response::Redirect::to("/"),
    )
        .into_response()
}

async fn openapi(headers: HeaderMap) -> Response {
    if !loopback_host(&headers) {
        return wrong_host();
    }
    Json(super::openapi::document()).into_response()
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
