//! The one path of a local write: the member's role is checked for the document, the
//! document's typed writer makes its Automerge change(s), the changes are sealed into the
//! device's next envelope for that document, and the envelope is staged in a batch. The
//! documents are reachable for writing only through here, so nothing changes a document
//! without the role check and the sealing.

use cercle_crdt::{
    DocKind, LiaisonNotebook, PatientFile, Replica, Role, Thread, Timestamp, WriteError,
};

use super::membership::OpBody;
use super::{Circle, CircleError, Docs, Staged, Written};
use crate::crypto::{EpochId, EpochKey, SecureRng};
use crate::envelope::{Envelope, EnvelopeRef, Slot};
use crate::identity::LocalIdentity;
use crate::store::Head;

/// One of a circle's three documents, as the write path needs to know it.
pub trait CircleDocument {
    /// Which document it is.
    const KIND: DocKind;
    /// What writing it is called, for a refusal.
    const ACTION: &'static str;
    /// Whether `role` may write it at all (the document's own rules refine this).
    fn may_write(role: Role) -> bool;
    #[doc(hidden)]
    fn of(docs: &mut Docs) -> &mut Self;
    #[doc(hidden)]
    fn replica(&mut self) -> &mut Replica;
}

/// The three documents: which one, what writing it is called, who may, and where it is.
macro_rules! circle_document {
    ($($ty:ty: $kind:ident, $action:literal, $may:ident, $field:ident;)*) => {
        $(
            impl CircleDocument for $ty {
                const KIND: DocKind = DocKind::$kind;
                const ACTION: &'static str = $action;
                fn may_write(role: Role) -> bool {
                    role.$may()
                }
                fn of(docs: &mut Docs) -> &mut Self {
                    &mut docs.$field
                }
                fn replica(&mut self) -> &mut Replica {
                    self.replica_mut()
                }
            }
        )*
    };
}

circle_document! {
    PatientFile: PatientFile, "editing the patient file", writes_clinical, patient_file;
    LiaisonNotebook: LiaisonNotebook, "writing in the liaison notebook", writes_clinical, notebook;
    Thread: Thread, "writing messages", writes_anything, thread;
}

impl Circle {
    /// Writes document `D` with `f` if this member's role allows it; every change `f`
    /// makes is sealed into one envelope and staged. Changes made before an error in `f`
    /// are staged too (they are in the document already), beside the error.
    pub fn write<D: CircleDocument, T>(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
        rng: &mut SecureRng,
        f: impl FnOnce(&mut D) -> Result<T, WriteError>,
    ) -> Written<Result<T, CircleError>> {
        if let Some(e) = self.suspended_error(me) {
            return Written {
                value: Err(e),
                staged: Staged::default(),
            };
        }
        if let Err(e) = self.require_role(me, D::may_write, D::ACTION) {
            return Written {
                value: Err(e),
                staged: Staged::default(),
            };
        }
        let doc = match self.docs_mut() {
            Ok(docs) => D::of(docs),
            Err(e) => {
                return Written {
                    value: Err(e),
                    staged: Staged::default(),
                };
            }
        };
        let result = f(doc);
        let changes = doc.replica().take_local_changes();
        let patient_changed = D::KIND == DocKind::PatientFile && !changes.is_empty();
        match self.seal(me, D::KIND, &changes, now, rng) {
            Ok(mut staged) => {
                if patient_changed {
                    self.relist(&mut staged);
                }
                Written {
                    value: result.map_err(CircleError::from),
                    staged,
                }
            }
            Err(e) => Written {
                value: Err(e),
                staged: Staged::default(),
            },
        }
    }

    /// Publishes `me`'s profile in the thread if it is not there as it is now (a member
    /// who joined from the network is known to the others by this). Nothing for a member
    /// whose role writes no messages.
    pub fn publish_profile(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Written<Result<(), CircleError>> {
        let nothing = || Written {
            value: Ok(()),
            staged: Staged::default(),
        };
        let mine = me.profile.clone();
        let published = match self.thread() {
            Ok(thread) => thread.profiles().remove(&me.member()),
            Err(e) => {
                return Written {
                    value: Err(e),
                    staged: Staged::default(),
                };
            }
        };
        if published.is_some_and(|p| p.name == mine.name && p.profession == mine.profession) {
            return nothing();
        }
        if !self
            .resolution()
            .role(&me.member())
            .is_some_and(Role::writes_anything)
        {
            return nothing();
        }
        let profile = cercle_crdt::PublishedProfile {
            member: me.member(),
            at: now,
            name: mine.name,
            profession: mine.profession,
            rpps: mine.rpps,
            adeli: mine.adeli,
        };
        let member = me.member();
        let w = self.write::<Thread, _>(me, now, rng, |t| t.publish_profile(member, &profile, now));
        Written {
            value: w.value.map(|_| ()),
            staged: w.staged,
        }
    }

    /// Seals `changes` (this device's newest, in order) into the next envelope of its log
    /// for `doc`, staged with any key rotation it needed first.
    fn seal(
        &mut self,
        me: &LocalIdentity,
        doc: DocKind,
        changes: &[cercle_crdt::Change],
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<Staged, CircleError> {
        if changes.is_empty() {
            return Ok(Staged::default());
        }
        let (mut staged, (epoch, key)) = self.write_key(me, now, rng)?;
        let state = self.progress(doc);
        let last = state.own;
        let slot = Slot {
            circle: self.id,
            doc,
            seq: last.map_or(1, |h| h.seq + 1),
            prev: last.map_or([0u8; 32], |h| h.hash),
        };
        let env = Envelope::seal(me, slot, (epoch, &key), changes, rng)?;
        tracing::debug!(circle = %self.id, %doc, seq = slot.seq, changes = changes.len(), "sealed");
        staged.batch.envelope(&env);
        staged.envelopes.push(EnvelopeRef {
            log: env.header.log(),
            seq: slot.seq,
        });
        self.log.resume(&env);
        let state = self.progress(doc);
        state.own = Some(Head {
            seq: slot.seq,
            hash: env.hash(),
        });
        state.applied.insert(me.device(), slot.seq);
        state.since_snapshot += 1;
        Ok(staged)
    }

    /// The key to write with: the current epoch's, provided it is sealed to exactly the
    /// current members' devices. Otherwise (after concurrent changes) a coordinator's device
    /// starts a new epoch first, staged here.
    fn write_key(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
        rng: &mut SecureRng,
    ) -> Result<(Staged, (EpochId, EpochKey)), CircleError> {
        if let Some(cached) = self.keys.cached_write_key() {
            return Ok((Staged::default(), cached));
        }
        let mut staged = Staged::default();
        let r = self.resolution();
        let current = r.epoch.ok_or(CircleError::NoEpochKey)?;
        let devices: std::collections::BTreeSet<_> = r
            .members
            .values()
            .flat_map(|m| m.devices.iter().map(|d| d.device))
            .collect();
        let exact = self.membership.holders().get(&current) == Some(&devices);
        if !exact && r.role(&me.member()) == Some(Role::Coordinator) {
            let (epoch, sealed) = self.new_epoch(super::keys::Without::Nobody, rng)?;
            staged = self.append_op(me, OpBody::RotateKey { epoch, sealed }, now)?;
        }
        let current = self.resolution().epoch.ok_or(CircleError::NoEpochKey)?;
        let key = self
            .keys
            .readable(&self.membership, me)
            .get(&current)
            .cloned()
            .ok_or(CircleError::NoEpochKey)?;
        self.keys.remember_write_key((current, key.clone()));
        Ok((staged, (current, key)))
    }
}
