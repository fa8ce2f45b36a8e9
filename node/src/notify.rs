//! Notifications that leave the machine: when an alert from another member arrives, the
//! webhook a member set (`cercle config set notify.webhook URL`: a phone's push service,
//! an SMS gateway) receives `{"event":"alert","circle":"<handle>","count":N}`. Nothing in
//! it names the patient, the note or the circle: the handle is a keyed hash of the circle
//! id under a secret that never leaves this home, so neither the service nor a relay can
//! link it to a circle, and the same circle always has the same handle here.
//!
//! The sender is bounded: one request at a time with a timeout, a short queue whose
//! overflow is dropped and counted (the next alert carries the count anyway), no retry
//! storm when the service is down.

use std::path::Path;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::api::NodeEvent;

/// The file of this home holding the key of the circles' handles.
pub const KEY_FILE: &str = "notify-key";
/// How long one delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A delivery that failed is tried once more after this pause.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Why a webhook cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("the webhook {0:?} is not a URL (e.g. https://sms.example.fr/hook?key=...)")]
    NotAUrl(String),
    #[error(
        "the webhook must use https (plain http is allowed only to this machine, 127.0.0.1 or localhost)"
    )]
    NotPrivate,
    #[error("cannot keep the notification key in {path}: {reason}")]
    Key { path: String, reason: String },
}

/// Where alerts are announced, and the key that makes circle handles opaque.
#[derive(Clone)]
pub struct Webhook {
    url: reqwest::Url,
    key: [u8; 32],
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry the service's credentials: only its host is shown.
        f.debug_struct("Webhook")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

/// Checks a webhook URL as `config set` and `up` take it.
pub fn check_url(url: &str) -> Result<reqwest::Url, NotifyError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| NotifyError::NotAUrl(url.to_string()))?;
    let local = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if local => Ok(parsed),
        "http" => Err(NotifyError::NotPrivate),
        _ => Err(NotifyError::NotAUrl(url.to_string())),
    }
}

impl Webhook {
    /// The webhook at `url` for the home `home`, whose handle key is made on first use.
    pub fn new(url: &str, home: &Path) -> Result<Webhook, NotifyError> {
        let url = check_url(url)?;
        let path = home.join(KEY_FILE);
        let failed = |reason: String| NotifyError::Key {
            path: path.display().to_string(),
            reason,
        };
        let key = match std::fs::read(&path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| failed("not 32 bytes; remove it and a new one is made".into()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| failed(e.to_string()))?;
                crate::home::write_private(&path, &key).map_err(|e| failed(e.to_string()))?;
                key
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        Ok(Webhook { url, key })
    }

    /// The opaque handle of a circle: the same here every time, unlinkable elsewhere.
    pub fn handle(&self, circle: &str) -> String {
        let hash = blake3::keyed_hash(&self.key, circle.as_bytes());
        hex::encode(&hash.as_bytes()[..8])
    }

    /// What the service receives for `open` alerts waiting in `circle`: `event` is
    /// `alert` (one arrived) or `reminder` (some waited past the circle's delay).
    pub fn payload(&self, event: &str, circle: &str, open: usize) -> serde_json::Value {
        serde_json::json!({ "event": event, "circle": self.handle(circle), "count": open })
    }

    /// Announces each alert event of `events` until the node stops.
    pub async fn run(self, mut events: broadcast::Receiver<NodeEvent>) {
        let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "notifications are off: no HTTP client");
                return;
            }
        };
        let host = self.url.host_str().unwrap_or_default().to_string();
        loop {
            let (event, circle, open) = match events.recv().await {
                Ok(NodeEvent::Alert { circle, open }) => ("alert", circle, open),
                Ok(NodeEvent::Reminder { circle, open }) => ("reminder", circle, open),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "notifications fell behind the node's events");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let body = self.payload(event, &circle, open);
            for attempt in 1..=2 {
                match client.post(self.url.clone()).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        tracing::info!(%host, event, "an alert was announced to the webhook");
                        break;
                    }
                    Ok(r) => {
                        tracing::warn!(%host, status = %r.status(), attempt, "the webhook refused a notification")
                    }
                    // Without the URL: it may carry the service's credentials.
                    Err(e) => {
                        tracing::warn!(%host, error = %e.without_url(), attempt, "the webhook could not be reached")
                    }
                }
                if attempt == 1 {
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_stable_per_home_and_differ_between_homes() {
        let (a, b) = (tempfile::tempdir(), tempfile::tempdir());
        let (Ok(a), Ok(b)) = (a, b) else { return };
        let url = "http://127.0.0.1:9/hook";
        let one = Webhook::new(url, a.path()).map(|w| w.handle("c1")).ok();
        let again = Webhook::new(url, a.path()).map(|w| w.handle("c1")).ok();
        let other_home = Webhook::new(url, b.path()).map(|w| w.handle("c1")).ok();
        assert!(one.is_some());
        assert_eq!(one, again);
        assert_ne!(one, other_home);
        // A circle id with letters no hex handle has: found in the payload only if leaked.
        let payload = Webhook::new(url, a.path())
            .map(|w| w.payload("alert", "circle-jeanne", 2))
            .ok();
        let text = payload.map(|p| p.to_string()).unwrap_or_default();
        assert!(
            !text.contains("circle-jeanne") && text.contains("\"count\":2"),
            "{text}"
        );
    }

    #[test]
    fn plain_http_goes_only_to_this_machine() {
        assert!(check_url("https://sms.example.fr/hook?key=1").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(matches!(
            check_url("http://sms.example.fr/hook"),
            Err(NotifyError::NotPrivate)
        ));
        assert!(matches!(check_url("ftp://x"), Err(NotifyError::NotAUrl(_))));
        assert!(matches!(
            check_url("sms.example.fr"),
            Err(NotifyError::NotAUrl(_))
        ));
    }
}
