//! The key file: a node's secret keys, encrypted at rest with a passphrase.
//!
//! Argon2id (memory-hard) stretches the passphrase into a 32-byte key; XChaCha20-Poly1305
//! encrypts the secrets with a random 24-byte nonce. The KDF parameters, the format version
//! and the `insecure` flag are authenticated as associated data, so none can be altered to
//! weaken the file. A wrong passphrase and a tampered file both fail the authentication tag.
//!
//! `insecure` files (for demos only) use the empty passphrase and are marked so everywhere.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Why a key file could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The passphrase does not open the file (or the file was altered).
    #[error("wrong passphrase for the key file (or the file was altered)")]
    WrongPassphrase,
    /// A format version this program does not know.
    #[error("key file format {0} is not supported by this version of cercle")]
    UnknownVersion(u32),
    /// Parameters outside what this program accepts (a forged file could ask for terabytes).
    #[error("the key file's parameters are invalid: {0}")]
    BadParameters(String),
    /// The system's randomness failed.
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// Argon2id parameters, stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// The parameters new key files use: 64 MiB, 3 passes (above OWASP's minimum for
    /// Argon2id), about a third of a second on a laptop.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };

    /// Cheap parameters for tests and demos (never for real keys).
    pub const FAST_INSECURE: KdfParams = KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    };

    fn check(&self) -> Result<Params, KeyFileError> {
        if self.m_kib > 4 * 1024 * 1024 || self.t > 64 || self.p > 16 {
            return Err(KeyFileError::BadParameters(format!("{self:?}")));
        }
        Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| KeyFileError::BadParameters(e.to_string()))
    }
}

const VERSION: u32 = 1;

/// The key file as stored (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub kdf: KdfParams,
    /// Argon2 salt (hex).
    pub salt: String,
    /// XChaCha20-Poly1305 nonce (hex).
    pub nonce: String,
    /// Encrypted secrets and tag (hex).
    pub ciphertext: String,
    /// Sealed with the empty passphrase, for demos only.
    pub insecure: bool,
}

fn associated_data(version: u32, kdf: &KdfParams, salt: &str, insecure: bool) -> Vec<u8> {
    format!(
        "cercle key file v{version} argon2id m={} t={} p={} salt={salt} insecure={insecure}",
        kdf.m_kib, kdf.t, kdf.p
    )
    .into_bytes()
}

fn derive_key(
    passphrase: &str,
    salt: &[u8],
    kdf: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let params = kdf.check()?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| KeyFileError::BadParameters(e.to_string()))?;
    Ok(key)
}

impl KeyFile {
    /// Encrypts `secrets` with `passphrase` (`None`: insecure demo file).
    pub fn seal(
        secrets: &[u8],
        passphrase: Option<&str>,
        kdf: KdfParams,
    ) -> Result<KeyFile, KeyFileError> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut salt).map_err(|e| KeyFileError::Random(e.to_string()))?;
        getrandom::fill(&mut nonce).map_err(|e| KeyFileError::Random(e.to_string()))?;
        let insecure = passphrase.is_none();
        let salt_hex = hex::encode(salt);
        let key = derive_key(passphrase.unwrap_or(""), &salt, &kdf)?;
        let aad = associated_data(VERSION, &kdf, &salt_hex, insecure);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secrets,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyFileError::BadParameters("encryption failed".into()))?;
        Ok(KeyFile {
            version: VERSION,
            kdf,
            salt: salt_hex,
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
            insecure,
        })
    }

    /// Decrypts the secrets. Insecure files ignore `passphrase`.
    pub fn open(&self, passphrase: &str) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
        if self.version != VERSION {
            return Err(KeyFileError::UnknownVersion(self.version));
        }
        let bad = |what: &str| KeyFileError::BadParameters(format!("{what} is not valid hex"));
        let salt = hex::decode(&self.salt).map_err(|_| bad("salt"))?;
        let nonce: [u8; 24] = hex::decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("nonce"))?;
        let ciphertext = hex::decode(&self.ciphertext).map_err(|_| bad("ciphertext"))?;
        let passphrase = if self.insecure { "" } else { passphrase };
        let key = derive_key(passphrase, &salt, &self.kdf)?;
        let aad = associated_data(self.version, &self.kdf, &self.salt, self.insecure);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyFileError::WrongPassphrase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_passphrase_opens_and_a_wrong_one_does_not() {
        let f = KeyFile::seal(
            b"secret keys",
            Some("correct horse"),
            KdfParams::FAST_INSECURE,
        )
        .unwrap();
        assert_eq!(
            f.open("correct horse").map(|s| s.to_vec()),
            Ok(b"secret keys".to_vec())
        );
        assert_eq!(f.open("wrong horse"), Err(KeyFileError::WrongPassphrase));
    }

    #[test]
    fn weakening_the_parameters_or_the_insecure_flag_is_detected() {
        let f = KeyFile::seal(b"k", Some("pw"), KdfParams::FAST_INSECURE).unwrap();
        let mut weaker = f.clone();
        weaker.kdf.t = 2;
        assert_eq!(weaker.open("pw"), Err(KeyFileError::WrongPassphrase));
        let mut flagged = f.clone();
        flagged.insecure = true;
        assert_eq!(flagged.open(""), Err(KeyFileError::WrongPassphrase));
        let mut huge = f;
        huge.kdf.m_kib = u32::MAX;
        assert!(matches!(
            huge.open("pw"),
            Err(KeyFileError::BadParameters(_))
        ));
    }

    #[test]
    fn insecure_files_open_without_a_passphrase() {
        let f = KeyFile::seal(b"demo", None, KdfParams::FAST_INSECURE).unwrap();
        assert!(f.insecure);
        assert_eq!(f.open("anything").map(|s| s.to_vec()), Ok(b"demo".to_vec()));
    }
}
