//! The cryptography of circles, built only from reviewed crates:
//!
//! - **Epoch keys**: 32 random bytes per key epoch of a circle.
//! - **Sealing** an epoch key to a device: HPKE (RFC 9180) in base mode with
//!   X25519-HKDF-SHA256, HKDF-SHA256 and ChaCha20-Poly1305 (`hpke` crate). The `info` string
//!   binds the circle, the epoch and the recipient device, so a sealed key cannot be replayed
//!   for another circle, epoch or device.
//! - **Payloads** (envelope contents): XChaCha20-Poly1305 under the epoch key with a random
//!   24-byte nonce, the clear header as associated data.
//! - **The storage key**: what the store seals local care data with at rest (snapshots,
//!   circle records, blobs). Derived with HKDF-SHA256 from the device's secret key, so it is
//!   exactly as protected as the key file (the passphrase).

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hpke::aead::ChaCha20Poly1305 as HpkeAead;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::DeviceId;

/// The random generator the protocol code takes as an input (ChaCha12): the running node
/// seeds it from the operating system, a test or a simulation from a seed, so the same seed
/// gives the same keys, nonces and bytes on the wire.
pub type SecureRng = rand::rngs::StdRng;

/// A generator seeded from the operating system, for the shells that drive the protocol
/// code (the daemon, the command without a daemon).
pub fn os_rng() -> Result<SecureRng, CryptoError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(rand::SeedableRng::from_seed(seed))
}

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The sealed key or payload does not open with this key (wrong key, or altered).
    #[error("cannot decrypt: wrong key or altered data")]
    Decrypt,
    /// A public key or encapsulation is not valid.
    #[error("invalid key material")]
    InvalidKey,
    /// The data is shorter than a nonce and tag.
    #[error("encrypted data is truncated")]
    Truncated,
    /// The system's randomness failed.
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// Names one key epoch of a circle (chosen at random by the operation that starts it).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EpochId(pub [u8; 16]);

impl EpochId {
    /// A fresh random epoch id.
    pub fn generate(rng: &mut SecureRng) -> EpochId {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        EpochId(b)
    }
}

impl fmt::Debug for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", hex::encode(&self.0[..4]))
    }
}

impl fmt::Display for EpochId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A circle's key for one epoch. Zeroed on drop; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EpochKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EpochKey(..)")
    }
}

impl EpochKey {
    /// 32 fresh random bytes.
    pub fn generate(rng: &mut SecureRng) -> EpochKey {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(k.as_mut());
        EpochKey(k)
    }

    /// Encrypts `plaintext` under a random nonce, authenticating `header` with it. Output:
    /// nonce ‖ ciphertext+tag.
    pub fn encrypt(
        &self,
        rng: &mut SecureRng,
        header: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        self.encrypt_with(nonce, header, plaintext)
    }

    fn encrypt_with(
        &self,
        nonce: [u8; 24],
        header: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let cipher = XChaCha20Poly1305::new(&(*self.0).into());
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: header,
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let mut out = Vec::with_capacity(24 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts what [`EpochKey::encrypt`] produced with the same `header`.
    pub fn decrypt(&self, header: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if data.len() < 24 + 16 {
            return Err(CryptoError::Truncated);
        }
        let (nonce, ct) = data.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| CryptoError::Truncated)?;
        let cipher = XChaCha20Poly1305::new(&(*self.0).into());
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: header,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// The key that seals this device's care data at rest. Zeroed on drop; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageKey(EpochKey);

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

impl StorageKey {
    /// Derives the storage key from a device's secret key bytes.
    pub fn derive(device_secret: &[u8; 32]) -> StorageKey {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"cercle storage key v1"), device_secret);
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        if hk.expand(b"local store", okm.as_mut()).is_err() {
            okm.fill(0);
        }
        StorageKey(EpochKey(okm))
    }

    /// A storage key from its bytes: a circle's own key at rest (see `store::circle_keys`).
    pub(crate) fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> StorageKey {
        StorageKey(EpochKey(bytes))
    }

    /// Its bytes, to keep it sealed with another key.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0.0
    }

    /// Seals `plaintext` stored under `place` (tree and key), so a value cannot be moved to
    /// another place unnoticed.
    pub fn seal(&self, place: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // The store seals on its own, outside the protocol code: its nonces come straight
        // from the operating system.
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        self.0.encrypt_with(nonce, place, plaintext)
    }

    /// Opens what [`StorageKey::seal`] produced for the same `place`.
    pub fn open(&self, place: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.0.decrypt(place, data)
    }
}

/// An epoch key sealed to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    /// The device that can open it.
    pub device: DeviceId,
    /// The epoch whose key this is.
    pub epoch: EpochId,
    /// HPKE encapsulated key (hex).
    pub enc: String,
    /// HPKE ciphertext of the epoch key (hex).
    pub ciphertext: String,
}

fn info(circle: &[u8], epoch: &EpochId, device: &DeviceId) -> Vec<u8> {
    let mut i = b"cercle epoch key v1".to_vec();
    i.extend_from_slice(circle);
    i.extend_from_slice(&epoch.0);
    i.extend_from_slice(&device.0);
    i
}

/// Seals `key` (of `epoch` in the circle bound by `circle`, its genesis nonce) to `device`,
/// whose X25519 public key is `recipient`.
pub fn seal_epoch_key(
    rng: &mut SecureRng,
    key: &EpochKey,
    circle: &[u8],
    epoch: EpochId,
    device: DeviceId,
    recipient: &[u8; 32],
) -> Result<SealedKey, CryptoError> {
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| CryptoError::InvalidKey)?;
    let info = info(circle, &epoch, &device);
    let (enc, ciphertext) =
        hpke::single_shot_seal_with_rng::<HpkeAead, HkdfSha256, X25519HkdfSha256>(
            &OpModeS::Base,
            &pk,
            &info,
            key.0.as_ref(),
            b"",
            rng,
        )
        .map_err(|_| CryptoError::InvalidKey)?;
    Ok(SealedKey {
        device,
        epoch,
        enc: hex::encode(enc.to_bytes()),
        ciphertext: hex::encode(ciphertext),
    })
}

/// Opens a sealed epoch key with the device's X25519 secret.
pub fn open_epoch_key(
    sealed: &SealedKey,
    circle: &[u8],
    secret: &[u8; 32],
) -> Result<EpochKey, CryptoError> {
    let sk = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret)
        .map_err(|_| CryptoError::InvalidKey)?;
    let enc_bytes = hex::decode(&sealed.enc).map_err(|_| CryptoError::InvalidKey)?;
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&enc_bytes)
        .map_err(|_| CryptoError::InvalidKey)?;
    let ct = hex::decode(&sealed.ciphertext).map_err(|_| CryptoError::Decrypt)?;
    let info = info(circle, &sealed.epoch, &sealed.device);
    let plain = Zeroizing::new(
        hpke::single_shot_open::<HpkeAead, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &sk,
            &enc,
            &info,
            &ct,
            b"",
        )
        .map_err(|_| CryptoError::Decrypt)?,
    );
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(EpochKey(Zeroizing::new(bytes)))
}

/// Devices' public keys decompressed on a thread, at most, before the cache starts over.
const VERIFYING_KEYS_KEPT: usize = 1024;

/// The Ed25519 public key `bytes` name, decompressed and checked once per thread: a
/// catch-up checks the signatures of the same few devices thousands of times, and
/// decompressing the key was a tenth of each check. A key that does not decompress is
/// not kept, and the cache starts over once it holds [`VERIFYING_KEYS_KEPT`] keys, so
/// peers naming ever new devices cost what they cost without it.
pub(crate) fn verifying_key(
    bytes: &[u8; 32],
) -> Result<ed25519_dalek::VerifyingKey, ed25519_dalek::SignatureError> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static KEYS: RefCell<HashMap<[u8; 32], ed25519_dalek::VerifyingKey, foldhash::fast::RandomState>> =
            RefCell::new(HashMap::default());
    }
    if let Some(key) = KEYS.with_borrow(|keys| keys.get(bytes).copied()) {
        return Ok(key);
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)?;
    KEYS.with_borrow_mut(|keys| {
        if keys.len() >= VERIFYING_KEYS_KEPT {
            keys.clear();
        }
        keys.insert(*bytes, key);
    });
    Ok(key)
}

/// The X25519 public key of a secret (for tests and for checking certificates).
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    X25519HkdfSha256::sk_to_pk(
        &match <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret) {
            Ok(sk) => sk,
            Err(_) => return [0; 32],
        },
    )
    .to_bytes()
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{LocalIdentity, Profile};
    use proptest::prelude::*;

    fn rng() -> SecureRng {
        rand::SeedableRng::seed_from_u64(7)
    }

    fn device() -> LocalIdentity {
        let p = Profile::new("A", "médecin", None, None).unwrap();
        LocalIdentity::generate(p, cercle_crdt::Timestamp(1)).unwrap()
    }

    #[test]
    fn kept_verifying_keys_are_the_keys_and_a_bad_one_is_refused_every_time() {
        use ed25519_dalek::{Signer, SigningKey};
        let signer = SigningKey::from_bytes(&[5; 32]);
        let public = signer.verifying_key().to_bytes();
        let signature = signer.sign(b"note");
        for _ in 0..2 {
            let key = verifying_key(&public).unwrap();
            assert_eq!(key.to_bytes(), public);
            assert!(key.verify_strict(b"note", &signature).is_ok());
            assert!(key.verify_strict(b"other", &signature).is_err());
        }
        // A y-coordinate no point of the curve has.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert!(ed25519_dalek::VerifyingKey::from_bytes(&bad).is_err());
        assert!(verifying_key(&bad).is_err());
        assert!(verifying_key(&bad).is_err());
        // More devices than are kept: each still decompresses to itself.
        for i in 0..(VERIFYING_KEYS_KEPT + 10) as u32 {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let k = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
            assert_eq!(verifying_key(&k).unwrap().to_bytes(), k);
        }
        assert_eq!(verifying_key(&public).unwrap().to_bytes(), public);
    }

    #[test]
    fn an_epoch_key_sealed_to_a_device_opens_only_with_that_device() {
        let (alice, bob) = (device(), device());
        let circle = [9u8; 32];
        let rng = &mut rng();
        let epoch = EpochId::generate(rng);
        let key = EpochKey::generate(rng);
        let sealed = seal_epoch_key(
            rng,
            &key,
            &circle,
            epoch,
            alice.device(),
            &alice.certificate.x25519,
        )
        .unwrap();
        assert_eq!(
            open_epoch_key(&sealed, &circle, &alice.x25519_secret()),
            Ok(key.clone())
        );
        assert_eq!(
            open_epoch_key(&sealed, &circle, &bob.x25519_secret()),
            Err(CryptoError::Decrypt)
        );
        // Bound to its circle, epoch and device.
        assert_eq!(
            open_epoch_key(&sealed, &[8u8; 32], &alice.x25519_secret()),
            Err(CryptoError::Decrypt)
        );
        let mut moved = sealed.clone();
        moved.device = bob.device();
        assert_eq!(
            open_epoch_key(&moved, &circle, &alice.x25519_secret()),
            Err(CryptoError::Decrypt)
        );
        // The certificate's X25519 key matches the HPKE public key of the secret.
        assert_eq!(
            x25519_public(&alice.x25519_secret()),
            alice.certificate.x25519
        );
    }

    #[test]
    fn payloads_open_only_with_their_key_and_header() {
        let rng = &mut rng();
        let key = EpochKey::generate(rng);
        let other = EpochKey::generate(rng);
        let ct = key.encrypt(rng, b"header", b"Chute ce matin").unwrap();
        assert_eq!(
            key.decrypt(b"header", &ct).map(|p| p.to_vec()),
            Ok(b"Chute ce matin".to_vec())
        );
        assert_eq!(key.decrypt(b"other header", &ct), Err(CryptoError::Decrypt));
        assert_eq!(other.decrypt(b"header", &ct), Err(CryptoError::Decrypt));
        assert_eq!(
            key.decrypt(b"header", &ct[..10]),
            Err(CryptoError::Truncated)
        );
        assert!(!format!("{key:?}").contains(&hex::encode(&key.0[..4])));
    }

    #[test]
    fn the_storage_key_is_stable_per_device_and_binds_each_value_to_its_place() {
        let a = StorageKey::derive(&[1; 32]);
        assert_eq!(a, StorageKey::derive(&[1; 32]));
        assert_ne!(a, StorageKey::derive(&[2; 32]));
        let sealed = a.seal(b"circles/1", b"Jeanne Durand").unwrap();
        assert_eq!(
            a.open(b"circles/1", &sealed).map(|p| p.to_vec()),
            Ok(b"Jeanne Durand".to_vec())
        );
        assert_eq!(a.open(b"circles/2", &sealed), Err(CryptoError::Decrypt));
        assert_eq!(format!("{a:?}"), "StorageKey(..)");
    }

    proptest! {
        #[test]
        fn opening_random_data_never_panics(enc in ".{0,80}", ct in ".{0,120}", data in prop::collection::vec(any::<u8>(), 0..200)) {
            let sealed = SealedKey { device: DeviceId([1; 32]), epoch: EpochId([2; 16]), enc, ciphertext: ct };
            let _ = open_epoch_key(&sealed, &[0; 32], &[3; 32]);
            let key = EpochKey(Zeroizing::new([4; 32]));
            let _ = key.decrypt(b"h", &data);
        }
    }
}
