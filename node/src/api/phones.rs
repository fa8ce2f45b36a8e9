//! The member's phones and tablets paired with this node's web UI on the LAN (see
//! [`super::lan`]). A phone pairs by opening the one-time link of the QR the desktop page
//! shows: the link's secret (128 bits, valid [`PAIRING_VALIDITY`], once) opens a session of
//! its own for that phone, named by the member, listed with its last use and revocable at
//! any time from the desktop page. Nothing else on the LAN gets in: the LAN listener serves
//! nothing without such a session but the pairing page.
//!
//! The sessions survive restarts: `phones.json` in the home keeps each one's name, dates and
//! the hash of its cookie (never the cookie itself). Form tokens live in memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Phones paired at once, at most.
pub const MAX_PHONES: usize = 16;
/// How long a pairing QR is valid.
pub const PAIRING_VALIDITY: Duration = Duration::from_secs(10 * 60);
/// Pairing links open at once, at most (the newest replace the oldest).
const MAX_PAIRINGS: usize = 4;
/// The longest name of a phone.
pub const MAX_NAME_CHARS: usize = 60;
/// How often a phone's last use is written to the home, at most.
const WRITE_USE_EVERY_MS: i64 = 60_000;
const FILE: &str = "phones.json";

/// A paired phone, as the desktop page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    /// A short id (the first bytes of the session's hash), to revoke it by.
    pub id: String,
    pub name: String,
    /// Milliseconds since the epoch.
    pub paired_at: i64,
    pub last_used: i64,
    /// BLAKE3 of the session cookie, hex.
    session_hash: String,
}

#[derive(Default)]
struct State {
    phones: Vec<Phone>,
    /// Form tokens of the sessions seen since the start, by session hash.
    forms: BTreeMap<String, Zeroizing<String>>,
    /// Open pairing secrets' hashes, and when each was made.
    pairings: Vec<(blake3::Hash, Instant)>,
    /// When each phone's last use was last written.
    written: BTreeMap<String, i64>,
}

/// The paired phones of one node (shared by its loopback and LAN servers).
#[derive(Clone)]
pub struct Phones {
    state: Arc<Mutex<State>>,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Phones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phones")
            .field("paired", &self.lock().phones.len())
            .finish()
    }
}

/// A phone's session found: its id and form token.
#[derive(Debug, Clone)]
pub struct PhoneSession {
    pub id: String,
    pub name: String,
    pub form_token: Zeroizing<String>,
}

/// Why a phone could not pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    #[error("this pairing link is unknown, already used or expired: show a new QR on the computer")]
    Unknown,
    #[error("{MAX_PHONES} phones are paired already: revoke one first")]
    TooMany,
    #[error("no randomness for a session")]
    Random,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Phones {
    /// The phones kept in `home` (none if it has no file yet).
    pub fn load(home: &std::path::Path) -> Phones {
        let file = home.join(FILE);
        let phones: Vec<Phone> = if file.exists() {
            crate::home::read_json(&file).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the paired phones could not be read; pair them again");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        Phones {
            state: Arc::new(Mutex::new(State {
                phones,
                ..State::default()
            })),
            file: Some(file),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self, state: &State) {
        if let Some(file) = &self.file
            && let Err(e) = crate::home::write_json(file, &state.phones)
        {
            tracing::error!(error = %e, "the paired phones could not be written");
        }
    }

    /// A new one-time pairing secret, for the QR.
    pub fn start_pairing(&self, now: Instant) -> Result<Zeroizing<String>, PhoneError> {
        let secret = super::token::new_token().map_err(|_| PhoneError::Random)?;
        let mut state = self.lock();
        state
            .pairings
            .retain(|(_, at)| now.saturating_duration_since(*at) < PAIRING_VALIDITY);
        while state.pairings.len() >= MAX_PAIRINGS {
            state.pairings.remove(0);
        }
        state.pairings.push((blake3::hash(secret.as_bytes()), now));
        Ok(secret)
    }

    /// Pairs a phone named `name` with `secret` (used up); returns its session cookie.
    pub fn pair(
        &self,
        secret: &str,
        name: &str,
        now: Instant,
    ) -> Result<Zeroizing<String>, PhoneError> {
        let hash = blake3::hash(secret.as_bytes());
        let mut state = self.lock();
        let found = state.pairings.iter().position(|(h, at)| {
            // blake3::Hash compares in constant time.
            *h == hash && now.saturating_duration_since(*at) < PAIRING_VALIDITY
        });
        let Some(i) = found else {
            return Err(PhoneError::Unknown);
        };
        if state.phones.len() >= MAX_PHONES {
            return Err(PhoneError::TooMany);
        }
        state.pairings.remove(i);
        let session = super::token::new_token().map_err(|_| PhoneError::Random)?;
        let session_hash = blake3::hash(session.as_bytes()).to_hex().to_string();
        let name: String = name
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME_CHARS)
            .collect();
        let at = now_ms();
        state.phones.push(Phone {
            id: session_hash[..12].to_string(),
            name: if name.is_empty() {
                "Téléphone".into()
            } else {
                name
            },
            paired_at: at,
            last_used: at,
            session_hash,
        });
        self.save(&state);
        Ok(session)
    }

    /// The phone whose session cookie is `session`, if paired; its last use is noted.
    pub fn find(&self, session: &str) -> Option<PhoneSession> {
        let computed = blake3::hash(session.as_bytes());
        let hash = computed.to_hex().to_string();
        let mut state = self.lock();
        let at = now_ms();
        // blake3::Hash compares in constant time.
        let phone = state
            .phones
            .iter_mut()
            .find(|p| blake3::Hash::from_hex(&p.session_hash).is_ok_and(|h| h == computed))?;
        phone.last_used = at;
        let (id, name) = (phone.id.clone(), phone.name.clone());
        let due = state
            .written
            .get(&id)
            .is_none_or(|w| at - w >= WRITE_USE_EVERY_MS);
        if due {
            state.written.insert(id.clone(), at);
            self.save(&state);
        }
        let form_token = match state.forms.get(&hash) {
            Some(t) => t.clone(),
            None => {
                let t = super::token::new_token().ok()?;
                state.forms.insert(hash, t.clone());
                t
            }
        };
        Some(PhoneSession {
            id,
            name,
            form_token,
        })
    }

    /// The paired phones, most recently used first.
    pub fn list(&self) -> Vec<Phone> {
        let mut phones = self.lock().phones.clone();
        phones.sort_by_key(|p| std::cmp::Reverse(p.last_used));
        phones
    }

    /// Revokes the phone `id`: its session opens nothing from now on.
    pub fn revoke(&self, id: &str) -> bool {
        let mut state = self.lock();
        let Some(i) = state.phones.iter().position(|p| p.id == id) else {
            return false;
        };
        let gone = state.phones.remove(i);
        state.forms.remove(&gone.session_hash);
        self.save(&state);
        tracing::info!(phone = %gone.id, "a phone's session was revoked");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pairing_link_opens_one_session_once_and_a_revoked_session_opens_nothing() {
        let home = tempfile::tempdir().unwrap();
        let phones = Phones::load(home.path());
        let now = Instant::now();
        let secret = phones.start_pairing(now).unwrap();
        assert_eq!(phones.pair("guess", "x", now), Err(PhoneError::Unknown));
        let session = phones
            .pair(&secret, "Téléphone de Claire\u{7}", now)
            .unwrap();
        assert_eq!(phones.pair(&secret, "again", now), Err(PhoneError::Unknown));
        let found = phones.find(&session).unwrap();
        assert_eq!(found.name, "Téléphone de Claire");
        assert!(phones.find("not a session").is_none());
        // Kept across a restart, the cookie itself never written.
        let text = std::fs::read_to_string(home.path().join(FILE)).unwrap();
        assert!(!text.contains(session.as_str()));
        let again = Phones::load(home.path());
        assert_eq!(again.find(&session).map(|s| s.id), Some(found.id.clone()));
        assert!(again.revoke(&found.id));
        assert!(again.find(&session).is_none());
        assert!(Phones::load(home.path()).find(&session).is_none());
        // An old link has expired.
        let old = phones.start_pairing(now).unwrap();
        let later = now + PAIRING_VALIDITY + Duration::from_secs(1);
        assert_eq!(phones.pair(&old, "x", later), Err(PhoneError::Unknown));
    }
}
