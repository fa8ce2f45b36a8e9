//! Pairing: how a member adds a device of their own (a second laptop, the practice's
//! desktop) without a coordinator.
//!
//! The member's first device (the one holding the member key, see [`crate::identity`])
//! makes a [`PairCode`]: this device, where to reach it, an expiry and a one-time 128-bit
//! secret, of which it keeps only the hash in a [`PairRecord`]. The new machine's
//! `cercle init --pair CODE` makes its device keys, dials the first device (the peer id in
//! the code makes Noise authenticate it, directly or through a relay) and proves the secret
//! with its X25519 key (`Message::Pair`). The first device certifies the new device with the
//! member key, answers with that certificate and the member's signed profile
//! (`Message::PairAnswer`), and adds the device to each of the member's circles with a
//! signed operation that seals the circles' keys to it. The member's devices are kept as
//! [`DeviceRecord`]s (certificate, where last reached, last seen, revoked) on each of them.
//! Everything here is pure: the node core does the I/O.

use serde::{Deserialize, Serialize};

use crate::identity::{DeviceCertificate, DeviceId};

/// Every pairing code starts with this.
pub const PAIR_PREFIX: &str = "cerclepair1";
/// Codes longer than this are refused before decoding.
pub const MAX_PAIR_CODE_CHARS: usize = 2048;
/// Bytes of a pairing secret.
pub const PAIR_SECRET_BYTES: usize = 16;
/// How long a pairing code is valid: both devices are in the member's hands.
pub const PAIR_VALIDITY_MS: i64 = 15 * 60_000;
/// The store's metadata prefix of pairing records and of the member's devices.
pub const PAIR_RECORD_PREFIX: &str = "pair/";
pub const DEVICE_RECORD_PREFIX: &str = "device/";
/// Devices a member may have, at most (a card lists no more).
pub const MAX_DEVICES: usize = 16;
/// Addresses the first device gives a paired one, at most.
pub const MAX_DEVICE_ADDRESSES: usize = 8;

/// Why a pairing code or a pairing was refused: one sentence for the member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PairError {
    #[error("this is not a Cercle pairing code (it should start with `{PAIR_PREFIX}`)")]
    NotACode,
    #[error("the pairing code is damaged: copy it again in full")]
    Damaged,
    #[error("this pairing code expired at {0}: make a new one with `cercle device pair`")]
    Expired(String),
    #[error(
        "the device that made this code does not know it: make a new one with `cercle device pair`"
    )]
    Unknown,
    #[error("the pairing code's secret is wrong")]
    WrongSecret,
    #[error("this pairing code was already used: make a new one with `cercle device pair`")]
    Used,
    #[error("this device does not hold your member key: pair new devices from your first device")]
    NoMemberKey,
    #[error("you already have {MAX_DEVICES} devices: revoke one first")]
    TooManyDevices,
}

/// What a pairing code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCode {
    /// The member's device that made it.
    pub device: DeviceId,
    pub secret: [u8; PAIR_SECRET_BYTES],
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    /// Multiaddresses of that device, each ending with its peer id.
    pub addresses: Vec<String>,
}

/// The code's content as encoded (CBOR, short field names).
#[derive(Serialize, Deserialize)]
struct Wire {
    d: serde_bytes::ByteBuf,
    s: serde_bytes::ByteBuf,
    e: i64,
    a: Vec<serde_bytes::ByteBuf>,
}

impl PairCode {
    /// The code as one string: prefix, then lowercase base32 of CBOR and a checksum.
    pub fn encode(&self) -> String {
        let wire = Wire {
            d: serde_bytes::ByteBuf::from(self.device.0.to_vec()),
            s: serde_bytes::ByteBuf::from(self.secret.to_vec()),
            e: self.expires_at,
            a: crate::invite::pack_addresses(&self.addresses, &self.device),
        };
        let mut bytes = Vec::with_capacity(256);
        if let Err(e) = ciborium::into_writer(&wire, &mut bytes) {
            tracing::error!(error = %e, "a pairing code could not be encoded");
        }
        crate::textcode::encode(PAIR_PREFIX, &bytes)
    }

    /// Parses a code (spaces and line breaks ignored) and checks its checksum.
    pub fn decode(s: &str) -> Result<PairCode, PairError> {
        let cbor =
            crate::textcode::decode(PAIR_PREFIX, s, MAX_PAIR_CODE_CHARS).map_err(|e| match e {
                crate::textcode::TextCodeError::OtherKind => PairError::NotACode,
                _ => PairError::Damaged,
            })?;
        let wire: Wire = ciborium::from_reader(cbor.as_slice()).map_err(|_| PairError::Damaged)?;
        let device =
            DeviceId(<[u8; 32]>::try_from(wire.d.as_slice()).map_err(|_| PairError::Damaged)?);
        let secret = <[u8; PAIR_SECRET_BYTES]>::try_from(wire.s.as_slice())
            .map_err(|_| PairError::Damaged)?;
        if wire.a.len() > MAX_DEVICE_ADDRESSES {
            return Err(PairError::Damaged);
        }
        let addresses =
            crate::invite::unpack_addresses(wire.a, &device).ok_or(PairError::Damaged)?;
        Ok(PairCode {
            device,
            secret,
            expires_at: wire.e,
            addresses,
        })
    }

    /// The pairing's id: the first 8 bytes of the secret's hash, hex.
    pub fn id(&self) -> String {
        pairing_id(&self.secret)
    }

    /// Refuses an expired code.
    pub fn check_expiry(&self, now: i64) -> Result<(), PairError> {
        if now > self.expires_at {
            return Err(PairError::Expired(crate::invite::human_date(
                self.expires_at,
            )));
        }
        Ok(())
    }
}

/// The id of the pairing with `secret`.
pub fn pairing_id(secret: &[u8]) -> String {
    hex::encode(&blake3::hash(secret).as_bytes()[..8])
}

/// What the first device keeps of a pairing code: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecord {
    pub created_at: i64,
    pub expires_at: i64,
    pub secret_hash: [u8; 32],
    /// The device it paired, once used.
    pub used_by: Option<DeviceId>,
}

impl PairRecord {
    /// A record for a new code with `secret`.
    pub fn new(secret: &[u8; PAIR_SECRET_BYTES], now: i64) -> PairRecord {
        PairRecord {
            created_at: now,
            expires_at: now.saturating_add(PAIR_VALIDITY_MS),
            secret_hash: *blake3::hash(secret).as_bytes(),
            used_by: None,
        }
    }

    /// The store's metadata key of the pairing `id`.
    pub fn key(id: &str) -> String {
        format!("{PAIR_RECORD_PREFIX}{id}")
    }

    /// Whether `device` may pair now with `secret`. The device it paired already is
    /// paired again (its answer may have been lost); anyone else after the first use is
    /// refused.
    pub fn admit(&self, secret: &[u8], device: &DeviceId, now: i64) -> Result<(), PairError> {
        // blake3::Hash compares in constant time.
        if secret.len() != PAIR_SECRET_BYTES
            || blake3::hash(secret) != blake3::Hash::from_bytes(self.secret_hash)
        {
            return Err(PairError::WrongSecret);
        }
        match self.used_by {
            Some(d) if d == *device => return Ok(()),
            Some(_) => return Err(PairError::Used),
            None => {}
        }
        if now > self.expires_at {
            return Err(PairError::Expired(crate::invite::human_date(
                self.expires_at,
            )));
        }
        Ok(())
    }
}

/// One of the member's devices, as each of them keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub certificate: DeviceCertificate,
    /// Where it was last reached (multiaddresses ending with its peer id).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// When it was last connected to this device (milliseconds).
    #[serde(default)]
    pub last_seen: Option<i64>,
    /// When this device learnt it was revoked (milliseconds).
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

impl DeviceRecord {
    /// The store's metadata key of `device`'s record.
    pub fn key(device: &DeviceId) -> String {
        format!("{DEVICE_RECORD_PREFIX}{device}")
    }
}

/// A fresh pairing secret.
pub fn new_secret(rng: &mut crate::crypto::SecureRng) -> [u8; PAIR_SECRET_BYTES] {
    use rand::Rng as _;
    let mut secret = [0u8; PAIR_SECRET_BYTES];
    rng.fill_bytes(&mut secret);
    secret
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device() -> DeviceId {
        let profile = crate::identity::Profile::new("A", "infirmière", None, None).unwrap();
        crate::identity::LocalIdentity::generate(profile, cercle_crdt::Timestamp(1))
            .unwrap()
            .device()
    }

    #[test]
    fn a_code_round_trips_with_its_addresses_and_a_typo_is_caught() {
        let d = device();
        let peer = crate::net::peer_of(&d).unwrap();
        let code = PairCode {
            device: d,
            secret: [7; PAIR_SECRET_BYTES],
            expires_at: 1_000,
            addresses: vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")],
        };
        let text = code.encode();
        assert!(text.starts_with(PAIR_PREFIX));
        assert_eq!(PairCode::decode(&text), Ok(code.clone()));
        let mut typo: Vec<char> = text.chars().collect();
        let i = typo.len() - 5;
        typo[i] = if typo[i] == 'a' { 'b' } else { 'a' };
        assert_eq!(
            PairCode::decode(&typo.into_iter().collect::<String>()),
            Err(PairError::Damaged)
        );
        assert_eq!(PairCode::decode("cercleinv1abc"), Err(PairError::NotACode));
        assert!(matches!(
            code.check_expiry(1_001),
            Err(PairError::Expired(_))
        ));
    }

    #[test]
    fn a_record_pairs_one_device_once_with_the_right_secret_before_it_expires() {
        let (a, b) = (device(), device());
        let mut r = PairRecord::new(&[1; PAIR_SECRET_BYTES], 0);
        assert_eq!(
            r.admit(&[2; PAIR_SECRET_BYTES], &a, 1),
            Err(PairError::WrongSecret)
        );
        assert_eq!(r.admit(&[1; 8], &a, 1), Err(PairError::WrongSecret));
        assert_eq!(r.admit(&[1; PAIR_SECRET_BYTES], &a, 1), Ok(()));
        r.used_by = Some(a);
        assert_eq!(r.admit(&[1; PAIR_SECRET_BYTES], &a, 2), Ok(()));
        assert_eq!(
            r.admit(&[1; PAIR_SECRET_BYTES], &b, 2),
            Err(PairError::Used)
        );
        let fresh = PairRecord::new(&[1; PAIR_SECRET_BYTES], 0);
        assert!(matches!(
            fresh.admit(&[1; PAIR_SECRET_BYTES], &b, PAIR_VALIDITY_MS + 1),
            Err(PairError::Expired(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_any_text_never_panics(s in "\\PC{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PairCode::decode(&s);
            let _ = PairCode::decode(&crate::textcode::encode(PAIR_PREFIX, &bytes));
        }
    }
}
