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
//!    if signed by one of the creator's devices.
//! 3. **A removal wins over concurrent operations of the removed member**: an operation by
//!    `M` concurrent with a valid removal of `M` is void. When two coordinators remove each
//!    other concurrently, the more senior one (added earlier in `L`; the creator is the most
//!    senior) wins: the junior's removal is void, the senior's stands. Seniority is fixed by
//!    the log, so an attacker cannot grind hashes to win.
//! 4. Rule 3 is applied until nothing changes (the set of void operations only grows, so
//!    this ends), re-evaluating rule 2 each time.
//!
//! The result depends only on the set of operations, never on the order they arrived in.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;

use cercle_crdt::{MemberId, Role};
use ed25519_dalek::{Signature, VerifyingKey};
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
    /// `cutoffs` gives, per device, the last sequence number the remover accepts from it.
    RemoveMember {
        member: MemberId,
        cutoffs: Vec<(DeviceId, u64)>,
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
    /// Closes the circle: nothing more may be written.
    Close,
}

/// Operations waiting for a missing parent, at most (a peer cannot grow them without bound).
pub const MAX_WAITING_OPS: usize = 1024;

/// Relays a circle may name, at most, and the longest address.
pub const MAX_RELAYS: usize = 8;
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
        if bytes.len() > MAX_OP_BYTES {
            return Err(OpError::TooLarge(bytes.len()));
        }
        if bytes.len() < 64 {
            return Err(OpError::Malformed("shorter than a signature".into()));
        }
        let (sig, payload) = bytes.split_at(64);
        let content: OpContent =
            serde_json::from_slice(payload).map_err(|e| OpError::Malformed(e.to_string()))?;
        if content.parents.len() > MAX_PARENTS || content.parents.windows(2).any(|w| w[0] >= w[1]) {
            return Err(OpError::Malformed(
                "parents must be sorted and distinct".into(),
            ));
        }
        if content.circle.is_none() != matches!(content.body, OpBody::Genesis { .. }) {
            return Err(OpError::Malformed("only a genesis has no circle".into()));
        }
        let key = VerifyingKey::from_bytes(&content.device.0).map_err(|_| OpError::BadSignature)?;
        let sig_bytes: [u8; 64] = sig.try_into().map_err(|_| OpError::BadSignature)?;
        let mut signed = SIGNATURE_CONTEXT.to_vec();
        signed.extend_from_slice(payload);
        key.verify_strict(&signed, &Signature::from_bytes(&sig_bytes))
            .map_err(|_| OpError::BadSignature)?;
        Ok(SignedOp {
            hash: OpHash(*blake3::hash(bytes).as_bytes()),
            bytes: bytes.to_vec(),
            content,
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

/// Why a logged operation has no effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VoidReason {
    /// The signing device is not a coordinator's in the operation's causal past.
    NotCoordinator,
    /// Its author was removed by a concurrent removal.
    RemovedConcurrently,
    /// The circle was closed before it.
    Closed,
    /// It targets a member who is not in the circle, or adds a current member again.
    BadTarget,
}

/// Who is in the circle, as every node computes it from the same operations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Resolution {
    pub members: BTreeMap<MemberId, MemberState>,
    /// Removed members and the per-device cut-offs of their removal.
    pub removed: BTreeMap<MemberId, Vec<(DeviceId, u64)>>,
    /// The relays the circle uses (the last `SetRelays` in the log's order).
    pub relays: Vec<String>,
    /// The current key epoch (started by the genesis, a removal or a rotation).
    pub epoch: Option<EpochId>,
    /// Every epoch, oldest first.
    pub epochs: Vec<EpochId>,
    pub closed: bool,
    /// Operations without effect, and why.
    pub void: BTreeMap<OpHash, VoidReason>,
}

impl Resolution {
    /// The member owning `device`, if a current member does.
    pub fn member_of(&self, device: &DeviceId) -> Option<(&MemberId, &MemberState)> {
        self.members
            .iter()
            .find(|(_, m)| m.devices.iter().any(|d| d.device == *device))
    }

    /// A member's role, if they are a current member.
    pub fn role(&self, member: &MemberId) -> Option<Role> {
        self.members.get(member).map(|m| m.role)
    }
}

/// A circle's membership log: every operation received whose parents are all known, plus
/// those still waiting for a parent.
#[derive(Debug, Clone, Default)]
pub struct MembershipLog {
    circle: Option<CircleId>,
    ops: BTreeMap<OpHash, SignedOp>,
    waiting: BTreeMap<OpHash, SignedOp>,
}

impl MembershipLog {
    /// A log holding just `genesis`.
    pub fn new(genesis: SignedOp) -> Result<MembershipLog, OpError> {
        if !matches!(genesis.content.body, OpBody::Genesis { .. }) {
            return Err(OpError::Malformed(
                "the first operation must be a genesis".into(),
            ));
        }
        let mut log = MembershipLog {
            circle: Some(CircleId(genesis.hash.0)),
            ..Default::default()
        };
        log.ops.insert(genesis.hash, genesis);
        Ok(log)
    }

    /// The circle's id.
    pub fn circle(&self) -> Option<CircleId> {
        self.circle
    }

    /// Adds a received operation. Operations with unknown parents wait for them.
    /// Returns whether the log changed.
    pub fn insert(&mut self, op: SignedOp) -> Result<bool, OpError> {
        if matches!(op.content.body, OpBody::Genesis { .. }) {
            return if Some(CircleId(op.hash.0)) == self.circle {
                Ok(false)
            } else {
                Err(OpError::SecondGenesis)
            };
        }
        if op.content.circle != self.circle {
            return Err(OpError::WrongCircle);
        }
        if self.ops.contains_key(&op.hash) || self.waiting.contains_key(&op.hash) {
            return Ok(false);
        }
        let ready_now = op.content.parents.iter().all(|p| self.ops.contains_key(p));
        if !ready_now && self.waiting.len() >= MAX_WAITING_OPS {
            return Err(OpError::TooManyWaiting);
        }
        self.waiting.insert(op.hash, op);
        // Move every waiting op whose parents are all known into the log.
        loop {
            let ready: Vec<OpHash> = self
                .waiting
                .values()
                .filter(|o| o.content.parents.iter().all(|p| self.ops.contains_key(p)))
                .map(|o| o.hash)
                .collect();
            if ready.is_empty() {
                break;
            }
            for h in ready {
                if let Some(o) = self.waiting.remove(&h) {
                    self.ops.insert(h, o);
                }
            }
        }
        Ok(true)
    }

    /// The current heads (operations no other operation names as parent).
    pub fn heads(&self) -> Vec<OpHash> {
        let named: HashSet<OpHash> = self
            .ops
            .values()
            .flat_map(|o| o.content.parents.iter().copied())
            .collect();
        self.ops
            .keys()
            .filter(|h| !named.contains(h))
            .copied()
            .collect()
    }

    /// All operations in the log (not those waiting).
    pub fn ops(&self) -> impl Iterator<Item = &SignedOp> {
        self.ops.values()
    }

    /// How many operations wait for a missing parent.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// One operation of the log, by its hash.
    pub fn get(&self, hash: &OpHash) -> Option<&SignedOp> {
        self.ops.get(hash)
    }

    /// Resolves the log (see the module documentation for the rule).
    pub fn resolve(&self) -> Resolution {
        resolve(&self.ops)
    }

    /// Every epoch key sealed to `device` by a valid operation.
    pub fn sealed_for(&self, device: &DeviceId, resolution: &Resolution) -> Vec<&SealedKey> {
        self.ops
            .values()
            .filter(|o| !resolution.void.contains_key(&o.hash))
            .flat_map(|o| sealed_keys(&o.content.body))
            .filter(|k| k.device == *device)
            .collect()
    }

    /// The devices holding the key of `epoch` (sealed to them by a valid operation).
    pub fn holders(&self, epoch: &EpochId, resolution: &Resolution) -> BTreeSet<DeviceId> {
        self.ops
            .values()
            .filter(|o| !resolution.void.contains_key(&o.hash))
            .flat_map(|o| sealed_keys(&o.content.body))
            .filter(|k| k.epoch == *epoch)
            .map(|k| k.device)
            .collect()
    }
}

/// The membership log with what it resolves to: who is a member with which role, and who
/// holds each epoch's key. Both are recomputed whenever an operation is added, so readers
/// (members' circles and the relay's mailbox alike) never see a stale member set.
#[derive(Debug)]
pub struct Membership {
    log: MembershipLog,
    resolution: Resolution,
    /// The devices holding each epoch's key; computed when first asked for after a change.
    holders: std::cell::OnceCell<BTreeMap<EpochId, BTreeSet<DeviceId>>>,
}

/// What taking in a peer's operations did.
#[derive(Debug, Default)]
pub struct OpsIntake {
    /// Operations new here, in the order received (to store and to pass on).
    pub new: Vec<SignedOp>,
    /// Operations refused, with the BLAKE3 hash of their bytes and the reason.
    pub refused: Vec<([u8; 32], OpError)>,
}

impl Membership {
    /// The resolved state of `log`.
    pub fn new(log: MembershipLog) -> Membership {
        let resolution = log.resolve();
        Membership {
            log,
            resolution,
            holders: std::cell::OnceCell::new(),
        }
    }

    /// The operations.
    pub fn log(&self) -> &MembershipLog {
        &self.log
    }

    /// Who is in the circle now.
    pub fn resolution(&self) -> &Resolution {
        &self.resolution
    }

    /// The devices holding each epoch's key.
    pub fn holders(&self) -> &BTreeMap<EpochId, BTreeSet<DeviceId>> {
        self.holders.get_or_init(|| {
            self.resolution
                .epochs
                .iter()
                .map(|e| (*e, self.log.holders(e, &self.resolution)))
                .collect()
        })
    }

    /// Adds one operation; `true` if it is new here (the resolution then follows it).
    pub fn append(&mut self, op: SignedOp) -> Result<bool, OpError> {
        let new = self.log.insert(op)?;
        if new {
            self.resolved();
        }
        Ok(new)
    }

    /// Decodes and adds a peer's operations, resolving once at the end.
    pub fn take_in(&mut self, ops: &[Vec<u8>]) -> OpsIntake {
        let mut intake = OpsIntake::default();
        for bytes in ops {
            match SignedOp::decode(bytes).and_then(|op| Ok((self.log.insert(op.clone())?, op))) {
                Ok((true, op)) => intake.new.push(op),
                Ok((false, _)) => {}
                Err(e) => intake.refused.push((*blake3::hash(bytes).as_bytes(), e)),
            }
        }
        if !intake.new.is_empty() {
            self.resolved();
        }
        intake
    }

    fn resolved(&mut self) {
        self.resolution = self.log.resolve();
        self.holders = std::cell::OnceCell::new();
    }
}

fn sealed_keys(body: &OpBody) -> &[SealedKey] {
    match body {
        OpBody::Genesis { sealed, .. }
        | OpBody::AddMember { sealed, .. }
        | OpBody::RemoveMember { sealed, .. }
        | OpBody::RotateKey { sealed, .. } => sealed,
        OpBody::ChangeRole { .. } | OpBody::SetRelays { .. } | OpBody::Close => &[],
    }
}

/// The deterministic linear order: topological, ties by smaller hash.
fn linear_order(ops: &BTreeMap<OpHash, SignedOp>) -> Vec<OpHash> {
    let mut children: HashMap<OpHash, Vec<OpHash>> = HashMap::new();
    let mut pending: HashMap<OpHash, usize> = HashMap::new();
    for (h, op) in ops {
        let parents: Vec<&OpHash> = op
            .content
            .parents
            .iter()
            .filter(|p| ops.contains_key(p))
            .collect();
        pending.insert(*h, parents.len());
        for p in parents {
            children.entry(*p).or_default().push(*h);
        }
    }
    let mut ready: BinaryHeap<Reverse<OpHash>> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(h, _)| Reverse(*h))
        .collect();
    let mut order = Vec::with_capacity(ops.len());
    while let Some(Reverse(h)) = ready.pop() {
        order.push(h);
        for c in children.get(&h).into_iter().flatten() {
            if let Some(n) = pending.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    ready.push(Reverse(*c));
                }
            }
        }
    }
    order
}

fn resolve(ops: &BTreeMap<OpHash, SignedOp>) -> Resolution {
    let order = linear_order(ops);
    let position: HashMap<OpHash, usize> = order.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    // Ancestors of each op, as positions in `order` (parents come earlier).
    let mut ancestors: Vec<BTreeSet<usize>> = Vec::with_capacity(order.len());
    for h in &order {
        let mut set = BTreeSet::new();
        if let Some(op) = ops.get(h) {
            for p in &op.content.parents {
                if let Some(&i) = position.get(p) {
                    set.insert(i);
                    set.extend(ancestors[i].iter().copied());
                }
            }
        }
        ancestors.push(set);
    }
    let concurrent =
        |a: usize, b: usize| a != b && !ancestors[a].contains(&b) && !ancestors[b].contains(&a);

    let mut forced_void: BTreeMap<usize, VoidReason> = BTreeMap::new();
    loop {
        let (valid, reasons, authors) = evaluate(ops, &order, &ancestors, &forced_void);
        // Rule 3: removals win over concurrent operations of the removed member.
        let mut grew = false;
        for (r, rop) in order.iter().enumerate() {
            let Some(OpBody::RemoveMember {
                member: removed, ..
            }) = ops.get(rop).map(|o| &o.content.body)
            else {
                continue;
            };
            if !valid[r] {
                continue;
            }
            for x in 0..order.len() {
                if forced_void.contains_key(&x) || !concurrent(r, x) {
                    continue;
                }
                let Some((author, seniority)) = &authors[x] else {
                    continue;
                };
                if author != removed {
                    continue;
                }
                // Mutual removal: the senior's removal stands.
                if let (
                    Some(OpBody::RemoveMember { member: target, .. }),
                    Some((remover, remover_seniority)),
                ) = (ops.get(&order[x]).map(|o| &o.content.body), &authors[r])
                    && target == remover
                    && seniority < remover_seniority
                {
                    continue;
                }
                forced_void.insert(x, VoidReason::RemovedConcurrently);
                grew = true;
            }
        }
        if !grew {
            let mut res = final_state(ops, &order, &valid);
            res.void = reasons.into_iter().map(|(i, r)| (order[i], r)).collect();
            return res;
        }
    }
}

/// One pass of rule 2 with `forced_void` ops treated as void. Returns per-op validity,
/// void reasons, and each op's author `(member, seniority)` as seen in its causal past.
#[allow(clippy::type_complexity)]
fn evaluate(
    ops: &BTreeMap<OpHash, SignedOp>,
    order: &[OpHash],
    ancestors: &[BTreeSet<usize>],
    forced_void: &BTreeMap<usize, VoidReason>,
) -> (
    Vec<bool>,
    BTreeMap<usize, VoidReason>,
    Vec<Option<(MemberId, usize)>>,
) {
    let mut valid = vec![false; order.len()];
    let mut reasons = BTreeMap::new();
    let mut authors = vec![None; order.len()];
    for (i, h) in order.iter().enumerate() {
        let Some(op) = ops.get(h) else { continue };
        // The state in this op's causal past: its valid ancestors, in order.
        let past: Vec<usize> = ancestors[i].iter().copied().filter(|a| valid[*a]).collect();
        let state = replay(ops, order, &past);
        let author = match &op.content.body {
            OpBody::Genesis { creator, .. } if i == 0 || past.is_empty() => creator
                .devices
                .iter()
                .any(|d| {
                    d.device == op.content.device
                        && d.member == creator.member
                        && d.verify().is_ok()
                })
                .then_some((creator.member, i)),
            _ => state
                .member_of(&op.content.device)
                .map(|(m, s)| (*m, s.seniority)),
        };
        authors[i] = author;
        if let Some(reason) = forced_void.get(&i) {
            reasons.insert(i, reason.clone());
            continue;
        }
        let verdict = match (&op.content.body, author) {
            (_, None) => Err(VoidReason::NotCoordinator),
            (OpBody::Genesis { .. }, Some(_)) if past.is_empty() && ancestors[i].is_empty() => {
                Ok(())
            }
            (OpBody::Genesis { .. }, Some(_)) => Err(VoidReason::BadTarget),
            (_, Some((m, _))) if state.role(&m) != Some(Role::Coordinator) => {
                Err(VoidReason::NotCoordinator)
            }
            _ if state.closed => Err(VoidReason::Closed),
            (OpBody::AddMember { grant, .. }, _)
                if state.members.contains_key(&grant.member)
                    || grant.devices.is_empty()
                    || grant
                        .devices
                        .iter()
                        .any(|d| d.member != grant.member || d.verify().is_err()) =>
            {
                Err(VoidReason::BadTarget)
            }
            (OpBody::RemoveMember { member, .. } | OpBody::ChangeRole { member, .. }, _)
                if !state.members.contains_key(member) =>
            {
                Err(VoidReason::BadTarget)
            }
            (OpBody::SetRelays { relays }, _)
                if relays.len() > MAX_RELAYS
                    || relays
                        .iter()
                        .any(|r| r.is_empty() || r.len() > MAX_RELAY_ADDRESS) =>
            {
                Err(VoidReason::BadTarget)
            }
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => valid[i] = true,
            Err(r) => {
                reasons.insert(i, r);
            }
        }
    }
    (valid, reasons, authors)
}

/// The state after applying the ops at `positions` (ascending) in order.
fn replay(ops: &BTreeMap<OpHash, SignedOp>, order: &[OpHash], positions: &[usize]) -> Resolution {
    let mut state = Resolution::default();
    for &i in positions {
        if let Some(op) = ops.get(&order[i]) {
            apply(&mut state, op, i);
        }
    }
    state
}

fn final_state(ops: &BTreeMap<OpHash, SignedOp>, order: &[OpHash], valid: &[bool]) -> Resolution {
    let positions: Vec<usize> = (0..order.len()).filter(|i| valid[*i]).collect();
    replay(ops, order, &positions)
}

fn apply(state: &mut Resolution, op: &SignedOp, position: usize) {
    match &op.content.body {
        OpBody::Genesis { creator, epoch, .. } => {
            state.members.insert(
                creator.member,
                MemberState {
                    role: Role::Coordinator,
                    devices: creator.devices.clone(),
                    seniority: position,
                },
            );
            state.epoch = Some(*epoch);
            state.epochs.push(*epoch);
        }
        OpBody::AddMember { grant, .. } => {
            if !state.members.contains_key(&grant.member)
                && !state.removed.contains_key(&grant.member)
            {
                state.members.insert(
                    grant.member,
                    MemberState {
                        role: grant.role,
                        devices: grant.devices.clone(),
                        seniority: position,
                    },
                );
            }
        }
        OpBody::RemoveMember {
            member,
            cutoffs,
            epoch,
            ..
        } => {
            if state.members.remove(member).is_some() {
                state.removed.insert(*member, cutoffs.clone());
                state.epoch = Some(*epoch);
                state.epochs.push(*epoch);
            }
        }
        OpBody::ChangeRole { member, role } => {
            if let Some(m) = state.members.get_mut(member) {
                m.role = *role;
            }
        }
        OpBody::RotateKey { epoch, .. } => {
            state.epoch = Some(*epoch);
            state.epochs.push(*epoch);
        }
        OpBody::SetRelays { relays } => state.relays = relays.clone(),
        OpBody::Close => state.closed = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Profile;
    use cercle_crdt::Timestamp;
    use proptest::prelude::*;

    fn person(name: &str) -> LocalIdentity {
        let profile = Profile::new(name, "infirmière", None, None).unwrap();
        LocalIdentity::generate(profile, Timestamp(1)).unwrap()
    }

    fn grant(who: &LocalIdentity, role: Role) -> MemberGrant {
        MemberGrant {
            member: who.member(),
            devices: vec![who.certificate.clone()],
            role,
        }
    }

    fn genesis(creator: &LocalIdentity) -> SignedOp {
        let content = OpContent {
            circle: None,
            parents: vec![],
            device: creator.device(),
            at: 0,
            body: OpBody::Genesis {
                creator: grant(creator, Role::Coordinator),
                nonce: [7; 16],
                epoch: EpochId([0; 16]),
                sealed: vec![],
            },
        };
        SignedOp::sign(creator, content)
    }

    fn op(log: &MembershipLog, by: &LocalIdentity, parents: &[OpHash], body: OpBody) -> SignedOp {
        let mut parents = parents.to_vec();
        parents.sort();
        parents.dedup();
        SignedOp::sign(
            by,
            OpContent {
                circle: log.circle(),
                parents,
                device: by.device(),
                at: 0,
                body,
            },
        )
    }

    fn log_with(creator: &LocalIdentity) -> MembershipLog {
        MembershipLog::new(genesis(creator)).unwrap()
    }

    fn add(log: &mut MembershipLog, by: &LocalIdentity, who: &LocalIdentity, role: Role) -> OpHash {
        let o = op(
            log,
            by,
            &log.heads(),
            OpBody::AddMember {
                grant: grant(who, role),
                sealed: vec![],
            },
        );
        let h = o.hash();
        log.insert(o).unwrap();
        h
    }

    fn remove_op(
        log: &MembershipLog,
        by: &LocalIdentity,
        who: &LocalIdentity,
        parents: &[OpHash],
    ) -> SignedOp {
        op(
            log,
            by,
            parents,
            OpBody::RemoveMember {
                member: who.member(),
                cutoffs: vec![(who.device(), 0)],
                epoch: EpochId([7; 16]),
                sealed: vec![],
            },
        )
    }

    #[test]
    fn the_creator_is_coordinator_and_adds_members_with_roles() {
        let (a, b) = (person("A"), person("B"));
        let mut log = log_with(&a);
        add(&mut log, &a, &b, Role::Caregiver);
        let r = log.resolve();
        assert_eq!(r.role(&a.member()), Some(Role::Coordinator));
        assert_eq!(r.role(&b.member()), Some(Role::Caregiver));
        assert_eq!(r.member_of(&b.device()).map(|(m, _)| *m), Some(b.member()));
    }

    #[test]
    fn a_coordinator_names_the_relays_and_the_last_list_wins() {
        let (a, b) = (person("A"), person("B"));
        let mut log = log_with(&a);
        add(&mut log, &a, &b, Role::Professional);
        let set = |log: &mut MembershipLog, by: &LocalIdentity, relays: Vec<String>| {
            let o = op(log, by, &log.heads(), OpBody::SetRelays { relays });
            log.insert(o).unwrap();
        };
        set(&mut log, &a, vec!["/ip4/192.0.2.1/tcp/4001/p2p/R1".into()]);
        set(&mut log, &a, vec!["/ip4/192.0.2.2/tcp/4001/p2p/R2".into()]);
        // A professional may not choose; too many relays are refused.
        set(
            &mut log,
            &b,
            vec!["/ip4/192.0.2.9/tcp/4001/p2p/EVIL".into()],
        );
        set(&mut log, &a, vec!["x".into(); MAX_RELAYS + 1]);
        let r = log.resolve();
        assert_eq!(r.relays, vec!["/ip4/192.0.2.2/tcp/4001/p2p/R2".to_string()]);
        assert_eq!(r.void.len(), 2);
    }

    #[test]
    fn operations_waiting_for_a_parent_are_bounded() {
        let a = person("A");
        let mut log = log_with(&a);
        let missing = OpHash([9; 32]);
        for i in 0..=MAX_WAITING_OPS {
            let o = op(
                &log,
                &a,
                &[missing],
                OpBody::SetRelays {
                    relays: vec![format!("/ip4/192.0.2.1/tcp/{i}")],
                },
            );
            let r = log.insert(o);
            if i < MAX_WAITING_OPS {
                assert_eq!(r, Ok(true));
            } else {
                assert_eq!(r, Err(OpError::TooManyWaiting));
            }
        }
        assert_eq!(log.waiting(), MAX_WAITING_OPS);
    }

    #[test]
    fn only_coordinators_change_membership() {
        let (a, b, c) = (person("A"), person("B"), person("C"));
        let mut log = log_with(&a);
        add(&mut log, &a, &b, Role::Professional);
        let h = add(&mut log, &b, &c, Role::Professional);
        let r = log.resolve();
        assert_eq!(r.role(&c.member()), None);
        assert_eq!(r.void.get(&h), Some(&VoidReason::NotCoordinator));
        // An outsider's operation is void too.
        let mallory = person("M");
        let h = add(&mut log, &mallory, &c, Role::Coordinator);
        assert_eq!(
            log.resolve().void.get(&h),
            Some(&VoidReason::NotCoordinator)
        );
    }

    #[test]
    fn a_removal_wins_over_concurrent_operations_of_the_removed_member() {
        let (a, b, c) = (person("A"), person("B"), person("C"));
        let mut log = log_with(&a);
        let base = add(&mut log, &a, &b, Role::Coordinator);
        // A removes B; concurrently (same parent) B adds C.
        let removal = remove_op(&log, &a, &b, &[base]);
        let by_b = op(
            &log,
            &b,
            &[base],
            OpBody::AddMember {
                grant: grant(&c, Role::Professional),
                sealed: vec![],
            },
        );
        let by_b_hash = by_b.hash();
        log.insert(removal).unwrap();
        log.insert(by_b).unwrap();
        let r = log.resolve();
        assert_eq!(r.role(&b.member()), None);
        assert!(r.removed.contains_key(&b.member()));
        assert_eq!(r.role(&c.member()), None);
        assert_eq!(
            r.void.get(&by_b_hash),
            Some(&VoidReason::RemovedConcurrently)
        );
    }

    #[test]
    fn when_two_coordinators_remove_each_other_the_senior_one_stays() {
        for _ in 0..8 {
            let (a, b) = (person("A"), person("B"));
            let mut log = log_with(&a);
            let base = add(&mut log, &a, &b, Role::Coordinator);
            let a_removes_b = remove_op(&log, &a, &b, &[base]);
            let b_removes_a = remove_op(&log, &b, &a, &[base]);
            log.insert(b_removes_a).unwrap();
            log.insert(a_removes_b).unwrap();
            let r = log.resolve();
            assert_eq!(
                r.role(&a.member()),
                Some(Role::Coordinator),
                "the creator is senior"
            );
            assert_eq!(r.role(&b.member()), None);
        }
    }

    #[test]
    fn a_removed_member_can_do_nothing_afterwards() {
        let (a, b, c) = (person("A"), person("B"), person("C"));
        let mut log = log_with(&a);
        add(&mut log, &a, &b, Role::Coordinator);
        let o = remove_op(&log, &a, &b, &log.heads());
        log.insert(o).unwrap();
        let h = add(&mut log, &b, &c, Role::Coordinator);
        let r = log.resolve();
        assert_eq!(r.void.get(&h), Some(&VoidReason::NotCoordinator));
        assert_eq!(r.members.len(), 1);
    }

    #[test]
    fn forged_foreign_and_oversized_operations_are_refused_on_decode() {
        let (a, b) = (person("A"), person("B"));
        let mut log = log_with(&a);
        let o = op(
            &log,
            &a,
            &log.heads(),
            OpBody::AddMember {
                grant: grant(&b, Role::Observer),
                sealed: vec![],
            },
        );
        let mut forged = o.bytes().to_vec();
        let last = forged.len() - 2;
        forged[last] ^= 1;
        assert!(matches!(
            SignedOp::decode(&forged),
            Err(OpError::BadSignature | OpError::Malformed(_))
        ));
        assert_eq!(SignedOp::decode(o.bytes()).map(|d| d.hash()), Ok(o.hash()));
        assert!(matches!(
            SignedOp::decode(&vec![b'{'; MAX_OP_BYTES + 1]),
            Err(OpError::TooLarge(_))
        ));
        let other = log_with(&b);
        let foreign = op(
            &other,
            &b,
            &other.heads(),
            OpBody::RotateKey {
                epoch: EpochId([1; 16]),
                sealed: vec![],
            },
        );
        assert_eq!(log.insert(foreign), Err(OpError::WrongCircle));
        assert_eq!(log.insert(genesis(&b)), Err(OpError::SecondGenesis));
    }

    #[test]
    fn operations_wait_for_missing_parents() {
        let (a, b, c) = (person("A"), person("B"), person("C"));
        let mut full = log_with(&a);
        let first = op(
            &full,
            &a,
            &full.heads(),
            OpBody::AddMember {
                grant: grant(&b, Role::Coordinator),
                sealed: vec![],
            },
        );
        full.insert(first.clone()).unwrap();
        let second = op(
            &full,
            &b,
            &full.heads(),
            OpBody::AddMember {
                grant: grant(&c, Role::Observer),
                sealed: vec![],
            },
        );
        let mut partial = log_with(&a);
        partial.insert(second).unwrap();
        assert_eq!(partial.waiting(), 1);
        assert_eq!(partial.resolve().members.len(), 1);
        partial.insert(first).unwrap();
        assert_eq!(partial.waiting(), 0);
        assert_eq!(partial.resolve().role(&c.member()), Some(Role::Observer));
    }

    /// A random DAG: (parent choices, author index, body choice, target index, role index).
    type Script = Vec<(Vec<usize>, usize, u8, usize, usize)>;

    fn build(people: &[LocalIdentity], script: &Script) -> (SignedOp, Vec<SignedOp>) {
        let g = genesis(&people[0]);
        let mut log = MembershipLog::new(g.clone()).unwrap();
        let mut all = vec![g.hash()];
        let mut out = Vec::new();
        for (parents, author, body, target, role) in script {
            let parents: Vec<OpHash> = parents.iter().map(|p| all[p % all.len()]).collect();
            let target = &people[target % people.len()];
            let role = Role::ALL[role % 4];
            let body = match body % 9 {
                0..=2 => OpBody::AddMember {
                    grant: grant(target, role),
                    sealed: vec![],
                },
                3 | 4 => OpBody::RemoveMember {
                    member: target.member(),
                    cutoffs: vec![],
                    epoch: EpochId([7; 16]),
                    sealed: vec![],
                },
                5 => OpBody::ChangeRole {
                    member: target.member(),
                    role,
                },
                6 => OpBody::RotateKey {
                    epoch: EpochId([all.len() as u8; 16]),
                    sealed: vec![],
                },
                7 => OpBody::SetRelays {
                    relays: vec![format!("/ip4/192.0.2.{}/tcp/4001", all.len())],
                },
                _ => OpBody::Close,
            };
            let o = op(&log, &people[author % people.len()], &parents, body);
            all.push(o.hash());
            log.insert(o.clone()).unwrap();
            out.push(o);
        }
        (g, out)
    }

    fn script() -> impl Strategy<Value = Script> {
        prop::collection::vec(
            (
                prop::collection::vec(any::<usize>(), 1..3),
                any::<usize>(),
                0u8..8,
                any::<usize>(),
                any::<usize>(),
            ),
            1..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_delivery_order_resolves_to_the_same_membership(
            script in script(),
            orders in prop::collection::vec(Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()), 3),
        ) {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            let people: Vec<LocalIdentity> = ["A", "B", "C", "D"].into_iter().map(person).collect();
            let (g, ops) = build(&people, &script);
            let mut reference = MembershipLog::new(g.clone()).unwrap();
            for o in &ops {
                reference.insert(o.clone()).unwrap();
            }
            let expected = reference.resolve();
            for seed in orders {
                let mut shuffled = ops.clone();
                shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
                let mut log = MembershipLog::new(g.clone()).unwrap();
                for o in shuffled {
                    let received = SignedOp::decode(o.bytes()).unwrap();
                    log.insert(received).unwrap();
                }
                prop_assert_eq!(log.waiting(), 0);
                prop_assert_eq!(log.resolve(), expected.clone());
            }
        }

        #[test]
        fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedOp::decode(&bytes);
        }
    }
}
