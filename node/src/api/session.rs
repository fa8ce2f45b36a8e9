//! The web UI's sessions: random ids the server keeps, each with its own form token. A
//! browser's cookie holds only the id, never the API token, so a cookie sent to another
//! service of this machine (browsers send cookies to every port of 127.0.0.1) is worth one
//! session, ended by logout, by idleness, by its age or by a rotation of the token.
//!
//! Sessions live in memory: a restart of the node signs everyone out, and a flood of
//! sign-ins holds at most [`MAX_SESSIONS`] of them (the least recently used goes first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// Sessions kept at once, at most (a care team's browsers, with room to spare).
pub(super) const MAX_SESSIONS: usize = 64;
/// A session unused this long is ended (a working day).
pub(super) const IDLE: Duration = Duration::from_secs(12 * 3600);
/// A session is ended this long after its sign-in, used or not.
pub(super) const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

struct Entry {
    form_token: Zeroizing<String>,
    started: Instant,
    seen: Instant,
}

/// The sessions of one node's web UI.
#[derive(Clone, Default)]
pub(super) struct Sessions {
    // Keyed by a hash of the id, so a lookup's timing says nothing about the ids.
    open: Arc<Mutex<HashMap<blake3::Hash, Entry>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("open", &self.lock().len())
            .finish()
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<blake3::Hash, Entry>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session (after a right token) and returns its id, the cookie's value.
    /// `None` if the system has no randomness.
    pub(super) fn open(&self, now: Instant) -> Option<Zeroizing<String>> {
        let id = super::token::new_token().ok()?;
        let form_token = super::token::new_token().ok()?;
        let mut open = self.lock();
        open.retain(|_, e| alive(e, now));
        while open.len() >= MAX_SESSIONS {
            let Some(oldest) = open.iter().min_by_key(|(_, e)| e.seen).map(|(k, _)| *k) else {
                break;
            };
            open.remove(&oldest);
        }
        open.insert(
            blake3::hash(id.as_bytes()),
            Entry {
                form_token,
                started: now,
                seen: now,
            },
        );
        Some(id)
    }

    /// The form token of the session `id`, if it is open; the session is marked used.
    pub(super) fn find(&self, id: &str, now: Instant) -> Option<Zeroizing<String>> {
        let key = blake3::hash(id.as_bytes());
        let mut open = self.lock();
        let entry = open.get_mut(&key)?;
        if !alive(entry, now) {
            open.remove(&key);
            return None;
        }
        entry.seen = now;
        Some(entry.form_token.clone())
    }

    /// Ends the session `id` (logout).
    pub(super) fn end(&self, id: &str) {
        self.lock().remove(&blake3::hash(id.as_bytes()));
    }

    /// Ends every session (the token was replaced).
    pub(super) fn end_all(&self) {
        self.lock().clear();
    }
}

fn alive(e: &Entry, now: Instant) -> bool {
    now.saturating_duration_since(e.seen) < IDLE
        && now.saturating_duration_since(e.started) < LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_until_it_is_ended() {
        let s = Sessions::default();
        let now = Instant::now();
        let a = s.open(now).unwrap();
        let b = s.open(now).unwrap();
        assert_ne!(a, b);
        let form_a = s.find(&a, now).unwrap();
        assert_ne!(Some(form_a.clone()), s.find(&b, now));
        assert_eq!(s.find(&a, now), Some(form_a));
        assert_eq!(s.find("not a session", now), None);
        s.end(&a);
        assert_eq!(s.find(&a, now), None);
        assert!(s.find(&b, now).is_some());
        s.end_all();
        assert_eq!(s.find(&b, now), None);
    }

    #[test]
    fn an_idle_or_old_session_is_ended() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.open(t0).unwrap();
        assert!(s.find(&a, t0 + IDLE - Duration::from_secs(1)).is_some());
        assert!(s.find(&a, t0 + 2 * IDLE - Duration::from_secs(2)).is_some());
        assert!(s.find(&a, t0 + 3 * IDLE).is_none(), "idle");
        let b = s.open(t0).unwrap();
        let mut t = t0;
        while t < t0 + LIFETIME - IDLE {
            t += IDLE / 2;
            assert!(s.find(&b, t).is_some());
        }
        assert!(s.find(&b, t0 + LIFETIME).is_none(), "too old");
    }

    #[test]
    fn a_flood_of_sign_ins_keeps_the_bound_and_drops_the_least_recently_used() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let kept = s.open(t0).unwrap();
        for i in 1..=3 * MAX_SESSIONS as u64 {
            let now = t0 + Duration::from_millis(i);
            s.open(now).unwrap();
            if i % 8 == 0 {
                assert!(s.find(&kept, now).is_some(), "used, so kept");
            }
        }
        assert!(s.lock().len() <= MAX_SESSIONS);
    }
}
