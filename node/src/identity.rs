//! Who runs this node: the member's keys and profile, this device's keys and certificate, and
//! the contact card that carries them to other members.
//!
//! - The **member key** (Ed25519) is the member's identity: its public half is the
//!   [`MemberId`] that appears in every document.
//! - The **device key** (Ed25519) signs what this device writes; its public half is the
//!   [`DeviceId`], the device's Automerge actor and (later) its libp2p PeerId.
//! - The **device X25519 key** receives sealed secrets (circle epoch keys).
//! - A [`DeviceCertificate`], signed by the member key, binds the device keys to the member.
//! - A [`ContactCard`] is one copy-pastable string with a checksum: profile, member key, device
//!   certificates and addresses.
//!
//! Secrets never leave [`LocalIdentity`] except sealed in the key file (see
//! [`crate::keyfile`]); `Debug` never prints them.
//!
//! **The member key lives on the member's first device only.** A device paired later
//! (`cercle device pair`, `init --pair`) holds its own device keys and a certificate the
//! first device signed, never the member key: a lost phone or laptop cannot certify devices
//! for whoever finds it, and revoking it (from any other device of the member) cuts it off
//! completely. The first device certifies the others ([`LocalIdentity::certify_device`]).

use std::collections::HashSet;
use std::fmt;

use cercle_crdt::{ActorId, MemberId, Timestamp};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Why a profile was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// An empty or overlong display name.
    #[error("the name must be 1 to 120 characters")]
    BadName,
    /// An empty or overlong profession.
    #[error("the profession must be 1 to 80 characters")]
    BadProfession,
    /// Not 11 digits with a valid Luhn check digit.
    #[error("an RPPS number is 11 digits with a valid check digit; {0:?} is not")]
    BadRpps(String),
    /// Not 9 digits.
    #[error("an ADELI number is 9 digits; {0:?} is not")]
    BadAdeli(String),
    /// The operating system gave no randomness.
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// Why a contact card or a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// Not a Cercle contact card at all.
    #[error("this is not a Cercle contact card (it should start with `{CARD_PREFIX}`)")]
    NotACard,
    /// The checksum does not match: the card was mistyped or cut.
    #[error("the contact card is damaged (checksum mismatch): copy it again in full")]
    Checksum,
    /// The card decodes but its content is invalid.
    #[error("the contact card is invalid: {0}")]
    Invalid(String),
    /// A device certificate is not signed by the card's member key.
    #[error("a device certificate on the card is not signed by its member")]
    BadCertificate,
    /// The profile (name, profession, RPPS, ADELI) is not the one the member signed.
    #[error(
        "the name, profession or RPPS on the card is not the one its member signed: ask them for their card again"
    )]
    BadProfile,
    /// The card carries no profile signature (made by an earlier version).
    #[error(
        "this card was made by an earlier version of Cercle and its profile is not signed: ask its owner for a new one (`cercle whoami`)"
    )]
    UnsignedProfile,
}

/// A device: the public half of its Ed25519 device key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(pub [u8; 32]);

impl DeviceId {
    /// The device's Automerge actor: its 32 key bytes.
    pub fn actor(&self) -> ActorId {
        ActorId::from(&self.0[..])
    }

    /// The device whose Automerge actor is `actor`, if it is one.
    pub fn from_actor(actor: &ActorId) -> Option<DeviceId> {
        actor.to_bytes().try_into().ok().map(DeviceId)
    }

    /// A short form for people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.short())
    }
}

impl TryFrom<String> for DeviceId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(|_| format!("{s:?} is not a device id"))?;
        Ok(DeviceId(out))
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> String {
        d.to_string()
    }
}

/// Hex-encoded fixed-size byte arrays in JSON (`option`: or `null`).
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }

    /// The same for an optional array.
    pub(crate) mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer, const N: usize>(
            bytes: &Option<[u8; N]>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(b) => s.serialize_some(&hex::encode(b)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
            d: D,
        ) -> Result<Option<[u8; N]>, D::Error> {
            let Some(text) = Option::<String>::deserialize(d)? else {
                return Ok(None);
            };
            let mut out = [0u8; N];
            hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
            Ok(Some(out))
        }
    }
}

/// A device key and X25519 key, certified by a member key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCertificate {
    /// The member.
    pub member: MemberId,
    /// The device's Ed25519 key.
    pub device: DeviceId,
    /// The device's X25519 key, for sealed secrets.
    #[serde(with = "hex_bytes")]
    pub x25519: [u8; 32],
    /// When the member certified the device (milliseconds).
    pub issued_at: i64,
    /// The member key's signature over the above.
    #[serde(with = "hex_bytes")]
    pub signature: [u8; 64],
}

/// Certificates remembered as checked, at most (32 bytes each); past this the memory
/// starts again empty.
const MAX_VERIFIED_CERTIFICATES: usize = 16_384;

/// The hashes (signed bytes and signature) of the certificates checked in this process.
static VERIFIED_CERTIFICATES: std::sync::LazyLock<std::sync::Mutex<HashSet<[u8; 32]>>> =
    std::sync::LazyLock::new(Default::default);

impl DeviceCertificate {
    fn signed_bytes(member: &MemberId, device: &DeviceId, x25519: &[u8; 32], at: i64) -> Vec<u8> {
        let mut m = b"cercle device certificate v1".to_vec();
        m.extend_from_slice(member.as_bytes());
        m.extend_from_slice(&device.0);
        m.extend_from_slice(x25519);
        m.extend_from_slice(&at.to_le_bytes());
        m
    }

    /// Checks the member's signature (strict Ed25519 verification). A certificate that
    /// checked out once in this process is not checked again: a GP's device certificate
    /// is in every one of her circles' membership logs.
    pub fn verify(&self) -> Result<(), CardError> {
        let msg = Self::signed_bytes(&self.member, &self.device, &self.x25519, self.issued_at);
        let mut signed = blake3::Hasher::new();
        signed.update(&msg).update(&self.signature);
        let signed: [u8; 32] = signed.finalize().into();
        if VERIFIED_CERTIFICATES
            .lock()
            .is_ok_and(|known| known.contains(&signed))
        {
            return Ok(());
        }
        let key = VerifyingKey::from_bytes(self.member.as_bytes())
            .map_err(|_| CardError::BadCertificate)?;
        key.verify_strict(&msg, &Signature::from_bytes(&self.signature))
            .map_err(|_| CardError::BadCertificate)?;
        VerifyingKey::from_bytes(&self.device.0).map_err(|_| CardError::BadCertificate)?;
        if let Ok(mut known) = VERIFIED_CERTIFICATES.lock() {
            if known.len() >= MAX_VERIFIED_CERTIFICATES {
                known.clear();
            }
            known.insert(signed);
        }
        Ok(())
    }
}

/// What a member hands to a coordinator to be added to a circle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCard {
    /// The member's profile.
    pub profile: Profile,
    /// The member key.
    pub member: MemberId,
    /// The member's devices.
    pub devices: Vec<DeviceCertificate>,
    /// Where the devices listen (multiaddrs), if known.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The member key's signature of the profile ([`Profile::signed_bytes`]), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_signature: Option<String>,
}

/// Every card string starts with this.
pub const CARD_PREFIX: &str = "cercle1";
/// Cards larger than this are refused before decoding.
pub const MAX_CARD_CHARS: usize = 8 * 1024;
const MAX_CARD_DEVICES: usize = 16;

impl ContactCard {
    /// The card as one string: prefix, then lowercase base32 of the JSON and a 4-byte
    /// BLAKE3 checksum (see [`crate::textcode`]).
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        crate::textcode::encode(CARD_PREFIX, &json)
    }

    /// Parses and checks a card string: checksum, content, every certificate's signature.
    pub fn decode(s: &str) -> Result<ContactCard, CardError> {
        let json =
            crate::textcode::decode(CARD_PREFIX, s, MAX_CARD_CHARS).map_err(|e| match e {
                crate::textcode::TextCodeError::OtherKind => CardError::NotACard,
                crate::textcode::TextCodeError::TooLong => CardError::Invalid("too long".into()),
                _ => CardError::Checksum,
            })?;
        let card: ContactCard =
            serde_json::from_slice(&json).map_err(|e| CardError::Invalid(e.to_string()))?;
        if card.devices.is_empty() || card.devices.len() > MAX_CARD_DEVICES {
            return Err(CardError::Invalid(format!(
                "a card lists 1 to {MAX_CARD_DEVICES} devices"
            )));
        }
        Profile::new(
            &card.profile.name,
            &card.profile.profession,
            card.profile.rpps.as_deref(),
            card.profile.adeli.as_deref(),
        )
        .map_err(|e| CardError::Invalid(e.to_string()))?;
        for cert in &card.devices {
            if cert.member != card.member {
                return Err(CardError::BadCertificate);
            }
            cert.verify()?;
        }
        let signature = card
            .profile_signature
            .as_deref()
            .ok_or(CardError::UnsignedProfile)?;
        card.profile.verify(&card.member, signature)?;
        Ok(card)
    }
}

/// The member's public profile, shown to the other members of their circles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name, e.g. "Dr Claire Martin".
    pub name: String,
    /// Profession, e.g. "médecin généraliste", "infirmière", "aidant".
    pub profession: String,
    /// RPPS number (11 digits, Luhn-checked), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpps: Option<String>,
    /// ADELI number (9 digits), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adeli: Option<String>,
}

impl Profile {
    /// What the member key signs: a context, the member, the profile's JSON.
    pub fn signed_bytes(&self, member: &MemberId) -> Vec<u8> {
        let mut m = b"cercle profile v1".to_vec();
        m.extend_from_slice(member.as_bytes());
        m.extend_from_slice(&serde_json::to_vec(self).unwrap_or_default());
        m
    }

    /// Checks that `member` signed this profile (`signature` in hex).
    pub fn verify(&self, member: &MemberId, signature: &str) -> Result<(), CardError> {
        let key = VerifyingKey::from_bytes(member.as_bytes()).map_err(|_| CardError::BadProfile)?;
        let bytes: [u8; 64] = hex::decode(signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CardError::BadProfile)?;
        key.verify_strict(&self.signed_bytes(member), &Signature::from_bytes(&bytes))
            .map_err(|_| CardError::BadProfile)
    }

    /// A checked profile.
    pub fn new(
        name: &str,
        profession: &str,
        rpps: Option<&str>,
        adeli: Option<&str>,
    ) -> Result<Self, ProfileError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 120 {
            return Err(ProfileError::BadName);
        }
        let profession = profession.trim();
        if profession.is_empty() || profession.chars().count() > 80 {
            return Err(ProfileError::BadProfession);
        }
        let rpps = rpps.map(str::trim).map(check_rpps).transpose()?;
        let adeli = adeli.map(str::trim).map(check_adeli).transpose()?;
        Ok(Self {
            name: name.to_string(),
            profession: profession.to_string(),
            rpps,
            adeli,
        })
    }
}

/// Checks an RPPS number: 11 digits whose Luhn checksum is valid.
pub fn check_rpps(s: &str) -> Result<String, ProfileError> {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if s.len() != 11 || digits.len() != 11 || !luhn_valid(&digits) {
        return Err(ProfileError::BadRpps(s.chars().take(20).collect()));
    }
    Ok(s.to_string())
}

/// Checks an ADELI number: 9 digits.
pub fn check_adeli(s: &str) -> Result<String, ProfileError> {
    if s.len() != 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProfileError::BadAdeli(s.chars().take(20).collect()));
    }
    Ok(s.to_string())
}

fn luhn_valid(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// This node's identity, with its secret keys. `Debug` shows only public parts.
pub struct LocalIdentity {
    /// The member key: on the member's first device only (see the module's documentation).
    member_key: Option<SigningKey>,
    device_key: SigningKey,
    x25519: x25519_dalek::StaticSecret,
    /// The device's certificate.
    pub certificate: DeviceCertificate,
    /// The member's profile.
    pub profile: Profile,
    /// The member key's signature of the profile, hex, as the first device gave it to a
    /// paired one (which cannot sign it).
    profile_signature: Option<String>,
}

impl fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("member", &self.member())
            .field("device", &self.device())
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// The public part of an identity, stored in clear beside the key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIdentity {
    /// The member's profile.
    pub profile: Profile,
    /// This device's certificate (member key, device key, X25519 key).
    pub certificate: DeviceCertificate,
    /// The member key's signature of the profile, hex (absent in homes made by earlier
    /// versions until their key is next opened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_signature: Option<String>,
}

impl PublicIdentity {
    /// The member.
    pub fn member(&self) -> MemberId {
        self.certificate.member
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.certificate.device
    }

    /// This device's Automerge actor.
    pub fn actor(&self) -> ActorId {
        self.certificate.device.actor()
    }

    /// The contact card of this member with this device, reachable at `addresses`.
    pub fn card(&self, addresses: &[String]) -> ContactCard {
        ContactCard {
            profile: self.profile.clone(),
            member: self.member(),
            devices: vec![self.certificate.clone()],
            addresses: addresses.to_vec(),
            profile_signature: self.profile_signature.clone(),
        }
    }
}

/// Length of the serialized secrets: member, device and X25519 secret keys; a paired
/// device has no member key.
const SECRETS_LEN: usize = 96;
const PAIRED_SECRETS_LEN: usize = 64;

/// Why a device could not be certified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertifyError {
    /// This device was itself paired: the member key is on the member's first device.
    #[error("this device does not hold your member key: pair new devices from your first device")]
    NoMemberKey,
    /// The key offered is not an Ed25519 public key.
    #[error("the new device's key is not a valid public key")]
    BadKey,
}

impl LocalIdentity {
    /// A new member with one device, all keys fresh from the system's CSPRNG.
    pub fn generate(profile: Profile, now: Timestamp) -> Result<Self, ProfileError> {
        let mut rng = crate::crypto::os_rng().map_err(|e| ProfileError::Random(e.to_string()))?;
        Ok(Self::generate_with(profile, now, &mut rng))
    }

    /// A new member with one device, its keys drawn from `rng` (a test or a simulation
    /// passes a seeded one, so the same seed makes the same people).
    pub fn generate_with(
        profile: Profile,
        now: Timestamp,
        rng: &mut crate::crypto::SecureRng,
    ) -> Self {
        let mut random32 = || {
            let mut b = Zeroizing::new([0u8; 32]);
            rand::Rng::fill_bytes(rng, b.as_mut());
            b
        };
        let member_key = SigningKey::from_bytes(&random32());
        let device_key = SigningKey::from_bytes(&random32());
        let x25519 = x25519_dalek::StaticSecret::from(*random32());
        let certificate = certify(&member_key, &device_key, &x25519, now.millis());
        Self {
            member_key: Some(member_key),
            device_key,
            x25519,
            certificate,
            profile,
            profile_signature: None,
        }
    }

    /// Whether this device holds the member key (it is the member's first device).
    pub fn holds_member_key(&self) -> bool {
        self.member_key.is_some()
    }

    /// Certifies another device of this member: its Ed25519 key and X25519 key.
    pub fn certify_device(
        &self,
        device: &DeviceId,
        x25519: &[u8; 32],
        now: Timestamp,
    ) -> Result<DeviceCertificate, CertifyError> {
        let key = self.member_key.as_ref().ok_or(CertifyError::NoMemberKey)?;
        VerifyingKey::from_bytes(&device.0).map_err(|_| CertifyError::BadKey)?;
        let member = self.member();
        let at = now.millis();
        let msg = DeviceCertificate::signed_bytes(&member, device, x25519, at);
        Ok(DeviceCertificate {
            member,
            device: *device,
            x25519: *x25519,
            issued_at: at,
            signature: key.sign(&msg).to_bytes(),
        })
    }

    /// Another device of this member, its keys drawn from `rng` and certified here (a
    /// simulation's or a test's second device; a real one is paired over the network).
    pub fn new_device(
        &self,
        now: Timestamp,
        rng: &mut crate::crypto::SecureRng,
    ) -> Result<LocalIdentity, CertifyError> {
        let fresh = LocalIdentity::generate_with(self.profile.clone(), now, rng);
        let certificate = self.certify_device(&fresh.device(), &fresh.x25519_public(), now)?;
        let public = PublicIdentity {
            profile: self.profile.clone(),
            certificate,
            profile_signature: self.public().profile_signature,
        };
        fresh.paired(public).map_err(|_| CertifyError::BadKey)
    }

    /// This device's X25519 public key (what a certificate binds).
    pub fn x25519_public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.x25519).to_bytes()
    }

    /// This device's keys as a paired device of the member `public` names: `public` must
    /// certify exactly this device's keys, and its profile must carry the member's
    /// signature. The member key, if any, is dropped.
    pub fn paired(self, public: PublicIdentity) -> Result<LocalIdentity, CardError> {
        let cert = &public.certificate;
        if cert.device != self.device() || cert.x25519 != self.x25519_public() {
            return Err(CardError::BadCertificate);
        }
        cert.verify()?;
        let signature = public
            .profile_signature
            .clone()
            .ok_or(CardError::UnsignedProfile)?;
        public.profile.verify(&cert.member, &signature)?;
        Ok(LocalIdentity {
            member_key: None,
            device_key: self.device_key,
            x25519: self.x25519,
            certificate: public.certificate,
            profile: public.profile,
            profile_signature: Some(signature),
        })
    }

    /// The member.
    pub fn member(&self) -> MemberId {
        self.certificate.member
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.certificate.device
    }

    /// The device's signing key, for a simulated relay whose network key it is.
    pub(crate) fn device_signing_key(&self) -> SigningKey {
        self.device_key.clone()
    }

    /// This device's Automerge actor.
    pub fn actor(&self) -> ActorId {
        self.device().actor()
    }

    /// The public part, to store in clear and to build cards from.
    pub fn public(&self) -> PublicIdentity {
        let signature = match &self.member_key {
            Some(key) => Some(hex::encode(
                key.sign(&self.profile.signed_bytes(&self.member()))
                    .to_bytes(),
            )),
            None => self.profile_signature.clone(),
        };
        PublicIdentity {
            profile: self.profile.clone(),
            certificate: self.certificate.clone(),
            profile_signature: signature,
        }
    }

    /// Signs `message` with the device key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.device_key.sign(message).to_bytes()
    }

    /// The device's Ed25519 secret, which is also its libp2p identity (`net::keypair`).
    pub(crate) fn device_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.device_key.to_bytes())
    }

    /// The device's X25519 secret, to open sealed secrets.
    pub fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.x25519.to_bytes())
    }

    /// The key sealing this device's care data at rest (see `store`).
    pub fn storage_key(&self) -> crate::crypto::StorageKey {
        crate::crypto::StorageKey::derive(self.device_key.as_bytes())
    }

    /// The secrets, for the key file.
    pub fn secrets(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SECRETS_LEN));
        if let Some(key) = &self.member_key {
            out.extend_from_slice(key.as_bytes());
        }
        out.extend_from_slice(self.device_key.as_bytes());
        out.extend_from_slice(self.x25519.as_bytes());
        out
    }

    /// Rebuilds the identity from the key file's secrets and the stored public part,
    /// checking that they belong together.
    pub fn from_secrets(secrets: &[u8], public: PublicIdentity) -> Result<Self, CardError> {
        let first = match secrets.len() {
            SECRETS_LEN => 1,
            PAIRED_SECRETS_LEN if public.profile_signature.is_some() => 0,
            _ => {
                return Err(CardError::Invalid(
                    "the key file holds secrets of the wrong size".into(),
                ));
            }
        };
        let take = |i: usize| -> Zeroizing<[u8; 32]> {
            let mut b = Zeroizing::new([0u8; 32]);
            b.copy_from_slice(&secrets[i * 32..(i + 1) * 32]);
            b
        };
        let member_key = (first == 1).then(|| SigningKey::from_bytes(&take(0)));
        let device_key = SigningKey::from_bytes(&take(first));
        let x25519 = x25519_dalek::StaticSecret::from(*take(first + 1));
        let cert = &public.certificate;
        let matches = member_key
            .as_ref()
            .is_none_or(|k| k.verifying_key().to_bytes() == *cert.member.as_bytes())
            && device_key.verifying_key().to_bytes() == cert.device.0
            && x25519_dalek::PublicKey::from(&x25519).to_bytes() == cert.x25519;
        if !matches {
            return Err(CardError::Invalid(
                "the key file does not belong to this identity".into(),
            ));
        }
        cert.verify()?;
        if member_key.is_none()
            && let Some(sig) = &public.profile_signature
        {
            public.profile.verify(&cert.member, sig)?;
        }
        Ok(Self {
            member_key,
            device_key,
            x25519,
            certificate: public.certificate,
            profile: public.profile,
            profile_signature: public.profile_signature,
        })
    }
}

fn certify(
    member_key: &SigningKey,
    device_key: &SigningKey,
    x25519: &x25519_dalek::StaticSecret,
    at: i64,
) -> DeviceCertificate {
    let member = MemberId::from_bytes(member_key.verifying_key().to_bytes());
    let device = DeviceId(device_key.verifying_key().to_bytes());
    let x = x25519_dalek::PublicKey::from(x25519).to_bytes();
    let msg = DeviceCertificate::signed_bytes(&member, &device, &x, at);
    DeviceCertificate {
        member,
        device,
        x25519: x,
        issued_at: at,
        signature: member_key.sign(&msg).to_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rpps_needs_eleven_digits_and_a_valid_luhn_key() {
        assert!(check_rpps("10003456786").is_ok());
        assert!(check_rpps("10003456787").is_err());
        assert!(check_rpps("1000345678").is_err());
        assert!(check_rpps("1000345678a").is_err());
    }

    #[test]
    fn adeli_needs_nine_digits() {
        assert!(check_adeli("751234567").is_ok());
        assert!(check_adeli("75123456").is_err());
        assert!(check_adeli("75123456x").is_err());
    }

    fn someone() -> LocalIdentity {
        let profile = Profile::new("Claire Martin", "infirmière", None, Some("751234567")).unwrap();
        LocalIdentity::generate(profile, Timestamp(1_790_000_000_000)).unwrap()
    }

    #[test]
    fn a_card_round_trips_and_its_certificates_verify() {
        let me = someone();
        let card = me.public().card(&["/ip4/127.0.0.1/tcp/4001".into()]);
        let text = card.encode();
        assert!(text.starts_with(CARD_PREFIX));
        assert_eq!(ContactCard::decode(&text), Ok(card));
    }

    #[test]
    fn damaged_or_forged_cards_are_refused() {
        let me = someone();
        let text = me.public().card(&[]).encode();
        let mut typo: Vec<char> = text.chars().collect();
        let i = typo.len() / 2;
        typo[i] = if typo[i] == 'a' { 'b' } else { 'a' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(ContactCard::decode(&typo), Err(CardError::Checksum));
        assert_eq!(ContactCard::decode("hello"), Err(CardError::NotACard));
        // A card claiming someone else's device: the certificate is not signed by its member.
        let other = someone();
        let mut forged = me.public().card(&[]);
        forged.devices[0].device = other.device();
        assert_eq!(
            ContactCard::decode(&forged.encode()),
            Err(CardError::BadCertificate)
        );
        // Someone's card under another name, or another RPPS: the profile is not the one
        // its member signed.
        let mut renamed = me.public().card(&[]);
        renamed.profile.name = "Dr Usurpateur".into();
        assert_eq!(
            ContactCard::decode(&renamed.encode()),
            Err(CardError::BadProfile)
        );
        let mut other_rpps = me.public().card(&[]);
        other_rpps.profile.rpps = Some("10003456786".into());
        assert_eq!(
            ContactCard::decode(&other_rpps.encode()),
            Err(CardError::BadProfile)
        );
        // A card from an earlier version, without the signature, is refused with what to do.
        let mut unsigned = me.public().card(&[]);
        unsigned.profile_signature = None;
        assert_eq!(
            ContactCard::decode(&unsigned.encode()),
            Err(CardError::UnsignedProfile)
        );
    }

    #[test]
    fn secrets_restore_the_same_identity_and_only_with_its_public_part() {
        let me = someone();
        let back = LocalIdentity::from_secrets(&me.secrets(), me.public()).unwrap();
        assert_eq!(back.public(), me.public());
        assert_eq!(back.sign(b"x"), me.sign(b"x"));
        assert!(LocalIdentity::from_secrets(&me.secrets(), someone().public()).is_err());
        assert!(!format!("{me:?}").contains(&hex::encode(&me.secrets()[..32])));
    }

    #[test]
    fn a_paired_device_holds_a_certificate_from_the_first_and_never_the_member_key() {
        let first = someone();
        let mut rng = <crate::crypto::SecureRng as rand::SeedableRng>::from_seed([3; 32]);
        let second = first.new_device(Timestamp(2), &mut rng).unwrap();
        assert_eq!(second.member(), first.member());
        assert_ne!(second.device(), first.device());
        assert!(!second.holds_member_key() && first.holds_member_key());
        assert_eq!(second.secrets().len(), PAIRED_SECRETS_LEN);
        // Its key file restores it, its card is a valid card of the same member.
        let back = LocalIdentity::from_secrets(&second.secrets(), second.public()).unwrap();
        assert_eq!(back.public(), second.public());
        let card = ContactCard::decode(&second.public().card(&[]).encode()).unwrap();
        assert_eq!(card.member, first.member());
        // It cannot certify a third; a certificate for other keys is refused.
        let third = someone();
        assert_eq!(
            second.certify_device(&third.device(), &third.x25519_public(), Timestamp(3)),
            Err(CertifyError::NoMemberKey)
        );
        let wrong = first
            .certify_device(&third.device(), &second.x25519_public(), Timestamp(3))
            .unwrap();
        let public = PublicIdentity {
            certificate: wrong,
            ..second.public()
        };
        assert!(
            LocalIdentity::generate_with(first.profile.clone(), Timestamp(1), &mut rng)
                .paired(public)
                .is_err()
        );
    }

    #[test]
    fn profiles_reject_empty_names() {
        assert_eq!(
            Profile::new(" ", "infirmière", None, None),
            Err(ProfileError::BadName)
        );
        assert!(Profile::new("Claire", "infirmière", Some("10003456786"), None).is_ok());
    }

    proptest! {
        #[test]
        fn card_decoding_never_panics(s in "\\PC{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ContactCard::decode(&s);
            let mut encoded = String::from(CARD_PREFIX);
            encoded.push_str(&data_encoding::BASE32_NOPAD.encode(&bytes).to_ascii_lowercase());
            let _ = ContactCard::decode(&encoded);
        }

        #[test]
        fn exactly_one_luhn_digit_completes_any_ten_digit_prefix(prefix in "[0-9]{10}") {
            let valid = (0..10).filter(|d| check_rpps(&format!("{prefix}{d}")).is_ok()).count();
            prop_assert_eq!(valid, 1);
        }

        #[test]
        fn the_number_checkers_never_panic(s in "\\PC{0,30}") {
            let _ = check_rpps(&s);
            let _ = check_adeli(&s);
        }
    }
}
