//! Circles of care: the team around one patient, its signed membership log, and the three
//! documents it shares.
//!
//! A circle's id is the hash of its signed genesis operation (64 hex digits); people may type
//! any unambiguous prefix of it. Who belongs to it, with which role, is decided only by
//! [`membership`], from the signed operations kept in the store.
//!
//! Every local write becomes an Automerge change, sealed at once into an [`Envelope`] and
//! handed to the store in a [`Batch`]; the write is acknowledged ([`Pending::wait`]) when the
//! store has made it durable. Opening a circle loads each document's latest snapshot and
//! applies the envelopes stored after it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cercle_crdt::{
    Change, DocKind, Entry, IdentityUpdate, LiaisonNotebook, LoadError, MemberId, NewEntry,
    PatientFile, Replica, Thread, Timestamp, WriteError,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub mod membership;

use crate::crypto::{CryptoError, EpochId, EpochKey, seal_epoch_key};
use crate::envelope::{Accepted, CircleView, Envelope, EnvelopeLog, EnvelopeRejection};
use crate::identity::{ContactCard, DeviceId, LocalIdentity, Profile, PublicIdentity};
use crate::store::{Batch, Head, RejectionRecord, Snapshot, Store, StoreError, Ticket};
use membership::{
    CircleId, MemberGrant, MembershipLog, OpBody, OpContent, OpError, Resolution, SignedOp,
};

/// A document is snapshotted once this many envelopes were applied after its last snapshot.
pub const SNAPSHOT_EVERY: usize = 1000;
/// On opening, a document with at least this many envelopes after its snapshot gets a new one.
pub const SNAPSHOT_ON_OPEN: usize = 64;

/// Why a circle operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CircleError {
    /// No circle matches what the user typed.
    #[error("no circle matches {query:?}; `cercle circle list` shows your circles")]
    Unknown { query: String },
    /// Several circles match a prefix.
    #[error("{query:?} matches {count} circles; type more characters of the id")]
    Ambiguous { query: String, count: usize },
    /// The document refused the write (empty note, bad date...).
    #[error("{0}")]
    Write(#[from] WriteError),
    /// A stored document or envelope could not be loaded.
    #[error("the stored {what} of circle {circle} is damaged ({reason}); run `cercle repair`")]
    Load {
        circle: String,
        what: String,
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The system's randomness failed.
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    /// A stored or received membership operation was refused.
    #[error("membership operation refused: {0}")]
    Op(#[from] OpError),
    /// The local member's role does not allow this.
    #[error("your role in this circle ({role}) does not allow {action}")]
    NotAllowed { role: String, action: &'static str },
    /// The member named is not in the circle.
    #[error("no member of this circle matches {query:?}; `cercle circle show` lists them")]
    UnknownMember { query: String },
    /// Sealing or opening a key failed.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// A local change could not be sealed into an envelope.
    #[error("cannot seal the change: {0}")]
    Seal(#[from] EnvelopeRejection),
    /// This device holds no key of the circle's current epoch.
    #[error(
        "this device has no key for the circle's current epoch; ask a coordinator to add it again"
    )]
    NoEpochKey,
    /// Data of a circle this device is not a member of.
    #[error("this device is not a member of circle {circle}")]
    NotInvited { circle: String },
    /// The member to add is already in the circle.
    #[error("{name} is already a member of this circle")]
    AlreadyMember { name: String },
    /// More relays than a circle may name.
    #[error("a circle may use at most {max} relays")]
    TooManyRelays { max: usize },
}

/// What a circle is, as recorded locally (sealed at rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircleInfo {
    /// The circle's id (64 hex digits).
    pub id: String,
    /// The patient's display name when the circle was created.
    pub patient: String,
    /// The member who created the circle.
    pub created_by: MemberId,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The local record of a circle: its metadata and the profiles of its members, as known
/// from their cards (never in the membership log, which relays see).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CircleRecord {
    info: CircleInfo,
    names: BTreeMap<MemberId, Profile>,
}

/// A local write, done in memory and queued to the store: acknowledged once durable.
#[must_use = "a write is acknowledged only once `wait` returns"]
#[derive(Debug)]
pub struct Pending<T> {
    value: T,
    ticket: Ticket,
}

impl<T> Pending<T> {
    /// The value now and the ticket that completes once it is durable.
    pub fn into_parts(self) -> (T, Ticket) {
        (self.value, self.ticket)
    }

    /// Blocks until the write is on disk, then gives its result (a note id...).
    pub fn wait(self) -> Result<T, CircleError> {
        self.ticket.wait()?;
        Ok(self.value)
    }
}

/// What the receive checks need of the membership log, computed once per change of it.
#[derive(Debug)]
struct ReceiveKeys {
    holders: BTreeMap<EpochId, BTreeSet<DeviceId>>,
    keys: BTreeMap<EpochId, EpochKey>,
}

/// What receiving a peer's operations and envelopes did.
#[derive(Debug)]
#[must_use = "the receipt's ticket tells when the received data is durable"]
pub struct Receipt {
    /// Operations new to this node, in the order received (to pass on).
    pub new_ops: Vec<Vec<u8>>,
    /// Envelopes accepted, stored and applied, in order (to pass on).
    pub accepted: Vec<Vec<u8>>,
    /// Envelopes applied, per document.
    pub applied: BTreeMap<DocKind, usize>,
    /// Why each refused item was refused (also recorded in the store).
    pub refused: Vec<String>,
    /// Completes when all of it is durable.
    pub ticket: Ticket,
}

/// A circle opened from the store, with its membership log and three documents.
#[derive(Debug)]
pub struct Circle {
    info: CircleInfo,
    id: CircleId,
    store: Arc<dyn Store>,
    membership: MembershipLog,
    names: BTreeMap<MemberId, Profile>,
    /// Per document, the last sequence number applied from each device.
    applied: BTreeMap<DocKind, BTreeMap<DeviceId, u64>>,
    /// Per document, this device's last envelope.
    own: BTreeMap<DocKind, Head>,
    /// Per document, envelopes applied since the last snapshot.
    since_snapshot: BTreeMap<DocKind, usize>,
    /// The epoch and key this device writes with, until the membership changes.
    write_key: Option<(EpochId, EpochKey)>,
    /// The membership log's resolution, recomputed when the log changes.
    resolved: Resolution,
    /// The receive side's checks: each device's last accepted envelope per document.
    log: EnvelopeLog,
    /// Epoch holders and the keys this device opens, for receiving; recomputed when the
    /// membership log changes.
    receive_keys: Option<ReceiveKeys>,
    /// Envelopes sealed here and not yet taken by [`Circle::take_sealed`] (to push).
    sealed: Vec<Vec<u8>>,
    /// The patient file.
    pub patient_file: PatientFile,
    /// The liaison notebook.
    pub notebook: LiaisonNotebook,
    /// The thread.
    pub thread: Thread,
}

impl Circle {
    /// Creates a circle for the patient described by `update`, with `signer` as its
    /// coordinator, and stores it durably.
    pub fn create(
        store: Arc<dyn Store>,
        signer: &LocalIdentity,
        update: &IdentityUpdate,
        now: Timestamp,
    ) -> Result<Circle, CircleError> {
        let me = signer.public();
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| CircleError::Random(e.to_string()))?;
        let epoch = EpochId::generate()?;
        let key = EpochKey::generate()?;
        let sealed = vec![seal_epoch_key(
            &key,
            &nonce,
            epoch,
            me.device(),
            &me.certificate.x25519,
        )?];
        let genesis = SignedOp::sign(
            signer,
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
        let membership = MembershipLog::new(genesis.clone())?;

        let info = CircleInfo {
            id: id.to_string(),
            patient: String::new(),
            created_by: me.member(),
            created_at: now,
        };
        let names = [(me.member(), me.profile.clone())].into_iter().collect();
        let mut circle = Circle::assemble(info, id, store, membership, names, me.actor());
        circle.patient_file.set_identity(me.member(), update, now)?;
        circle.info.patient = circle.patient_file.identity().display_name();
        let mut batch = Batch::new();
        batch.op(&id, &genesis);
        circle.record_into(&mut batch)?;
        // The document's genesis is shared by every replica; only the identity is ours.
        let changes: Vec<Change> = circle
            .patient_file
            .replica_mut()
            .changes_since(&[])
            .into_iter()
            .filter(|c| *c.actor_id() == signer.actor())
            .collect();
        circle.seal_local(signer, DocKind::PatientFile, &changes, now, &mut batch)?;
        circle.store.commit(batch)?;
        Ok(circle)
    }

    /// A circle with its membership log and empty documents written by `actor`.
    fn assemble(
        info: CircleInfo,
        id: CircleId,
        store: Arc<dyn Store>,
        membership: MembershipLog,
        names: BTreeMap<MemberId, Profile>,
        actor: cercle_crdt::ActorId,
    ) -> Circle {
        let resolved = membership.resolve();
        Circle {
            info,
            id,
            store,
            membership,
            names,
            applied: BTreeMap::new(),
            own: BTreeMap::new(),
            since_snapshot: BTreeMap::new(),
            write_key: None,
            resolved,
            log: EnvelopeLog::default(),
            receive_keys: None,
            sealed: Vec::new(),
            patient_file: PatientFile::new(actor.clone()),
            notebook: LiaisonNotebook::new(actor.clone()),
            thread: Thread::new(actor),
        }
    }

    /// All circles in the store, by creation time.
    pub fn list(store: &dyn Store) -> Result<Vec<CircleInfo>, CircleError> {
        let mut out: Vec<CircleInfo> = records(store)?.into_iter().map(|(_, r)| r.info).collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Finds one circle by its id or an unambiguous prefix of it.
    pub fn find(store: &dyn Store, query: &str) -> Result<CircleInfo, CircleError> {
        Ok(find_record(store, query)?.1.info)
    }

    /// Opens a circle by id or prefix, for `me`'s device: its record, its membership log,
    /// and each document from its snapshot and the envelopes after it.
    pub fn open(
        store: Arc<dyn Store>,
        me: &LocalIdentity,
        query: &str,
    ) -> Result<Circle, CircleError> {
        let (id, record) = find_record(store.as_ref(), query)?;
        let membership = load_membership(store.as_ref(), &id)?;
        let mut circle =
            Circle::assemble(record.info, id, store, membership, record.names, me.actor());
        let keys = circle.epoch_keys(me)?;
        for kind in DocKind::ALL {
            circle.load_doc(kind, me, &keys)?;
        }
        circle.maintain(SNAPSHOT_ON_OPEN);
        Ok(circle)
    }

    /// Loads one document: its snapshot, then every stored envelope after it.
    fn load_doc(
        &mut self,
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
        let snapshot = self.store.snapshot(&self.id, kind)?;
        let mut applied = BTreeMap::new();
        if let Some(snap) = snapshot {
            let replica = Replica::load(kind, &snap.doc, me.actor())
                .map_err(|e: LoadError| damaged("snapshot", e.to_string()))?;
            *self.replica_mut(kind) = replica;
            applied = snap.covers;
        }
        let heads = self.store.heads(&self.id, kind)?;
        let mut changes: Vec<Change> = Vec::new();
        let mut count = 0;
        for (device, head) in &heads {
            let from = applied.get(device).copied().unwrap_or(0) + 1;
            if from > head.seq {
                // The receive checks continue each device's log from its last envelope.
                for bytes in self.store.envelopes(&self.id, kind, device, head.seq, 1)? {
                    let env =
                        Envelope::decode(&bytes).map_err(|e| damaged("envelope", e.to_string()))?;
                    self.log.resume(&env);
                }
                continue;
            }
            for bytes in self
                .store
                .envelopes(&self.id, kind, device, from, usize::MAX)?
            {
                let env =
                    Envelope::decode(&bytes).map_err(|e| damaged("envelope", e.to_string()))?;
                if env.header.seq == head.seq {
                    self.log.resume(&env);
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
            self.replica_mut(kind)
                .apply_stored(changes)
                .map_err(|e| damaged("envelope", e.to_string()))?;
        }
        if let Some(h) = heads.get(&me.device()) {
            self.own.insert(kind, *h);
        }
        self.applied.insert(kind, applied);
        self.since_snapshot.insert(kind, count);
        Ok(())
    }

    fn replica_mut(&mut self, kind: DocKind) -> &mut Replica {
        match kind {
            DocKind::PatientFile => self.patient_file.replica_mut(),
            DocKind::LiaisonNotebook => self.notebook.replica_mut(),
            DocKind::Thread => self.thread.replica_mut(),
        }
    }

    /// Saves each document with at least `threshold` envelopes applied since its last
    /// snapshot; the store seals and writes the snapshot on its writer thread.
    pub fn maintain(&mut self, threshold: usize) {
        for kind in DocKind::ALL {
            if self.since_snapshot.get(&kind).copied().unwrap_or(0) < threshold.max(1) {
                continue;
            }
            let snapshot = Snapshot {
                covers: self.applied.get(&kind).cloned().unwrap_or_default(),
                doc: self.replica_mut(kind).save(),
            };
            // Written by the store's writer; nothing waits for it (envelopes cover it).
            drop(self.store.save_snapshot(&self.id, kind, &snapshot));
            self.since_snapshot.insert(kind, 0);
        }
    }

    /// The circle's metadata.
    pub fn info(&self) -> &CircleInfo {
        &self.info
    }

    /// The circle's id.
    pub fn id(&self) -> CircleId {
        self.id
    }

    /// Who is in the circle now.
    pub fn resolution(&self) -> &Resolution {
        &self.resolved
    }

    /// The membership log.
    pub fn membership(&self) -> &MembershipLog {
        &self.membership
    }

    /// A member's profile, if their card was seen here.
    pub fn profile_of(&self, member: &MemberId) -> Option<&Profile> {
        self.names.get(member)
    }

    /// Every member's profile known here: from the cards this node saw, else as each
    /// member published it in the thread.
    pub fn profiles(&self) -> BTreeMap<MemberId, Profile> {
        let mut all: BTreeMap<MemberId, Profile> = self
            .thread
            .profiles()
            .into_iter()
            .map(|(m, p)| {
                (
                    m,
                    Profile {
                        name: p.name,
                        profession: p.profession,
                        rpps: p.rpps,
                        adeli: p.adeli,
                    },
                )
            })
            .collect();
        all.extend(self.names.iter().map(|(m, p)| (*m, p.clone())));
        all
    }

    /// Publishes `me`'s profile in the thread if it is not there as it is now (a member
    /// who joined from the network is known to the others by this). Nothing for a member
    /// whose role writes no messages.
    pub fn publish_profile(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
    ) -> Result<Option<Pending<String>>, CircleError> {
        let mine = me.public().profile;
        let published = self.thread.profiles().remove(&me.member());
        if published.is_some_and(|p| p.name == mine.name && p.profession == mine.profession) {
            return Ok(None);
        }
        if !self
            .resolution()
            .role(&me.member())
            .is_some_and(cercle_crdt::Role::writes_anything)
        {
            return Ok(None);
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
        self.edit_thread(me, now, |t| t.publish_profile(member, &profile, now))
            .map(Some)
    }

    /// The local member's role, checked against what they want to do.
    fn require_role(
        &self,
        me: &PublicIdentity,
        allowed: impl Fn(cercle_crdt::Role) -> bool,
        action: &'static str,
    ) -> Result<(), CircleError> {
        match self.resolution().role(&me.member()) {
            Some(role) if allowed(role) => Ok(()),
            Some(role) => Err(CircleError::NotAllowed {
                role: role.to_string(),
                action,
            }),
            None => Err(CircleError::NotAllowed {
                role: "not a member".into(),
                action,
            }),
        }
    }

    /// Adds the member of `card` with `role`, as a signed operation by `signer`.
    pub fn add_member(
        &mut self,
        signer: &LocalIdentity,
        card: &ContactCard,
        role: cercle_crdt::Role,
        now: Timestamp,
    ) -> Result<(), CircleError> {
        self.require_role(
            &signer.public(),
            |r| r == cercle_crdt::Role::Coordinator,
            "adding members",
        )?;
        let r = self.resolution().clone();
        if r.members.contains_key(&card.member) {
            return Err(CircleError::AlreadyMember {
                name: card.profile.name.clone(),
            });
        }
        // History is part of care: the newcomer receives every epoch key this device holds.
        let binding = self.binding();
        let mut sealed = Vec::new();
        for (epoch, key) in &self.epoch_keys(signer)? {
            for d in &card.devices {
                sealed.push(seal_epoch_key(key, &binding, *epoch, d.device, &d.x25519)?);
            }
        }
        let body = OpBody::AddMember {
            grant: MemberGrant {
                member: card.member,
                devices: card.devices.clone(),
                role,
            },
            sealed,
        };
        let mut batch = Batch::new();
        self.append_op(signer, body, now, &mut batch)?;
        self.names.insert(card.member, card.profile.clone());
        self.record_into(&mut batch)?;
        Ok(self.store.commit(batch)?)
    }

    /// Removes `member`; each of their devices is cut off after the last change seen here.
    pub fn remove_member(
        &mut self,
        signer: &LocalIdentity,
        member: &MemberId,
        now: Timestamp,
    ) -> Result<(), CircleError> {
        self.require_role(
            &signer.public(),
            |r| r == cercle_crdt::Role::Coordinator,
            "removing members",
        )?;
        let r = self.resolution().clone();
        let state = r
            .members
            .get(member)
            .ok_or_else(|| CircleError::UnknownMember {
                query: member.short(),
            })?;
        let cutoffs = state
            .devices
            .iter()
            .map(|d| (d.device, self.last_seq_of(&d.device.actor())))
            .collect();
        // A new epoch that only the remaining devices can open.
        let (epoch, sealed) = self.new_epoch_for(&r, Some(member))?;
        let mut batch = Batch::new();
        self.append_op(
            signer,
            OpBody::RemoveMember {
                member: *member,
                cutoffs,
                epoch,
                sealed,
            },
            now,
            &mut batch,
        )?;
        Ok(self.store.commit(batch)?)
    }

    /// What binds sealed keys to this circle: its genesis nonce.
    fn binding(&self) -> Vec<u8> {
        self.membership
            .ops()
            .find_map(|o| match &o.content().body {
                OpBody::Genesis { nonce, .. } => Some(nonce.to_vec()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// A fresh epoch key sealed to every device of the current members except `without`.
    fn new_epoch_for(
        &self,
        r: &Resolution,
        without: Option<&MemberId>,
    ) -> Result<(EpochId, Vec<crate::crypto::SealedKey>), CircleError> {
        let epoch = EpochId::generate()?;
        let key = EpochKey::generate()?;
        let binding = self.binding();
        let mut sealed = Vec::new();
        for (m, state) in &r.members {
            if Some(m) == without {
                continue;
            }
            for d in &state.devices {
                sealed.push(seal_epoch_key(&key, &binding, epoch, d.device, &d.x25519)?);
            }
        }
        Ok((epoch, sealed))
    }

    /// Devices holding each epoch's key, for the envelope checks.
    pub fn epoch_holders(
        &self,
    ) -> std::collections::BTreeMap<EpochId, std::collections::BTreeSet<crate::identity::DeviceId>>
    {
        let r = self.resolution().clone();
        r.epochs
            .iter()
            .map(|e| (*e, self.membership.holders(e, &r)))
            .collect()
    }

    /// Where members of the current epoch meet at a relay's rendezvous, if `me` holds the
    /// current epoch's key.
    pub fn rendezvous_namespace(&self, me: &LocalIdentity) -> Option<String> {
        let current = self.resolution().epoch?;
        let keys = self.epoch_keys(me).ok()?;
        keys.get(&current).map(EpochKey::rendezvous_namespace)
    }

    /// Every epoch key of this circle that `me`'s device can open.
    pub fn epoch_keys(
        &self,
        me: &LocalIdentity,
    ) -> Result<std::collections::BTreeMap<EpochId, EpochKey>, CircleError> {
        let r = self.resolution().clone();
        let binding = self.binding();
        let secret = me.x25519_secret();
        let mut keys = std::collections::BTreeMap::new();
        for sealed in self.membership.sealed_for(&me.device(), &r) {
            if let Ok(key) = crate::crypto::open_epoch_key(sealed, &binding, &secret) {
                keys.insert(sealed.epoch, key);
            }
        }
        Ok(keys)
    }

    /// The key to write with: the current epoch's, provided it is sealed to exactly the
    /// current members' devices. Otherwise (after concurrent changes) a coordinator's device
    /// starts a new epoch first.
    pub fn write_key(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
    ) -> Result<(EpochId, EpochKey), CircleError> {
        let mut batch = Batch::new();
        let key = self.write_key_into(me, now, &mut batch)?;
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(key)
    }

    /// [`Circle::write_key`], adding a rotation (if one is needed) to `batch`.
    fn write_key_into(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<(EpochId, EpochKey), CircleError> {
        if let Some(cached) = &self.write_key {
            return Ok(cached.clone());
        }
        let r = self.resolution().clone();
        let current = r.epoch.ok_or(CircleError::NoEpochKey)?;
        let devices: std::collections::BTreeSet<crate::identity::DeviceId> = r
            .members
            .values()
            .flat_map(|m| m.devices.iter().map(|d| d.device))
            .collect();
        let exact = self.membership.holders(&current, &r) == devices;
        if !exact && r.role(&me.member()) == Some(cercle_crdt::Role::Coordinator) {
            let (epoch, sealed) = self.new_epoch_for(&r, None)?;
            self.append_op(me, OpBody::RotateKey { epoch, sealed }, now, batch)?;
        }
        let r = self.resolution().clone();
        let current = r.epoch.ok_or(CircleError::NoEpochKey)?;
        let key = self
            .epoch_keys(me)?
            .remove(&current)
            .ok_or(CircleError::NoEpochKey)?;
        self.write_key = Some((current, key.clone()));
        Ok((current, key))
    }

    /// Changes `member`'s role.
    pub fn change_role(
        &mut self,
        signer: &LocalIdentity,
        member: &MemberId,
        role: cercle_crdt::Role,
        now: Timestamp,
    ) -> Result<(), CircleError> {
        self.require_role(
            &signer.public(),
            |r| r == cercle_crdt::Role::Coordinator,
            "changing roles",
        )?;
        if !self.resolution().members.contains_key(member) {
            return Err(CircleError::UnknownMember {
                query: member.short(),
            });
        }
        let mut batch = Batch::new();
        self.append_op(
            signer,
            OpBody::ChangeRole {
                member: *member,
                role,
            },
            now,
            &mut batch,
        )?;
        Ok(self.store.commit(batch)?)
    }

    /// Names the relays the circle uses (replacing the earlier list; empty to use none).
    pub fn set_relays(
        &mut self,
        signer: &LocalIdentity,
        relays: Vec<String>,
        now: Timestamp,
    ) -> Result<(), CircleError> {
        self.require_role(
            &signer.public(),
            |r| r == cercle_crdt::Role::Coordinator,
            "choosing the circle's relays",
        )?;
        if relays.len() > membership::MAX_RELAYS {
            return Err(CircleError::TooManyRelays {
                max: membership::MAX_RELAYS,
            });
        }
        let mut batch = Batch::new();
        self.append_op(signer, OpBody::SetRelays { relays }, now, &mut batch)?;
        Ok(self.store.commit(batch)?)
    }

    /// Finds a current member by member id prefix or (case-insensitive) name.
    pub fn find_member(&self, query: &str) -> Result<MemberId, CircleError> {
        let q = query.trim().to_lowercase();
        let matches: Vec<MemberId> = self
            .resolution()
            .members
            .keys()
            .filter(|m| {
                (!q.is_empty() && m.to_hex().starts_with(&q))
                    || self
                        .names
                        .get(m)
                        .is_some_and(|p| p.name.to_lowercase() == q)
            })
            .copied()
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            _ => Err(CircleError::UnknownMember {
                query: query.to_string(),
            }),
        }
    }

    /// The highest Automerge sequence number of `actor` in any of the circle's documents.
    fn last_seq_of(&mut self, actor: &cercle_crdt::ActorId) -> u64 {
        [
            self.patient_file.replica_mut().last_seq_of(actor),
            self.notebook.replica_mut().last_seq_of(actor),
            self.thread.replica_mut().last_seq_of(actor),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    fn append_op(
        &mut self,
        signer: &LocalIdentity,
        body: OpBody,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<(), CircleError> {
        let op = SignedOp::sign(
            signer,
            OpContent {
                circle: self.membership.circle(),
                parents: self.membership.heads(),
                device: signer.device(),
                at: now.millis(),
                body,
            },
        );
        self.membership.insert(op.clone())?;
        self.membership_changed();
        batch.op(&self.id, &op);
        Ok(())
    }

    /// Who is in, and who holds which key, may have changed.
    fn membership_changed(&mut self) {
        self.resolved = self.membership.resolve();
        self.write_key = None;
        self.receive_keys = None;
    }

    /// Adds the circle's local record (metadata, members' profiles) to `batch`.
    fn record_into(&self, batch: &mut Batch) -> Result<(), CircleError> {
        let record = CircleRecord {
            info: self.info.clone(),
            names: self.names.clone(),
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&record).map_err(|e| CircleError::Load {
            circle: self.info.id.clone(),
            what: "record".into(),
            reason: e.to_string(),
        })?);
        batch.circle(&self.id, &bytes);
        Ok(())
    }

    /// Seals `changes` (this device's newest, in order) into the next envelope of its log
    /// for `doc`, and adds it to `batch`.
    fn seal_local(
        &mut self,
        me: &LocalIdentity,
        doc: DocKind,
        changes: &[Change],
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<(), CircleError> {
        if changes.is_empty() {
            return Ok(());
        }
        let (epoch, key) = self.write_key_into(me, now, batch)?;
        let last = self.own.get(&doc).copied();
        let seq = last.map_or(1, |h| h.seq + 1);
        let prev = last.map_or([0u8; 32], |h| h.hash);
        let env = Envelope::seal(me, self.id, doc, seq, prev, (epoch, &key), changes)?;
        batch.envelope(&env);
        self.log.resume(&env);
        self.sealed.push(env.bytes().to_vec());
        self.own.insert(
            doc,
            Head {
                seq,
                hash: env.hash(),
            },
        );
        self.applied
            .entry(doc)
            .or_default()
            .insert(me.device(), seq);
        *self.since_snapshot.entry(doc).or_default() += 1;
        Ok(())
    }

    /// Edits the patient file with `f` (a clinical member's write); every change it makes
    /// is sealed into one envelope. Changes made before an error in `f` are kept too.
    pub fn edit_patient_file<T>(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
        f: impl FnOnce(&mut PatientFile) -> Result<T, WriteError>,
    ) -> Result<Pending<T>, CircleError> {
        self.edit(
            me,
            DocKind::PatientFile,
            cercle_crdt::Role::writes_clinical,
            "editing the patient file",
            now,
            |c| f(&mut c.patient_file),
        )
    }

    /// Writes to the liaison notebook with `f` (amend an entry, acknowledge an alert): a
    /// clinical member's write, sealed into one envelope.
    pub fn edit_notebook<T>(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
        f: impl FnOnce(&mut LiaisonNotebook) -> Result<T, WriteError>,
    ) -> Result<Pending<T>, CircleError> {
        self.edit(
            me,
            DocKind::LiaisonNotebook,
            cercle_crdt::Role::writes_clinical,
            "writing in the liaison notebook",
            now,
            |c| f(&mut c.notebook),
        )
    }

    /// Writes to the circle's messages with `f` (send, mark read): any member but an
    /// observer, sealed into one envelope.
    pub fn edit_thread<T>(
        &mut self,
        me: &LocalIdentity,
        now: Timestamp,
        f: impl FnOnce(&mut Thread) -> Result<T, WriteError>,
    ) -> Result<Pending<T>, CircleError> {
        self.edit(
            me,
            DocKind::Thread,
            cercle_crdt::Role::writes_anything,
            "writing messages",
            now,
            |c| f(&mut c.thread),
        )
    }

    /// Runs `f` on document `doc` if this member's role allows it, then seals every
    /// change it made into one envelope and queues it. Changes made before an error in `f`
    /// are kept too.
    fn edit<T>(
        &mut self,
        me: &LocalIdentity,
        doc: DocKind,
        allowed: impl Fn(cercle_crdt::Role) -> bool,
        action: &'static str,
        now: Timestamp,
        f: impl FnOnce(&mut Self) -> Result<T, WriteError>,
    ) -> Result<Pending<T>, CircleError> {
        self.require_role(&me.public(), allowed, action)?;
        let before = self.replica_mut(doc).heads();
        let result = f(self);
        let changes = self.replica_mut(doc).changes_since(&before);
        let mut batch = Batch::new();
        self.seal_local(me, doc, &changes, now, &mut batch)?;
        let ticket = self.store.submit(batch);
        self.maintain(SNAPSHOT_EVERY);
        match result {
            Ok(value) => Ok(Pending { value, ticket }),
            Err(e) => {
                ticket.wait()?;
                Err(e.into())
            }
        }
    }

    /// Adds a note to the liaison notebook; returns its id once durable.
    pub fn add_note(
        &mut self,
        me: &LocalIdentity,
        entry: NewEntry,
        now: Timestamp,
    ) -> Result<Pending<String>, CircleError> {
        let Pending { value, ticket } = self.add_notes(me, vec![entry], now)?;
        Ok(Pending {
            value: value.into_iter().next().unwrap_or_default(),
            ticket,
        })
    }

    /// Adds several notes as one change (an import): one envelope, all or none; returns
    /// their ids once durable.
    pub fn add_notes(
        &mut self,
        me: &LocalIdentity,
        entries: Vec<NewEntry>,
        now: Timestamp,
    ) -> Result<Pending<Vec<String>>, CircleError> {
        self.require_role(
            &me.public(),
            cercle_crdt::Role::writes_clinical,
            "writing notebook entries",
        )?;
        let ids = self.notebook.add_entries(me.member(), entries, now)?;
        self.write(me, DocKind::LiaisonNotebook, now, ids)
    }

    /// Seals the one change just made in `doc` and queues it; `value` is given back once
    /// durable.
    fn write<T>(
        &mut self,
        me: &LocalIdentity,
        doc: DocKind,
        now: Timestamp,
        value: T,
    ) -> Result<Pending<T>, CircleError> {
        let change: Vec<Change> = self
            .replica_mut(doc)
            .last_local_change()
            .into_iter()
            .collect();
        let mut batch = Batch::new();
        self.seal_local(me, doc, &change, now, &mut batch)?;
        let ticket = self.store.submit(batch);
        self.maintain(SNAPSHOT_EVERY);
        Ok(Pending { value, ticket })
    }

    /// The notebook's entries, oldest first.
    pub fn notes(&self) -> Vec<Entry> {
        self.notebook.entries()
    }

    /// How many envelopes and operations from peers were refused (recorded in the store).
    pub fn refused_count(&self) -> usize {
        self.store.rejections(&self.id).map_or(0, |r| r.len())
    }

    /// The envelopes this device sealed since the last call, oldest first: the node pushes
    /// them to connected members once they are durable.
    pub fn take_sealed(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sealed)
    }

    /// Per document, the last sequence number held from each device (its version vector).
    pub fn vector(&self, doc: DocKind) -> BTreeMap<DeviceId, u64> {
        self.applied.get(&doc).cloned().unwrap_or_default()
    }

    /// Joins a circle this node does not hold yet, from operations a member sent: they must
    /// start from the genesis named by `circle` and make `me`'s device a member.
    pub fn join(
        store: Arc<dyn Store>,
        me: &LocalIdentity,
        circle: CircleId,
        ops: &[Vec<u8>],
    ) -> Result<Circle, CircleError> {
        let mut decoded = Vec::new();
        for bytes in ops {
            decoded.push(SignedOp::decode(bytes)?);
        }
        let (genesis, rest): (Vec<_>, Vec<_>) = decoded
            .into_iter()
            .partition(|o| o.content().circle.is_none() && o.hash().0 == circle.0);
        let not_invited = || CircleError::NotInvited {
            circle: circle.to_string(),
        };
        let genesis = genesis.into_iter().next().ok_or_else(not_invited)?;
        let (created_by, created_at) = match &genesis.content().body {
            OpBody::Genesis { creator, .. } => (creator.member, genesis.content().at),
            _ => return Err(not_invited()),
        };
        let mut membership = MembershipLog::new(genesis.clone())?;
        let mut batch = Batch::new();
        batch.op(&circle, &genesis);
        for op in rest {
            // An operation of another circle or a second genesis is not stored.
            if membership.insert(op.clone())? {
                batch.op(&circle, &op);
            }
        }
        if membership.resolve().member_of(&me.device()).is_none() {
            return Err(not_invited());
        }
        let info = CircleInfo {
            id: circle.to_string(),
            // Known once the patient file arrives.
            patient: String::new(),
            created_by,
            created_at: Timestamp(created_at),
        };
        let circle = Circle::assemble(info, circle, store, membership, BTreeMap::new(), me.actor());
        circle.record_into(&mut batch)?;
        circle.store.commit(batch)?;
        tracing::info!(circle = %circle.id, "joined a circle");
        Ok(circle)
    }

    /// Receives a peer's operations, then envelopes: each goes through the membership and
    /// envelope checks and the document's schema and roles; what passes is stored and
    /// applied, what fails is recorded with its reason and never applied. `from` names the
    /// peer in the records.
    pub fn receive(
        &mut self,
        me: &LocalIdentity,
        from: &str,
        ops: &[Vec<u8>],
        envelopes: &[Vec<u8>],
        now: Timestamp,
    ) -> Receipt {
        let mut batch = Batch::new();
        let mut receipt = Receipt {
            new_ops: Vec::new(),
            accepted: Vec::new(),
            applied: BTreeMap::new(),
            refused: Vec::new(),
            ticket: Ticket::ready(Ok(())),
        };
        let id = self.id;
        let mut refuse = |batch: &mut Batch,
                          device: Option<String>,
                          reason: serde_json::Value,
                          message: String,
                          bytes: &[u8]| {
            tracing::warn!(circle = %id, from, %message, "refused data from a peer");
            batch.rejection(
                &id,
                &RejectionRecord {
                    at: now.millis(),
                    from: from.to_string(),
                    device,
                    reason,
                    message: message.clone(),
                    hash: blake3::hash(bytes).to_hex().to_string(),
                },
            );
            receipt.refused.push(message);
        };

        // Operations first: envelopes cannot be checked without them.
        let mut changed = false;
        for bytes in ops {
            match SignedOp::decode(bytes).and_then(|op| {
                let new = self.membership.insert(op.clone())?;
                Ok((op, new))
            }) {
                Ok((op, true)) => {
                    batch.op(&self.id, &op);
                    receipt.new_ops.push(bytes.clone());
                    changed = true;
                }
                Ok((_, false)) => {}
                Err(e) => refuse(
                    &mut batch,
                    None,
                    serde_json::json!({"reason": "membership_op"}),
                    format!("membership operation refused: {e}"),
                    bytes,
                ),
            }
        }
        if changed {
            self.membership_changed();
        }

        if !envelopes.is_empty() {
            let patient_before = self.info.patient.clone();
            let keys = self.receive_keys(me);
            let view = CircleView {
                circle: self.id,
                resolution: &self.resolved,
                holders: &keys.holders,
                keys: Some(&keys.keys),
            };
            let mut ready = Vec::new();
            for bytes in envelopes {
                match self.log.receive(bytes, &view) {
                    Ok(accepted) => ready.extend(accepted),
                    // Already here: a peer passed on what another one sent.
                    Err(EnvelopeRejection::Replay { .. }) => {}
                    Err(r) => refuse(
                        &mut batch,
                        Envelope::decode(bytes)
                            .ok()
                            .map(|e| e.header.device.to_string()),
                        serde_json::to_value(&r).unwrap_or_default(),
                        r.to_string(),
                        bytes,
                    ),
                }
            }
            self.log.rejections.clear();
            for fork in std::mem::take(&mut self.log.forks) {
                batch.fork(
                    &self.id,
                    &crate::store::ForkRecord {
                        device: fork.device,
                        doc: fork.doc,
                        seq: fork.seq,
                        first: fork.first,
                        second: fork.second,
                    },
                );
            }
            self.receive_keys = Some(keys);
            // Consecutive envelopes of one author in one document are validated and applied
            // as one batch: Automerge's cost per apply grows with the document, so one
            // apply per envelope would make a large catch-up quadratic. If the batch is
            // refused, its envelopes are tried one by one so that only the bad one is lost.
            for group in group_by_author(ready) {
                let (doc, author) = (group[0].doc, group[0].author());
                let changes: Vec<Change> = group
                    .iter()
                    .flat_map(|a| a.changes.iter().cloned())
                    .collect();
                let results: Vec<Result<(), String>> =
                    match self.replica_mut(doc).apply_changes(changes, &author) {
                        Ok(()) => vec![Ok(()); group.len()],
                        Err(e) if group.len() == 1 => vec![Err(e.to_string())],
                        Err(_) => group
                            .iter()
                            .map(|a| {
                                self.replica_mut(doc)
                                    .apply_changes(a.changes.clone(), &author)
                                    .map_err(|e| e.to_string())
                            })
                            .collect(),
                    };
                for (a, result) in group.iter().zip(results) {
                    match result {
                        Ok(()) => {
                            batch.envelope(&a.envelope);
                            self.applied
                                .entry(a.doc)
                                .or_default()
                                .insert(a.device, a.seq);
                            *self.since_snapshot.entry(a.doc).or_default() += 1;
                            *receipt.applied.entry(a.doc).or_default() += 1;
                            receipt.accepted.push(a.envelope.bytes().to_vec());
                        }
                        Err(e) => refuse(
                            &mut batch,
                            Some(a.device.to_string()),
                            serde_json::json!({"reason": "schema", "seq": a.seq}),
                            format!("change refused by the {} rules: {e}", a.doc),
                            a.envelope.bytes(),
                        ),
                    }
                }
            }
            if receipt.applied.contains_key(&DocKind::PatientFile) {
                let name = self.patient_file.identity().display_name();
                if name != patient_before {
                    self.info.patient = name;
                }
            }
            if self.info.patient != patient_before
                && let Err(e) = self.record_into(&mut batch)
            {
                receipt.refused.push(e.to_string());
            }
        }
        if !batch.is_empty() {
            receipt.ticket = self.store.submit(batch);
        }
        self.maintain(SNAPSHOT_EVERY);
        receipt
    }

    /// The epoch holders and keys for the receive checks, from the cache or computed.
    fn receive_keys(&mut self, me: &LocalIdentity) -> ReceiveKeys {
        if let Some(k) = self.receive_keys.take() {
            return k;
        }
        ReceiveKeys {
            holders: self.epoch_holders(),
            keys: self.epoch_keys(me).unwrap_or_default(),
        }
    }
}

/// Splits accepted envelopes, in order, into runs of one document and one author.
fn group_by_author(ready: Vec<Accepted>) -> Vec<Vec<Accepted>> {
    let mut groups: Vec<Vec<Accepted>> = Vec::new();
    for a in ready {
        match groups.last_mut() {
            Some(g) if g[0].doc == a.doc && g[0].member == a.member && g[0].role == a.role => {
                g.push(a);
            }
            _ => groups.push(vec![a]),
        }
    }
    groups
}

/// Every circle's id and opened record.
fn records(store: &dyn Store) -> Result<Vec<(CircleId, CircleRecord)>, CircleError> {
    store
        .circles()?
        .into_iter()
        .map(|(id, bytes)| Ok((id, decode_record(&id, &bytes)?)))
        .collect()
}

/// The one circle whose id starts with `query`.
fn find_record(store: &dyn Store, query: &str) -> Result<(CircleId, CircleRecord), CircleError> {
    pick(query, records(store)?, |(id, _)| *id)
}

/// The one item whose circle id starts with `query` (the rule people type ids by).
pub(crate) fn pick<T>(
    query: &str,
    items: impl IntoIterator<Item = T>,
    id: impl Fn(&T) -> CircleId,
) -> Result<T, CircleError> {
    let q = query.trim().to_ascii_lowercase();
    let mut matches: Vec<T> = if q.is_empty() {
        Vec::new()
    } else {
        items
            .into_iter()
            .filter(|t| id(t).to_string().starts_with(&q))
            .collect()
    };
    match matches.len() {
        1 => matches.pop().ok_or(CircleError::Unknown {
            query: query.to_string(),
        }),
        0 => Err(CircleError::Unknown {
            query: query.to_string(),
        }),
        count => Err(CircleError::Ambiguous {
            query: query.to_string(),
            count,
        }),
    }
}

fn decode_record(id: &CircleId, bytes: &[u8]) -> Result<CircleRecord, CircleError> {
    serde_json::from_slice(bytes).map_err(|e| CircleError::Load {
        circle: id.to_string(),
        what: "record".into(),
        reason: e.to_string(),
    })
}

/// Loads every stored operation; the one without a circle is the genesis.
fn load_membership(store: &dyn Store, id: &CircleId) -> Result<MembershipLog, CircleError> {
    let damaged = |reason: String| CircleError::Load {
        circle: id.to_string(),
        what: "membership log".into(),
        reason,
    };
    let mut ops = Vec::new();
    for bytes in store.ops(id)? {
        ops.push(SignedOp::decode(&bytes).map_err(|e| damaged(e.to_string()))?);
    }
    let (genesis, rest): (Vec<_>, Vec<_>) =
        ops.into_iter().partition(|o| o.content().circle.is_none());
    let genesis = genesis
        .into_iter()
        .next()
        .ok_or_else(|| damaged("no genesis operation".into()))?;
    let mut log = MembershipLog::new(genesis)?;
    for op in rest {
        log.insert(op)?;
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{LocalIdentity, Profile};
    use crate::store::SledStore;
    use cercle_crdt::EntryKind;

    type Home = Arc<dyn Store>;

    fn setup() -> (tempfile::TempDir, Home, LocalIdentity) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let profile =
            Profile::new("Dr Martin", "médecin", None, None).unwrap_or_else(|e| panic!("{e}"));
        let me = LocalIdentity::generate(profile, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"));
        let store = SledStore::open(dir.path(), me.storage_key()).unwrap_or_else(|e| panic!("{e}"));
        (dir, Arc::new(store), me)
    }

    #[test]
    fn a_note_survives_reopening_the_circle() {
        let (_dir, home, me) = setup();
        let update = IdentityUpdate {
            family_name: Some("Durand".into()),
            given_names: Some("Jeanne".into()),
            ..Default::default()
        };
        let c = Circle::create(home.clone(), &me, &update, Timestamp(1))
            .unwrap_or_else(|e| panic!("{e}"));
        let id = c.info().id.clone();
        let mut c = Circle::open(home.clone(), &me, &id[..6]).unwrap_or_else(|e| panic!("{e}"));
        let entry = NewEntry {
            kind: EntryKind::Observation,
            text: "Tension 13/8".into(),
            vitals: None,
        };
        let note = c
            .add_note(&me, entry, Timestamp(2))
            .and_then(Pending::wait)
            .unwrap_or_else(|e| panic!("{e}"));
        let c = Circle::open(home.clone(), &me, &id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.notes().iter().map(|n| n.id.clone()).collect::<Vec<_>>(),
            vec![note]
        );
        assert_eq!(c.info().patient, "Jeanne Durand");
    }

    fn person(name: &str) -> LocalIdentity {
        let p = Profile::new(name, "infirmière", None, None).unwrap_or_else(|e| panic!("{e}"));
        LocalIdentity::generate(p, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_removed_member_reads_what_came_before_and_nothing_after() {
        let (_dir, home, gp) = setup();
        let nurse = person("Paul");
        let mut c = Circle::create(home.clone(), &gp, &IdentityUpdate::default(), Timestamp(1))
            .unwrap_or_else(|e| panic!("{e}"));
        c.add_member(
            &gp,
            &nurse.public().card(&[]),
            cercle_crdt::Role::Professional,
            Timestamp(2),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (e0, k0) = c
            .write_key(&gp, Timestamp(3))
            .unwrap_or_else(|e| panic!("{e}"));
        let before = k0.encrypt(b"h", b"avant").unwrap_or_else(|e| panic!("{e}"));
        c.remove_member(&gp, &nurse.member(), Timestamp(4))
            .unwrap_or_else(|e| panic!("{e}"));
        let (e1, k1) = c
            .write_key(&gp, Timestamp(5))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(e0, e1, "the removal started a new epoch");
        let after = k1.encrypt(b"h", b"apres").unwrap_or_else(|e| panic!("{e}"));

        // The nurse's keys, computed from the whole log (which relays and members see) and
        // the nurse's own X25519 secret.
        let nurse_keys = c.epoch_keys(&nurse).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nurse_keys.keys().copied().collect::<Vec<_>>(), vec![e0]);
        let read = nurse_keys
            .get(&e0)
            .map(|k| k.decrypt(b"h", &before).map(|p| p.to_vec()));
        assert_eq!(read, Some(Ok(b"avant".to_vec())));
        for k in nurse_keys.values() {
            assert!(k.decrypt(b"h", &after).is_err());
        }
        // The coordinator still reads both.
        let gp_keys = c.epoch_keys(&gp).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gp_keys.len(), 2);
    }

    #[test]
    fn a_removal_cuts_each_device_off_after_its_last_change_seen_here() {
        let (_dir, home, gp) = setup();
        let physio = person("Physio");
        let mut c = Circle::create(home.clone(), &gp, &IdentityUpdate::default(), Timestamp(1))
            .unwrap_or_else(|e| panic!("{e}"));
        let role = cercle_crdt::Role::Professional;
        c.add_member(&gp, &physio.public().card(&[]), role, Timestamp(2))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut theirs = LiaisonNotebook::new(physio.actor());
        for text in ["Séance 1", "Séance 2"] {
            let entry = NewEntry {
                kind: EntryKind::Care,
                text: text.into(),
                vitals: None,
            };
            theirs
                .add_entry(physio.member(), entry, Timestamp(3))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let changes = theirs.replica_mut().changes_since(&[]);
        let author = cercle_crdt::ChangeAuthor {
            member: physio.member(),
            role,
        };
        c.notebook
            .replica_mut()
            .apply_changes(changes, &author)
            .unwrap_or_else(|e| panic!("{e}"));
        c.remove_member(&gp, &physio.member(), Timestamp(4))
            .unwrap_or_else(|e| panic!("{e}"));
        let removed = c.resolution().removed.get(&physio.member()).cloned();
        assert_eq!(removed, Some(vec![(physio.device(), 2)]));
    }

    #[test]
    fn a_newcomer_receives_the_history_keys() {
        let (_dir, home, gp) = setup();
        let mut c = Circle::create(home.clone(), &gp, &IdentityUpdate::default(), Timestamp(1))
            .unwrap_or_else(|e| panic!("{e}"));
        let old = person("Old");
        c.add_member(
            &gp,
            &old.public().card(&[]),
            cercle_crdt::Role::Professional,
            Timestamp(2),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c.remove_member(&gp, &old.member(), Timestamp(3))
            .unwrap_or_else(|e| panic!("{e}"));
        let newcomer = person("New");
        c.add_member(
            &gp,
            &newcomer.public().card(&[]),
            cercle_crdt::Role::Caregiver,
            Timestamp(4),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let keys = c.epoch_keys(&newcomer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.len(), 2, "both epochs, including before they joined");
        // Reopened from disk, the log gives the same keys.
        let again = Circle::open(home.clone(), &gp, &c.info().id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.epoch_keys(&newcomer).map(|k| k.len()).ok(), Some(2));
    }

    /// A store whose writes start failing (a disk that fills up) after `ok` batches.
    #[derive(Debug)]
    struct FailingStore {
        inner: Arc<dyn Store>,
        ok: std::sync::atomic::AtomicUsize,
    }

    impl Store for FailingStore {
        fn submit(&self, batch: Batch) -> Ticket {
            let left = self.ok.load(std::sync::atomic::Ordering::SeqCst);
            if left == 0 {
                return Ticket::ready(Err(StoreError::DiskFull {
                    path: "/full".into(),
                }));
            }
            self.ok.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            self.inner.submit(batch)
        }
        fn save_snapshot(&self, c: &CircleId, d: DocKind, s: &Snapshot) -> Ticket {
            self.inner.save_snapshot(c, d, s)
        }
        fn circles(&self) -> Result<Vec<(CircleId, crate::store::Opened)>, StoreError> {
            self.inner.circles()
        }
        fn circle(&self, c: &CircleId) -> Result<Option<crate::store::Opened>, StoreError> {
            self.inner.circle(c)
        }
        fn ops(&self, c: &CircleId) -> Result<Vec<Vec<u8>>, StoreError> {
            self.inner.ops(c)
        }
        fn envelopes(
            &self,
            c: &CircleId,
            d: DocKind,
            dev: &DeviceId,
            from: u64,
            limit: usize,
        ) -> Result<Vec<Vec<u8>>, StoreError> {
            self.inner.envelopes(c, d, dev, from, limit)
        }
        fn heads(&self, c: &CircleId, d: DocKind) -> Result<BTreeMap<DeviceId, Head>, StoreError> {
            self.inner.heads(c, d)
        }
        fn snapshot(&self, c: &CircleId, d: DocKind) -> Result<Option<Snapshot>, StoreError> {
            self.inner.snapshot(c, d)
        }
        fn blob(&self, h: &[u8; 32]) -> Result<Option<crate::store::Opened>, StoreError> {
            self.inner.blob(h)
        }
        fn meta(&self, k: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.meta(k)
        }
        fn rejections(
            &self,
            c: &CircleId,
        ) -> Result<Vec<crate::store::RejectionRecord>, StoreError> {
            self.inner.rejections(c)
        }
        fn forks(&self, c: &CircleId) -> Result<Vec<crate::store::ForkRecord>, StoreError> {
            self.inner.forks(c)
        }
    }

    #[test]
    fn a_write_the_store_refuses_is_not_acknowledged_and_the_rest_survive() {
        let (_dir, home, me) = setup();
        let c = Circle::create(home.clone(), &me, &IdentityUpdate::default(), Timestamp(1))
            .unwrap_or_else(|e| panic!("{e}"));
        let id = c.info().id.clone();
        drop(c);
        let failing: Arc<dyn Store> = Arc::new(FailingStore {
            inner: home.clone(),
            ok: 2.into(),
        });
        let mut c = Circle::open(failing, &me, &id).unwrap_or_else(|e| panic!("{e}"));
        let note = |text: &str| NewEntry {
            kind: EntryKind::Observation,
            text: text.into(),
            vitals: None,
        };
        let mut acked = Vec::new();
        for (i, text) in ["un", "deux", "trois"].into_iter().enumerate() {
            let result = c
                .add_note(&me, note(text), Timestamp(2 + i as i64))
                .and_then(Pending::wait);
            match result {
                Ok(id) => acked.push(id),
                Err(e) => assert!(
                    matches!(e, CircleError::Store(StoreError::DiskFull { .. })),
                    "{e}"
                ),
            }
        }
        assert_eq!(acked.len(), 2, "the third write was refused");
        drop(c);
        let c = Circle::open(home, &me, &id).unwrap_or_else(|e| panic!("{e}"));
        let stored: Vec<String> = c.notes().into_iter().map(|n| n.id).collect();
        assert_eq!(stored, acked);
    }

    #[test]
    fn many_notes_reopen_from_a_snapshot_and_the_envelopes_after_it() {
        let (_dir, home, me) = setup();
        let c = Circle::create(home.clone(), &me, &IdentityUpdate::default(), Timestamp(1))
            .unwrap_or_else(|e| panic!("{e}"));
        let id = c.id();
        let mut c = c;
        let add = |c: &mut Circle, n: std::ops::Range<i64>| {
            for i in n {
                let entry = NewEntry {
                    kind: EntryKind::Care,
                    text: format!("Passage {i}"),
                    vitals: None,
                };
                c.add_note(&me, entry, Timestamp(i))
                    .and_then(Pending::wait)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        };
        add(&mut c, 10..(10 + SNAPSHOT_ON_OPEN as i64));
        drop(c);
        assert!(
            home.snapshot(&id, DocKind::LiaisonNotebook)
                .ok()
                .flatten()
                .is_none()
        );
        // Opening applies the envelopes and, there being enough, snapshots.
        let mut c =
            Circle::open(home.clone(), &me, &id.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.notes().len(), SNAPSHOT_ON_OPEN);
        add(&mut c, 1000..1003);
        drop(c);
        let snap = home
            .snapshot(&id, DocKind::LiaisonNotebook)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no snapshot"));
        assert_eq!(
            snap.covers.get(&me.device()),
            Some(&(SNAPSHOT_ON_OPEN as u64))
        );
        let c = Circle::open(home, &me, &id.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let texts: Vec<String> = c
            .notes()
            .iter()
            .map(|n| n.current_text().to_string())
            .collect();
        assert_eq!(texts.len(), SNAPSHOT_ON_OPEN + 3);
        assert_eq!(texts.last().map(String::as_str), Some("Passage 1002"));
    }

    #[test]
    fn unknown_and_empty_circle_queries_are_errors() {
        let (_dir, home, _me) = setup();
        assert!(matches!(
            Circle::find(home.as_ref(), "abc"),
            Err(CircleError::Unknown { .. })
        ));
        assert!(matches!(
            Circle::find(home.as_ref(), ""),
            Err(CircleError::Unknown { .. })
        ));
    }
}
