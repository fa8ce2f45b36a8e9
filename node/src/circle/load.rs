//! How a circle comes to be held here: created by this member, opened from the store
//! (each document from its latest snapshot and the envelopes stored after it), or joined
//! from a member's operations that make this device a member.

use std::collections::BTreeMap;

use cercle_crdt::{Change, DocKind, LoadError, Replica, Timestamp};

use super::keys::{KeySchedule, seal_to};
use super::membership::{CircleId, MemberGrant, Membership, OpBody, OpContent, OpHash, SignedOp};
use super::{Circle, CircleError, CircleInfo, Docs, Staged, decode_record};
use crate::crypto::{EpochId, EpochKey, SecureRng};
use crate::envelope::{Envelope, EnvelopeLog, LogId};
use crate::identity::LocalIdentity;
use crate::store::{Batch, Store};

impl Circle {
    /// A circle with its membership and empty documents written by `me`'s device.
    fn assemble(
        info: CircleInfo,
        id: CircleId,
        membership: Membership,
        names: BTreeMap<cercle_crdt::MemberId, crate::identity::Profile>,
        me: &LocalIdentity,
    ) -> Circle {
        Circle {
            info,
            id,
            membership,
            names,
            docs: Docs::new(me.actor()),
            keys: KeySchedule::default(),
            log: EnvelopeLog::default(),
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
        let mut circle = Circle::assemble(info, id, membership, names, me);
        let member = me.member();
        let written = circle.write::<cercle_crdt::PatientFile, _>(me, now, rng, |pf| match about {
            super::About::Patient(update) => pf.set_identity(member, update, now),
            super::About::Team(name) => pf.set_team(member, name, now),
        });
        written.value?;
        circle.info.patient = circle.docs.patient_file.title();
        circle.info.team = circle.docs.patient_file.team().is_some();
        let mut staged = Staged {
            membership_changed: true,
            ..Staged::default()
        };
        staged.batch.op(&id, &genesis);
        circle.record_into(&mut staged.batch)?;
        staged.extend(written.staged);
        Ok((circle, staged))
    }

    /// Opens a circle of the store for `me`'s device: its record, its membership log, and
    /// each document from its snapshot and the envelopes after it. Documents with many
    /// envelopes after their snapshot are snapshotted again: `snapshots` holds the batch.
    pub fn open(
        store: &dyn Store,
        me: &LocalIdentity,
        id: &CircleId,
    ) -> Result<(Circle, Batch), CircleError> {
        let bytes = store.circle(id)?.ok_or_else(|| CircleError::Unknown {
            query: id.to_string(),
        })?;
        let record = decode_record(id, &bytes)?;
        let membership = load_membership(store, id)?;
        let mut circle = Circle::assemble(record.info, *id, membership, record.names, me);
        let keys = circle.epoch_keys(me);
        for kind in DocKind::ALL {
            circle.load_doc(store, kind, me, &keys)?;
        }
        let snapshots = circle.snapshots(super::SNAPSHOT_ON_OPEN);
        Ok((circle, snapshots))
    }

    /// Loads one document: its snapshot, then every stored envelope after it.
    fn load_doc(
        &mut self,
        store: &dyn Store,
        kind: DocKind,
        me: &LocalIdentity,
        keys: &BTreeMap<EpochId, EpochKey>,
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
            *self.docs.replica_mut(kind) = replica;
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
            // The receive checks continue each device's log from its last envelope.
            let first = from.min(head.seq);
            for bytes in store.envelopes(&log, first, usize::MAX)? {
                let env =
                    Envelope::decode(&bytes).map_err(|e| damaged("envelope", e.to_string()))?;
                if env.header.seq == head.seq {
                    self.log.resume(&env);
                }
                if env.header.seq < from {
                    continue;
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
            applied.insert(*device, head.seq);
        }
        if !changes.is_empty() {
            self.docs
                .replica_mut(kind)
                .apply_stored(changes)
                .map_err(|e| damaged("envelope", e.to_string()))?;
        }
        let state = self.docs.state(kind);
        state.own = heads.get(&me.device()).copied();
        state.applied = applied;
        state.since_snapshot = count;
        Ok(())
    }

    /// Joins a circle this node does not hold yet, from operations a member sent: they must
    /// start from the genesis named by `circle` and make `me`'s device a member.
    pub fn join(
        me: &LocalIdentity,
        circle: CircleId,
        ops: &[Vec<u8>],
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
        let joined = Circle::assemble(info, circle, membership, BTreeMap::new(), me);
        joined.record_into(&mut staged.batch)?;
        tracing::debug!(circle = %circle, "a circle joined from a member's operations");
        Ok((joined, staged))
    }
}

/// Loads every stored operation and takes them again, parents first; the one without a
/// circle is the genesis. Operations the rule no longer takes (stored by an older version)
/// are left out, with a warning.
fn load_membership(store: &dyn Store, id: &CircleId) -> Result<Membership, CircleError> {
    let damaged = |reason: String| CircleError::Load {
        circle: id.to_string(),
        what: "membership log".into(),
        reason,
    };
    let ops = SignedOp::decode_all(&store.ops(id)?).map_err(|e| damaged(e.to_string()))?;
    let (membership, left_out) = Membership::load(ops).map_err(|e| damaged(e.to_string()))?;
    if membership.log().circle() != *id {
        return Err(damaged("its genesis is another circle's".into()));
    }
    if !left_out.is_empty() {
        tracing::warn!(circle = %id, left_out = left_out.len(), "stored membership operations without effect were left out");
    }
    Ok(membership)
}
