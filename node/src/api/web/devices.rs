//! The web UI's device pages: on the computer (127.0.0.1), the member's devices (a pairing
//! code for a new one, a lost one revoked) and phones (a pairing QR for the LAN page, the
//! paired ones listed and revoked); on the LAN, a phone's pairing page, and what a phone
//! that is not paired sees. Device management is never served to a phone.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::{CsrfForm, PHONE_COOKIE, Session, language, page};
use crate::api::server::Api;
use crate::api::ui::{self, words::Lang};
use crate::ops::NodeError;
use crate::ops::devices::{DeviceList, DevicePair, DeviceRevoke};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/devices", get(devices))
        .route("/devices/pair", post(device_pair))
        .route("/devices/{device}/revoke", post(device_revoke))
        .route("/phones/pair", post(phone_pairing))
        .route("/phones/{phone}/revoke", post(phone_revoke))
        .route("/phone/pair", get(phone_pair_page).post(phone_pair))
        .route("/manifest.webmanifest", get(manifest))
        .route("/ui/icon.svg", get(icon))
}

/// What a phone that is not paired gets on the LAN: how to pair it, nothing else.
pub(super) fn not_paired(lang: Lang) -> Response {
    (StatusCode::UNAUTHORIZED, ui::not_paired(lang)).into_response()
}

impl Session {
    /// Device management is the computer's: a phone is refused it.
    fn on_computer(&self) -> Result<(), Response> {
        if self.ctx.phone {
            let e = NodeError::not_allowed(self.ctx.lang.words().devices_on_computer);
            return Err(self.refused(&e, "/"));
        }
        Ok(())
    }

    async fn devices_page(
        &self,
        code: Option<&crate::ops::devices::PairingCode>,
        phone_link: Option<&str>,
    ) -> Result<Response, Response> {
        self.on_computer()?;
        let list = self.ask(DeviceList {}, "/").await?;
        let phones = self.api.phones.list();
        let lan = self.api.lan.as_deref();
        Ok(page(ui::devices(
            &self.ctx, &list, &phones, lan, code, phone_link,
        )))
    }
}

async fn devices(s: Session) -> Response {
    s.devices_page(None, None).await.unwrap_or_else(|r| r)
}

async fn device_pair(
    s: Session,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.on_computer().and_then(|()| s.check(&headers, &f.csrf)) {
        return r;
    }
    let code = match s.ask(DevicePair {}, "/devices").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    s.devices_page(Some(&code), None)
        .await
        .unwrap_or_else(|r| r)
}

async fn device_revoke(
    s: Session,
    headers: HeaderMap,
    Path(device): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.on_computer() {
        return r;
    }
    if !super::is_whole_id(&device) {
        return s.refused(&NodeError::not_found("no such device"), "/devices");
    }
    s.submit(
        &headers,
        &f.csrf,
        DeviceRevoke { device },
        "/devices".into(),
    )
    .await
}

/// A pairing QR for a phone: a one-time link to the LAN page.
async fn phone_pairing(
    s: Session,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.on_computer().and_then(|()| s.check(&headers, &f.csrf)) {
        return r;
    }
    let Some(lan) = s.api.lan.clone() else {
        let e = NodeError::unavailable(s.ctx.lang.words().phones_off);
        return s.refused(&e, "/devices");
    };
    let secret = match s.api.phones.start_pairing(std::time::Instant::now()) {
        Ok(secret) => secret,
        Err(e) => return s.refused(&NodeError::internal(e.to_string()), "/devices"),
    };
    let link = format!("{}/phone/pair?code={}", lan.base, secret.as_str());
    s.devices_page(None, Some(&link))
        .await
        .unwrap_or_else(|r| r)
}

async fn phone_revoke(
    s: Session,
    headers: HeaderMap,
    Path(phone): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = s.on_computer().and_then(|()| s.check(&headers, &f.csrf)) {
        return r;
    }
    if !s.api.phones.revoke(&phone) {
        return s.refused(&NodeError::not_found("no such phone"), "/devices");
    }
    Redirect::to("/devices").into_response()
}

#[derive(Debug, serde::Deserialize)]
struct PairQuery {
    #[serde(default)]
    code: String,
}

/// The page a phone opens from the QR: the phone's name, and a button.
async fn phone_pair_page(
    State(api): State<Api>,
    jar: CookieJar,
    Query(q): Query<PairQuery>,
) -> Response {
    if !api.on_lan {
        return StatusCode::NOT_FOUND.into_response();
    }
    page(ui::phone_pair(language(&api, &jar), &q.code, None))
}

#[derive(Debug, serde::Deserialize)]
struct PhonePairForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
}

/// Pairs the phone: the link's secret, used up, opens its own session.
async fn phone_pair(
    State(api): State<Api>,
    headers: HeaderMap,
    jar: CookieJar,
    axum::Form(f): axum::Form<PhonePairForm>,
) -> Response {
    let lang = language(&api, &jar);
    if !api.on_lan {
        return StatusCode::NOT_FOUND.into_response();
    }
    // A browser says where the form came from: this very page.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let same_site = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_none_or(|o| o == format!("https://{host}"));
    let paired = if same_site {
        api.phones
            .pair(f.code.trim(), &f.name, std::time::Instant::now())
            .map_err(|e| e.to_string())
    } else {
        Err("refused".to_string())
    };
    match paired {
        Ok(session) => {
            tracing::info!("a phone was paired with the web UI");
            let cookie = Cookie::build((PHONE_COOKIE, session.to_string()))
                .http_only(true)
                .secure(true)
                .same_site(SameSite::Strict)
                .path("/")
                .permanent()
                .build();
            (jar.add(cookie), Redirect::to("/")).into_response()
        }
        Err(_) => {
            tracing::warn!("a phone pairing with an unknown or spent link was refused");
            let w = lang.words();
            (
                StatusCode::FORBIDDEN,
                ui::phone_pair(lang, "", Some(w.phone_pair_refused)),
            )
                .into_response()
        }
    }
}

/// The web app manifest: the page installs on a phone's home screen.
async fn manifest(State(api): State<Api>, jar: CookieJar) -> Response {
    let w = language(&api, &jar).words();
    let body = serde_json::json!({
        "name": "Cercle",
        "short_name": "Cercle",
        "description": w.manifest_description,
        "lang": language(&api, &jar).code(),
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#f4f6f8",
        "theme_color": "#1d4e89",
        "icons": [
            { "src": "/ui/icon.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "any" },
            { "src": "/ui/icon.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "maskable" }
        ]
    });
    (
        [(header::CONTENT_TYPE, "application/manifest+json")],
        body.to_string(),
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        include_str!("../ui/icon.svg"),
    )
        .into_response()
}
