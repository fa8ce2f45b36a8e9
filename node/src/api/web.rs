//! The web UI's routes: the session (token cookie, form token, language), the pages, the
//! forms that write, and the live event stream. Every page and form goes through the same
//! [`Request`]s as the JSON API and the CLI, so the UI can do nothing they cannot.
//!
//! Guards, in order: the Host must be this machine's loopback name (DNS rebinding); the
//! session cookie must name an open session (see [`super::session`]: a random id, never
//! the API token); every POST must carry that session's form token and, when the browser
//! sends one, an Origin of this very address. Responses forbid framing,
//! caching, referrers and any script or style not served from here.

// A refusal here is the page that says why, as in axum's own extractors.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Multipart, Path, Query, Request as HttpRequest, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use maud::Markup;

use super::server::{Api, loopback_host, wrong_host};
use super::token::same_secret;
use super::ui::words::Lang;
use super::ui::{self, CircleHead, CircleRow, Ctx, NoteFilter};
use crate::ops::audit::Audit;
use crate::ops::circles::{
    CircleAccept, CircleCreate, CircleDecline, CircleList, CircleShow, CircleSummary,
};
use crate::ops::closing::{CircleClose, ConsentWithdraw};
use crate::ops::directory::DirectorySearch;
use crate::ops::documents::{DocAdd, DocGet, DocList, MAX_DOCUMENT_BYTES};
use crate::ops::emergency::{BreakGlassAsk, EmergencyCodeMake, OnCallSet};
use crate::ops::export::{Export, ExportFormat};
use crate::ops::invite::InviteCreate;
use crate::ops::join::{Join, JoinStatus};
use crate::ops::messages::{MessageRow, MsgList, MsgSend};
use crate::ops::notes::{NoteAck, NoteAdd, NoteAmend, NoteList, NoteRow};
use crate::ops::patient::{
    ItemAdd, ItemChange, ItemRemove, MedicationStop, PatientChange, PatientList, PatientSet,
    PatientShow,
};
use crate::ops::relays::ReminderSet;
use crate::ops::status::Status;
use crate::ops::tasks::{TaskAdd, TaskDone};
use crate::ops::{ErrorKind, NodeError, Operation};

mod devices;

/// The session cookie of a paired phone on the LAN (served over TLS only).
pub(super) const PHONE_COOKIE: &str = "cercle_phone";
/// How a phone's session id starts, apart from the loopback sessions'.
const PHONE_ID: &str = "phone:";

/// How long a download waits for a document being fetched from a member.
const FETCH_WAIT: Duration = Duration::from_secs(30);

/// The routes of the web UI, to merge with the API's.
pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/lang", post(switch_language))
        .route("/invitations/{circle}/accept", post(invitation_accept))
        .route("/invitations/{circle}/decline", post(invitation_decline))
        .route("/sync", get(sync))
        .route("/new", get(new_circle_page))
        .route("/circles", post(circle_create))
        .route("/join", get(join_page).post(join_start))
        .route("/join/{invite}", get(join_status))
        .route("/emergency", get(emergency_page).post(emergency_start))
        .route("/c/{circle}/emergency-code", get(emergency_code))
        .route("/c/{circle}/on-call", post(on_call_set))
        .route("/ui/events", get(events))
        .route("/ui/style.css", get(style))
        .route("/ui/live.js", get(script))
        .route("/c/{circle}", get(notebook))
        .route("/c/{circle}/notes", post(note_add))
        .route("/c/{circle}/notes/{note}/amend", post(note_amend))
        .route("/c/{circle}/notes/{note}/ack", post(note_ack))
        .route("/c/{circle}/patient", get(patient))
        .route("/c/{circle}/export.fhir.json", get(export_fhir))
        .route("/c/{circle}/identity", post(identity_set))
        .route("/c/{circle}/identity/verify", post(identity_verify))
        .route("/c/{circle}/consent", post(consent_set))
        .route("/c/{circle}/care-plan", post(care_plan_set))
        .route("/c/{circle}/items/{list}", post(item_add))
        .route("/c/{circle}/items/{list}/{item}", post(item_change))
        .route("/c/{circle}/items/{list}/{item}/remove", post(item_remove))
        .route(
            "/c/{circle}/medications/{medication}/stop",
            post(medication_stop),
        )
        .route("/c/{circle}/tasks", post(task_add))
        .route("/c/{circle}/tasks/{task}/done", post(task_done))
        .route("/c/{circle}/messages", get(messages).post(message_send))
        .route("/c/{circle}/messages/read", post(messages_read))
        .route("/c/{circle}/documents", get(documents).post(document_add))
        .route("/c/{circle}/documents/{doc}", get(document_get))
        .route("/c/{circle}/documents/{doc}/view", get(document_view))
        .route("/c/{circle}/members", get(members))
        .route("/c/{circle}/invites", post(invite_create))
        .route("/c/{circle}/reminder", post(reminder_set))
        .route("/c/{circle}/close", post(circle_close))
        .route("/c/{circle}/consent-withdraw", post(consent_withdraw))
        .route("/c/{circle}/activity", get(activity))
        .route("/c/{circle}/audit", get(audit))
        .merge(devices::routes())
        .layer(axum::middleware::from_fn(guard_headers))
}

/// Headers on every page: no framing, no caching of care data, no referrer to other sites
/// (same-origin, so forms still carry their Origin), and scripts,
/// styles and connections only from this address.
async fn guard_headers(request: HttpRequest, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    // A download sets its own, stricter policy (`sandbox`): it is kept.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn language_cookie(api: &Api) -> String {
    format!("{}_lang", api.cookie)
}

fn language(api: &Api, jar: &CookieJar) -> Lang {
    jar.get(&language_cookie(api))
        .and_then(|c| Lang::parse(c.value()))
        .unwrap_or_default()
}

/// The session cookie holding a session's id: HttpOnly, SameSite=Strict, named after the
/// port.
fn session_cookie(api: &Api, id: &str) -> Cookie<'static> {
    Cookie::build((api.cookie.clone(), id.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
}

fn login_page(lang: Lang, failed: bool) -> Response {
    (StatusCode::UNAUTHORIZED, ui::login(lang, failed)).into_response()
}

/// Opens a session after a right token: its cookie, and back to the circles.
fn sign_in(api: &Api, jar: CookieJar) -> Response {
    let Some(id) = api.sessions.open(std::time::Instant::now()) else {
        let e = NodeError::internal("no randomness for a session");
        return (StatusCode::INTERNAL_SERVER_ERROR, e.message).into_response();
    };
    (jar.add(session_cookie(api, &id)), Redirect::to("/")).into_response()
}

/// A signed-in member's request: the Host and the session cookie were checked.
struct Session {
    api: Api,
    /// The session's id (the cookie's value).
    id: String,
    ctx: Ctx,
}

impl FromRequestParts<Api> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let lang = language(api, &jar);
        let cookie = jar.get(&api.cookie).map(|c| c.value().to_string());
        let found = if api.on_lan {
            // On the LAN, only a paired phone's session: no token, no login form.
            cookie
                .and_then(|c| api.phones.find(&c))
                .map(|p| (format!("{PHONE_ID}{}", p.id), p.form_token))
        } else {
            if !loopback_host(&parts.headers) {
                return Err(wrong_host());
            }
            cookie.and_then(|id| {
                let form_token = api.sessions.find(&id, std::time::Instant::now())?;
                Some((id, form_token))
            })
        };
        let Some((id, form_token)) = found else {
            return Err(if api.on_lan {
                devices::not_paired(lang)
            } else {
                login_page(lang, false)
            });
        };
        let peers = api.node.ask(Status {}).await.map_or(0, |s| s.peers.len());
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        Ok(Session {
            api: api.clone(),
            id,
            ctx: Ctx {
                lang,
                csrf: form_token.to_string(),
                here,
                peers,
                phone: api.on_lan,
            },
        })
    }
}

impl Session {
    /// Refuses a form that does not carry this session's form token, or that a browser
    /// says comes from another site.
    fn check(&self, headers: &HeaderMap, given: &str) -> Result<(), Response> {
        let origin_ok = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_none_or(|origin| {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                let scheme = if self.api.on_lan { "https" } else { "http" };
                origin == format!("{scheme}://{host}")
            });
        if origin_ok && same_secret(given, &self.ctx.csrf) {
            return Ok(());
        }
        tracing::warn!("a web form without this session's form token was refused");
        let e = NodeError::not_allowed(self.ctx.lang.words().refused_form);
        Err(self.refused(&e, "/"))
    }

    /// A form that writes: checks its form token, asks the node, and goes back to `back`
    /// (Post/Redirect/Get), or shows why it was refused.
    async fn submit<O: Operation>(
        &self,
        headers: &HeaderMap,
        csrf: &str,
        op: O,
        back: String,
    ) -> Response {
        if let Err(refused) = self.check(headers, csrf) {
            return refused;
        }
        match self.ask(op, &back).await {
            Ok(_) => back_to(back),
            Err(refused) => refused,
        }
    }

    /// The page saying why an action failed, with the status of its kind; its language
    /// switch leads back to `back` (the failed request may have been a POST).
    fn refused(&self, e: &NodeError, back: &str) -> Response {
        let ctx = Ctx {
            here: back.to_string(),
            ..self.ctx.clone()
        };
        let status =
            StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A refused value is worded in the page's language; anything else as the node says.
        let w = self.ctx.lang.words();
        let invite = e.invite.as_deref().and_then(|c| w.invite_refusal(c));
        let reason = match (&e.invalid, &e.role, invite) {
            (Some(invalid), _, _) => w.invalid(invalid),
            (None, Some(role), _) => w.role_refusal(role),
            (None, None, Some(said)) => said.to_string(),
            (None, None, None) => e.message.clone(),
        };
        (status, ui::failure(&ctx, Some(e.kind), &reason, back)).into_response()
    }

    /// A refusal found here, before asking the node.
    fn bad(&self, reason: &str, back: &str) -> Response {
        self.refused(&NodeError::bad_input(reason), back)
    }

    /// Asks the node; its refusal becomes a page that says why.
    async fn ask<O: Operation>(&self, op: O, back: &str) -> Result<O::Answer, Response> {
        self.api
            .node
            .ask(op)
            .await
            .map_err(|e| self.refused(&e, back))
    }

    async fn me(&self) -> Result<String, Response> {
        Ok(self.ask(Status {}, "/").await?.member)
    }

    async fn notes(&self, circle: &str) -> Result<Vec<NoteRow>, Response> {
        let list = NoteList {
            circle: circle.into(),
        };
        Ok(self.ask(list, "/").await?.notes)
    }

    async fn messages(&self, circle: &str, mark_read: bool) -> Result<Vec<MessageRow>, Response> {
        let list = MsgList {
            circle: circle.into(),
            mark_read,
        };
        Ok(self.ask(list, "/").await?.messages)
    }

    async fn summary(&self, circle: &str) -> Result<CircleSummary, Response> {
        let show = CircleShow {
            circle: circle.into(),
        };
        self.ask(show, "/").await
    }

    /// A circle's heading: patient, this member's role, open alerts and unread messages.
    /// Also gives the notes and messages read for it, and this member's id.
    async fn head(
        &self,
        circle: &str,
        mark_read: bool,
    ) -> Result<(CircleHead, Vec<NoteRow>, Vec<MessageRow>, String), Response> {
        // Pages name a circle by its whole id: a guessed prefix finds nothing.
        if !is_whole_id(circle) {
            let e = NodeError::not_found(format!("no circle {circle:?}"));
            return Err(self.refused(&e, "/"));
        }
        let me = self.me().await?;
        let summary = self.summary(circle).await?;
        let notes = self.notes(&summary.id).await?;
        let messages = self.messages(&summary.id, mark_read).await?;
        let (alerts, unread) = ui::badges(&notes, &messages, &me);
        let role = summary
            .members
            .iter()
            .find(|m| m.member == me)
            .map_or("observer", |m| m.role.as_str())
            .to_string();
        let head = CircleHead {
            id: summary.id,
            patient: summary.patient,
            alerts,
            unread,
            role,
            team: summary.team,
            closed: false,
            suspended: summary.suspended.map(|s| s.reason),
            emergency: {
                let now = crate::node::now().millis();
                summary
                    .emergency
                    .into_iter()
                    .map(|e| {
                        let ended = e.until <= now;
                        (e, ended)
                    })
                    .collect()
            },
        };
        Ok((head, notes, messages, me))
    }

    /// Member ids and names in a circle, for pages that name people.
    async fn names(&self, circle: &str) -> Result<Vec<(String, String)>, Response> {
        Ok(self
            .summary(circle)
            .await?
            .members
            .into_iter()
            .filter_map(|m| Some((m.member, m.name?)))
            .collect())
    }
}

/// After a form: back to the page it was on (Post/Redirect/Get).
fn back_to(path: String) -> Response {
    Redirect::to(&path).into_response()
}

/// Whether `id` is a whole circle or device id (pages never take a prefix).
fn is_whole_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn page(markup: Markup) -> Response {
    markup.into_response()
}

#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The circles; a `?token=` link signs in and is answered with a redirect to `/`, so the
/// token leaves the address bar and the history at once.
async fn home(
    State(api): State<Api>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(q): Query<TokenQuery>,
    session: Result<Session, Response>,
) -> Response {
    if let Some(token) = q.token {
        if api.on_lan || !loopback_host(&headers) {
            return wrong_host();
        }
        if !api.token.matches(&token) {
            return login_page(language(&api, &jar), true);
        }
        return sign_in(&api, jar);
    }
    match session {
        Ok(s) => circles(s).await.unwrap_or_else(|r| r),
        Err(r) => r,
    }
}

async fn circles(s: Session) -> Result<Response, Response> {
    let list = s.ask(CircleList {}, "/").await?;
    let mut rows = Vec::with_capacity(list.circles.len());
    for c in &list.circles {
        let (head, notes, _, _) = s.head(&c.id, false).await?;
        rows.push(CircleRow {
            head,
            last_note: notes.into_iter().last(),
        });
    }
    Ok(page(ui::home(&s.ctx, &rows, &list)))
}

/// Joins a circle a member added this member to.
async fn invitation_accept(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<AcceptForm>,
) -> Response {
    if !is_whole_id(&circle) {
        return s.refused(&NodeError::not_found("no such circle"), "/");
    }
    let back = format!("/c/{circle}");
    let always = f.always.is_some();
    s.submit(&headers, &f.csrf, CircleAccept { circle, always }, back)
        .await
}

/// The invitation's form: "always accept this colleague's circles" ticked or not.
#[derive(Debug, serde::Deserialize)]
struct AcceptForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    always: Option<String>,
}

/// Declines a circle a member added this member to.
async fn invitation_decline(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if !is_whole_id(&circle) {
        return s.refused(&NodeError::not_found("no such circle"), "/");
    }
    s.submit(&headers, &f.csrf, CircleDecline { circle }, "/".to_string())
        .await
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    lang: String,
}

/// The login form: a right token opens a session. It needs no form token: without the
/// node's token it can do nothing, and with it there is nothing left to forge.
async fn login(
    State(api): State<Api>,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    if api.on_lan || !loopback_host(&headers) {
        return wrong_host();
    }
    let lang = Lang::parse(&form.lang).unwrap_or_default();
    let token = form.token.trim();
    if !api.token.matches(token) {
        tracing::warn!("a web login with a wrong token was refused");
        return login_page(lang, true);
    }
    sign_in(&api, jar)
}

#[derive(Debug, serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    s: Session,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.check(&headers, &f.csrf) {
        return r;
    }
    // A phone signing out unpairs itself.
    match s.id.strip_prefix(PHONE_ID) {
        Some(phone) => {
            s.api.phones.revoke(phone);
        }
        None => s.api.sessions.end(&s.id),
    }
    let gone = Cookie::build((s.api.cookie.clone(), "")).path("/").build();
    (jar.remove(gone), Redirect::to("/")).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct LanguageForm {
    #[serde(default)]
    csrf: String,
    lang: String,
    #[serde(default)]
    back: String,
}

/// The language switch: kept in a lasting cookie; back to the page it was pressed on (a
/// path of this site only).
async fn switch_language(
    s: Session,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(f): axum::Form<LanguageForm>,
) -> Response {
    if let Err(r) = s.check(&headers, &f.csrf) {
        return r;
    }
    let lang = Lang::parse(&f.lang).unwrap_or_default();
    let cookie = Cookie::build((language_cookie(&s.api), lang.code()))
        .same_site(SameSite::Strict)
        .path("/")
        .permanent()
        .build();
    let local = f.back.starts_with('/') && !f.back.starts_with("//") && !f.back.contains('\\');
    let back = if local { f.back } else { "/".to_string() };
    (jar.add(cookie), Redirect::to(&back)).into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        ui::STYLE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        ui::SCRIPT,
    )
        .into_response()
}

/// The node's events for open pages, as server-sent events.
async fn events(s: Session) -> Response {
    let rx = s.api.node.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    return Some((Ok::<_, Infallible>(Event::default().data(data)), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "a web page fell behind the node's events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn new_circle_page(s: Session) -> Response {
    page(ui::new_circle(&s.ctx))
}

#[derive(Debug, serde::Deserialize)]
struct NewCircleForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    given_names: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    team: String,
}

/// Creates a circle from the page: its patient file (or, for a team, its messages) opens
/// next, unless another circle probably has the same patient, which is said first.
async fn circle_create(
    s: Session,
    headers: HeaderMap,
    axum::Form(f): axum::Form<NewCircleForm>,
) -> Response {
    let back = "/new";
    let run = async {
        s.check(&headers, &f.csrf)?;
        let typed = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        // An empty required field, said in the page's language.
        let required = |field: &str| {
            let invalid = crate::ops::Invalid {
                field: field.into(),
                fault: cercle_crdt::schema::Fault::Required,
            };
            s.bad(&s.ctx.lang.words().invalid(&invalid), back)
        };
        let create = match f.kind.as_str() {
            "team" => CircleCreate {
                patient: String::new(),
                birth_date: None,
                family_name: None,
                given_names: None,
                team: Some(typed(&f.team).ok_or_else(|| required("team"))?),
            },
            _ => CircleCreate {
                patient: String::new(),
                birth_date: typed(&f.birth_date),
                family_name: Some(typed(&f.family_name).ok_or_else(|| required("family_name"))?),
                given_names: typed(&f.given_names),
                team: None,
            },
        };
        let made = s.ask(create, back).await?;
        let Some(c) = made.circles.first() else {
            return Ok(back_to("/".to_string()));
        };
        if c.team {
            return Ok(back_to(format!("/c/{}/messages", c.id)));
        }
        if c.probable_duplicates.is_empty() {
            return Ok(back_to(format!("/c/{}/patient", c.id)));
        }
        let list = s.ask(CircleList {}, back).await?;
        let others: Vec<(String, String, Option<String>)> = list
            .circles
            .iter()
            .filter(|o| c.probable_duplicates.contains(&o.id))
            .map(|o| (o.id.clone(), o.patient.clone(), o.birth_date.clone()))
            .collect();
        Ok(page(ui::created_duplicate(&s.ctx, &c.id, &others)))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

async fn join_page(s: Session) -> Response {
    page(ui::join(&s.ctx, None))
}

#[derive(Debug, serde::Deserialize)]
struct JoinForm {
    #[serde(default)]
    csrf: String,
    code: String,
}

/// Starts a join with the code pasted, then shows where it stands.
async fn join_start(
    s: Session,
    headers: HeaderMap,
    axum::Form(f): axum::Form<JoinForm>,
) -> Response {
    let back = "/join";
    if let Err(refused) = s.check(&headers, &f.csrf) {
        return refused;
    }
    let w = s.ctx.lang.words();
    // A code that does not decode or has expired gets the page's own words.
    let valid = match crate::invite::AnyCode::parse(&f.code) {
        Ok(crate::invite::AnyCode::Full(c)) => c.check_expiry(crate::node::now().millis()).is_ok(),
        Ok(crate::invite::AnyCode::Short(_)) => true,
        Err(_) => false,
    };
    if !valid {
        return s.bad(w.join_bad_code, back);
    }
    match s.ask(Join { code: f.code }, back).await {
        Ok(view) => back_to(format!("/join/{}", view.invite)),
        Err(refused) => refused,
    }
}

async fn emergency_page(s: Session) -> Response {
    page(ui::emergency(&s.ctx))
}

#[derive(Debug, serde::Deserialize)]
struct EmergencyForm {
    #[serde(default)]
    csrf: String,
    code: String,
    reason: String,
    #[serde(default)]
    hours: u32,
}

/// Asks for emergency access with a patient's code, then shows where it stands (as a join).
async fn emergency_start(
    s: Session,
    headers: HeaderMap,
    axum::Form(f): axum::Form<EmergencyForm>,
) -> Response {
    let back = "/emergency";
    if let Err(refused) = s.check(&headers, &f.csrf) {
        return refused;
    }
    let ask = BreakGlassAsk {
        code: f.code,
        reason: f.reason,
        minutes: f.hours.clamp(1, 24) * 60,
    };
    match s.ask(ask, back).await {
        Ok(view) => back_to(format!("/join/{}", view.invite)),
        Err(refused) => refused,
    }
}

async fn emergency_code(s: Session, Path(circle): Path<String>) -> Response {
    let run = async {
        let (head, _, _, _) = s.head(&circle, false).await?;
        let view = s
            .ask(
                EmergencyCodeMake {
                    circle: head.id.clone(),
                },
                &format!("/c/{}/members", head.id),
            )
            .await?;
        Ok(page(ui::emergency_code(&s.ctx, &head, &view)))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

/// Adds an on-call professional from their card, or removes one (coordinators).
async fn on_call_set(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let back = format!("/c/{circle}/members");
    let mut typed = f.typed();
    let set = OnCallSet {
        circle,
        add: typed.remove("card"),
        remove: typed.remove("remove"),
    };
    s.submit(&headers, &f.csrf, set, back).await
}

async fn join_status(s: Session, Path(invite): Path<String>) -> Response {
    match s.ask(JoinStatus { invite }, "/join").await {
        Ok(view) => page(ui::join(&s.ctx, Some(&view))),
        Err(refused) => refused,
    }
}

async fn sync(s: Session) -> Response {
    let run = async {
        let status = s.ask(Status {}, "/").await?;
        let circles: Vec<(String, String)> = s
            .ask(CircleList {}, "/")
            .await?
            .circles
            .into_iter()
            .map(|c| (c.id, c.patient))
            .collect();
        Ok(page(ui::sync(&s.ctx, &status, &circles)))
    };
    run.await.unwrap_or_else(|r| r)
}

async fn notebook(
    s: Session,
    Path(circle): Path<String>,
    Query(filter): Query<NoteFilter>,
) -> Response {
    let run = async {
        let (head, notes, _, me) = s.head(&circle, false).await?;
        if head.team {
            return Ok(back_to(format!("/c/{}/messages", head.id)));
        }
        let members = s.names(&head.id).await?;
        Ok(page(ui::notebook(
            &s.ctx, &head, &notes, &filter, &me, &members,
        )))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

#[derive(Debug, serde::Deserialize)]
struct NoteForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    #[serde(default)]
    text: String,
    /// For an alert: who must act (a role, or a member's id); blank for the coordinators.
    #[serde(default)]
    to: String,
    /// The vital signs typed, by [`cercle_crdt::Sign::key`]; blank for none.
    #[serde(flatten)]
    vitals: std::collections::HashMap<String, String>,
}

async fn note_add(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<NoteForm>,
) -> Response {
    let back = format!("/c/{circle}");
    if let Err(refused) = s.check(&headers, &f.csrf) {
        return refused;
    }
    let w = s.ctx.lang.words();
    let vitals = match cercle_crdt::parse_typed(|sign| f.vitals.get(sign.key()).map(String::as_str))
    {
        Ok(vitals) => vitals,
        Err(e) => return s.bad(&w.typed_vitals_error(&e), &back),
    };
    // Values typed make it a vitals note whatever kind was left selected.
    let kind: cercle_crdt::EntryKind = match (&vitals, f.kind.parse()) {
        (Some(_), _) => cercle_crdt::EntryKind::Vitals,
        (None, Ok(kind)) => kind,
        (None, Err(e)) => return s.bad(&e, &back),
    };
    let text = f.text.trim().to_string();
    if text.is_empty() && vitals.is_none() {
        return s.bad(w.note_needs_text, &back);
    }
    let add = NoteAdd {
        circle,
        texts: (!text.is_empty()).then_some(text).into_iter().collect(),
        kind,
        at: None,
        vitals,
        // Chosen only for an alert; the form keeps its choice whatever the kind.
        to: (kind == cercle_crdt::EntryKind::Alert && !f.to.is_empty()).then_some(f.to),
    };
    s.submit(&headers, &f.csrf, add, back).await
}

#[derive(Debug, serde::Deserialize)]
struct TextForm {
    #[serde(default)]
    csrf: String,
    text: String,
}

async fn note_amend(
    s: Session,
    headers: HeaderMap,
    Path((circle, note)): Path<(String, String)>,
    axum::Form(f): axum::Form<TextForm>,
) -> Response {
    let back = format!("/c/{circle}");
    let text = f.text.trim().to_string();
    let amend = NoteAmend { circle, note, text };
    s.submit(&headers, &f.csrf, amend, back).await
}

async fn note_ack(
    s: Session,
    headers: HeaderMap,
    Path((circle, note)): Path<(String, String)>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    let back = format!("/c/{circle}");
    s.submit(&headers, &f.csrf, NoteAck { circle, note }, back)
        .await
}

async fn patient(s: Session, Path(circle): Path<String>) -> Response {
    let run = async {
        let (head, notes, _, _) = s.head(&circle, false).await?;
        if head.team {
            return Ok(back_to(format!("/c/{}/messages", head.id)));
        }
        let show = PatientShow {
            circle: head.id.clone(),
        };
        let view = s.ask(show, "/").await?;
        let names = s.names(&head.id).await?;
        Ok(page(ui::patient(&s.ctx, &head, &view, &names, &notes)))
    };
    run.await.unwrap_or_else(|r| r)
}

/// A form of the patient file: its form token and its fields by the schema's names.
#[derive(Debug, serde::Deserialize)]
struct FieldsForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    fields: std::collections::BTreeMap<String, String>,
}

impl FieldsForm {
    /// The fields typed (blank ones left out), trimmed.
    fn typed(&self) -> std::collections::BTreeMap<String, String> {
        self.fields
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), v.trim().to_string()))
            .collect()
    }

    /// A field typed, if not blank.
    fn get(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

/// The list named in a URL, or the page that says it is not one.
fn patient_list(s: &Session, list: &str, back: &str) -> Result<PatientList, Response> {
    list.parse().map_err(|e: String| s.bad(&e, back))
}

async fn item_add(
    s: Session,
    headers: HeaderMap,
    Path((circle, list)): Path<(String, String)>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let back = format!("/c/{circle}/patient");
    let list = match patient_list(&s, &list, &back) {
        Ok(list) => list,
        Err(page) => return page,
    };
    let add = ItemAdd {
        circle,
        list,
        fields: f.typed(),
    };
    s.submit(&headers, &f.csrf, add, back).await
}

async fn item_change(
    s: Session,
    headers: HeaderMap,
    Path((circle, list, item)): Path<(String, String, String)>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let back = format!("/c/{circle}/patient");
    let list = match patient_list(&s, &list, &back) {
        Ok(list) => list,
        Err(page) => return page,
    };
    // Every field of the form is sent: a blank one clears what was there.
    let fields = f
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.trim().to_string()))
        .collect();
    let change = ItemChange {
        circle,
        list,
        item,
        fields,
    };
    s.submit(&headers, &f.csrf, change, back).await
}

async fn item_remove(
    s: Session,
    headers: HeaderMap,
    Path((circle, list, item)): Path<(String, String, String)>,
    axum::Form(f): axum::Form<StopForm>,
) -> Response {
    let back = format!("/c/{circle}/patient");
    let list = match patient_list(&s, &list, &back) {
        Ok(list) => list,
        Err(page) => return page,
    };
    let remove = ItemRemove {
        circle,
        list,
        item,
        reason: f.reason,
    };
    s.submit(&headers, &f.csrf, remove, back).await
}

/// A change of the patient file from one of its forms.
async fn patient_set(
    s: Session,
    headers: HeaderMap,
    circle: String,
    csrf: &str,
    change: PatientChange,
) -> Response {
    let back = format!("/c/{circle}/patient");
    let set = PatientSet {
        circle,
        change: Box::new(change),
    };
    s.submit(&headers, csrf, set, back).await
}

async fn identity_set(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let change = PatientChange {
        family_name: f.get("family_name"),
        given_names: f.get("given_names"),
        birth_date: f.get("birth_date"),
        sex: f.get("sex"),
        ins: f.get("ins"),
        // Left blank, the address and phone are cleared; the identity stays as it was.
        address: f.fields.get("address").map(|a| a.trim().to_string()),
        phone: f.fields.get("phone").map(|p| p.trim().to_string()),
        ..PatientChange::default()
    };
    patient_set(s, headers, circle, &f.csrf, change).await
}

async fn identity_verify(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let back = format!("/c/{circle}/patient");
    let document = match f.get("document").unwrap_or_default().parse() {
        Ok::<cercle_crdt::IdentityDocument, String>(d) => d,
        Err(e) => return s.bad(&e, &back),
    };
    let change = PatientChange {
        verify: true,
        verified_with: Some(document),
        ..PatientChange::default()
    };
    patient_set(s, headers, circle, &f.csrf, change).await
}

async fn consent_set(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let change = PatientChange {
        consent: f.get("status"),
        consent_scope: Some(f.get("scope").unwrap_or_default()),
        ..PatientChange::default()
    };
    patient_set(s, headers, circle, &f.csrf, change).await
}

async fn care_plan_set(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let change = PatientChange {
        care_plan: Some(f.get("text").unwrap_or_default()),
        ..PatientChange::default()
    };
    patient_set(s, headers, circle, &f.csrf, change).await
}

#[derive(Debug, serde::Deserialize)]
struct StopForm {
    #[serde(default)]
    csrf: String,
    reason: String,
}

async fn medication_stop(
    s: Session,
    headers: HeaderMap,
    Path((circle, medication)): Path<(String, String)>,
    axum::Form(f): axum::Form<StopForm>,
) -> Response {
    let back = format!("/c/{circle}/patient");
    let stop = MedicationStop {
        circle,
        medication,
        reason: f.reason,
    };
    s.submit(&headers, &f.csrf, stop, back).await
}

async fn reminder_set(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let back = format!("/c/{circle}/members");
    let hours = match f.get("hours").unwrap_or_default().parse::<u16>() {
        Ok(hours) => hours,
        Err(_) => return s.bad(s.ctx.lang.words().reminder_hours, &back),
    };
    s.submit(&headers, &f.csrf, ReminderSet { circle, hours }, back)
        .await
}

/// Records the patient's objection to sharing.
async fn consent_withdraw(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let back = format!("/c/{circle}/members");
    let reason = f.typed().remove("reason").unwrap_or_default();
    s.submit(&headers, &f.csrf, ConsentWithdraw { circle, reason }, back)
        .await
}

/// Closes the circle for good (the form's box must be ticked).
async fn circle_close(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<FieldsForm>,
) -> Response {
    let back = format!("/c/{circle}/members");
    if f.get("confirm").as_deref() != Some("yes") {
        return s.bad(s.ctx.lang.words().close_confirm, &back);
    }
    if let Err(refused) = s.check(&headers, &f.csrf) {
        return refused;
    }
    match s.ask(CircleClose { circle }, &back).await {
        Ok(_) => back_to("/#closed-circles".to_string()),
        Err(refused) => refused,
    }
}

#[derive(Debug, serde::Deserialize)]
struct TaskForm {
    #[serde(default)]
    csrf: String,
    title: String,
    /// The owner's member id, or blank for none.
    #[serde(default)]
    owner: String,
    #[serde(default)]
    due: String,
}

async fn task_add(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<TaskForm>,
) -> Response {
    let back = format!("/c/{circle}/patient");
    let add = TaskAdd {
        circle,
        title: f.title.trim().to_string(),
        owner: Some(f.owner.trim().to_string()).filter(|o| !o.is_empty()),
        due: Some(f.due.trim().to_string()).filter(|d| !d.is_empty()),
    };
    s.submit(&headers, &f.csrf, add, back).await
}

async fn task_done(
    s: Session,
    headers: HeaderMap,
    Path((circle, task)): Path<(String, String)>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    let back = format!("/c/{circle}/patient");
    s.submit(&headers, &f.csrf, TaskDone { circle, task }, back)
        .await
}

/// The messages. Reading the page writes nothing: the read receipts are a form the page
/// posts once shown (a GET from anywhere must not forge a medico-legal receipt).
async fn messages(s: Session, Path(circle): Path<String>) -> Response {
    let run = async {
        let (head, _, messages, me) = s.head(&circle, false).await?;
        Ok(page(ui::messages(&s.ctx, &head, &messages, &me)))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

/// This member has seen the circle's messages: their read receipts, with the form token.
async fn messages_read(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    let back = format!("/c/{circle}/messages");
    let read = MsgList {
        circle,
        mark_read: true,
    };
    s.submit(&headers, &f.csrf, read, back).await
}

async fn message_send(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<TextForm>,
) -> Response {
    let back = format!("/c/{circle}/messages");
    let send = MsgSend {
        circle,
        text: f.text.trim().to_string(),
        attachments: Vec::new(),
    };
    s.submit(&headers, &f.csrf, send, back).await
}

async fn documents(s: Session, Path(circle): Path<String>) -> Response {
    let run = async {
        let (head, _, _, _) = s.head(&circle, false).await?;
        let list = DocList {
            circle: head.id.clone(),
        };
        let docs = s.ask(list, "/").await?.documents;
        let names = s.names(&head.id).await?;
        Ok(page(ui::documents(&s.ctx, &head, &docs, &names)))
    };
    run.await.unwrap_or_else(|r| r)
}

/// A document upload (multipart): the form token must come before the file.
async fn document_add(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    mut form: Multipart,
) -> Response {
    let back = format!("/c/{circle}/documents");
    let run = async {
        let w = s.ctx.lang.words();
        // A file over the request's limit fails while it is read: said as too large.
        let bad = |e: &axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                s.bad(w.document_too_large, &back)
            } else {
                s.bad(&e.to_string(), &back)
            }
        };
        let mut checked = false;
        let mut file = None;
        while let Some(field) = form.next_field().await.map_err(|e| bad(&e))? {
            match field.name() {
                Some("csrf") => {
                    let given = field.text().await.map_err(|e| bad(&e))?;
                    s.check(&headers, &given)?;
                    checked = true;
                }
                Some("file") if checked => {
                    let name = field.file_name().unwrap_or("document").to_string();
                    let media_type = field
                        .content_type()
                        .unwrap_or("application/octet-stream")
                        .to_string();
                    let bytes = field.bytes().await.map_err(|e| bad(&e))?;
                    file = Some((name, media_type, bytes));
                }
                _ => {}
            }
        }
        if !checked {
            s.check(&headers, "")?;
        }
        let Some((name, media_type, bytes)) = file else {
            return Err(s.bad(w.choose_file, &back));
        };
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(s.bad(w.document_too_large, &back));
        }
        let add = DocAdd {
            circle: circle.clone(),
            name,
            media_type,
            content: hex::encode(&bytes),
        };
        s.ask(add, &back).await?;
        Ok(back_to(back.clone()))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

/// `bytes` as a file to save, named `name` (made safe for the header), never shown inline:
/// a member's file must not run as a page of this site.
fn download(bytes: Vec<u8>, content_type: &'static str, name: &str) -> Response {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{name}\"");
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    response
}

/// The circle as a FHIR R4 bundle, to save and hand to another care system.
async fn export_fhir(s: Session, Path(circle): Path<String>) -> Response {
    let back = format!("/c/{circle}/patient");
    let run = async {
        let export = Export {
            circle: circle.clone(),
            format: ExportFormat::Fhir,
        };
        let mut files = s.ask(export, &back).await?.files;
        if files.len() != 1 {
            let e = NodeError::internal("the FHIR export is not one file");
            return Err(s.refused(&e, &back));
        }
        let file = files.remove(0);
        let bytes = hex::decode(&file.content)
            .map_err(|e| s.refused(&NodeError::internal(e.to_string()), &back))?;
        let short: String = circle.chars().take(8).collect();
        let name = format!("cercle-{short}.fhir.json");
        Ok(download(bytes, "application/fhir+json", &name))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

/// A document's bytes, as a download (never shown inline: a member's file must not run
/// as a page of this site). Waits a while for a document being fetched from a member.
async fn document_get(s: Session, Path((circle, doc)): Path<(String, String)>) -> Response {
    let back = format!("/c/{circle}/documents");
    let run = async {
        let started = tokio::time::Instant::now();
        loop {
            let get = DocGet {
                circle: circle.clone(),
                doc: doc.clone(),
            };
            let got = s.ask(get, &back).await?;
            if let Some(content) = got.content {
                let bytes = hex::decode(content)
                    .map_err(|e| s.refused(&NodeError::internal(e.to_string()), &back))?;
                return Ok(download(
                    bytes,
                    "application/octet-stream",
                    &got.document.name,
                ));
            }
            if started.elapsed() >= FETCH_WAIT {
                let reason = format!(
                    "{} is not on this computer yet and no member holding it answered; try again when one is connected",
                    got.document.name
                );
                return Err(s.refused(&NodeError::new(ErrorKind::Unavailable, reason), &back));
            }
            tracing::debug!(name = %got.document.name, "waiting for a document from a member");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    run.await.unwrap_or_else(|r: Response| r)
}

/// What may be shown in the page, by what the content is (read from its first bytes, not
/// from the name or type its sender gave): photos and PDFs. Anything else (HTML, SVG,
/// scripts) is only ever downloaded.
fn viewable(bytes: &[u8]) -> Option<&'static str> {
    let kind = infer::get(bytes)?;
    matches!(
        kind.mime_type(),
        "image/jpeg" | "image/png" | "image/webp" | "image/gif" | "application/pdf"
    )
    .then(|| kind.mime_type())
}

/// A photo or PDF shown in the page (a thumbnail, or the PDF in the browser's viewer), if
/// its content is one and this computer holds it; never fetched from a member here.
async fn document_view(s: Session, Path((circle, doc)): Path<(String, String)>) -> Response {
    let back = format!("/c/{circle}/documents");
    let run = async {
        let got = s.ask(DocGet { circle, doc }, &back).await?;
        let bytes = got
            .content
            .and_then(|c| hex::decode(c).ok())
            .ok_or_else(|| StatusCode::NOT_FOUND.into_response())?;
        let Some(media_type) = viewable(&bytes) else {
            return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response());
        };
        let mut response = bytes.into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("inline"),
        );
        // An image opened on its own runs nothing; a PDF is left to the browser's viewer,
        // which a sandbox would block, with nothing else allowed to load.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(if media_type == "application/pdf" {
                "default-src 'none'; object-src 'self'; frame-ancestors 'none'"
            } else {
                "default-src 'none'; sandbox"
            }),
        );
        Ok(response)
    };
    run.await.unwrap_or_else(|r: Response| r)
}

/// The members page's query: a search of the directory, to invite a colleague.
#[derive(Debug, Default, serde::Deserialize)]
struct MembersQuery {
    #[serde(default)]
    annuaire: Option<String>,
}

async fn members(
    s: Session,
    Path(circle): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Response {
    let back = format!("/c/{circle}/members");
    let run = async {
        let (head, _, _, me) = s.head(&circle, false).await?;
        let summary = s.summary(&head.id).await?;
        let search = match q.annuaire.filter(|q| !q.trim().is_empty()) {
            Some(query) => {
                let found = s
                    .ask(
                        DirectorySearch {
                            query: query.clone(),
                        },
                        &back,
                    )
                    .await?;
                Some(ui::DirectoryResults {
                    query,
                    professionals: found.professionals,
                })
            }
            None => None,
        };
        Ok(page(ui::members(
            &s.ctx,
            &head,
            &summary,
            &me,
            None,
            search.as_ref(),
        )))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

#[derive(Debug, serde::Deserialize)]
struct InviteForm {
    #[serde(default)]
    csrf: String,
    role: String,
    validity: String,
}

/// A new invite code, shown at once with its QR on the members page (not redirected: the
/// code is shown once and never put in a URL).
async fn invite_create(
    s: Session,
    headers: HeaderMap,
    Path(circle): Path<String>,
    axum::Form(f): axum::Form<InviteForm>,
) -> Response {
    let back = format!("/c/{circle}/members");
    let run = async {
        s.check(&headers, &f.csrf)?;
        let role = f
            .role
            .parse()
            .map_err(|e: cercle_crdt::member::ParseRoleError| s.bad(&e.to_string(), &back))?;
        let millis = crate::invite::parse_validity(&f.validity).map_err(|e| s.bad(&e, &back))?;
        let create = InviteCreate {
            circle: circle.clone(),
            role,
            expires_in: millis.unsigned_abs() / 1000,
        };
        let invite = s.ask(create, &back).await?;
        let (head, _, _, me) = s.head(&circle, false).await?;
        let summary = s.summary(&head.id).await?;
        let mut ctx = s.ctx.clone();
        ctx.here = back.clone();
        Ok(page(ui::members(
            &ctx,
            &head,
            &summary,
            &me,
            Some(&invite),
            None,
        )))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

async fn audit(s: Session, Path(circle): Path<String>) -> Response {
    let back = format!("/c/{circle}");
    let run = async {
        let head = match s.head(&circle, false).await {
            Ok((head, _, _, _)) => head,
            // A circle closed here: its trail without content.
            Err(refused) => {
                let list = s.ask(CircleList {}, &back).await?;
                let Some(c) = list.closed.iter().find(|c| c.circle == circle) else {
                    return Err(refused);
                };
                CircleHead {
                    id: c.circle.clone(),
                    patient: format!(
                        "{} {}",
                        s.ctx.lang.words().closed_circles,
                        &c.circle[..12.min(c.circle.len())]
                    ),
                    alerts: 0,
                    unread: 0,
                    role: String::new(),
                    team: false,
                    closed: true,
                    suspended: None,
                    emergency: Vec::new(),
                }
            }
        };
        let trail = s
            .ask(
                Audit {
                    circle: head.id.clone(),
                    since: None,
                },
                &back,
            )
            .await?;
        Ok(page(ui::audit(&s.ctx, &head, &trail)))
    };
    run.await.unwrap_or_else(|r: Response| r)
}

async fn activity(s: Session, Path(circle): Path<String>) -> Response {
    let run = async {
        let (head, notes, messages, _) = s.head(&circle, false).await?;
        let now = jiff::Timestamp::now().as_millisecond();
        Ok(page(ui::activity(&s.ctx, &head, &notes, &messages, now)))
    };
    run.await.unwrap_or_else(|r: Response| r)
}
