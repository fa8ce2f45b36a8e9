//! The operations of one circle's membership log as held in memory: in the order they were
//! taken (parents first, which is also the order to send them in), its heads, who wrote
//! each, and the operations waiting for a missing parent. What may enter is decided by
//! [`super::Membership`]; this is only where it is kept.

use std::collections::{BTreeSet, HashMap, HashSet};

use cercle_crdt::MemberId;

use super::{
    CircleId, MAX_WAITING_BYTES, MAX_WAITING_OPS, OpBody, OpError, OpHash, Resolution, SignedOp,
    sealed_keys,
};
use crate::crypto::{EpochId, SealedKey};
use crate::identity::DeviceId;

/// A circle's membership log: every operation taken, plus those waiting for a parent.
#[derive(Debug, Clone)]
pub struct MembershipLog {
    circle: CircleId,
    ops: HashMap<OpHash, SignedOp>,
    /// Parents first.
    sequence: Vec<OpHash>,
    heads: BTreeSet<OpHash>,
    /// The member who wrote each operation, as its causal past says.
    authors: HashMap<OpHash, MemberId>,
    by_author: HashMap<MemberId, usize>,
    /// Every device an operation of the log granted: who may write operations at all.
    devices: HashSet<DeviceId>,
    waiting: HashMap<OpHash, SignedOp>,
    waiting_bytes: usize,
    /// Waiting operations by the parent they miss.
    blocked: HashMap<OpHash, Vec<OpHash>>,
    /// The digest of the set of operations (see [`Self::digest`]), until the next one.
    digest: std::cell::OnceCell<[u8; 32]>,
}

impl MembershipLog {
    /// A log holding just `genesis` (checked by the caller).
    pub(super) fn new(genesis: SignedOp, creator: MemberId) -> MembershipLog {
        let hash = genesis.hash();
        let mut log = MembershipLog {
            circle: CircleId(hash.0),
            ops: HashMap::new(),
            sequence: Vec::new(),
            heads: BTreeSet::new(),
            authors: HashMap::new(),
            by_author: HashMap::new(),
            devices: HashSet::new(),
            waiting: HashMap::new(),
            waiting_bytes: 0,
            blocked: HashMap::new(),
            digest: std::cell::OnceCell::new(),
        };
        log.push(genesis, Some(creator));
        log
    }

    /// The circle's id.
    pub fn circle(&self) -> CircleId {
        self.circle
    }

    /// The genesis operation.
    pub fn genesis(&self) -> Option<&SignedOp> {
        self.ops.get(&OpHash(self.circle.0))
    }

    /// The current heads (operations no other operation names as parent), sorted.
    pub fn heads(&self) -> Vec<OpHash> {
        self.heads.iter().copied().collect()
    }

    /// Every operation of the log (not those waiting), parents first.
    pub fn ops(&self) -> impl Iterator<Item = &SignedOp> {
        self.sequence.iter().filter_map(|h| self.ops.get(h))
    }

    /// A digest of the set of operations (not their order): BLAKE3 over the sorted hashes.
    /// Two logs holding the same operations have the same digest.
    pub fn digest(&self) -> [u8; 32] {
        *self.digest.get_or_init(|| {
            let mut sorted = self.sequence.clone();
            sorted.sort_unstable();
            let mut h = blake3::Hasher::new();
            for op in sorted {
                h.update(&op.0);
            }
            *h.finalize().as_bytes()
        })
    }

    /// How many operations the log holds (not those waiting).
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    /// Whether the log holds nothing (never: a log starts with its genesis).
    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    /// How many operations wait for a missing parent.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The operations waiting for a missing parent.
    pub(super) fn waiting_hashes(&self) -> Vec<OpHash> {
        self.waiting.keys().copied().collect()
    }

    /// One operation of the log, by its hash.
    pub fn get(&self, hash: &OpHash) -> Option<&SignedOp> {
        self.ops.get(hash)
    }

    /// Whether the log holds or waits with `hash`.
    pub(super) fn knows(&self, hash: &OpHash) -> bool {
        self.ops.contains_key(hash) || self.waiting.contains_key(hash)
    }

    /// Whether an operation of the log granted `device`.
    pub(super) fn granted(&self, device: &DeviceId) -> bool {
        self.devices.contains(device)
    }

    /// How many operations of the log `member` wrote.
    pub(super) fn count_by(&self, member: &MemberId) -> usize {
        self.by_author.get(member).copied().unwrap_or(0)
    }

    /// The author of an operation of the log.
    pub(super) fn author(&self, hash: &OpHash) -> Option<&MemberId> {
        self.authors.get(hash)
    }

    /// The operations by hash, for the resolver.
    pub(super) fn by_hash(&self) -> &HashMap<OpHash, SignedOp> {
        &self.ops
    }

    /// The hashes, parents first.
    pub(super) fn sequence(&self) -> &[OpHash] {
        &self.sequence
    }

    /// Whether every parent of `op` is in the log.
    pub(super) fn has_parents(&self, op: &SignedOp) -> bool {
        op.content()
            .parents
            .iter()
            .all(|p| self.ops.contains_key(p))
    }

    /// Every ancestor of `op` in the log.
    pub(super) fn ancestors(&self, op: &SignedOp) -> HashSet<OpHash> {
        let mut seen = HashSet::new();
        let mut stack: Vec<OpHash> = op.content().parents.clone();
        while let Some(h) = stack.pop() {
            if let Some(o) = self.ops.get(&h)
                && seen.insert(h)
            {
                stack.extend(o.content().parents.iter().copied());
            }
        }
        seen
    }

    /// Takes `op`, whose parents are all in the log and which was admitted.
    pub(super) fn push(&mut self, op: SignedOp, author: Option<MemberId>) {
        let hash = op.hash();
        for p in &op.content().parents {
            self.heads.remove(p);
        }
        self.heads.insert(hash);
        match &op.content().body {
            OpBody::Genesis { creator: grant, .. } | OpBody::AddMember { grant, .. } => {
                self.devices.extend(grant.devices.iter().map(|d| d.device));
            }
            OpBody::AddDevice { certificate, .. } => {
                self.devices.insert(certificate.device);
            }
            _ => {}
        }
        if let Some(m) = author {
            self.authors.insert(hash, m);
            *self.by_author.entry(m).or_default() += 1;
        }
        self.sequence.push(hash);
        self.ops.insert(hash, op);
        self.digest = std::cell::OnceCell::new();
    }

    /// Keeps `op` until its missing parents arrive, within the bounds.
    pub(super) fn park(&mut self, op: SignedOp) -> Result<(), OpError> {
        if self.waiting.len() >= MAX_WAITING_OPS
            || self.waiting_bytes + op.bytes().len() > MAX_WAITING_BYTES
        {
            return Err(OpError::TooManyWaiting);
        }
        let hash = op.hash();
        for p in &op.content().parents {
            if !self.ops.contains_key(p) {
                self.blocked.entry(*p).or_default().push(hash);
            }
        }
        self.waiting_bytes += op.bytes().len();
        self.waiting.insert(hash, op);
        Ok(())
    }

    /// The waiting operations whose last missing parent was `arrived`.
    pub(super) fn unblocked(&mut self, arrived: &OpHash) -> Vec<SignedOp> {
        let mut ready = Vec::new();
        for h in self.blocked.remove(arrived).unwrap_or_default() {
            let complete = self.waiting.get(&h).is_some_and(|o| self.has_parents(o));
            if complete && let Some(op) = self.waiting.remove(&h) {
                self.waiting_bytes -= op.bytes().len();
                ready.push(op);
            }
        }
        ready
    }

    /// Every epoch key sealed to `device` by a valid operation, with the operation.
    pub fn sealed_for(
        &self,
        device: &DeviceId,
        resolution: &Resolution,
    ) -> Vec<(OpHash, &SealedKey)> {
        self.ops()
            .filter(|o| !resolution.void.contains_key(&o.hash()))
            .flat_map(|o| {
                sealed_keys(&o.content().body)
                    .iter()
                    .map(move |k| (o.hash(), k))
            })
            .filter(|(_, k)| k.device == *device)
            .collect()
    }

    /// The devices holding the key of `epoch` (sealed to them by a valid operation).
    pub fn holders(&self, epoch: &EpochId, resolution: &Resolution) -> BTreeSet<DeviceId> {
        self.ops()
            .filter(|o| !resolution.void.contains_key(&o.hash()))
            .flat_map(|o| sealed_keys(&o.content().body))
            .filter(|k| k.epoch == *epoch)
            .map(|k| k.device)
            .collect()
    }
}
