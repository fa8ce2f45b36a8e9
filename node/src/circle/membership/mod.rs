//! The membership log of a circle: signed operations forming a DAG, and the deterministic
//! resolution that every node runs to decide who is a member, with which role and devices.
//!
//! Sans-I/O: operations in, a [`Resolution`] out. A circle's id is the hash of its genesis
//! operation. Each operation names the heads its author saw (`parents`), is signed by one of
//! its author's devices and is addressed by the BLAKE3 hash of its signed bytes.
//!
//! # Resolution rule
//!
//! 1. Operations are put in one linear order `L`: a topological order of the DAG, ties
//!    broken by the smaller op hash.
//! 2. An operation is valid only if its signing device belongs to a coordinator in the state
//!    built from its valid ancestors (its causal past), in `L` order. The genesis is valid
//!    if signed by one of the creator's devices. A device's addition or revocation is also
//!    valid when signed by a device of the member it concerns (one's own devices need no
//!    coordinator).
//! 3. **A removal wins over concurrent operations of the removed member**: an operation by
//!    `M` concurrent with a valid removal of `M` is void. When two coordinators remove each
//!    other concurrently, the more senior one (added earlier in `L`; the creator is the most
//!    senior) wins: the junior's removal is void, the senior's stands. Seniority is fixed by
//!    the log, so an attacker cannot grind hashes to win. Likewise **a device's revocation
//!    wins over the operations that device signed concurrently**; in a mutual revocation
//!    the device granted first wins.
//! 4. Rule 3 is applied until nothing changes (the set of void operations only grows, so
//!    this ends), re-evaluating rule 2 each time.
//!
//! The result depends only on the set of operations, never on the order they arrived in.
//!
//! # What enters a log
//!
//! An operation is taken only once its parents are all in the log, and only if it is valid
//! and effective **in its own causal past** (rule 2 on the state its ancestors resolve to;
//! no relay list set twice, no role given twice, no removed member added back). That past
//! is the same on every node, so every node takes the same operations whatever the order
//! they arrive in: an observer's, a stranger's or a removed member's operations are
//! refused with their reason, never stored nor passed on. An operation taken may still be
//! voided later by rule 3, when a concurrent removal of its author arrives.
//!
//! Bounds, checked before the work: a signing device no operation of the log granted is
//! refused at once; an operation's causal past holds at most [`MAX_OPS`] operations, and
//! at most [`MAX_OPS_PER_AUTHOR`] of its author's; a log holds at most [`MAX_HELD_OPS`]
//! (concurrent branches included) and [`MAX_WAITING_OPS`] waiting for a parent.
//!
//! Resolution ([`resolve`]) is close to linear in the log, and taking an operation named
//! on top of every head (the usual case) costs the same whatever the log's length.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod log;
#[cfg(test)]
mod reference;
mod resolve;
#[cfg(test)]
mod tests;

pub use log::MembershipLog;
use resolve::Resolver;

use cercle_crdt::{DocKind, MemberId, Role};
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use crate::crypto::{EpochId, SealedKey};
use crate::identity::{DeviceCertificate, DeviceId, LocalIdentity};

/// The largest encoded operation accepted (a genesis or an add carries certificates and,
/// later, sealed keys for every device).
pub const MAX_OP_BYTES: usize = 256 * 1024;
/// At most this many parents per operation.
pub const MAX_PARENTS: usize = 64;

/// The hash of a signed operation (its address).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpHash(pub [u8; 32]);

impl fmt::Debug for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Op({})", hex::encode(&self.0[..4]))
    }
}

impl fmt::Display for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A circle: the hash of its genesis operation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CircleId(pub [u8; 32]);

impl fmt::Debug for CircleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Circle({})", hex::encode(&self.0[..4]))
    }
}

impl fmt::Display for CircleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for CircleId {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(CircleId(out))
    }
}

/// A member as added to a circle: their key, devices and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberGrant {
    pub member: MemberId,
    pub devices: Vec<DeviceCertificate>,
    pub role: Role,
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpBody {
    /// Creates the circle with its creator as coordinator and the first key epoch, sealed to
    /// the creator's devices. `nonce` makes every circle distinct.
    Genesis {
        creator: MemberGrant,
        nonce: [u8; 16],
        epoch: EpochId,
        sealed: Vec<SealedKey>,
    },
    /// Adds a member with a role and devices; `sealed` gives the newcomer's devices the keys
    /// of the epochs they may read (history is part of care).
    AddMember {
        grant: MemberGrant,
        sealed: Vec<SealedKey>,
    },
    /// Removes a member and starts a new epoch sealed to the remaining devices only.
    /// `logs` gives, per device and document, the last envelope the remover held from it:
    /// those and the ones before them are still taken from anyone who has them, nothing
    /// after. (`cutoffs`, per device in Automerge sequence numbers, is what earlier versions
    /// wrote; a removal that has only those accepts nothing more from the member.)
    RemoveMember {
        member: MemberId,
        cutoffs: Vec<(DeviceId, u64)>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<(DeviceId, DocKind, u64)>,
        epoch: EpochId,
        sealed: Vec<SealedKey>,
    },
    /// Changes a member's role.
    ChangeRole { member: MemberId, role: Role },
    /// Starts a new key epoch sealed to the current devices.
    RotateKey {
        epoch: EpochId,
        sealed: Vec<SealedKey>,
    },
    /// Names the relays the circle uses (replacing any earlier list): every member's node
    /// reserves a slot there, meets the others there and keeps a mailbox there. Each is a
    /// multiaddress ending with the relay's peer id; at most [`MAX_RELAYS`].
    SetRelays { relays: Vec<String> },
    /// How many hours an alert waits unacknowledged before its addressees are reminded,
    /// then again every as many hours; 0 for no reminder. At most [`MAX_REMINDER_HOURS`].
    SetReminder { hours: u16 },
    /// Closes the circle: nothing more may be written.
    Close,
    /// Adds a device to a member: another of the member's devices adds one the member key
    /// certified (no coordinator needed for one's own devices; a coordinator may too).
    /// `sealed` gives it every epoch key the adding device reads, as to a newcomer.
    AddDevice {
        certificate: DeviceCertificate,
        sealed: Vec<SealedKey>,
    },
    /// Revokes one of a member's devices (lost, stolen, replaced), from another of the
    /// member's devices or a coordinator's. As for a removal, `logs` says per document the
    /// last envelope of the device still taken, and a new epoch is sealed to every other
    /// device. A member's only device is not revoked: the member is removed instead.
    RevokeDevice {
        member: MemberId,
        device: DeviceId,
        logs: Vec<(DeviceId, DocKind, u64)>,
        epoch: EpochId,
        sealed: Vec<SealedKey>,
    },
    /// The patient objected to sharing (recorded by a coordinator or a professional, with
    /// the reason, sealed with the epoch key then current: it may say something of the
    /// patient's care, and a relay holds the log): every member's node stops sending and
    /// taking the circle's data, keeps what it holds read-only, and `epoch` starts a key
    /// epoch sealed to nobody. Nothing but a `Close` takes effect after it.
    WithdrawConsent { reason: OpNote, epoch: EpochId },
    /// Names who may break the glass (replacing any earlier list): the on-call
    /// professionals who, with the patient's emergency code, are given read access for a
    /// while. A coordinator's; at most [`MAX_ON_CALL`]. Their names are in `names`, sealed
    /// with an epoch key (a relay learns no one's name).
    SetOnCall {
        members: Vec<MemberId>,
        names: OpNote,
    },
    /// Emergency read access: a member of the circle's on-call list is added as an
    /// observer until `until` (at most [`MAX_EMERGENCY_MILLIS`] after the operation), by
    /// any member who writes (the node that was asked, checking the list). `sealed` gives
    /// the on-call devices the epoch keys the granting device reads (the record is read
    /// whole, its history included); `about` (who and why) is sealed with the current
    /// one. When it expires a member removes them, which starts an epoch without them.
    BreakGlass {
        grant: MemberGrant,
        until: i64,
        sealed: Vec<SealedKey>,
        about: OpNote,
    },
}

impl OpBody {
    /// The member an operation adds, with their devices: an addition or an emergency
    /// access.
    pub fn grant(&self) -> Option<&MemberGrant> {
        match self {
            OpBody::AddMember { grant, .. } | OpBody::BreakGlass { grant, .. } => Some(grant),
            _ => None,
        }
    }
}

/// Words an operation carries for the members only: sealed with the key of `epoch`
/// (XChaCha20-Poly1305, the circle and epoch authenticated with it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpNote {
    pub epoch: EpochId,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl fmt::Debug for OpNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpNote({} bytes)", self.data.len())
    }
}

/// The longest sealed note an operation carries.
pub const MAX_OP_NOTE: usize = 8 * 1024;

impl OpNote {
    fn header(circle: &CircleId, epoch: &EpochId) -> Vec<u8> {
        let mut h = b"cercle op note v1".to_vec();
        h.extend_from_slice(&circle.0);
        h.extend_from_slice(&epoch.0);
        h
    }

    /// `value` as JSON sealed with `key`, the key of `epoch` in `circle`.
    pub fn seal<T: Serialize>(
        rng: &mut crate::crypto::SecureRng,
        circle: &CircleId,
        (epoch, key): (EpochId, &crate::crypto::EpochKey),
        value: &T,
    ) -> Result<OpNote, crate::crypto::CryptoError> {
        let json = serde_json::to_vec(value).map_err(|_| crate::crypto::CryptoError::Decrypt)?;
        let data = key.encrypt(rng, &OpNote::header(circle, &epoch), &json)?;
        Ok(OpNote { epoch, data })
    }

    /// The value, if `keys` has the epoch's key and it opens and decodes.
    pub fn open<T: serde::de::DeserializeOwned>(
        &self,
        circle: &CircleId,
        keys: &BTreeMap<EpochId, crate::crypto::EpochKey>,
    ) -> Option<T> {
        let key = keys.get(&self.epoch)?;
        let json = key
            .decrypt(&OpNote::header(circle, &self.epoch), &self.data)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// Who an on-call professional is, as `SetOnCall` seals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCall {
    pub member: MemberId,
    pub name: String,
    #[serde(default)]
    pub profession: String,
}

/// Who was let in and why, as `BreakGlass` seals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyAbout {
    pub name: String,
    #[serde(default)]
    pub profession: String,
    pub reason: String,
}

/// On-call professionals a circle names, at most.
pub const MAX_ON_CALL: usize = 32;
/// The longest emergency access: 24 hours.
pub const MAX_EMERGENCY_MILLIS: i64 = 24 * 3_600_000;

/// The longest reason of a consent withdrawal, in bytes.
pub const MAX_CONSENT_REASON: usize = 500;

/// Operations waiting for a missing parent, at most, and their bytes (a peer cannot grow
/// them without bound).
pub const MAX_WAITING_OPS: usize = 1024;
pub const MAX_WAITING_BYTES: usize = 4 * 1024 * 1024;
/// Operations in an operation's causal past, at most (itself included): a circle's whole
/// membership history, years of it.
pub const MAX_OPS: usize = 16_384;
/// Operations of one author in an operation's causal past, at most (itself included).
pub const MAX_OPS_PER_AUTHOR: usize = 4_096;
/// Operations a log holds, at most, concurrent branches included.
pub const MAX_HELD_OPS: usize = 2 * MAX_OPS;

/// Relays a circle may name, at most, and the longest address.
pub const MAX_RELAYS: usize = 8;
/// The longest reminder delay a circle may set: a month.
pub const MAX_REMINDER_HOURS: u16 = 720;
/// The reminder delay of a circle that set none.
pub const DEFAULT_REMINDER_HOURS: u16 = 24;
pub const MAX_RELAY_ADDRESS: usize = 256;

/// The signed part of an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpContent {
    /// The circle (absent in the genesis, whose hash is the circle id).
    pub circle: Option<CircleId>,
    /// The heads the author saw, sorted, without duplicates.
    pub parents: Vec<OpHash>,
    /// The signing device.
    pub device: DeviceId,
    /// Milliseconds since the epoch (informative only: never used to order).
    pub at: i64,
    pub body: OpBody,
}

/// A signed operation as it travels and is stored: its exact bytes are what is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOp {
    hash: OpHash,
    bytes: Vec<u8>,
    content: OpContent,
}

/// Why an operation was refused before it entered a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("operation of {0} bytes is larger than {MAX_OP_BYTES}")]
    TooLarge(usize),
    #[error("malformed operation: {0}")]
    Malformed(String),
    #[error("the operation's signature does not verify")]
    BadSignature,
    #[error("the operation belongs to another circle")]
    WrongCircle,
    #[error("a genesis operation cannot be added to an existing circle")]
    SecondGenesis,
    #[error("too many operations wait for a missing parent")]
    TooManyWaiting,
    #[error("the signing device was never granted in this circle")]
    UnknownDevice,
    #[error("the operation is void: {0}")]
    Void(VoidReason),
    #[error("the operation changes nothing: {0}")]
    NoEffect(&'static str),
    #[error("the circle's membership history is full ({max} operations)")]
    TooManyOps { max: usize },
    #[error("this member wrote {max} membership operations already, the most a circle takes")]
    TooManyByAuthor { max: usize },
}

const SIGNATURE_CONTEXT: &[u8] = b"cercle membership op v1";

impl SignedOp {
    /// Builds and signs an operation with `signer`'s device key.
    pub fn sign(signer: &LocalIdentity, content: OpContent) -> SignedOp {
        let payload = serde_json::to_vec(&content).unwrap_or_default();
        let mut to_sign = SIGNATURE_CONTEXT.to_vec();
        to_sign.extend_from_slice(&payload);
        let signature = signer.sign(&to_sign);
        let mut bytes = Vec::with_capacity(64 + payload.len());
        bytes.extend_from_slice(&signature);
        bytes.extend_from_slice(&payload);
        SignedOp {
            hash: OpHash(*blake3::hash(&bytes).as_bytes()),
            bytes,
            content,
        }
    }

    /// Decodes and checks the signature of received bytes (size, then decoding, then
    /// signature). Membership is decided later, by resolution.
    pub fn decode(bytes: &[u8]) -> Result<SignedOp, OpError> {
        SignedOp::decode_checking(bytes, true)
    }

    /// Decodes bytes this device checked before, as [`SignedOp::decode`] does but for the
    /// signature: only for a stored log that the circle's sealed record vouches for (see
    /// `circle::load`).
    pub(crate) fn decode_vouched(bytes: &[u8]) -> Result<SignedOp, OpError> {
        SignedOp::decode_checking(bytes, false)
    }

    /// Decodes bytes without checking their signature, to decide what to do with a
    /// circle offered by a peer before doing the work of checking it: never taken in as
    /// it is (what is taken in is decoded with [`SignedOp::decode`]).
    pub(crate) fn peek(bytes: &[u8]) -> Result<SignedOp, OpError> {
        SignedOp::decode_checking(bytes, false)
    }

    fn decode_checking(bytes: &[u8], signature: bool) -> Result<SignedOp, OpError> {
        if bytes.len() > MAX_OP_BYTES {
            return Err(OpError::TooLarge(bytes.len()));
        }
        if bytes.len() < 64 {
            return Err(OpError::Malformed("shorter than a signature".into()));
        }
        let (sig, payload) = bytes.split_at(64);
        let content: OpContent = serde_json::from_slice(payload).map_err(|e| {
            // Where and what kind of fault, never the text: it is the sender's.
            OpError::Malformed(format!(
                "not an operation ({:?} at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if content.parents.len() > MAX_PARENTS || content.parents.windows(2).any(|w| w[0] >= w[1]) {
            return Err(OpError::Malformed(
                "parents must be sorted and distinct".into(),
            ));
        }
        if content.circle.is_none() != matches!(content.body, OpBody::Genesis { .. }) {
            return Err(OpError::Malformed("only a genesis has no circle".into()));
        }
        if content.circle.is_none() && !content.parents.is_empty() {
            return Err(OpError::Malformed("a genesis has no parents".into()));
        }
        if signature {
            let key = crate::crypto::verifying_key(&content.device.0)
                .map_err(|_| OpError::BadSignature)?;
            let sig_bytes: [u8; 64] = sig.try_into().map_err(|_| OpError::BadSignature)?;
            let mut signed = SIGNATURE_CONTEXT.to_vec();
            signed.extend_from_slice(payload);
            key.verify_strict(&signed, &Signature::from_bytes(&sig_bytes))
                .map_err(|_| OpError::BadSignature)?;
        }
        Ok(SignedOp {
            hash: OpHash(*blake3::hash(bytes).as_bytes()),
            bytes: bytes.to_vec(),
            content,
        })
    }

    /// Decodes many operations (a stored log), checking each signature, on every core
    /// for a long log: the signature checks are most of the cost of opening a circle.
    pub fn decode_all(all: &[Vec<u8>]) -> Result<Vec<SignedOp>, OpError> {
        const PER_THREAD: usize = 512;
        if all.len() < 2 * PER_THREAD {
            return all.iter().map(|b| SignedOp::decode(b)).collect();
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if threads < 2 {
            return all.iter().map(|b| SignedOp::decode(b)).collect();
        }
        let chunk = all.len().div_ceil(threads).max(PER_THREAD);
        std::thread::scope(|scope| {
            let parts: Vec<_> = all
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|b| SignedOp::decode(b))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(all.len());
            for part in parts {
                let decoded = part
                    .join()
                    .map_err(|_| OpError::Malformed("a decoding thread failed".into()))??;
                out.extend(decoded);
            }
            Ok(out)
        })
    }

    /// The operation's address.
    pub fn hash(&self) -> OpHash {
        self.hash
    }

    /// The exact bytes to store and send.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What was signed.
    pub fn content(&self) -> &OpContent {
        &self.content
    }
}

/// A member's state after resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberState {
    pub role: Role,
    pub devices: Vec<DeviceCertificate>,
    /// Position in `L` of the op that added them (smaller = more senior).
    #[serde(skip)]
    seniority: usize,
}

/// The patient's objection to sharing, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suspension {
    /// The recording device and its time (milliseconds).
    pub by: DeviceId,
    pub at: i64,
    /// Why, sealed (see [`OpBody::WithdrawConsent`]).
    pub reason: OpNote,
    /// The operation that recorded it.
    pub op: OpHash,
}

/// An emergency access under way, as recorded by its `BreakGlass`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Emergency {
    /// The device that granted it and when (milliseconds, as its author wrote).
    pub by: DeviceId,
    pub at: i64,
    /// Until when (milliseconds).
    pub until: i64,
    /// Who and why, sealed.
    #[serde(skip)]
    pub about: OpNote,
}

/// Why a logged operation has no effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum VoidReason {
    /// The signing device is not a coordinator's in the operation's causal past.
    #[error("its author is not a coordinator of the circle")]
    NotCoordinator,
    /// Its author was removed by a concurrent removal.
    #[error("its author was removed concurrently")]
    RemovedConcurrently,
    /// The circle was closed before it.
    #[error("the circle is closed")]
    Closed,
    /// It targets a member who is not in the circle, or adds a current member again.
    #[error("it names a member it cannot apply to, or is malformed")]
    BadTarget,
    /// Its signing device was revoked by a concurrent revocation.
    #[error("its device was revoked concurrently")]
    RevokedConcurrently,
    /// The patient objected to sharing before it: only a closing takes effect.
    #[error("sharing is suspended: the patient objected")]
    Suspended,
}

/// A member's removal, as the envelope checks need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// The member's role when removed (what its late envelopes may write).
    pub role: Role,
    /// Per device and document, the last envelope sequence number still taken.
    pub logs: Vec<(DeviceId, DocKind, u64)>,
}

impl Removal {
    /// The last envelope of `device` in `doc` still taken: 0 (none) if the removal does
    /// not say.
    pub fn cutoff(&self, device: &DeviceId, doc: DocKind) -> u64 {
        self.logs
            .iter()
            .find(|(d, k, _)| d == device && *k == doc)
            .map_or(0, |(_, _, seq)| *seq)
    }

    /// Whether `device` was one of the member's devices.
    pub fn had(&self, device: &DeviceId) -> bool {
        self.logs.iter().any(|(d, _, _)| d == device)
    }
}

/// A member's device revoked from the circle, as the envelope checks and the team see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// Whose device it was.
    pub member: MemberId,
    /// The member's role then, and the last envelope per document still taken from it.
    pub cut: Removal,
    /// The device that revoked it, and when (milliseconds, as its author wrote).
    pub by: DeviceId,
    pub at: i64,
}

/// Who is in the circle, as every node computes it from the same operations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Resolution {
    pub members: BTreeMap<MemberId, MemberState>,
    /// Removed members: their role when removed and the cut-offs of their removal.
    pub removed: BTreeMap<MemberId, Removal>,
    /// Revoked devices of members.
    pub revoked: BTreeMap<DeviceId, Revocation>,
    /// The relays the circle uses (the last `SetRelays` in the log's order).
    pub relays: Vec<String>,
    /// Their devices, read once from their addresses (asked for every circle each time a
    /// relay's stream is served: parsing each address each time cost a point
    /// decompression per circle).
    #[serde(skip)]
    pub relay_devices: BTreeSet<DeviceId>,
    /// The reminder delay in hours (the last `SetReminder`), if one was set.
    pub reminder_hours: Option<u16>,
    /// The current key epoch (started by the genesis, a removal or a rotation).
    pub epoch: Option<EpochId>,
    /// Every epoch, oldest first.
    pub epochs: Vec<EpochId>,
    pub closed: bool,
    /// The patient's objection to sharing, once recorded.
    pub suspended: Option<Suspension>,
    /// Who may break the glass (the last `SetOnCall`), and their names sealed.
    pub on_call: Vec<MemberId>,
    #[serde(skip)]
    pub on_call_names: Option<OpNote>,
    /// The members added by an emergency access, until they are removed.
    pub emergency: BTreeMap<MemberId, Emergency>,
    /// Operations without effect, and why.
    pub void: BTreeMap<OpHash, VoidReason>,
}

impl Resolution {
    /// After how many hours an unacknowledged alert is recalled to its addressees (0: never).
    pub fn reminder_after(&self) -> u16 {
        self.reminder_hours.unwrap_or(DEFAULT_REMINDER_HOURS)
    }

    /// Whether the circle names the relay of device `device`.
    pub fn names_relay(&self, device: &DeviceId) -> bool {
        self.relay_devices.contains(device)
    }

    /// The member owning `device`, if a current member does.
    pub fn member_of(&self, device: &DeviceId) -> Option<(&MemberId, &MemberState)> {
        self.members
            .iter()
            .find(|(_, m)| m.devices.iter().any(|d| d.device == *device))
    }

    /// A device that wrote here and no longer does: the member it was of, the role its
    /// late envelopes write with, and the last envelope of `doc` still taken from it.
    pub fn former(&self, device: &DeviceId, doc: DocKind) -> Option<(MemberId, Role, u64)> {
        if let Some(r) = self.revoked.get(device) {
            return Some((r.member, r.cut.role, r.cut.cutoff(device, doc)));
        }
        self.removed
            .iter()
            .find(|(_, r)| r.had(device))
            .map(|(m, r)| (*m, r.role, r.cutoff(device, doc)))
    }

    /// The member owning `device` if they may read the circle at `now`: a current member,
    /// an emergency access only until it expires.
    pub fn reader_at(&self, device: &DeviceId, now: i64) -> Option<&MemberId> {
        let (m, _) = self.member_of(device)?;
        self.emergency
            .get(m)
            .is_none_or(|e| now < e.until)
            .then_some(m)
    }

    /// Whether `member` is on the circle's on-call list.
    pub fn on_call(&self, member: &MemberId) -> bool {
        self.on_call.contains(member)
    }

    /// A member's role, if they are a current member.
    pub fn role(&self, member: &MemberId) -> Option<Role> {
        self.members.get(member).map(|m| m.role)
    }
}

/// The membership log with what it resolves to: who is a member with which role, and who
/// holds each epoch's key. Every operation enters through here, so the log holds only
/// operations admitted by the rule above and the resolution never lags behind it; readers
/// (members' circles and the relay's mailbox alike) share this one path.
#[derive(Debug)]
pub struct Membership {
    log: MembershipLog,
    resolver: Resolver,
    /// The devices holding each epoch's key; computed when first asked for, then kept up to
    /// date by appends.
    holders: std::cell::OnceCell<BTreeMap<EpochId, BTreeSet<DeviceId>>>,
    limits: Limits,
}

/// The bounds on a log (the constants, lowered in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    ops: usize,
    per_author: usize,
    held: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ops: MAX_OPS,
            per_author: MAX_OPS_PER_AUTHOR,
            held: MAX_HELD_OPS,
        }
    }
}

/// How the membership changed with what was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Change {
    /// Nothing was taken.
    #[default]
    None,
    /// Operations were added on top: no earlier verdict changed.
    Appended,
    /// The log was resolved again: any verdict may have changed.
    Resolved,
}

impl Change {
    fn and(self, other: Change) -> Change {
        match (self, other) {
            (Change::Resolved, _) | (_, Change::Resolved) => Change::Resolved,
            (Change::Appended, _) | (_, Change::Appended) => Change::Appended,
            _ => Change::None,
        }
    }
}

/// What taking in a peer's operations did.
#[derive(Debug, Default)]
pub struct OpsIntake {
    /// Operations new here, parents first (to store and to pass on).
    pub new: Vec<SignedOp>,
    /// Operations refused, with the BLAKE3 hash of their bytes and the reason.
    pub refused: Vec<([u8; 32], OpError)>,
    /// How the membership changed.
    pub change: Change,
}

impl Membership {
    /// A circle's membership from its genesis alone.
    pub fn genesis(genesis: SignedOp) -> Result<Membership, OpError> {
        let OpBody::Genesis { creator, .. } = &genesis.content().body else {
            return Err(OpError::Malformed(
                "the first operation must be a genesis".into(),
            ));
        };
        let verdict = resolve::judge(&Resolution::default(), &genesis, 0, true);
        if let Err(reason) = verdict.outcome {
            return Err(OpError::Void(reason));
        }
        let log = MembershipLog::new(genesis.clone(), creator.member);
        let resolver = Resolver::build(log.by_hash(), log.sequence().iter().copied());
        Ok(Membership {
            log,
            resolver,
            holders: std::cell::OnceCell::new(),
            limits: Limits::default(),
        })
    }

    /// The same membership with lower bounds (to test them without thousands of
    /// signatures).
    #[cfg(test)]
    pub(crate) fn limited(mut self, ops: usize, per_author: usize, held: usize) -> Self {
        self.limits = Limits {
            ops,
            per_author,
            held,
        };
        self
    }

    /// A circle's membership from the operations a store kept (in any order): each is
    /// taken again by the same rule, parents first. Returns the operations not taken, with
    /// why (a store written by an older version may hold operations without effect).
    pub fn load(ops: Vec<SignedOp>) -> Result<(Membership, Vec<(OpHash, OpError)>), OpError> {
        let (genesis, rest): (Vec<_>, Vec<_>) =
            ops.into_iter().partition(|o| o.content().circle.is_none());
        let mut genesis = genesis.into_iter();
        let first = genesis
            .next()
            .ok_or_else(|| OpError::Malformed("no genesis operation".into()))?;
        let mut membership = Membership::genesis(first)?;
        let mut refused: Vec<(OpHash, OpError)> = genesis
            .map(|g| (g.hash(), OpError::SecondGenesis))
            .collect();
        for op in parents_first(rest) {
            let hash = op.hash();
            let mut taken = Vec::new();
            if let Err(e) = membership.offer(op, &mut taken) {
                refused.push((hash, e));
            }
            refused.extend(
                taken
                    .into_iter()
                    .filter_map(|(outcome, op)| outcome.err().map(|e| (op.hash(), e))),
            );
        }
        // What still waits names a parent the store does not hold.
        let waiting: Vec<OpHash> = membership.log.waiting_hashes();
        refused.extend(waiting.into_iter().map(|h| (h, OpError::TooManyWaiting)));
        Ok((membership, refused))
    }

    /// The operations.
    pub fn log(&self) -> &MembershipLog {
        &self.log
    }

    /// Who is in the circle now.
    pub fn resolution(&self) -> &Resolution {
        self.resolver.resolution()
    }

    /// The devices holding each epoch's key.
    pub fn holders(&self) -> &BTreeMap<EpochId, BTreeSet<DeviceId>> {
        self.holders.get_or_init(|| {
            let resolution = self.resolution();
            resolution
                .epochs
                .iter()
                .map(|e| (*e, self.log.holders(e, resolution)))
                .collect()
        })
    }

    /// Adds one operation of this node's; refused like a peer's if it is not admitted.
    pub fn append(&mut self, op: SignedOp) -> Result<Change, OpError> {
        if !self.log.has_parents(&op) {
            return Err(OpError::Malformed(
                "an operation written here must name operations of the log".into(),
            ));
        }
        self.offer(op, &mut Vec::new())
    }

    /// Decodes and takes a peer's operations.
    pub fn take_in(&mut self, ops: &[Vec<u8>]) -> OpsIntake {
        let mut intake = OpsIntake::default();
        for bytes in ops {
            let hash = *blake3::hash(bytes).as_bytes();
            // Known bytes were checked when first taken: no signature check again (peers
            // offer a circle's whole log at every catch-up).
            if self.log.knows(&OpHash(hash)) {
                continue;
            }
            let refusal = |e| (hash, e);
            let op = match SignedOp::decode(bytes) {
                Ok(op) => op,
                Err(e) => {
                    intake.refused.push(refusal(e));
                    continue;
                }
            };
            let mut released = Vec::new();
            match self.offer(op, &mut released) {
                Ok(c) => intake.change = intake.change.and(c),
                Err(e) => intake.refused.push(refusal(e)),
            }
            for (outcome, op) in released {
                match outcome {
                    Ok(()) => intake.new.push(op),
                    Err(e) => intake
                        .refused
                        .push((*blake3::hash(op.bytes()).as_bytes(), e)),
                }
            }
        }
        intake
    }

    /// Checks `op` and takes it (with the waiting operations it completes), or parks it
    /// until its parents arrive. `taken` receives every operation taken or refused once its
    /// parents were there, in order.
    fn offer(
        &mut self,
        op: SignedOp,
        taken: &mut Vec<(Result<(), OpError>, SignedOp)>,
    ) -> Result<Change, OpError> {
        // The cheap checks first: whose circle, whether known, whether its signer was ever
        // granted here.
        if matches!(op.content().body, OpBody::Genesis { .. }) {
            return if op.hash().0 == self.log.circle().0 {
                Ok(Change::None)
            } else {
                Err(OpError::SecondGenesis)
            };
        }
        if op.content().circle != Some(self.log.circle()) {
            return Err(OpError::WrongCircle);
        }
        if self.log.knows(&op.hash()) {
            return Ok(Change::None);
        }
        if !self.log.granted(&op.content().device) {
            return Err(OpError::UnknownDevice);
        }
        if self.log.len() >= self.limits.held {
            return Err(OpError::TooManyOps {
                max: self.limits.held,
            });
        }
        if !self.log.has_parents(&op) {
            self.log.park(op)?;
            return Ok(Change::None);
        }
        let mut change = Change::None;
        let mut queue = vec![op];
        let mut first = true;
        while let Some(op) = queue.pop() {
            let hash = op.hash();
            let outcome = self.admit(&op);
            match &outcome {
                Ok(c) => {
                    change = change.and(*c);
                    taken.push((Ok(()), op));
                    queue.extend(self.log.unblocked(&hash));
                }
                Err(e) if first => return Err(e.clone()),
                Err(e) => taken.push((Err(e.clone()), op)),
            }
            first = false;
        }
        Ok(change)
    }

    /// Decides whether `op` (all parents in the log) enters, and takes it if so.
    fn admit(&mut self, op: &SignedOp) -> Result<Change, OpError> {
        let on_top = self.resolver.on_top(&op.content().parents);
        // The state of the operation's causal past: the resolution itself when it names
        // every head; otherwise its ancestors resolved apart.
        let apart;
        let (past, size, written, verdict) = if on_top {
            let verdict = self.resolver.judge_next(op);
            let written = verdict.author.map_or(0, |(m, _)| self.log.count_by(&m));
            (self.resolution(), self.log.len(), written, verdict)
        } else {
            let ancestors = self.log.ancestors(op);
            apart = Resolver::build(self.log.by_hash(), ancestors.iter().copied());
            let verdict = apart.judge_next(op);
            let written = verdict.author.map_or(0, |(m, _)| {
                ancestors
                    .iter()
                    .filter(|h| self.log.author(h) == Some(&m))
                    .count()
            });
            (apart.resolution(), ancestors.len(), written, verdict)
        };
        if size + 1 > self.limits.ops {
            return Err(OpError::TooManyOps {
                max: self.limits.ops,
            });
        }
        verdict.outcome.clone().map_err(OpError::Void)?;
        if written + 1 > self.limits.per_author {
            return Err(OpError::TooManyByAuthor {
                max: self.limits.per_author,
            });
        }
        let author = verdict.author.map(|(m, _)| m);
        effective(past, op)?;
        self.log.push(op.clone(), author);
        if on_top {
            // Judged valid above, against the same state.
            let _ = self.resolver.append(op);
            if let Some(holders) = self.holders.get_mut() {
                for k in sealed_keys(&op.content().body) {
                    holders.entry(k.epoch).or_default().insert(k.device);
                }
            }
            Ok(Change::Appended)
        } else {
            self.resolver =
                Resolver::build(self.log.by_hash(), self.log.sequence().iter().copied());
            self.holders = std::cell::OnceCell::new();
            Ok(Change::Resolved)
        }
    }
}

/// Refuses a valid operation that would change nothing in `past`.
fn effective(past: &Resolution, op: &SignedOp) -> Result<(), OpError> {
    match &op.content().body {
        OpBody::SetRelays { relays } if *relays == past.relays => {
            Err(OpError::NoEffect("the circle already uses these relays"))
        }
        OpBody::SetReminder { hours } if *hours == past.reminder_after() => Err(OpError::NoEffect(
            "the circle already reminds its members after this delay",
        )),
        OpBody::ChangeRole { member, role } if past.role(member) == Some(*role) => {
            Err(OpError::NoEffect("the member already has this role"))
        }
        OpBody::AddMember { grant, .. } if past.removed.contains_key(&grant.member) => Err(
            OpError::NoEffect("a member removed from a circle cannot be added back to it"),
        ),
        OpBody::AddDevice { certificate, .. } if past.revoked.contains_key(&certificate.device) => {
            Err(OpError::NoEffect(
                "a device revoked from a circle cannot be added back to it",
            ))
        }
        _ => Ok(()),
    }
}

/// `ops` in an order where parents come first (those whose parents are missing last).
fn parents_first(mut ops: Vec<SignedOp>) -> Vec<SignedOp> {
    let mut seen = std::collections::HashSet::new();
    ops.retain(|o| seen.insert(o.hash()));
    let hashes: std::collections::HashSet<OpHash> = ops.iter().map(SignedOp::hash).collect();
    let mut pending: std::collections::HashMap<OpHash, usize> = std::collections::HashMap::new();
    let mut children: std::collections::HashMap<OpHash, Vec<usize>> =
        std::collections::HashMap::new();
    let mut ready = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let inside: Vec<&OpHash> = op
            .content()
            .parents
            .iter()
            .filter(|p| hashes.contains(p))
            .collect();
        pending.insert(op.hash(), inside.len());
        for p in inside {
            children.entry(*p).or_default().push(i);
        }
        if pending.get(&op.hash()) == Some(&0) {
            ready.push(i);
        }
    }
    let mut done = vec![false; ops.len()];
    let mut order = Vec::with_capacity(ops.len());
    while let Some(i) = ready.pop() {
        if std::mem::replace(&mut done[i], true) {
            continue;
        }
        order.push(i);
        for &c in children.get(&ops[i].hash()).into_iter().flatten() {
            if let Some(n) = pending.get_mut(&ops[c].hash()) {
                *n -= 1;
                if *n == 0 {
                    ready.push(c);
                }
            }
        }
    }
    order.extend((0..ops.len()).filter(|i| !done[*i]));
    let mut slots: Vec<Option<SignedOp>> = ops.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}
/// The epoch keys an operation carries, sealed to devices.
pub(crate) fn sealed_keys(body: &OpBody) -> &[SealedKey] {
    match body {
        OpBody::Genesis { sealed, .. }
        | OpBody::AddMember { sealed, .. }
        | OpBody::RemoveMember { sealed, .. }
        | OpBody::RotateKey { sealed, .. }
        | OpBody::AddDevice { sealed, .. }
        | OpBody::BreakGlass { sealed, .. }
        | OpBody::RevokeDevice { sealed, .. } => sealed,
        OpBody::ChangeRole { .. }
        | OpBody::SetRelays { .. }
        | OpBody::SetReminder { .. }
        | OpBody::WithdrawConsent { .. }
        | OpBody::SetOnCall { .. }
        | OpBody::Close => &[],
    }
}
