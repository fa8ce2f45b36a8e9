//! Invites: how a coordinator brings a new member into a circle without exchanging contact
//! cards by hand.
//!
//! The coordinator's node makes an [`InviteCode`]: the circle id, the inviter's device,
//! where to reach it (its addresses, relayed ones included), an expiry and a one-time
//! 64-bit secret. It keeps an [`InviteRecord`] with the role to grant and only the
//! secret's hash. The invitee's node dials the inviter (the peer id in the code makes Noise
//! authenticate it, directly or through a relay), sends the secret with its contact card,
//! and the inviter's node checks the record ([`InviteRecord::admit`]), adds the member with
//! a signed operation that seals the circle's keys to the new devices, and marks the invite
//! used. Everything here is pure: the node core does the I/O.
//!
//! Every invite also has a [`ShortCode`] of 24 characters, to read out on the phone: a
//! fingerprint of the inviter's device and the secret, nothing else. The invitee's node
//! finds the inviter by that fingerprint among the peers it is connected to (on the LAN)
//! or asks its relays, which know the inviter by a tag derived from the secret
//! ([`InviteRecord::tag`]). As the fingerprint is short, the peer found is not trusted
//! with the secret: each side proves it knows it, bound to both devices
//! ([`join_proof`], [`answer_proof`]), so a peer that forged a matching fingerprint learns
//! nothing it can join with and cannot pass for the inviter.

use cercle_crdt::{MemberId, Role};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};

use crate::circle::membership::CircleId;
use crate::identity::DeviceId;

/// Every invite code starts with this.
pub const INVITE_PREFIX: &str = "cercleinv1";
/// Codes longer than this are refused before decoding.
pub const MAX_CODE_CHARS: usize = 2048;
/// Bytes of an invite's secret (64 bits: it is only ever checked online, by the inviter,
/// against a peer whose guesses are refused, counted and set aside, before the invite
/// expires).
pub const SECRET_BYTES: usize = 8;
/// Bytes of the inviter's device fingerprint in a short code.
pub const FINGERPRINT_BYTES: usize = 5;
/// Characters of a short code (separators aside).
pub const SHORT_CODE_CHARS: usize = 24;
/// Invites a node announces to a relay, at most (the newest open ones); a relay keeps no
/// more for one device.
pub const MAX_OPEN_INVITES: usize = 32;
/// Addresses carried in a code, at most (the code stays short enough to read out).
pub const MAX_CODE_ADDRESSES: usize = 6;
/// Invites a node keeps waiting for an answer, at most.
pub const MAX_JOINS: usize = 16;
/// The longest validity an invite may have (30 days, in milliseconds).
pub const MAX_VALIDITY_MS: i64 = 30 * 24 * 3_600_000;
/// The key prefix of invite records in the store's metadata.
pub const RECORD_PREFIX: &str = "invite/";

/// Why an invite code or a join was refused: one sentence for the person holding the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    #[error("this is not an invite code (it starts with {INVITE_PREFIX}); copy the whole code")]
    NotACode,
    #[error("the invite code is damaged or incomplete; copy it again from the inviter")]
    Damaged,
    #[error("this invite expired on {0}; ask the coordinator for a new one")]
    Expired(String),
    #[error("this invite was already used; ask the coordinator for a new one")]
    Used,
    #[error("the inviter does not know this invite (it was withdrawn or made by another node)")]
    Unknown,
    #[error("the invite's secret does not match; copy the code again")]
    WrongSecret,
    #[error("the contact card sent with the invite is not the joining device's")]
    WrongDevice,
    #[error("the invite code names no address to reach the inviter")]
    NoAddress,
    #[error("the peer that answered does not prove it made this invite")]
    Impostor,
}

/// Every [`InviteError::code`].
pub const KNOWN_CODES: [&str; 9] = [
    "not_a_code",
    "damaged",
    "expired",
    "used",
    "unknown",
    "wrong_secret",
    "wrong_device",
    "no_address",
    "impostor",
];

impl InviteError {
    /// A stable name of the refusal, for a client (or the invitee's page) to word it in its
    /// own language.
    pub fn code(&self) -> &'static str {
        match self {
            InviteError::NotACode => "not_a_code",
            InviteError::Damaged => "damaged",
            InviteError::Expired(_) => "expired",
            InviteError::Used => "used",
            InviteError::Unknown => "unknown",
            InviteError::WrongSecret => "wrong_secret",
            InviteError::WrongDevice => "wrong_device",
            InviteError::NoAddress => "no_address",
            InviteError::Impostor => "impostor",
        }
    }
}

/// What an invite code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCode {
    pub circle: CircleId,
    /// The inviter's device (its libp2p identity).
    pub inviter: DeviceId,
    pub secret: [u8; SECRET_BYTES],
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    /// Multiaddresses of the inviter, each ending with its peer id.
    pub addresses: Vec<String>,
}

/// The code's content as encoded (CBOR, short field names; addresses as binary
/// multiaddresses without the inviter's peer id, which the device gives back).
#[derive(Serialize, Deserialize)]
struct Wire {
    c: serde_bytes::ByteBuf,
    i: serde_bytes::ByteBuf,
    s: serde_bytes::ByteBuf,
    e: i64,
    a: Vec<serde_bytes::ByteBuf>,
}

impl InviteCode {
    /// The code as one string: prefix, then lowercase base32 of CBOR and a 4-byte BLAKE3
    /// checksum (see [`crate::textcode`]).
    pub fn encode(&self) -> String {
        let wire = Wire {
            c: serde_bytes::ByteBuf::from(self.circle.0.to_vec()),
            i: serde_bytes::ByteBuf::from(self.inviter.0.to_vec()),
            s: serde_bytes::ByteBuf::from(self.secret.to_vec()),
            e: self.expires_at,
            a: pack_addresses(&self.addresses, &self.inviter),
        };
        let mut bytes = Vec::with_capacity(256);
        if let Err(e) = ciborium::into_writer(&wire, &mut bytes) {
            tracing::error!(error = %e, "an invite code could not be encoded");
        }
        crate::textcode::encode(INVITE_PREFIX, &bytes)
    }

    /// Parses a code (spaces and line breaks ignored) and checks its checksum. Expiry is
    /// checked separately ([`InviteCode::check_expiry`]).
    pub fn decode(s: &str) -> Result<InviteCode, InviteError> {
        let cbor =
            crate::textcode::decode(INVITE_PREFIX, s, MAX_CODE_CHARS).map_err(|e| match e {
                crate::textcode::TextCodeError::OtherKind => InviteError::NotACode,
                _ => InviteError::Damaged,
            })?;
        let wire: Wire =
            ciborium::from_reader(cbor.as_slice()).map_err(|_| InviteError::Damaged)?;
        let fixed = |b: &[u8]| <[u8; 32]>::try_from(b).map_err(|_| InviteError::Damaged);
        let secret =
            <[u8; SECRET_BYTES]>::try_from(wire.s.as_slice()).map_err(|_| InviteError::Damaged)?;
        if wire.a.len() > MAX_CODE_ADDRESSES {
            return Err(InviteError::Damaged);
        }
        let inviter = DeviceId(fixed(&wire.i)?);
        let addresses = unpack_addresses(wire.a, &inviter).ok_or(InviteError::Damaged)?;
        Ok(InviteCode {
            circle: CircleId(fixed(&wire.c)?),
            inviter,
            secret,
            expires_at: wire.e,
            addresses,
        })
    }

    /// The invite's id: the first 8 bytes of the secret's hash, hex. Both sides compute it;
    /// it names the record without revealing the secret.
    pub fn id(&self) -> String {
        invite_id(&self.secret)
    }

    /// The same invite as a code to read out.
    pub fn short(&self) -> ShortCode {
        ShortCode {
            inviter: fingerprint(&self.inviter),
            secret: self.secret,
        }
    }

    /// Refuses an expired code.
    pub fn check_expiry(&self, now: i64) -> Result<(), InviteError> {
        if now > self.expires_at {
            return Err(InviteError::Expired(human_date(self.expires_at)));
        }
        Ok(())
    }
}

/// `device`'s addresses as a code carries them: binary multiaddresses without the device's
/// own peer id, which [`unpack_addresses`] puts back.
pub(crate) fn pack_addresses(addresses: &[String], device: &DeviceId) -> Vec<serde_bytes::ByteBuf> {
    addresses
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .map(|mut a| {
            if matches!(a.iter().last(), Some(Protocol::P2p(p)) if Some(p) == crate::net::peer_of(device))
            {
                a.pop();
            }
            serde_bytes::ByteBuf::from(a.to_vec())
        })
        .collect()
}

/// The addresses [`pack_addresses`] packed, each ending with `device`'s peer id; `None`
/// if one is not a multiaddress.
pub(crate) fn unpack_addresses(
    packed: Vec<serde_bytes::ByteBuf>,
    device: &DeviceId,
) -> Option<Vec<String>> {
    let peer = crate::net::peer_of(device)?;
    packed
        .into_iter()
        .map(|b| {
            Multiaddr::try_from(b.into_vec())
                .map(|a| a.with(Protocol::P2p(peer)).to_string())
                .ok()
        })
        .collect()
}

/// The id of the invite with `secret`.
pub fn invite_id(secret: &[u8]) -> String {
    hex::encode(&blake3::hash(secret).as_bytes()[..8])
}

/// `2026-11-23 17:05 UTC`.
pub(crate) fn human_date(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| millis.to_string())
}

/// An invite as 24 characters to read out or type (`K7QM-2XAB-9PZD-4RTC-88VW-H3JN`):
/// Crockford's base32 (no I, L, O or U; those read as 1, 1 and 0) of the inviter's
/// device fingerprint, the secret and a 2-byte checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortCode {
    pub inviter: [u8; FINGERPRINT_BYTES],
    pub secret: [u8; SECRET_BYTES],
}

/// Crockford's base32, reading lowercase and the letters mistaken for digits.
fn crockford() -> data_encoding::Encoding {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("0123456789ABCDEFGHJKMNPQRSTVWXYZ");
    spec.translate.from.push_str("abcdefghjkmnpqrstvwxyzoOiIlL");
    spec.translate.to.push_str("ABCDEFGHJKMNPQRSTVWXYZ001111");
    // The specification is constant and valid; an error would be caught by every test.
    spec.encoding().unwrap_or(data_encoding::BASE32_NOPAD)
}

impl ShortCode {
    const CHECKSUM_BYTES: usize = 2;

    fn checksum(bytes: &[u8]) -> [u8; Self::CHECKSUM_BYTES] {
        let h = blake3::derive_key("cercle short invite checksum v1", bytes);
        [h[0], h[1]]
    }

    /// The code in groups of four, joined by dashes.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(FINGERPRINT_BYTES + SECRET_BYTES + 2);
        bytes.extend_from_slice(&self.inviter);
        bytes.extend_from_slice(&self.secret);
        let sum = Self::checksum(&bytes);
        bytes.extend_from_slice(&sum);
        let text = crockford().encode(&bytes);
        text.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Reads a short code: case, spaces and dashes do not matter.
    pub fn decode(text: &str) -> Result<ShortCode, InviteError> {
        if text.len() > 4 * SHORT_CODE_CHARS {
            return Err(InviteError::NotACode);
        }
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if compact.len() != SHORT_CODE_CHARS {
            return Err(InviteError::NotACode);
        }
        let bytes = crockford()
            .decode(compact.as_bytes())
            .map_err(|_| InviteError::Damaged)?;
        let (body, sum) = bytes.split_at(FINGERPRINT_BYTES + SECRET_BYTES);
        if Self::checksum(body) != sum {
            return Err(InviteError::Damaged);
        }
        let (inviter, secret) = body.split_at(FINGERPRINT_BYTES);
        Ok(ShortCode {
            inviter: inviter.try_into().map_err(|_| InviteError::Damaged)?,
            secret: secret.try_into().map_err(|_| InviteError::Damaged)?,
        })
    }

    /// Whether `device` has the fingerprint this code names.
    pub fn names(&self, device: &DeviceId) -> bool {
        fingerprint(device) == self.inviter
    }

    /// The invite's id (as for the full code).
    pub fn id(&self) -> String {
        invite_id(&self.secret)
    }

    /// The tag the inviter announces to its relays for this invite.
    pub fn tag(&self) -> [u8; 16] {
        tag_of(blake3::hash(&self.secret).as_bytes())
    }
}

/// Either kind of invite code, as a person gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyCode {
    Full(InviteCode),
    Short(ShortCode),
}

impl AnyCode {
    /// A full code (it starts with [`INVITE_PREFIX`]) or a short one.
    pub fn parse(text: &str) -> Result<AnyCode, InviteError> {
        let head: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .take(INVITE_PREFIX.len())
            .collect();
        if head.eq_ignore_ascii_case(INVITE_PREFIX) {
            InviteCode::decode(text).map(AnyCode::Full)
        } else {
            ShortCode::decode(text).map(AnyCode::Short)
        }
    }

    /// The invite's id.
    pub fn id(&self) -> String {
        match self {
            AnyCode::Full(c) => c.id(),
            AnyCode::Short(c) => c.id(),
        }
    }
}

/// A device's fingerprint in short codes.
pub fn fingerprint(device: &DeviceId) -> [u8; FINGERPRINT_BYTES] {
    let h = blake3::derive_key("cercle invite inviter fingerprint v1", &device.0);
    let mut out = [0u8; FINGERPRINT_BYTES];
    out.copy_from_slice(&h[..FINGERPRINT_BYTES]);
    out
}

/// The relay tag of the invite whose secret hashes to `secret_hash`.
fn tag_of(secret_hash: &[u8; 32]) -> [u8; 16] {
    let h = blake3::keyed_hash(secret_hash, b"cercle invite relay tag v1");
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

/// What an invitee holding only a short code sends instead of the secret: a MAC under the
/// secret's hash of both devices, so a peer that is not the inviter gets nothing it can
/// replay to the inviter.
pub fn join_proof(secret_hash: &[u8; 32], invitee: &DeviceId, inviter: &DeviceId) -> [u8; 32] {
    proof(b"cercle invite join v1", secret_hash, invitee, inviter)
}

/// The inviter's answer proving it holds the invite (checked by an invitee that found it by
/// a short code).
pub fn answer_proof(secret_hash: &[u8; 32], invitee: &DeviceId, inviter: &DeviceId) -> [u8; 32] {
    proof(b"cercle invite answer v1", secret_hash, invitee, inviter)
}

fn proof(context: &[u8], key: &[u8; 32], invitee: &DeviceId, inviter: &DeviceId) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(context);
    h.update(&invitee.0);
    h.update(&inviter.0);
    *h.finalize().as_bytes()
}

/// What the inviter's node keeps of an invite: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub circle: CircleId,
    pub role: Role,
    pub created_at: i64,
    pub expires_at: i64,
    pub secret_hash: [u8; 32],
    /// The member it admitted, once used.
    pub used_by: Option<MemberId>,
}

impl InviteRecord {
    /// A record for a new invite with `secret`.
    pub fn new(
        circle: CircleId,
        role: Role,
        secret: &[u8; SECRET_BYTES],
        now: i64,
        expires_at: i64,
    ) -> InviteRecord {
        InviteRecord {
            circle,
            role,
            created_at: now,
            expires_at,
            secret_hash: *blake3::hash(secret).as_bytes(),
            used_by: None,
        }
    }

    /// The store's metadata key of the invite `id`.
    pub fn key(id: &str) -> String {
        format!("{RECORD_PREFIX}{id}")
    }

    /// The tag announced to relays for this invite.
    pub fn tag(&self) -> [u8; 16] {
        tag_of(&self.secret_hash)
    }

    /// Whether `member` may join now, proving the invite with `secret`: the secret itself
    /// (from a full code, sent to the device it names) or a [`join_proof`] for
    /// `invitee` and `inviter` (from a short code). A member the invite already admitted is
    /// admitted again (its first answer may have been lost); anyone else after the first
    /// use is refused.
    pub fn admit(
        &self,
        secret: &[u8],
        member: &MemberId,
        (invitee, inviter): (&DeviceId, &DeviceId),
        now: i64,
    ) -> Result<(), InviteError> {
        // blake3::Hash compares in constant time.
        let proven = match <[u8; 32]>::try_from(secret) {
            Ok(mac) => {
                blake3::Hash::from_bytes(join_proof(&self.secret_hash, invitee, inviter))
                    == blake3::Hash::from_bytes(mac)
            }
            Err(_) => {
                secret.len() == SECRET_BYTES
                    && blake3::hash(secret) == blake3::Hash::from_bytes(self.secret_hash)
            }
        };
        if !proven {
            return Err(InviteError::WrongSecret);
        }
        match self.used_by {
            Some(m) if m == *member => return Ok(()),
            Some(_) => return Err(InviteError::Used),
            None => {}
        }
        if now > self.expires_at {
            return Err(InviteError::Expired(human_date(self.expires_at)));
        }
        Ok(())
    }
}

/// A new random secret.
pub fn new_secret(rng: &mut crate::crypto::SecureRng) -> [u8; SECRET_BYTES] {
    use rand::Rng as _;
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut secret);
    secret
}

/// Parses an invite's validity: `90s`, `30m`, `48h`, `7d` (at most 30 days).
pub fn parse_validity(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || format!("--expires {s:?} is not a duration: write it like 30m, 48h or 7d");
    if s.len() > 12 {
        return Err(bad());
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms: i64 = match unit {
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 24 * 3_600_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
    if ms <= 0 || ms > MAX_VALIDITY_MS {
        return Err(format!(
            "--expires {s:?}: an invite is valid for at most 30 days"
        ));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A device with a real Ed25519 key (addresses end with its peer id).
    fn device() -> DeviceId {
        let key = libp2p::identity::Keypair::generate_ed25519();
        crate::net::device_of(&key.public().to_peer_id()).unwrap_or(DeviceId([0; 32]))
    }

    fn code() -> InviteCode {
        let inviter = device();
        let peer = crate::net::peer_of(&inviter)
            .map(|p| p.to_string())
            .unwrap_or_default();
        InviteCode {
            circle: CircleId([7; 32]),
            inviter,
            secret: [3; SECRET_BYTES],
            expires_at: 1_800_000_000_000,
            addresses: vec![
                format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"),
                format!("/ip4/192.168.1.20/udp/4001/quic-v1/p2p/{peer}"),
            ],
        }
    }

    #[test]
    fn a_code_decodes_to_what_was_encoded() {
        let c = code();
        let s = c.encode();
        assert!(s.starts_with(INVITE_PREFIX));
        assert_eq!(InviteCode::decode(&s), Ok(c.clone()));
        // Read aloud or retyped: case and spaces do not matter.
        let spaced: String = s
            .to_ascii_uppercase()
            .chars()
            .enumerate()
            .flat_map(|(i, ch)| if i % 5 == 4 { vec![ch, ' '] } else { vec![ch] })
            .collect();
        assert_eq!(InviteCode::decode(&spaced), Ok(c));
    }

    #[test]
    fn a_changed_character_is_caught() {
        let s = code().encode();
        let mut chars: Vec<char> = s.chars().collect();
        let i = INVITE_PREFIX.len() + 10;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let garbled: String = chars.into_iter().collect();
        assert_eq!(InviteCode::decode(&garbled), Err(InviteError::Damaged));
        assert_eq!(
            InviteCode::decode(&s[..s.len() - 3]),
            Err(InviteError::Damaged)
        );
        assert_eq!(InviteCode::decode("cercle1abc"), Err(InviteError::NotACode));
    }

    #[test]
    fn a_record_admits_once_with_the_right_secret_before_expiry() {
        let secret = [5u8; SECRET_BYTES];
        let mut r = InviteRecord::new(CircleId([1; 32]), Role::Professional, &secret, 0, 1000);
        let alice = MemberId::from_bytes([1; 32]);
        let bob = MemberId::from_bytes([2; 32]);
        let devices = (&DeviceId([1; 32]), &DeviceId([9; 32]));
        assert_eq!(
            r.admit(&[6u8; SECRET_BYTES], &alice, devices, 10),
            Err(InviteError::WrongSecret)
        );
        assert!(matches!(
            r.admit(&secret, &alice, devices, 2000),
            Err(InviteError::Expired(_))
        ));
        assert_eq!(r.admit(&secret, &alice, devices, 10), Ok(()));
        r.used_by = Some(alice);
        assert_eq!(r.admit(&secret, &alice, devices, 20), Ok(()));
        assert_eq!(r.admit(&secret, &bob, devices, 20), Err(InviteError::Used));
    }

    /// A short code proves the invite only bound to both devices: the proof a fake inviter
    /// received from the invitee does not admit it (or anyone) at the real inviter.
    #[test]
    fn a_short_codes_proof_admits_only_the_device_it_names_at_the_inviter_it_names() {
        let c = code();
        let short = c.short();
        assert!(short.names(&c.inviter));
        assert!(!short.names(&device()));
        let r = InviteRecord::new(c.circle, Role::Professional, &c.secret, 0, 1000);
        assert_eq!(r.tag(), short.tag());
        let (invitee, impostor) = (device(), device());
        let alice = MemberId::from_bytes([1; 32]);
        let hash = *blake3::hash(&short.secret).as_bytes();
        let proof = join_proof(&hash, &invitee, &c.inviter);
        assert_eq!(r.admit(&proof, &alice, (&invitee, &c.inviter), 10), Ok(()));
        // Given to an impostor, then replayed by it to the real inviter.
        let given = join_proof(&hash, &invitee, &impostor);
        assert_eq!(
            r.admit(&given, &alice, (&impostor, &c.inviter), 10),
            Err(InviteError::WrongSecret)
        );
        assert_ne!(
            answer_proof(&hash, &invitee, &c.inviter),
            join_proof(&hash, &invitee, &c.inviter)
        );
    }

    #[test]
    fn a_short_code_reads_back_however_it_was_typed_and_a_typo_is_caught() {
        let short = code().short();
        let text = short.encode();
        assert_eq!(
            text.len(),
            SHORT_CODE_CHARS + SHORT_CODE_CHARS / 4 - 1,
            "{text}"
        );
        assert_eq!(AnyCode::parse(&text), Ok(AnyCode::Short(short)));
        let typed = text
            .replace('-', " ")
            .to_lowercase()
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(ShortCode::decode(&typed), Ok(short));
        let mut chars: Vec<char> = text.chars().collect();
        chars[2] = if chars[2] == 'A' { 'B' } else { 'A' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(ShortCode::decode(&typo), Err(InviteError::Damaged));
        assert_eq!(AnyCode::parse("hello"), Err(InviteError::NotACode));
        assert!(matches!(
            AnyCode::parse(&code().encode()),
            Ok(AnyCode::Full(_))
        ));
    }

    /// Every refusal has a name the invitee's node keeps (and its page words).
    #[test]
    fn every_refusal_has_a_known_name() {
        let all = [
            InviteError::NotACode,
            InviteError::Damaged,
            InviteError::Expired("x".into()),
            InviteError::Used,
            InviteError::Unknown,
            InviteError::WrongSecret,
            InviteError::WrongDevice,
            InviteError::NoAddress,
            InviteError::Impostor,
        ];
        let names: Vec<&str> = all.iter().map(InviteError::code).collect();
        assert_eq!(names, KNOWN_CODES);
    }

    #[test]
    fn validities_are_read_in_minutes_hours_and_days() {
        assert_eq!(parse_validity("90s"), Ok(90_000));
        assert_eq!(parse_validity("30m"), Ok(30 * 60_000));
        assert_eq!(parse_validity("48h"), Ok(48 * 3_600_000));
        assert_eq!(parse_validity("7d"), Ok(7 * 24 * 3_600_000));
        assert!(parse_validity("31d").is_err());
        assert!(parse_validity("0h").is_err());
        assert!(parse_validity("soon").is_err());
        assert!(parse_validity("12").is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_text_never_panics(s in "\\PC{0,300}") {
            let _ = InviteCode::decode(&s);
            let _ = InviteCode::decode(&format!("{INVITE_PREFIX}{s}"));
            let _ = AnyCode::parse(&s);
        }

        #[test]
        fn any_short_code_round_trips(inviter in any::<[u8; FINGERPRINT_BYTES]>(), secret in any::<[u8; SECRET_BYTES]>()) {
            let c = ShortCode { inviter, secret };
            prop_assert_eq!(ShortCode::decode(&c.encode()), Ok(c));
        }

        #[test]
        fn any_code_round_trips(circle in any::<[u8; 32]>(), secret in any::<[u8; SECRET_BYTES]>(), expires_at in any::<i64>(), ports in prop::collection::vec(any::<u16>(), 0..MAX_CODE_ADDRESSES)) {
            let inviter = device();
            let peer = crate::net::peer_of(&inviter).map(|p| p.to_string()).unwrap_or_default();
            let addresses = ports.iter().map(|p| format!("/ip4/10.0.0.1/tcp/{p}/p2p/{peer}")).collect();
            let c = InviteCode { circle: CircleId(circle), inviter, secret, expires_at, addresses };
            prop_assert_eq!(InviteCode::decode(&c.encode()), Ok(c));
        }
    }
}
