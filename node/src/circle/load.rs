//! How a circle comes to be held here: created by this member, opened from the store at
//! rest (its record, membership and heads) and woken when its documents are needed (each
//! from its latest snapshot and the envelopes stored after it), or joined from a member's
//! operations that make this device a member.

use std::collections::BTreeMap;

use cercle_crdt::{Change, DocKind, LoadError, Replica, Timestamp};

use super::keys::{KeySchedule, seal_to};
use super::membership::{CircleId, MemberGrant, Membership, OpBody, OpContent, OpHash, SignedOp};
use super::{Circle, CircleError, CircleInfo, DocState, Docs, Listing, Staged, decode_record};
use crate::crypto::{EpochId, EpochKey, SecureRng};
use crate::envelope::{Envelope, EnvelopeLog, LogId};
use crate::identity::LocalIdentity;
use crate::store::{Batch, Store};

impl Circle {
    /// A circle with its membership, and empty documents written by `me`'s device (awake)
    /// or none (at rest: `me` is `None`).
    fn assemble(
        info: CircleInfo,
        id: CircleId,
        membership: Membership,
        names: BTreeMap<cercle_crdt::MemberId, crate::identity::Profile>,
        me: Option<&LocalIdentity>,
    ) -> Circle {
        Circle {
            info,
            id,
            membership,
            names,
            listing: Listing::default(),
            waiting: None,
            ops_checked: None,
            docs: me.map(|me| Box::new(Docs::new(me.actor()))),
            progress: BTreeMap::new(),
            keys: KeySchedule::default(),
            log: EnvelopeLog::default(),
            log_ready: me.is_some(),
            unchecked: BTreeMap::new(),
            deferred: Vec::new(),
            defer_limit: super::MAX_DEFERRED_BYTES,
        }
    }

    /// Creates a circle for the patient described by `update`, with `me` as its
    /// coordinator: the genesis operation, the circle's record and the patient's identity.
    pub fn create(
        me: &LocalIdentity,
        update: &cercle_crdt::IdentityUpdate,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<(Circle, Staged), CircleError> {
        Circle::create_about(me, &super::About::Patient(update.clone()), now, rng)
    }

    /// Creates a circle about a patient or a team, with `me` as its coordinator: the
    /// genesis operation, the circle's record and the patient's identity or team's name.
    pub fn create_about(
        me: &LocalIdentity,
        about: &super::About,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<(Circle, Staged), CircleError> {
        let mut nonce = [0u8; 16];
        rand::Rng::fill_bytes(rng, &mut nonce);
        let epoch = EpochId::generate(rng);
        let key = EpochKey::generate(rng);
        let sealed = seal_to(rng, &nonce, (epoch, &key), [&me.certificate])?;
        let genesis = SignedOp::sign(
            me,
            OpContent {
                circle: None,
                parents: Vec::new(),
                device: me.device(),
                at: now.millis(),
                body: OpBody::Genesis {
                    creator: MemberGrant {
                        member: me.member(),
                        devices: vec![me.certificate.clone()],
                        role: cercle_crdt::Role::Coordinator,
                    },
                    nonce,
                    epoch,
                    sealed,
                },
            },
        );
        let id = CircleId(genesis.hash().0);
        let membership = Membership::genesis(genesis.clone())?;
        let info = CircleInfo {
            id: id.to_string(),
            patient: String::new(),
            created_by: me.member(),
            created_at: now,
            birth_date: None,
            probable_duplicates: Vec::new(),
            team: false,
        };
        let names = [(me.member(), me.profile.clone())].into_iter().collect();
        let mut circle = Circle::assemble(info, id, membership, names, Some(me));
        let member = me.member();
        let written = circle.write::<cercle_crdt::PatientFile, _>(me, now, rng, |pf| match about {
            super::About::Patient(update) => pf.set_identity(member, update, now),
            super::About::Team(name) => pf.set_team(member, name, now),
        });
        written.value?;
        let pf = circle.patient_file()?;
        let (patient, team, listing) = (pf.title(), pf.team().is_some(), Listing::of(pf));
        (circle.info.patient, circle.info.team, circle.listing) = (patient, team, listing);
        let mut staged = Staged {
            membership_changed: true,
            ..Staged::default()
        };
        staged.batch.op(&id, &genesis);
        circle.record_into(&mut staged.batch)?;
        staged.extend(written.staged);
        Ok((circle, staged))
    }

    /// Opens a circle of the store for `me`'s device, at rest: its record, its membership
    /// log and how far each document got (from the store's heads), without reading any
    /// document. A record written before the listing was kept opens the circle awake, to
    /// write the listing (`Batch`, with any snapshot due).
    pub fn open(
        store: &dyn Store,
        me: &LocalIdentity,
        id: &CircleId,
    ) -> Result<(Circle, Batch), CircleError> {
        let bytes = store.circle(id)?.ok_or_else(|| CircleError::Unknown {
            query: id.to_string(),
        })?;
        let record = decode_record(id, &bytes)?;
        let (membership, checked) = load_membership(store, id, record.ops_checked)?;
        let mut circle = Circle::assemble(record.info, *id, membership, record.names, None);
        circle.ops_checked = Some(checked);
        for kind in DocKind::ALL {
            let heads = store.heads(id, kind)?;
            let own = heads.get(&me.device()).copied();
            let applied = heads.iter().map(|(d, h)| (*d, h.seq)).collect();
            let state = DocState {
                applied,
                own,
                since_snapshot: 0,
            };
            circle.progress.insert(kind, state);
        }
        circle.waiting = record.waiting;
        circle.unchecked = record
            .unchecked
            .into_iter()
            .map(|u| ((u.doc, u.device), u.unchecked))
            .collect();
        let mut batch = Batch::new();
        let listed = match record.listing {
            Some(listing) => {
                circle.listing = listing;
                true
            }
            None => {
                batch.extend(circle.wake(store, me)?);
                circle.listing = Listing::of(circle.patient_file()?);
                false
            }
        };
        if !listed || record.ops_checked != Some(checked) {
            circle.record_into(&mut batch)?;
        }
        Ok((circle, batch))
    }

    /// Wakes the circle: each document from its snapshot and the envelopes after it, and
    /// the receive checks from each device's last envelope. Documents with many envelopes
    /// after their snapshot are snapshotted again: the batch. Nothing if already awake.
    pub fn wake(&mut self, store: &dyn Store, me: &LocalIdentity) -> Result<Batch, CircleError> {
        if self.docs.is_some() {
            return Ok(Batch::new());
        }
        self.docs = Some(Box::new(Docs::new(me.actor())));
        // A log made ready at rest may be ahead of the store (envelopes taken in unchecked
        // on their way to the disk): it is kept.
        let read_log = !self.log_ready;
        if read_log {
            self.log = crate::envelope::EnvelopeLog::default();
        }
        let keys = self.epoch_keys(me);
        for kind in DocKind::ALL {
            if let Err(e) = self.load_doc(store, kind, me, &keys, read_log) {
                self.docs = None;
                if read_log {
                    self.log = crate::envelope::EnvelopeLog::default();
                }
                return Err(e);
            }
        }
        self.log_ready = true;
        tracing::debug!(circle = %self.id, "woken");
        Ok(self.snapshots(super::SNAPSHOT_ON_OPEN))
    }

    /// Loads one document: its snapshot, then every stored envelope after it up to the
    /// first not checked yet; `read_log`: continue each device's log from its last one.
    fn load_doc(
        &mut self,
        store: &dyn Store,
        kind: DocKind,
        me: &LocalIdentity,
        keys: &BTreeMap<EpochId, EpochKey>,
        read_log: bool,
    ) -> Result<(), CircleError> {
        let circle_id = self.id.to_string();
        let damaged = |what: &str, reason: String| CircleError::Load {
            circle: circle_id.clone(),
            what: what.to_string(),
            reason,
        };
        let mut applied = BTreeMap::new();
        if let Some(snap) = store.snapshot(&self.id, kind)? {
            let replica = Replica::load(kind, &snap.doc, me.actor())
                .map_err(|e: LoadError| damaged("snapshot", e.to_string()))?;
            *self.docs_mut()?.replica_mut(kind) = replica;
            applied = snap.covers;
        }
        let heads = store.heads(&self.id, kind)?;
        let mut changes: Vec<Change> = Vec::new();
        let mut count = 0;
        for (device, head) in &heads {
            let log = LogId {
                circle: self.id,
                doc: kind,
                device: *device,
            };
            let from = applied.get(device).copied().unwrap_or(0) + 1;
            // Envelopes not checked yet are not applied: they are checked first.
            let upto = self
                .unchecked
                .get(&(kind, *device))
                .map_or(head.seq, |u| u.from.saturating_sub(1).min(head.seq));
            let mut resumed = !read_log;
            if from <= upto {
                let wanted = usize::try_from(upto - from + 1).unwrap_or(usize::MAX);
                for bytes in store.envelopes(&log, from, wanted)? {
                    let env =
                        Envelope::decode(&bytes).map_err(|e| damaged("envelope", e.to_string()))?;
                    if env.header.seq > upto {
                        break;
                    }
                    if env.header.seq == head.seq && !resumed {
                        self.log.resume(&env);
                        resumed = true;
                    }
                    let key = keys.get(&env.header.epoch).ok_or_else(|| {
                        damaged("envelope", "no key for its epoch on this device".into())
                    })?;
                    changes.extend(
                        env.open(key)
                            .map_err(|e| damaged("envelope", e.to_string()))?,
                    );
                    count += 1;
                }
            }
            if !resumed {
                self.resume_log(store, &log, head)?;
            }
            applied.insert(*device, head.seq);
        }
        if !changes.is_empty() {
            self.docs_mut()?
                .replica_mut(kind)
                .apply_stored(changes)
                .map_err(|e| damaged("envelope", e.to_string()))?;
        }
        let state = self.progress(kind);
        state.own = heads.get(&me.device()).copied();
        // What the circle took in at rest may still be on its way to the disk: the store's
        // heads are then behind what it holds.
        for (device, seq) in std::mem::take(&mut state.applied) {
            let held = applied.entry(device).or_insert(seq);
            *held = (*held).max(seq);
        }
        state.applied = applied;
        state.since_snapshot = count;
        Ok(())
    }

    /// The receive checks continue `log` from its last envelope held, `head`: from its
    /// bytes, or from its position and hash alone when they are not kept (an envelope
    /// refused when it was checked after its arrival).
    fn resume_log(
        &mut self,
        store: &dyn Store,
        log: &LogId,
        head: &crate::store::Head,
    ) -> Result<(), CircleError> {
        let stored = store.envelopes(log, head.seq, 1)?;
        let env = stored
            .first()
            .and_then(|b| Envelope::decode_stored(b).ok())
            .filter(|e| e.header.seq == head.seq && e.hash() == head.hash);
        match env {
            Some(env) => self.log.resume(&env),
            None => self.log.resume_at(log.device, log.doc, head.seq, head.hash),
        }
        Ok(())
    }

    /// Makes the receive checks of a circle at rest continue each device's log, so that it
    /// takes envelopes in unchecked (the last envelope of each log is read; the documents
    /// are not). Nothing if ready.
    pub fn ready_log(&mut self, store: &dyn Store) -> Result<(), CircleError> {
        if self.log_ready {
            return Ok(());
        }
        self.log = EnvelopeLog::default();
        for kind in DocKind::ALL {
            for (device, head) in &store.heads(&self.id, kind)? {
                let log = LogId {
                    circle: self.id,
                    doc: kind,
                    device: *device,
                };
                self.resume_log(store, &log, head)?;
            }
        }
        self.log_ready = true;
        Ok(())
    }

    /// Joins a circle this node does not hold yet, from operations a member sent: they must
    /// start from the genesis named by `circle` and make `me`'s device a member.
    pub fn join(
        me: &LocalIdentity,
        circle: CircleId,
        ops: &[Vec<u8>],
    ) -> Result<(Circle, Staged), CircleError> {
        Circle::join_as(me, circle, ops, true)
    }

    /// Joins a circle as [`Circle::join`] does, at rest: what comes next is taken in at
    /// once, unchecked, and checked when the node gets to it, so that a member joined to
    /// many circles at once holds them all quickly.
    pub fn join_resting(
        me: &LocalIdentity,
        circle: CircleId,
        ops: &[Vec<u8>],
    ) -> Result<(Circle, Staged), CircleError> {
        Circle::join_as(me, circle, ops, false)
    }

    fn join_as(
        me: &LocalIdentity,
        circle: CircleId,
        ops: &[Vec<u8>],
        awake: bool,
    ) -> Result<(Circle, Staged), CircleError> {
        let not_invited = || CircleError::NotInvited {
            circle: circle.to_string(),
        };
        // The genesis is the operation whose hash is the circle.
        let genesis = ops
            .iter()
            .find(|b| OpHash(*blake3::hash(b).as_bytes()) == OpHash(circle.0))
            .map(|b| SignedOp::decode(b))
            .transpose()?
            .ok_or_else(not_invited)?;
        let (created_by, created_at) = match &genesis.content().body {
            OpBody::Genesis { creator, .. } => (creator.member, genesis.content().at),
            _ => return Err(not_invited()),
        };
        let mut membership = Membership::genesis(genesis.clone())?;
        let mut staged = Staged {
            membership_changed: true,
            ..Staged::default()
        };
        staged.batch.op(&circle, &genesis);
        // Only what the membership takes is stored: an operation of another circle, a
        // second genesis or an operation without effect is not.
        for op in membership.take_in(ops).new {
            staged.batch.op(&circle, &op);
        }
        if membership.resolution().member_of(&me.device()).is_none() {
            return Err(not_invited());
        }
        let info = CircleInfo {
            id: circle.to_string(),
            // Known once the patient file arrives.
            patient: String::new(),
            created_by,
            created_at: Timestamp(created_at),
            birth_date: None,
            probable_duplicates: Vec::new(),
            team: false,
        };
        let mut joined = Circle::assemble(
            info,
            circle,
            membership,
            BTreeMap::new(),
            awake.then_some(me),
        );
        // Nothing of it is stored yet: its logs are ready, empty.
        joined.log_ready = true;
        joined.record_into(&mut staged.batch)?;
        tracing::debug!(circle = %circle, "a circle joined from a member's operations");
        Ok((joined, staged))
    }
}

/// The digest of a stored membership log: of each operation's hash, in the store's order.
fn ops_digest(ops: &[Vec<u8>]) -> [u8; 32] {
    let mut digest = blake3::Hasher::new();
    for op in ops {
        digest.update(blake3::hash(op).as_bytes());
    }
    digest.finalize().into()
}

/// Loads every stored operation and takes them again, parents first; the one without a
/// circle is the genesis. Operations the rule no longer takes (stored by an older version)
/// are left out, with a warning. Their signatures are checked, unless the circle's record
/// (sealed with this device's storage key, so that no one without it can forge it) vouches
/// for exactly these operations, checked at an earlier opening: `vouched`. Returns the
/// digest to vouch with next time.
fn load_membership(
    store: &dyn Store,
    id: &CircleId,
    vouched: Option<[u8; 32]>,
) -> Result<(Membership, [u8; 32]), CircleError> {
    let damaged = |reason: String| CircleError::Load {
        circle: id.to_string(),
        what: "membership log".into(),
        reason,
    };
    let stored = store.ops(id)?;
    let digest = ops_digest(&stored);
    let ops = if vouched == Some(digest) {
        stored.iter().map(|b| SignedOp::decode_vouched(b)).collect()
    } else {
        SignedOp::decode_all(&stored)
    };
    let ops = ops.map_err(|e| damaged(e.to_string()))?;
    let (membership, left_out) = Membership::load(ops).map_err(|e| damaged(e.to_string()))?;
    if membership.log().circle() != *id {
        return Err(damaged("its genesis is another circle's".into()));
    }
    if !left_out.is_empty() {
        tracing::warn!(circle = %id, left_out = left_out.len(), "stored membership operations without effect were left out");
    }
    Ok((membership, digest))
}
