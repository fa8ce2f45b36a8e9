//! The local API's token: the secret that lets the `cercle` command, scripts and a
//! browser's sign-in reach the node. It is kept in the home's `api-token` file (mode 0600)
//! so the links `cercle up` prints stay valid across restarts, and it can be replaced at
//! any time (`cercle config rotate-token`), running or not.
//!
//! A client never sends the token to an address before the listener there has proven it
//! knows it: `GET /api/v1/hello?nonce=N` answers a keyed hash of the nonce under a key
//! derived from the token, which says nothing about the token itself. A stale `api.json`
//! naming a port that another program now holds thus leaks nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

use super::{ApiError, TOKEN_FILE};

/// Bytes of randomness in a token (shown as 64 hex digits).
const TOKEN_BYTES: usize = 32;
/// Bytes in a proof's nonce.
pub const NONCE_BYTES: usize = 32;

/// The token of a running node: checked on every call, replaced by a rotation.
#[derive(Clone)]
pub struct ApiToken {
    current: Arc<RwLock<Zeroizing<String>>>,
    home: PathBuf,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself: a debug line may end up in a log.
        f.debug_struct("ApiToken")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// The home's token, made and written there the first time.
    pub fn load(home: &Path) -> Result<Self, ApiError> {
        Ok(Self {
            current: Arc::new(RwLock::new(home_token(home)?)),
            home: home.to_path_buf(),
        })
    }

    /// The token now (to write into `api.json`).
    pub fn current(&self) -> Zeroizing<String> {
        match self.current.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether `given` is the token, compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        same_secret(given, &self.current())
    }

    /// The proof of knowing the token for `nonce`.
    pub fn proof(&self, nonce: &[u8]) -> String {
        proof(&self.current(), nonce)
    }

    /// Replaces the token with a new one, in the home's file first: a crash in between
    /// leaves the new token on disk, never an old one that was meant to be revoked.
    pub fn rotate(&self) -> Result<Zeroizing<String>, ApiError> {
        let token = write_new_token(&self.home)?;
        match self.current.write() {
            Ok(mut t) => *t = token.clone(),
            Err(poisoned) => *poisoned.into_inner() = token.clone(),
        }
        Ok(token)
    }
}

/// The proof that a listener knows `token`, for a client's `nonce`: a keyed BLAKE3 hash
/// under a key derived from the token (hex).
pub fn proof(token: &str, nonce: &[u8]) -> String {
    let key = blake3::derive_key("cercle local API proof v1", token.as_bytes());
    blake3::keyed_hash(&key, nonce).to_hex().to_string()
}

/// A fresh nonce for [`proof`], or `None` if the system has no randomness.
pub fn new_nonce() -> Option<[u8; NONCE_BYTES]> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).ok()?;
    Some(nonce)
}

/// Whether two secrets are equal, compared in constant time whatever their lengths
/// (BLAKE3 hashes compare in constant time).
pub fn same_secret(given: &str, secret: &str) -> bool {
    blake3::hash(given.as_bytes()) == blake3::hash(secret.as_bytes())
}

/// A new random token (256 bits, hex).
pub fn new_token() -> Result<Zeroizing<String>, String> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    getrandom::fill(&mut bytes[..]).map_err(|e| format!("no randomness for the API token: {e}"))?;
    Ok(Zeroizing::new(hex::encode(&bytes[..])))
}

/// The home's token: the one kept in [`TOKEN_FILE`], or a new one written there.
pub fn home_token(home: &Path) -> Result<Zeroizing<String>, ApiError> {
    let path = home.join(TOKEN_FILE);
    match std::fs::read_to_string(&path).map(Zeroizing::new) {
        Ok(t) if is_token_text(t.trim()) => return Ok(Zeroizing::new(t.trim().to_string())),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the API token file is damaged; a new token is made");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ApiError::Read {
                path,
                reason: e.to_string(),
            });
        }
    }
    write_new_token(home)
}

/// Makes a new token and writes it into the home's [`TOKEN_FILE`] (for a rotation while
/// the node is stopped, or the first start).
pub fn write_new_token(home: &Path) -> Result<Zeroizing<String>, ApiError> {
    let path = home.join(TOKEN_FILE);
    let token = new_token().map_err(|reason| ApiError::Write {
        path: path.clone(),
        reason,
    })?;
    crate::home::write_private(&path, token.as_bytes()).map_err(|e| ApiError::Write {
        path,
        reason: e.to_string(),
    })?;
    Ok(token)
}

fn is_token_text(t: &str) -> bool {
    t.len() == 2 * TOKEN_BYTES && t.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_a_restart_and_a_rotation_replaces_it_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApiToken::load(dir.path()).unwrap().current();
        let token = ApiToken::load(dir.path()).unwrap();
        assert_eq!(token.current(), first);
        let new = token.rotate().unwrap();
        assert_ne!(new, first);
        assert!(token.matches(&new) && !token.matches(&first));
        assert_eq!(ApiToken::load(dir.path()).unwrap().current(), new);
    }

    #[test]
    fn a_proof_depends_on_the_token_and_the_nonce_and_hides_the_token() {
        let a = proof("a".repeat(64).as_str(), b"n1");
        assert_eq!(a, proof("a".repeat(64).as_str(), b"n1"));
        assert_ne!(a, proof("a".repeat(64).as_str(), b"n2"));
        assert_ne!(a, proof("b".repeat(64).as_str(), b"n1"));
        assert!(!a.contains(&"a".repeat(8)));
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }

    #[test]
    fn the_debug_form_never_shows_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let token = ApiToken::load(dir.path()).unwrap();
        assert!(!format!("{token:?}").contains(token.current().as_str()));
    }
}
