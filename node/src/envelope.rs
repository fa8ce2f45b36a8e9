//! Envelopes: the unit of replication. One envelope carries one or more consecutive Automerge
//! changes of one device in one document of one circle.
//!
//! Wire format (version 1, all integers little-endian), with hard limits:
//!
//! ```text
//! header:  "CE" | version u8 | doc u8 | circle [32] | device [32] | seq u64 | prev [32]
//!          | epoch [16] | dep count u8 | deps [32 × n]
//! body:    payload length u32 | payload (nonce ‖ XChaCha20-Poly1305 ciphertext)
//! trailer: Ed25519 signature [64] by the device over header and body
//! ```
//!
//! The payload is the list of changes, deflate-compressed from 2 KiB on (its first byte says
//! which), encrypted with the circle's epoch key; the header is its associated data. `prev` chains each device's envelopes per
//! document, so a device cannot rewrite its history without leaving evidence.
//!
//! [`EnvelopeLog`] is the receive side, sans-I/O. It checks, in this order: size, decoding,
//! signature, that the device is certified by a member allowed to write this document in
//! this epoch and not past its removal cut-off, hash-chain continuity, decryption, that every
//! change is the device's own, and finally the document's own validation
//! (`cercle_crdt::validate_changes`, applied by the caller's `Replica`). Envelopes that
//! arrive before their predecessor wait; anything rejected is recorded with its reason.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use cercle_crdt::{Change, ChangeAuthor, DocKind, MemberId, Role};
use ed25519_dalek::Signature;
use serde::Serialize;

use crate::circle::membership::{CircleId, Resolution};
use crate::crypto::{EpochId, EpochKey, SecureRng};
use crate::identity::{DeviceId, LocalIdentity};
use crate::reader::Reader;

/// The largest envelope accepted, in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// The largest decompressed payload accepted (a guard against compression bombs).
pub const MAX_PLAINTEXT_BYTES: usize = 4 * 1024 * 1024;
/// At most this many changes per envelope.
pub const MAX_CHANGES: usize = 1024;
/// At most this many external dependencies per envelope.
pub const MAX_DEPS: usize = 64;
/// Out-of-order envelopes kept waiting per device and document.
pub const MAX_WAITING: usize = 256;

const MAGIC: &[u8; 2] = b"CE";
/// Payload encodings (the first byte inside the encryption).
const PLAIN: u8 = 0;
const DEFLATE: u8 = 1;
/// Payloads from this size on are deflated.
const COMPRESS_FROM: usize = 2048;
const VERSION: u8 = 1;

/// Why an envelope was refused. Recorded, never applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EnvelopeRejection {
    #[error("envelope of {size} bytes is larger than {MAX_ENVELOPE_BYTES}")]
    Oversized { size: usize },
    #[error("malformed envelope: {what}")]
    Malformed { what: String },
    #[error("the device signature does not verify")]
    BadSignature,
    #[error("envelope for another circle")]
    WrongCircle,
    #[error("device {device} is not certified by any member of this circle")]
    UnknownDevice { device: String },
    #[error("device {device} was removed or revoked from the circle after its change {cutoff}")]
    AfterRemoval { device: String, cutoff: u64 },
    #[error("a {role} may not write the {doc}")]
    RoleForbids { role: Role, doc: DocKind },
    #[error("epoch {epoch} is not an epoch of this circle")]
    UnknownEpoch { epoch: String },
    #[error("the writing device does not hold the key of epoch {epoch}")]
    WrongEpoch { epoch: String },
    #[error("this device holds no key for epoch {epoch}")]
    NoKey { epoch: String },
    #[error("envelope {seq} of this device was already applied")]
    Replay { seq: u64 },
    #[error("envelope {seq} does not follow the device's previous envelope (fork)")]
    Fork { seq: u64 },
    #[error("the payload does not decrypt under the epoch key")]
    Decrypt,
    #[error("a change inside is not the signing device's own")]
    ForeignChange,
    #[error("too many envelopes wait for a missing predecessor")]
    TooManyWaiting,
}

impl EnvelopeRejection {
    /// A short, stable name of the reason (for metrics labels and records).
    pub fn kind(&self) -> &'static str {
        match self {
            EnvelopeRejection::Oversized { .. } => "oversized",
            EnvelopeRejection::Malformed { .. } => "malformed",
            EnvelopeRejection::BadSignature => "bad_signature",
            EnvelopeRejection::WrongCircle => "wrong_circle",
            EnvelopeRejection::UnknownDevice { .. } => "unknown_device",
            EnvelopeRejection::AfterRemoval { .. } => "after_removal",
            EnvelopeRejection::RoleForbids { .. } => "role_forbids",
            EnvelopeRejection::UnknownEpoch { .. } => "unknown_epoch",
            EnvelopeRejection::WrongEpoch { .. } => "wrong_epoch",
            EnvelopeRejection::NoKey { .. } => "no_key",
            EnvelopeRejection::Replay { .. } => "replay",
            EnvelopeRejection::Fork { .. } => "fork",
            EnvelopeRejection::Decrypt => "decrypt",
            EnvelopeRejection::ForeignChange => "foreign_change",
            EnvelopeRejection::TooManyWaiting => "too_many_waiting",
        }
    }
}

/// One device's log in one document of one circle: where an envelope belongs. Its
/// envelopes are numbered by `seq` from 1 and chained by `prev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogId {
    pub circle: CircleId,
    pub doc: DocKind,
    pub device: DeviceId,
}

/// One envelope named by its log and position: what a node queues for a peer and reads
/// back from its store when it sends (never the bytes themselves, so a slow peer costs a
/// few bytes per envelope waiting, not the envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvelopeRef {
    pub log: LogId,
    pub seq: u64,
}

/// Where a new envelope goes in its writer's log: its circle and document, its sequence
/// number and the hash of the envelope before it (zeros for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub circle: CircleId,
    pub doc: DocKind,
    pub seq: u64,
    pub prev: [u8; 32],
}

/// The clear header of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub circle: CircleId,
    pub doc: DocKind,
    pub device: DeviceId,
    /// Position in the device's log for this document, from 1.
    pub seq: u64,
    /// Hash of the device's previous envelope for this document (zeros for seq 1).
    pub prev: [u8; 32],
    pub epoch: EpochId,
    /// Automerge change hashes the changes depend on, outside this envelope.
    pub deps: Vec<[u8; 32]>,
}

impl Header {
    /// The log this envelope belongs to.
    pub fn log(&self) -> LogId {
        LogId {
            circle: self.circle,
            doc: self.doc,
            device: self.device,
        }
    }
}

/// A signed envelope, as received or about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub header: Header,
    bytes: Vec<u8>,
    /// BLAKE3 of `bytes`, computed once.
    hash: [u8; 32],
    header_len: usize,
    payload: std::ops::Range<usize>,
}

fn encode_header(h: &Header) -> Vec<u8> {
    let mut b = Vec::with_capacity(160 + 32 * h.deps.len());
    b.extend_from_slice(MAGIC);
    b.push(VERSION);
    b.push(h.doc.code());
    b.extend_from_slice(&h.circle.0);
    b.extend_from_slice(&h.device.0);
    b.extend_from_slice(&h.seq.to_le_bytes());
    b.extend_from_slice(&h.prev);
    b.extend_from_slice(&h.epoch.0);
    b.push(h.deps.len() as u8);
    for d in &h.deps {
        b.extend_from_slice(d);
    }
    b
}

impl Envelope {
    /// Seals `changes` (all by `signer`'s device, consecutive) into an envelope.
    pub fn seal(
        signer: &LocalIdentity,
        slot: Slot,
        (epoch, key): (EpochId, &EpochKey),
        changes: &[Change],
        rng: &mut SecureRng,
    ) -> Result<Envelope, EnvelopeRejection> {
        let Slot {
            circle,
            doc,
            seq,
            prev,
        } = slot;
        let inside: BTreeSet<[u8; 32]> = changes.iter().map(|c| c.hash().0).collect();
        let deps: BTreeSet<[u8; 32]> = changes
            .iter()
            .flat_map(|c| c.deps().iter().map(|d| d.0))
            .filter(|d| !inside.contains(d))
            .collect();
        let header = Header {
            circle,
            doc,
            device: signer.device(),
            seq,
            prev,
            epoch,
            deps: deps.into_iter().take(MAX_DEPS).collect(),
        };
        let mut plain = Vec::new();
        plain.extend_from_slice(&(changes.len() as u32).to_le_bytes());
        for c in changes {
            let raw = c.raw_bytes();
            plain.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            plain.extend_from_slice(raw);
        }
        // Automerge already compresses large columns; deflate pays only on bigger batches.
        let compressed = if plain.len() < COMPRESS_FROM {
            let mut out = Vec::with_capacity(1 + plain.len());
            out.push(PLAIN);
            out.extend_from_slice(&plain);
            out
        } else {
            let mut z =
                flate2::write::DeflateEncoder::new(vec![DEFLATE], flate2::Compression::fast());
            z.write_all(&plain).and_then(|()| z.finish()).map_err(|e| {
                EnvelopeRejection::Malformed {
                    what: e.to_string(),
                }
            })?
        };
        let mut bytes = encode_header(&header);
        let header_len = bytes.len();
        let payload = key
            .encrypt(rng, &bytes, &compressed)
            .map_err(|_| EnvelopeRejection::Decrypt)?;
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let start = bytes.len();
        bytes.extend_from_slice(&payload);
        let end = bytes.len();
        let signature = signer.sign(&bytes);
        bytes.extend_from_slice(&signature);
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeRejection::Oversized { size: bytes.len() });
        }
        Ok(Envelope {
            header,
            hash: *blake3::hash(&bytes).as_bytes(),
            bytes,
            header_len,
            payload: start..end,
        })
    }

    /// The document an envelope's bytes say they carry, read without any check: to choose
    /// which envelopes to check, never to trust one.
    pub fn peek_doc(bytes: &[u8]) -> Option<DocKind> {
        if bytes.get(..MAGIC.len())? != MAGIC || *bytes.get(MAGIC.len())? != VERSION {
            return None;
        }
        DocKind::from_code(*bytes.get(MAGIC.len() + 1)?)
    }

    /// The log position (device, document, sequence number) an envelope's bytes say they
    /// hold, read without any check: to recognise bytes already held, never to trust new
    /// ones.
    fn peek_position(bytes: &[u8]) -> Option<(DeviceId, DocKind, u64)> {
        let doc = Envelope::peek_doc(bytes)?;
        let mut r = Reader::new(bytes, ());
        r.take(MAGIC.len() + 2 + 32).ok()?;
        let device = DeviceId(r.array().ok()?);
        Some((device, doc, r.u64().ok()?))
    }

    /// Decodes received bytes and checks the signature (checks 1–3).
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeRejection> {
        let env = Envelope::decode_unsigned(bytes)?;
        env.verify()?;
        Ok(env)
    }

    /// Check 3: the device's signature over the header and body.
    fn verify(&self) -> Result<(), EnvelopeRejection> {
        let end = self.payload.end;
        let signature: [u8; 64] = self
            .bytes
            .get(end..)
            .and_then(|s| s.try_into().ok())
            .ok_or(EnvelopeRejection::BadSignature)?;
        let key = crate::crypto::verifying_key(&self.header.device.0)
            .map_err(|_| EnvelopeRejection::BadSignature)?;
        key.verify_strict(&self.bytes[..end], &Signature::from_bytes(&signature))
            .map_err(|_| EnvelopeRejection::BadSignature)
    }

    /// Checks 1–2 (size, decoding) without the signature: for [`EnvelopeLog::check`], which
    /// checks the signature of a run of one log's envelopes on its last one.
    /// Decodes an envelope this node stored after checking its signature (when it came),
    /// without checking the signature again.
    pub(crate) fn decode_stored(bytes: &[u8]) -> Result<Envelope, EnvelopeRejection> {
        Envelope::decode_unsigned(bytes)
    }

    fn decode_unsigned(bytes: &[u8]) -> Result<Envelope, EnvelopeRejection> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeRejection::Oversized { size: bytes.len() });
        }
        let malformed = |what: &str| EnvelopeRejection::Malformed { what: what.into() };
        let mut r = Reader::new(bytes, malformed("truncated"));
        if r.take(2)? != MAGIC {
            return Err(malformed("not an envelope"));
        }
        if r.byte()? != VERSION {
            return Err(malformed("unknown version"));
        }
        let doc =
            DocKind::from_code(r.byte()?).ok_or_else(|| malformed("unknown document kind"))?;
        let circle = CircleId(r.array()?);
        let device = DeviceId(r.array()?);
        let seq = r.u64()?;
        let prev = r.array()?;
        let epoch = EpochId(r.array()?);
        let ndeps = usize::from(r.byte()?);
        if ndeps > MAX_DEPS {
            return Err(malformed("too many dependencies"));
        }
        let mut deps = Vec::with_capacity(ndeps);
        for _ in 0..ndeps {
            deps.push(r.array()?);
        }
        let header_len = r.position();
        let len = r.len_u32()?;
        let start = r.position();
        r.take(len)?;
        let end = r.position();
        let _signature: [u8; 64] = r.array()?;
        if !r.is_done() {
            return Err(malformed("trailing bytes"));
        }
        if seq == 0 {
            return Err(malformed("sequence numbers start at 1"));
        }
        Ok(Envelope {
            header: Header {
                circle,
                doc,
                device,
                seq,
                prev,
                epoch,
                deps,
            },
            hash: *blake3::hash(bytes).as_bytes(),
            bytes: bytes.to_vec(),
            header_len,
            payload: start..end,
        })
    }

    /// The bytes to send and store.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// BLAKE3 hash of the whole envelope (what the next envelope's `prev` names).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Decrypts, decompresses and parses the changes (no other check).
    pub fn open(&self, key: &EpochKey) -> Result<Vec<Change>, EnvelopeRejection> {
        self.open_raw(key)?
            .into_iter()
            .map(|raw| {
                Change::from_bytes(raw).map_err(|_| EnvelopeRejection::Malformed {
                    what: "a change does not parse".into(),
                })
            })
            .collect()
    }

    /// Decrypts and decompresses the changes' bytes, without parsing them.
    pub fn open_raw(&self, key: &EpochKey) -> Result<Vec<Vec<u8>>, EnvelopeRejection> {
        let compressed = key
            .decrypt(
                &self.bytes[..self.header_len],
                &self.bytes[self.payload.clone()],
            )
            .map_err(|_| EnvelopeRejection::Decrypt)?;
        let mut plain = Vec::new();
        match compressed.split_first() {
            Some((&PLAIN, rest)) => plain.extend_from_slice(rest),
            Some((&DEFLATE, rest)) => {
                flate2::read::DeflateDecoder::new(rest)
                    .take(MAX_PLAINTEXT_BYTES as u64 + 1)
                    .read_to_end(&mut plain)
                    .map_err(|_| EnvelopeRejection::Malformed {
                        what: "bad compression".into(),
                    })?;
            }
            _ => {
                return Err(EnvelopeRejection::Malformed {
                    what: "unknown payload encoding".into(),
                });
            }
        }
        if plain.len() > MAX_PLAINTEXT_BYTES {
            return Err(EnvelopeRejection::Malformed {
                what: "payload too large".into(),
            });
        }
        let mut r = Reader::new(
            &plain,
            EnvelopeRejection::Malformed {
                what: "truncated".into(),
            },
        );
        let count = r.len_u32()?;
        if count == 0 || count > MAX_CHANGES {
            return Err(EnvelopeRejection::Malformed {
                what: "bad change count".into(),
            });
        }
        let mut changes = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.len_u32()?;
            changes.push(r.take(len)?.to_vec());
        }
        if !r.is_done() {
            return Err(EnvelopeRejection::Malformed {
                what: "trailing payload bytes".into(),
            });
        }
        Ok(changes)
    }
}

/// Whether `role` may write anything in `doc` (the fine rules are the document's own).
fn may_write(role: Role, doc: DocKind) -> bool {
    match doc {
        DocKind::PatientFile => role.writes_clinical(),
        DocKind::LiaisonNotebook | DocKind::Thread => role.writes_anything(),
    }
}

/// What the receive side needs to know about the circle.
#[derive(Debug)]
pub struct CircleView<'a> {
    pub circle: CircleId,
    pub resolution: &'a Resolution,
    /// Devices holding each epoch's key.
    pub holders: &'a BTreeMap<EpochId, BTreeSet<DeviceId>>,
    /// The epoch keys this device can open; `None` for a relay, which carries envelopes it
    /// cannot open: checks 1–5 only (size, decoding, signature, writer, chain), and
    /// [`Accepted::changes`] is empty.
    pub keys: Option<&'a BTreeMap<EpochId, EpochKey>>,
}

/// Changes ready to be applied, with who wrote them.
#[derive(Debug)]
pub struct Accepted {
    pub doc: DocKind,
    pub device: DeviceId,
    pub seq: u64,
    pub member: MemberId,
    pub role: Role,
    pub changes: Vec<Change>,
    /// The envelope itself, to store and pass on.
    pub envelope: Envelope,
}

impl Accepted {
    /// `env`, written by `member`'s device with `role`, carrying `changes`.
    fn of(env: Envelope, member: MemberId, role: Role, changes: Vec<Change>) -> Accepted {
        let h = &env.header;
        Accepted {
            doc: h.doc,
            device: h.device,
            seq: h.seq,
            member,
            role,
            changes,
            envelope: env,
        }
    }

    /// Who wrote the changes, as the document's validation needs it.
    pub fn author(&self) -> ChangeAuthor {
        ChangeAuthor {
            member: self.member,
            role: self.role,
        }
    }
}

/// Two validly signed envelopes for the same device, document and sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvidence {
    pub device: DeviceId,
    pub doc: DocKind,
    pub seq: u64,
    pub first: Vec<u8>,
    pub second: Vec<u8>,
}

/// The last envelope accepted from one device in one document.
#[derive(Debug, Clone)]
struct LogHead {
    seq: u64,
    hash: [u8; 32],
    bytes: Vec<u8>,
}

/// An envelope refused by the receive checks, with its reason (the caller records it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The sending device, when the envelope decoded.
    pub device: Option<DeviceId>,
    /// BLAKE3 of the refused bytes.
    pub hash: [u8; 32],
    pub reason: EnvelopeRejection,
}

/// Everything checking a run of envelopes found: nothing is reported anywhere else.
#[derive(Debug, Default)]
pub struct Checked {
    /// Envelopes that passed, in log order (with any that waited for them).
    pub accepted: Vec<Accepted>,
    /// Envelopes refused, each with its reason.
    pub rejected: Vec<Rejected>,
    /// Proof of devices that signed two different envelopes for one position (each also
    /// in `rejected`, as a `Fork`).
    pub forks: Vec<ForkEvidence>,
    /// Envelopes already held: peers pass on what others sent, so this is routine.
    pub replays: usize,
}

/// The receive side: per device and document, the last envelope confirmed (stored here)
/// and those waiting for a predecessor.
///
/// Checking does not commit: an envelope that passed the checks counts as held only once
/// its receiver [`confirm`](EnvelopeLog::confirm)s it (a member's node once its changes
/// applied, a relay once stored). One that cannot be applied yet (its changes depend on
/// another device's, not received yet) is simply not confirmed: a later copy is checked
/// again, and nothing it was refused for is lost.
#[derive(Debug, Default)]
pub struct EnvelopeLog {
    heads: BTreeMap<(DeviceId, DocKind), LogHead>,
    /// Heads of envelopes accepted during the current [`EnvelopeLog::check`], so that a
    /// device's consecutive envelopes in one batch chain on each other.
    pending: BTreeMap<(DeviceId, DocKind), LogHead>,
    waiting: BTreeMap<(DeviceId, DocKind), BTreeMap<u64, Envelope>>,
}

impl EnvelopeLog {
    /// Continues a device's log from its last stored envelope (on opening, and for this
    /// device's own writes).
    pub fn resume(&mut self, env: &Envelope) {
        let h = &env.header;
        self.heads.insert(
            (h.device, h.doc),
            LogHead {
                seq: h.seq,
                hash: env.hash(),
                bytes: env.bytes.clone(),
            },
        );
    }

    /// Continues a device's log from the position and hash of its last envelope when its
    /// bytes are not kept: a later copy of it then counts as already held, never as a fork.
    pub fn resume_at(&mut self, device: DeviceId, doc: DocKind, seq: u64, hash: [u8; 32]) {
        let head = LogHead {
            seq,
            hash,
            bytes: Vec::new(),
        };
        self.heads.insert((device, doc), head);
    }

    /// Checks 4, 6 and 7 again for an envelope held but not checked yet (it passed the
    /// others when it came, its position in its log included): the writer, as the
    /// membership stands now; its opening; the changes being its device's own.
    pub fn open_stored(
        &self,
        env: Envelope,
        view: &CircleView<'_>,
    ) -> Result<Accepted, EnvelopeRejection> {
        let (role, member) = self.check_writer(&env, view)?;
        let changes = match view.keys {
            Some(keys) => open_own(&env, keys)?,
            None => Vec::new(),
        };
        Ok(Accepted::of(env, member, role, changes))
    }

    /// The sequence number of the last envelope held from `device` in `doc` (0: none).
    pub fn head_seq(&self, device: &DeviceId, doc: DocKind) -> u64 {
        self.heads.get(&(*device, doc)).map_or(0, |h| h.seq)
    }

    /// Checks received envelopes in order: what is ready (each envelope and any waiting
    /// successors it releases), what was refused and why, and fork evidence. What is
    /// ready counts as held once confirmed.
    pub fn check(&mut self, envelopes: &[Vec<u8>], view: &CircleView<'_>) -> Checked {
        let mut checked = Checked::default();
        let mut vouched = self.vouch(envelopes);
        for (bytes, vouched) in envelopes.iter().zip(vouched.iter_mut()) {
            self.check_one(bytes, vouched.take(), view, &mut checked);
        }
        self.pending.clear();
        checked
    }

    /// The envelopes of `envelopes` whose signature need not be checked one by one, decoded.
    ///
    /// A run of consecutive envelopes of one log (each the next `seq`, each naming the
    /// BLAKE3 hash of the one before as `prev`) is vouched for by the signature on its last
    /// envelope: that signature covers the hash of the one before, which covers the hash of
    /// the one before it, and so on, so one verification authenticates the whole run (as a
    /// hypercore signs only its tree's root). A catch-up sends each log as such runs. When
    /// the last signature fails, every envelope of the run is checked on its own: a
    /// tampered run costs one verification more than checking them one by one.
    fn vouch(&self, envelopes: &[Vec<u8>]) -> Vec<Option<Envelope>> {
        let mut decoded: Vec<Option<Envelope>> = envelopes
            .iter()
            .map(|bytes| {
                (envelopes.len() > 1 && !self.holds(bytes))
                    .then(|| Envelope::decode_unsigned(bytes).ok())
                    .flatten()
            })
            .collect();
        let hashes: Vec<Option<[u8; 32]>> = decoded
            .iter()
            .map(|e| e.as_ref().map(Envelope::hash))
            .collect();
        // next[i]: the envelope of the batch that follows envelope i in its log.
        let mut next: Vec<Option<usize>> = vec![None; envelopes.len()];
        let mut follows = vec![false; envelopes.len()];
        let mut last: BTreeMap<(CircleId, DeviceId, DocKind), usize> = BTreeMap::new();
        for (i, env) in decoded.iter().enumerate() {
            let Some(env) = env else { continue };
            let h = &env.header;
            let key = (h.circle, h.device, h.doc);
            if let Some(&j) = last.get(&key) {
                let before = decoded[j].as_ref().map(|e| e.header.seq);
                if before.is_some_and(|seq| seq + 1 == h.seq) && hashes[j] == Some(h.prev) {
                    next[j] = Some(i);
                    follows[i] = true;
                }
            }
            last.insert(key, i);
        }
        let mut vouched: Vec<Option<Envelope>> = vec![None; envelopes.len()];
        for start in 0..envelopes.len() {
            if follows[start] || next[start].is_none() {
                continue;
            }
            let mut run = vec![start];
            while let Some(i) = run.last().and_then(|&i| next[i]) {
                run.push(i);
            }
            let signed = run
                .last()
                .and_then(|&tail| decoded[tail].as_ref())
                .is_some_and(|tail| tail.verify().is_ok());
            if signed {
                for i in run {
                    vouched[i] = decoded[i].take();
                }
            }
        }
        vouched
    }

    /// Whether `bytes` are those of the last envelope held in their log (accepted in this
    /// check, or confirmed): checked when they came first.
    fn holds(&self, bytes: &[u8]) -> bool {
        Envelope::peek_position(bytes).is_some_and(|(device, doc, seq)| {
            self.head(&(device, doc))
                .is_some_and(|head| head.seq == seq && head.bytes == bytes)
        })
    }

    /// The receiver holds `env` now (applied or stored): later copies are replays, and the
    /// device's next envelope must chain on it.
    pub fn confirm(&mut self, env: &Envelope) {
        let h = &env.header;
        let key = (h.device, h.doc);
        if self.heads.get(&key).is_none_or(|head| head.seq < h.seq) {
            self.resume(env);
        }
    }

    /// Envelopes waiting for a predecessor, in all.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(BTreeMap::len).sum()
    }

    /// The last envelope of a log: accepted in this check, or confirmed.
    fn head(&self, key: &(DeviceId, DocKind)) -> Option<&LogHead> {
        self.pending.get(key).or_else(|| self.heads.get(key))
    }

    /// Checks one envelope; `vouched` is the envelope already decoded when a later
    /// envelope's signature vouches for it ([`EnvelopeLog::vouch`]).
    fn check_one(
        &mut self,
        bytes: &[u8],
        vouched: Option<Envelope>,
        view: &CircleView<'_>,
        out: &mut Checked,
    ) {
        // The same bytes as the last envelope held in their log were checked when they
        // came first: peers pass each new envelope on, so most copies are this one, and
        // its signature is not checked again.
        if self.holds(bytes) {
            tracing::debug!("envelope already held");
            out.replays += 1;
            return;
        }
        let was_vouched = vouched.is_some();
        let env = match vouched.map_or_else(|| Envelope::decode(bytes), Ok) {
            Ok(env) => env,
            Err(reason) => return reject(out, None, bytes, reason),
        };
        let h = env.header.clone();
        let refuse = |out: &mut Checked, reason| reject(out, Some(h.device), bytes, reason);
        if h.circle != view.circle {
            return refuse(out, EnvelopeRejection::WrongCircle);
        }
        let writer = match self.check_writer(&env, view) {
            Ok(writer) => writer,
            Err(reason) => return refuse(out, reason),
        };
        let key = (h.device, h.doc);
        let last = self.head(&key).map_or(0, |h| h.seq);
        if h.seq <= last {
            match self.fork_evidence(&env) {
                None => {
                    tracing::debug!(seq = h.seq, "envelope already held");
                    out.replays += 1;
                }
                // Evidence a third party can check carries each envelope's own signature.
                Some(_) if was_vouched && env.verify().is_err() => {
                    refuse(out, EnvelopeRejection::BadSignature);
                }
                Some(fork) => {
                    out.forks.push(fork);
                    refuse(out, EnvelopeRejection::Fork { seq: h.seq });
                }
            }
            return;
        }
        if h.seq > last + 1 {
            let waiting = self.waiting.entry(key).or_default();
            if waiting.len() >= MAX_WAITING {
                return refuse(out, EnvelopeRejection::TooManyWaiting);
            }
            waiting.insert(h.seq, env);
            return;
        }
        match self.accept(env, writer, view) {
            Ok(a) => out.accepted.push(a),
            Err(reason) => return refuse(out, reason),
        }
        // Successors that were waiting for this one.
        while let Some(next) = self
            .waiting
            .get_mut(&key)
            .and_then(|w| w.remove(&(out.accepted.last().map_or(0, |a| a.seq) + 1)))
        {
            let device = next.header.device;
            let bytes = next.bytes.clone();
            // Checked again: the membership may have changed since it came.
            match self
                .check_writer(&next, view)
                .and_then(|writer| self.accept(next, writer, view))
            {
                Ok(a) => out.accepted.push(a),
                Err(reason) => {
                    reject(out, Some(device), &bytes, reason);
                    break;
                }
            }
        }
    }

    /// Check 4: a certified device of a member allowed to write this document in this epoch,
    /// not past its removal cut-off.
    fn check_writer(
        &self,
        env: &Envelope,
        view: &CircleView<'_>,
    ) -> Result<(Role, MemberId), EnvelopeRejection> {
        let h = &env.header;
        // Named in the rejection only (formatting them for every envelope cost 2 % of a
        // catch-up).
        let device = || h.device.to_string();
        let epoch = || h.epoch.to_string();
        let (member, role) = match view.resolution.member_of(&h.device) {
            Some((m, s)) => (*m, s.role),
            None => {
                // A removed member's or a revoked device still delivers what it wrote up to
                // the cut-off of its log (whoever passes it on), with the role it had;
                // nothing after.
                match view.resolution.former(&h.device, h.doc) {
                    Some((m, role, cutoff)) => {
                        if h.seq > cutoff {
                            return Err(EnvelopeRejection::AfterRemoval {
                                device: device(),
                                cutoff,
                            });
                        }
                        (m, role)
                    }
                    None => {
                        return Err(EnvelopeRejection::UnknownDevice { device: device() });
                    }
                }
            }
        };
        if !may_write(role, h.doc) {
            return Err(EnvelopeRejection::RoleForbids { role, doc: h.doc });
        }
        if !view.resolution.epochs.contains(&h.epoch) {
            return Err(EnvelopeRejection::UnknownEpoch { epoch: epoch() });
        }
        if !view
            .holders
            .get(&h.epoch)
            .is_some_and(|d| d.contains(&h.device))
        {
            return Err(EnvelopeRejection::WrongEpoch { epoch: epoch() });
        }
        Ok((role, member))
    }

    /// Checks 5–7 for the envelope that extends the device's log, its writer (`role`,
    /// `member`) checked (4).
    fn accept(
        &mut self,
        env: Envelope,
        (role, member): (Role, MemberId),
        view: &CircleView<'_>,
    ) -> Result<Accepted, EnvelopeRejection> {
        let h = env.header.clone();
        let key = (h.device, h.doc);
        let expected_prev = self.head(&key).map_or([0u8; 32], |h| h.hash);
        if h.prev != expected_prev {
            return Err(EnvelopeRejection::Fork { seq: h.seq });
        }
        let changes = match view.keys {
            Some(keys) => open_own(&env, keys)?,
            None => Vec::new(),
        };
        self.pending.insert(
            key,
            LogHead {
                seq: h.seq,
                hash: env.hash(),
                bytes: env.bytes.clone(),
            },
        );
        Ok(Accepted::of(env, member, role, changes))
    }

    /// An envelope at an already-filled position: the same bytes are a replay (`None`);
    /// different, validly signed bytes at the head are a fork, kept as evidence.
    fn fork_evidence(&self, env: &Envelope) -> Option<ForkEvidence> {
        let head = self.head(&(env.header.device, env.header.doc))?;
        // Without the head's bytes (not kept), nothing shows a fork.
        let known = !head.bytes.is_empty();
        (known && head.seq == env.header.seq && head.bytes != env.bytes).then(|| ForkEvidence {
            device: env.header.device,
            doc: env.header.doc,
            seq: head.seq,
            first: head.bytes.clone(),
            second: env.bytes.clone(),
        })
    }
}

/// Checks 6 and 7: the envelope opens with its epoch's key, and its changes are its
/// device's own.
fn open_own(
    env: &Envelope,
    keys: &BTreeMap<EpochId, EpochKey>,
) -> Result<Vec<Change>, EnvelopeRejection> {
    let h = &env.header;
    let epoch_key = keys.get(&h.epoch).ok_or_else(|| EnvelopeRejection::NoKey {
        epoch: h.epoch.to_string(),
    })?;
    let changes = env.open(epoch_key)?;
    let actor = h.device.actor();
    if changes.iter().any(|c| *c.actor_id() != actor) {
        return Err(EnvelopeRejection::ForeignChange);
    }
    Ok(changes)
}

fn reject(out: &mut Checked, device: Option<DeviceId>, bytes: &[u8], reason: EnvelopeRejection) {
    tracing::debug!(%reason, "rejected envelope");
    out.rejected.push(Rejected {
        device,
        hash: *blake3::hash(bytes).as_bytes(),
        reason,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circle::Circle;
    use crate::identity::Profile;
    use cercle_crdt::{
        ChangeAuthor, EntryKind, IdentityUpdate, LiaisonNotebook, NewEntry, PatientFile, Timestamp,
    };
    use proptest::prelude::*;

    fn person(name: &str) -> LocalIdentity {
        let p = Profile::new(name, "infirmière", None, None).unwrap();
        LocalIdentity::generate(p, Timestamp(1)).unwrap()
    }

    fn rng() -> SecureRng {
        rand::SeedableRng::seed_from_u64(3)
    }

    /// A circle of a GP (coordinator), a nurse, a caregiver, and a removed physiotherapist.
    struct Team {
        circle: Circle,
        gp: LocalIdentity,
        nurse: LocalIdentity,
        carer: LocalIdentity,
        physio: LocalIdentity,
        physio_envelope: Vec<u8>,
    }

    fn team() -> Team {
        let gp = person("GP");
        let (mut circle, _) =
            Circle::create(&gp, &IdentityUpdate::default(), Timestamp(1), &mut rng()).unwrap();
        let (nurse, carer, physio) = (person("Nurse"), person("Carer"), person("Physio"));
        for (who, role) in [
            (&nurse, Role::Professional),
            (&carer, Role::Caregiver),
            (&physio, Role::Professional),
        ] {
            let _ = circle
                .add_member(&gp, &who.public().card(&[]), role, Timestamp(2), &mut rng())
                .unwrap();
        }
        // The physiotherapist writes one note (seq 1), then is removed: cut-off 0, since the
        // GP's node has not seen it.
        let physio_envelope = note_envelope(&circle, &physio, 1, [0; 32], "avant départ").0;
        let _ = circle
            .remove_member(&gp, &physio.member(), Timestamp(3), &mut rng())
            .unwrap();
        Team {
            circle,
            gp,
            nurse,
            carer,
            physio,
            physio_envelope,
        }
    }

    fn notebook_change(who: &LocalIdentity, text: &str) -> Vec<Change> {
        let mut nb = LiaisonNotebook::new(who.actor());
        let entry = NewEntry {
            kind: EntryKind::Observation,
            text: text.into(),
            vitals: None,
        };
        nb.add_entry(who.member(), entry, Timestamp(5)).unwrap();
        nb.replica_mut().last_local_change().into_iter().collect()
    }

    /// An envelope by `who` with one notebook entry, sealed with the first epoch `who` holds.
    fn note_envelope(
        circle: &Circle,
        who: &LocalIdentity,
        seq: u64,
        prev: [u8; 32],
        text: &str,
    ) -> (Vec<u8>, [u8; 32]) {
        let keys = circle.epoch_keys(who);
        let current = circle.resolution().epoch;
        let (epoch, key) = keys
            .iter()
            .find(|(e, _)| Some(**e) == current)
            .or_else(|| keys.iter().next())
            .unwrap_or_else(|| panic!("no key"));
        let env = Envelope::seal(
            who,
            Slot {
                circle: circle_id(circle),
                doc: DocKind::LiaisonNotebook,
                seq,
                prev,
            },
            (*epoch, key),
            &notebook_change(who, text),
            &mut rng(),
        )
        .unwrap();
        (env.bytes().to_vec(), env.hash())
    }

    /// An envelope (seq 1) by `who` carrying `changes`, sealed with the current epoch's key.
    fn seal_current(t: &Team, who: &LocalIdentity, doc: DocKind, changes: &[Change]) -> Envelope {
        let current = t.circle.resolution().epoch.unwrap_or(EpochId([0; 16]));
        let keys = t.circle.epoch_keys(who);
        let key = keys
            .get(&current)
            .unwrap_or_else(|| panic!("no current key"));
        Envelope::seal(
            who,
            Slot {
                circle: circle_id(&t.circle),
                doc,
                seq: 1,
                prev: [0; 32],
            },
            (current, key),
            changes,
            &mut rng(),
        )
        .unwrap()
    }

    fn circle_id(c: &Circle) -> CircleId {
        c.id()
    }

    /// Receives `bytes` on `reader`'s node.
    fn receive(
        log: &mut EnvelopeLog,
        t: &Team,
        reader: &LocalIdentity,
        bytes: &[u8],
    ) -> Result<Vec<Accepted>, EnvelopeRejection> {
        let resolution = t.circle.resolution();
        let holders = holders(&t.circle);
        let keys = t.circle.epoch_keys(reader);
        let view = CircleView {
            circle: circle_id(&t.circle),
            resolution,
            holders: &holders,
            keys: Some(&keys),
        };
        let mut checked = log.check(&[bytes.to_vec()], &view);
        for a in &checked.accepted {
            log.confirm(&a.envelope);
        }
        if let Some(r) = checked.rejected.pop() {
            FORKS.with(|f| *f.borrow_mut() += checked.forks.len());
            return Err(r.reason);
        }
        if checked.replays > 0 {
            return Err(EnvelopeRejection::Replay { seq: 0 });
        }
        Ok(checked.accepted)
    }

    thread_local! {
        /// Fork evidence seen by `receive` in this test's thread.
        static FORKS: std::cell::RefCell<usize> = const { std::cell::RefCell::new(0) };
    }

    /// Devices holding each epoch's key, as the circle's membership says.
    fn holders(c: &Circle) -> BTreeMap<EpochId, BTreeSet<DeviceId>> {
        let r = c.resolution();
        r.epochs
            .iter()
            .map(|e| (*e, c.membership().holders(e, r)))
            .collect()
    }

    #[test]
    fn small_payloads_travel_plain_and_large_ones_deflated_both_open_the_same() {
        let who = person("Nurse");
        let key = EpochKey::generate(&mut rng());
        let mut nb = LiaisonNotebook::new(who.actor());
        for i in 0..40 {
            let entry = NewEntry {
                kind: EntryKind::Observation,
                text: format!("Passage {i}: pansement refait, plaie propre, tension 13/8."),
                vitals: None,
            };
            nb.add_entry(who.member(), entry, Timestamp(5 + i)).unwrap();
        }
        let all: Vec<Change> = nb.replica_mut().take_local_changes();
        for changes in [&all[..1], &all[..]] {
            let env = Envelope::seal(
                &who,
                Slot {
                    circle: CircleId([1; 32]),
                    doc: DocKind::LiaisonNotebook,
                    seq: 1,
                    prev: [0; 32],
                },
                (EpochId([2; 16]), &key),
                changes,
                &mut rng(),
            )
            .unwrap();
            let raw: usize = changes.iter().map(|c| c.raw_bytes().len()).sum();
            let payload = env.payload.len();
            if raw >= COMPRESS_FROM {
                assert!(payload < raw, "a large batch is compressed");
            }
            let opened = env.open(&key).unwrap();
            assert_eq!(
                opened.iter().map(|c| c.hash()).collect::<Vec<_>>(),
                changes.iter().map(|c| c.hash()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_members_envelope_is_accepted_and_its_changes_apply() {
        let t = team();
        let (bytes, _) = note_envelope(&t.circle, &t.nurse, 1, [0; 32], "Pansement refait");
        let mut log = EnvelopeLog::default();
        let accepted = receive(&mut log, &t, &t.gp, &bytes).unwrap();
        assert_eq!(accepted.len(), 1);
        let a = &accepted[0];
        assert_eq!((a.member, a.role), (t.nurse.member(), Role::Professional));
        let mut nb = LiaisonNotebook::new(t.gp.actor());
        let author = ChangeAuthor {
            member: a.member,
            role: a.role,
        };
        let created = nb.replica_mut().apply_changes(a.changes.clone(), &author);
        assert_eq!(created.map(|c| c.len()), Ok(1));
        assert_eq!(nb.entries()[0].text, "Pansement refait");
    }

    #[test]
    fn forged_unknown_removed_and_replayed_envelopes_are_rejected_each_with_its_reason() {
        let t = team();
        let mut log = EnvelopeLog::default();
        let (good, _) = note_envelope(&t.circle, &t.nurse, 1, [0; 32], "ok");

        let mut forged = good.clone();
        let i = forged.len() - 100;
        forged[i] ^= 1;
        assert_eq!(
            receive(&mut log, &t, &t.gp, &forged).err(),
            Some(EnvelopeRejection::BadSignature)
        );

        let outsider = person("Mallory");
        let keys = t.circle.epoch_keys(&t.gp);
        let (e, k) = keys.iter().next().unwrap_or_else(|| panic!("no key"));
        let theirs = Envelope::seal(
            &outsider,
            Slot {
                circle: circle_id(&t.circle),
                doc: DocKind::LiaisonNotebook,
                seq: 1,
                prev: [0; 32],
            },
            (*e, k),
            &notebook_change(&outsider, "x"),
            &mut rng(),
        )
        .unwrap();
        assert!(matches!(
            receive(&mut log, &t, &t.gp, theirs.bytes()),
            Err(EnvelopeRejection::UnknownDevice { .. })
        ));

        assert!(matches!(
            receive(&mut log, &t, &t.gp, &t.physio_envelope),
            Err(EnvelopeRejection::AfterRemoval { cutoff: 0, .. })
        ));

        assert_eq!(receive(&mut log, &t, &t.gp, &good).map(|a| a.len()), Ok(1));
        assert_eq!(
            receive(&mut log, &t, &t.gp, &good).err(),
            Some(EnvelopeRejection::Replay { seq: 0 }),
            "an envelope already held is a replay, counted apart"
        );
    }

    #[test]
    fn unknown_epochs_oversized_and_truncated_envelopes_are_rejected() {
        let t = team();
        let mut log = EnvelopeLog::default();
        let bogus = EpochKey::generate(&mut rng());
        let env = Envelope::seal(
            &t.nurse,
            Slot {
                circle: circle_id(&t.circle),
                doc: DocKind::LiaisonNotebook,
                seq: 1,
                prev: [0; 32],
            },
            (EpochId([9; 16]), &bogus),
            &notebook_change(&t.nurse, "x"),
            &mut rng(),
        )
        .unwrap();
        assert!(matches!(
            receive(&mut log, &t, &t.gp, env.bytes()),
            Err(EnvelopeRejection::UnknownEpoch { .. })
        ));
        let huge = vec![0u8; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            receive(&mut log, &t, &t.gp, &huge),
            Err(EnvelopeRejection::Oversized { .. })
        ));
        let (good, _) = note_envelope(&t.circle, &t.nurse, 1, [0; 32], "ok");
        for cut in [0, 3, 40, good.len() / 2, good.len() - 1] {
            assert!(
                matches!(
                    receive(&mut log, &t, &t.gp, &good[..cut]),
                    Err(EnvelopeRejection::Malformed { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn foreign_changes_and_caregivers_writing_the_patient_file_are_rejected() {
        let t = team();
        let mut log = EnvelopeLog::default();
        // The nurse signs an envelope carrying the GP's change.
        let env = seal_current(
            &t,
            &t.nurse,
            DocKind::LiaisonNotebook,
            &notebook_change(&t.gp, "pas de moi"),
        );
        assert_eq!(
            receive(&mut log, &t, &t.gp, env.bytes()).err(),
            Some(EnvelopeRejection::ForeignChange)
        );

        let mut pf = PatientFile::new(t.carer.actor());
        pf.set_care_plan(t.carer.member(), "plan", Timestamp(1))
            .unwrap();
        let changes: Vec<Change> = pf.replica_mut().last_local_change().into_iter().collect();
        let env = seal_current(&t, &t.carer, DocKind::PatientFile, &changes);
        assert_eq!(
            receive(&mut log, &t, &t.gp, env.bytes()).err(),
            Some(EnvelopeRejection::RoleForbids {
                role: Role::Caregiver,
                doc: DocKind::PatientFile
            })
        );
    }

    #[test]
    fn a_schema_violating_change_passes_the_envelope_but_not_the_document() {
        let t = team();
        let mut log = EnvelopeLog::default();
        // A notebook entry whose author field names the GP, sent by the nurse.
        let mut nb = LiaisonNotebook::new(t.nurse.actor());
        let entry = NewEntry {
            kind: EntryKind::Alert,
            text: "x".into(),
            vitals: None,
        };
        nb.add_entry(t.gp.member(), entry, Timestamp(1)).unwrap();
        let changes: Vec<Change> = nb.replica_mut().last_local_change().into_iter().collect();
        let env = seal_current(&t, &t.nurse, DocKind::LiaisonNotebook, &changes);
        let accepted = receive(&mut log, &t, &t.gp, env.bytes()).unwrap();
        let a = &accepted[0];
        let mut target = LiaisonNotebook::new(t.gp.actor());
        let r = target.replica_mut().apply_changes(
            a.changes.clone(),
            &ChangeAuthor {
                member: a.member,
                role: a.role,
            },
        );
        assert!(
            matches!(r, Err(cercle_crdt::Rejection::NotTheAuthor { .. })),
            "{r:?}"
        );
        assert!(target.is_empty());
    }

    #[test]
    fn out_of_order_envelopes_wait_and_forks_are_kept_as_evidence() {
        let t = team();
        let mut log = EnvelopeLog::default();
        let (first, h1) = note_envelope(&t.circle, &t.nurse, 1, [0; 32], "un");
        let (second, _) = note_envelope(&t.circle, &t.nurse, 2, h1, "deux");
        assert_eq!(
            receive(&mut log, &t, &t.gp, &second).map(|a| a.len()),
            Ok(0),
            "waits"
        );
        let ready = receive(&mut log, &t, &t.gp, &first).unwrap();
        assert_eq!(ready.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2]);
        // A second, different envelope for seq 2 by the same device.
        let (other, _) = note_envelope(&t.circle, &t.nurse, 2, h1, "autre version");
        assert_eq!(
            receive(&mut log, &t, &t.gp, &other).err(),
            Some(EnvelopeRejection::Fork { seq: 2 })
        );
        assert_eq!(
            FORKS.with(|f| *f.borrow()),
            1,
            "the fork's evidence is returned"
        );
        // A broken chain is a fork too.
        let (broken, _) = note_envelope(&t.circle, &t.nurse, 3, [7; 32], "trois");
        assert_eq!(
            receive(&mut log, &t, &t.gp, &broken).err(),
            Some(EnvelopeRejection::Fork { seq: 3 })
        );
    }

    #[test]
    fn a_copy_of_the_last_envelope_held_is_a_replay_and_a_forged_copy_is_refused() {
        let t = team();
        let mut log = EnvelopeLog::default();
        let (first, _) = note_envelope(&t.circle, &t.nurse, 1, [0; 32], "un");
        assert_eq!(receive(&mut log, &t, &t.gp, &first).map(|a| a.len()), Ok(1));
        // The same bytes again, as each co-member passes them on: held already.
        assert_eq!(
            receive(&mut log, &t, &t.gp, &first).err(),
            Some(EnvelopeRejection::Replay { seq: 0 })
        );
        // The same position and payload with one byte of the signature changed is not
        // the envelope held: it is checked, and its signature fails.
        let mut forged = first.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            receive(&mut log, &t, &t.gp, &forged).err(),
            Some(EnvelopeRejection::BadSignature)
        );
        assert_eq!(Envelope::peek_position(&first[..40]), None, "truncated");
    }

    /// What the GP's node knows of the team's circle, to check envelopes against.
    struct GpSight {
        holders: BTreeMap<EpochId, BTreeSet<DeviceId>>,
        keys: BTreeMap<EpochId, EpochKey>,
    }

    impl GpSight {
        fn of(t: &Team) -> GpSight {
            GpSight {
                holders: holders(&t.circle),
                keys: t.circle.epoch_keys(&t.gp),
            }
        }

        fn view<'a>(&'a self, t: &'a Team) -> CircleView<'a> {
            CircleView {
                circle: circle_id(&t.circle),
                resolution: t.circle.resolution(),
                holders: &self.holders,
                keys: Some(&self.keys),
            }
        }
    }

    /// What checking found: the sequence numbers accepted, the reasons refused, the replays.
    type Summary = (Vec<u64>, Vec<EnvelopeRejection>, usize);

    fn summary(c: &Checked) -> Summary {
        (
            c.accepted.iter().map(|a| a.seq).collect(),
            c.rejected.iter().map(|r| r.reason.clone()).collect(),
            c.replays,
        )
    }

    /// `run` checked at once, and one envelope at a time (each accepted one confirmed).
    fn at_once_and_one_by_one(run: &[Vec<u8>], view: &CircleView<'_>) -> (Summary, Summary) {
        let together = EnvelopeLog::default().check(run, view);
        let mut alone = EnvelopeLog::default();
        let mut each = Checked::default();
        for bytes in run {
            let c = alone.check(std::slice::from_ref(bytes), view);
            for a in &c.accepted {
                alone.confirm(&a.envelope);
            }
            each.accepted.extend(c.accepted);
            each.rejected.extend(c.rejected);
            each.replays += c.replays;
        }
        (summary(&together), summary(&each))
    }

    /// The nurse's first `n` notes, chained.
    fn nurse_run(t: &Team, n: u64) -> Vec<Vec<u8>> {
        let mut prev = [0; 32];
        (1..=n)
            .map(|seq| {
                let (bytes, hash) = note_envelope(&t.circle, &t.nurse, seq, prev, "passage");
                prev = hash;
                bytes
            })
            .collect()
    }

    #[test]
    fn a_runs_last_signature_vouches_for_the_envelopes_before_it_and_tampering_is_caught() {
        let t = team();
        let gp = GpSight::of(&t);
        let view = gp.view(&t);
        let run = nurse_run(&t, 8);
        let (together, _) = at_once_and_one_by_one(&run, &view);
        assert_eq!(together, ((1..=8).collect(), vec![], 0));

        // The last signature altered: the seven before it are checked one by one.
        let mut bad_tail = run.clone();
        let last = bad_tail[7].len() - 1;
        bad_tail[7][last] ^= 1;
        let (together, each) = at_once_and_one_by_one(&bad_tail, &view);
        assert_eq!(together, each);
        assert_eq!(
            together,
            ((1..=7).collect(), vec![EnvelopeRejection::BadSignature], 0)
        );

        // A byte of the fourth note altered on the way: its hash no longer is what the
        // fifth names, so it stands alone and fails its own signature; the rest waits.
        let mut bad_middle = run.clone();
        let at = bad_middle[3].len() / 2;
        bad_middle[3][at] ^= 0x10;
        let mut log = EnvelopeLog::default();
        let checked = log.check(&bad_middle, &view);
        assert_eq!(
            summary(&checked),
            ((1..=3).collect(), vec![EnvelopeRejection::BadSignature], 0)
        );
        assert_eq!(log.waiting(), 4, "notes 5 to 8 wait for a genuine note 4");
        let (together, each) = at_once_and_one_by_one(&bad_middle, &view);
        assert_eq!(together, each);

        // Only the device's own key can vouch for bytes whose signature fails: the nurse's
        // device chains its note 5 on a note 4 it garbled. Together they are its own
        // signed history; note 4 alone is refused, and accepted once note 5 comes with it.
        let mut garbled = run[3].clone();
        let last = garbled.len() - 1;
        garbled[last] ^= 1;
        let (fifth, _) = note_envelope(
            &t.circle,
            &t.nurse,
            5,
            *blake3::hash(&garbled).as_bytes(),
            "passage",
        );
        let crafted = vec![
            run[0].clone(),
            run[1].clone(),
            run[2].clone(),
            garbled,
            fifth,
        ];
        let (together, each) = at_once_and_one_by_one(&crafted, &view);
        assert_eq!(together, ((1..=5).collect(), vec![], 0));
        assert_eq!(
            each,
            ((1..=3).collect(), vec![EnvelopeRejection::BadSignature], 0),
            "note 5 waits for a note 4 that verifies alone"
        );
    }

    #[test]
    fn envelopes_checked_in_one_run_give_what_checking_one_at_a_time_gives() {
        let t = team();
        // A nurse's 24 notes, delivered out of order, with a copy, a forgery and garbage.
        let mut prev = [0; 32];
        let mut run = Vec::new();
        for seq in 1..=24 {
            let (bytes, hash) = note_envelope(&t.circle, &t.nurse, seq, prev, "passage");
            run.push(bytes);
            prev = hash;
        }
        run.swap(3, 7);
        run.insert(10, run[9].clone());
        let mut forged = run[15].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        run.insert(16, forged);
        run.push(b"not an envelope".to_vec());
        let gp = GpSight::of(&t);
        let view = gp.view(&t);
        let (together, each) = at_once_and_one_by_one(&run, &view);
        assert_eq!(together, each);
        let (accepted, rejected, _) = together;
        assert_eq!(accepted, (1..=24).collect::<Vec<_>>());
        assert_eq!(
            rejected.len(),
            2,
            "the forgery and the garbage: {rejected:?}"
        );
    }

    #[test]
    fn envelopes_waiting_for_a_predecessor_are_kept_up_to_the_bound_then_refused() {
        let t = team();
        let mut log = EnvelopeLog::default();
        // Envelopes 2, 3, ... of the nurse while envelope 1 never comes.
        for seq in 2..(2 + MAX_WAITING as u64) {
            let (bytes, _) = note_envelope(&t.circle, &t.nurse, seq, [1; 32], "plus tard");
            assert_eq!(receive(&mut log, &t, &t.gp, &bytes).map(|a| a.len()), Ok(0));
        }
        assert_eq!(log.waiting(), MAX_WAITING);
        let (one_more, _) = note_envelope(&t.circle, &t.nurse, 500, [1; 32], "de trop");
        assert_eq!(
            receive(&mut log, &t, &t.gp, &one_more).err(),
            Some(EnvelopeRejection::TooManyWaiting)
        );
        assert_eq!(
            log.waiting(),
            MAX_WAITING,
            "nothing beyond the bound is held"
        );
    }

    #[test]
    fn a_removed_member_cannot_open_envelopes_of_the_new_epoch() {
        let t = team();
        let (bytes, _) = note_envelope(&t.circle, &t.nurse, 1, [0; 32], "après le départ");
        let mut log = EnvelopeLog::default();
        let r = receive(&mut log, &t, &t.physio, &bytes);
        assert!(matches!(r, Err(EnvelopeRejection::NoKey { .. })), "{r:?}");
        let env = Envelope::decode(&bytes).unwrap();
        for key in t.circle.epoch_keys(&t.physio).values() {
            assert_eq!(env.open(key).err(), Some(EnvelopeRejection::Decrypt));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Whatever a relay or a peer alters on the way, and in whatever order it passes
        /// a log's envelopes on, checking them at once accepts and refuses exactly what
        /// checking them one by one does: the signature of a run's last envelope vouches
        /// only for bytes its device chained.
        #[test]
        fn a_tampered_or_shuffled_run_checked_at_once_gives_what_one_by_one_gives(
            flips in prop::collection::vec((0usize..10, any::<usize>(), 0u8..8), 0..4),
            swaps in prop::collection::vec((0usize..10, 0usize..10), 0..3),
            copies in prop::collection::vec(0usize..10, 0..3),
        ) {
            let t = team();
            let gp = GpSight::of(&t);
            let view = gp.view(&t);
            let mut run = nurse_run(&t, 10);
            for (which, at, bit) in flips {
                let len = run[which].len();
                run[which][at % len] ^= 1 << bit;
            }
            for (a, b) in swaps {
                run.swap(a, b);
            }
            for which in copies {
                let copy = run[which].clone();
                run.push(copy);
            }
            let (together, each) = at_once_and_one_by_one(&run, &view);
            prop_assert_eq!(together, each);
        }
    }

    proptest! {
        #[test]
        fn decoding_random_and_mutated_bytes_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let _ = Envelope::decode(&bytes);
            let _ = Envelope::peek_doc(&bytes);
            let _ = Envelope::peek_position(&bytes);
            let me = person("X");
            let key = EpochKey::generate(&mut rng());
            let env = Envelope::seal(&me, Slot { circle: CircleId([1; 32]), doc: DocKind::Thread, seq: 1, prev: [0; 32] }, (EpochId([2; 16]), &key), &notebook_change(&me, "x"), &mut rng())
                .unwrap();
            let mut b = env.bytes().to_vec();
            for (at, bit) in flips {
                let i = at % b.len();
                b[i] ^= 1 << (bit % 8);
            }
            if let Ok(d) = Envelope::decode(&b) {
                // What a peek says is what a full decode finds, whenever the bytes decode.
                prop_assert_eq!(Envelope::peek_doc(&b), Some(d.header.doc));
                let h = &d.header;
                prop_assert_eq!(Envelope::peek_position(&b), Some((h.device, h.doc, h.seq)));
                let _ = d.open(&key);
            }
        }
    }
}
