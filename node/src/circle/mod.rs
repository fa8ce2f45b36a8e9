//! Circles of care: the team around one patient, its signed membership log, and the three
//! documents it shares.
//!
//! A circle's id is the hash of its signed genesis operation (64 hex digits); people may type
//! any unambiguous prefix of it. Who belongs to it, with which role, is decided only by
//! [`membership`], from the signed operations stored beside the documents:
//! `circles/ID/membership/HASH.op`.

use std::path::PathBuf;

use cercle_crdt::{
    DocKind, Entry, IdentityUpdate, LiaisonNotebook, LoadError, MemberId, NewEntry, PatientFile,
    Thread, Timestamp, WriteError,
};
use serde::{Deserialize, Serialize};

pub mod membership;

use crate::crypto::{CryptoError, EpochId, EpochKey, seal_epoch_key};
use crate::home::{self, Home, HomeError};
use crate::identity::{ContactCard, LocalIdentity, Profile, PublicIdentity};
use membership::{MemberGrant, MembershipLog, OpBody, OpContent, OpError, Resolution, SignedOp};

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
    /// A document file could not be loaded.
    #[error("{path} is damaged ({source}); restore it from a backup")]
    Load {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
    /// The home directory failed.
    #[error(transparent)]
    Home(#[from] HomeError),
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
    /// This device holds no key of the circle's current epoch.
    #[error(
        "this device has no key for the circle's current epoch; ask a coordinator to add it again"
    )]
    NoEpochKey,
    /// The member to add is already in the circle.
    #[error("{name} is already a member of this circle")]
    AlreadyMember { name: String },
}

/// What a circle is, as stored beside its documents.
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

/// A circle opened from disk with its membership log and three documents.
#[derive(Debug)]
pub struct Circle {
    info: CircleInfo,
    dir: PathBuf,
    membership: MembershipLog,
    /// Profiles of members, as known from their cards (kept locally, never in the log).
    names: std::collections::BTreeMap<MemberId, Profile>,
    /// The patient file.
    pub patient_file: PatientFile,
    /// The liaison notebook.
    pub notebook: LiaisonNotebook,
    /// The thread.
    pub thread: Thread,
}

const INFO_FILE: &str = "circle.json";
const MEMBERSHIP_DIR: &str = "membership";
const NAMES_FILE: &str = "names.json";

impl Circle {
    /// Creates a circle for a patient named `family_name` `given_names`, born `birth_date`
    /// (YYYY-MM-DD) if known, and stores it durably.
    pub fn create(
        home: &Home,
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
        let id = genesis.hash().to_string();
        let membership = MembershipLog::new(genesis.clone())?;

        let actor = me.actor();
        let mut patient_file = PatientFile::new(actor.clone());
        patient_file.set_identity(me.member(), update, now)?;
        let info = CircleInfo {
            id: id.clone(),
            patient: patient_file.identity().display_name(),
            created_by: me.member(),
            created_at: now,
        };
        let dir = home.circles_dir().join(&id);
        home::create_dir(&dir.join(MEMBERSHIP_DIR))?;
        let mut circle = Circle {
            info,
            dir,
            membership,
            names: Default::default(),
            patient_file,
            notebook: LiaisonNotebook::new(actor.clone()),
            thread: Thread::new(actor),
        };
        circle.store_op(&genesis)?;
        circle.names.insert(me.member(), me.profile.clone());
        circle.save_names()?;
        circle.save_all()?;
        home::write_json(&circle.dir.join(INFO_FILE), &circle.info)?;
        Ok(circle)
    }

    /// All circles in `home`, by creation time.
    pub fn list(home: &Home) -> Result<Vec<CircleInfo>, CircleError> {
        let dir = home.circles_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(HomeError::Io { path: dir, source }.into()),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let info_path = entry.path().join(INFO_FILE);
            // A circle directory without metadata is one whose creation never finished.
            if info_path.exists() {
                out.push(home::read_json::<CircleInfo>(&info_path)?);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Finds one circle by its id or an unambiguous prefix of it.
    pub fn find(home: &Home, query: &str) -> Result<CircleInfo, CircleError> {
        let q = query.trim().to_ascii_lowercase();
        let matches: Vec<CircleInfo> = if q.is_empty() {
            Vec::new()
        } else {
            Circle::list(home)?
                .into_iter()
                .filter(|c| c.id.starts_with(&q))
                .collect()
        };
        match matches.len() {
            0 => Err(CircleError::Unknown {
                query: query.to_string(),
            }),
            1 => Ok(matches.into_iter().next().ok_or(CircleError::Unknown {
                query: query.to_string(),
            })?),
            count => Err(CircleError::Ambiguous {
                query: query.to_string(),
                count,
            }),
        }
    }

    /// Opens a circle by id or prefix, for the device of `me`.
    pub fn open(home: &Home, me: &PublicIdentity, query: &str) -> Result<Circle, CircleError> {
        let info = Circle::find(home, query)?;
        let dir = home.circles_dir().join(&info.id);
        let actor = me.actor();
        let membership = load_membership(&dir)?;
        let names_path = dir.join(NAMES_FILE);
        let names = if names_path.exists() {
            home::read_json(&names_path)?
        } else {
            Default::default()
        };
        Ok(Circle {
            membership,
            names,
            patient_file: PatientFile::load(&load_doc(&dir, DocKind::PatientFile)?, actor.clone())
                .map_err(|source| load_error(&dir, DocKind::PatientFile, source))?,
            notebook: LiaisonNotebook::load(
                &load_doc(&dir, DocKind::LiaisonNotebook)?,
                actor.clone(),
            )
            .map_err(|source| load_error(&dir, DocKind::LiaisonNotebook, source))?,
            thread: Thread::load(&load_doc(&dir, DocKind::Thread)?, actor)
                .map_err(|source| load_error(&dir, DocKind::Thread, source))?,
            info,
            dir,
        })
    }

    /// The circle's metadata.
    pub fn info(&self) -> &CircleInfo {
        &self.info
    }

    /// Who is in the circle now.
    pub fn resolution(&self) -> Resolution {
        self.membership.resolve()
    }

    /// The membership log.
    pub fn membership(&self) -> &MembershipLog {
        &self.membership
    }

    /// A member's profile, if their card was seen here.
    pub fn profile_of(&self, member: &MemberId) -> Option<&Profile> {
        self.names.get(member)
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
        let r = self.resolution();
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
        self.append_op(signer, body, now)?;
        self.names.insert(card.member, card.profile.clone());
        self.save_names()
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
        let r = self.resolution();
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
        self.append_op(
            signer,
            OpBody::RemoveMember {
                member: *member,
                cutoffs,
                epoch,
                sealed,
            },
            now,
        )
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
        let r = self.resolution();
        r.epochs
            .iter()
            .map(|e| (*e, self.membership.holders(e, &r)))
            .collect()
    }

    /// Every epoch key of this circle that `me`'s device can open.
    pub fn epoch_keys(
        &self,
        me: &LocalIdentity,
    ) -> Result<std::collections::BTreeMap<EpochId, EpochKey>, CircleError> {
        let r = self.resolution();
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
        let r = self.resolution();
        let current = r.epoch.ok_or(CircleError::NoEpochKey)?;
        let devices: std::collections::BTreeSet<crate::identity::DeviceId> = r
            .members
            .values()
            .flat_map(|m| m.devices.iter().map(|d| d.device))
            .collect();
        let exact = self.membership.holders(&current, &r) == devices;
        if !exact && r.role(&me.member()) == Some(cercle_crdt::Role::Coordinator) {
            let (epoch, sealed) = self.new_epoch_for(&r, None)?;
            self.append_op(me, OpBody::RotateKey { epoch, sealed }, now)?;
        }
        let r = self.resolution();
        let current = r.epoch.ok_or(CircleError::NoEpochKey)?;
        let key = self
            .epoch_keys(me)?
            .remove(&current)
            .ok_or(CircleError::NoEpochKey)?;
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
        self.append_op(
            signer,
            OpBody::ChangeRole {
                member: *member,
                role,
            },
            now,
        )
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
        self.store_op(&op)?;
        self.membership.insert(op)?;
        Ok(())
    }

    /// Stores a membership operation durably (before it is applied or acknowledged).
    fn store_op(&self, op: &SignedOp) -> Result<(), CircleError> {
        let path = self
            .dir
            .join(MEMBERSHIP_DIR)
            .join(format!("{}.op", op.hash()));
        home::write_atomic(&path, op.bytes())?;
        Ok(())
    }

    fn save_names(&self) -> Result<(), CircleError> {
        home::write_json(&self.dir.join(NAMES_FILE), &self.names)?;
        Ok(())
    }

    /// Adds a note to the liaison notebook and stores it durably; returns the note's id.
    pub fn add_note(
        &mut self,
        me: &PublicIdentity,
        entry: NewEntry,
        now: Timestamp,
    ) -> Result<String, CircleError> {
        self.require_role(
            me,
            cercle_crdt::Role::writes_clinical,
            "writing notebook entries",
        )?;
        let id = self.notebook.add_entry(me.member(), entry, now)?;
        self.save(DocKind::LiaisonNotebook)?;
        Ok(id)
    }

    /// The notebook's entries, oldest first.
    pub fn notes(&self) -> Vec<Entry> {
        self.notebook.entries()
    }

    /// Stores one document durably.
    pub fn save(&mut self, kind: DocKind) -> Result<(), CircleError> {
        let bytes = match kind {
            DocKind::PatientFile => self.patient_file.replica_mut().save(),
            DocKind::LiaisonNotebook => self.notebook.replica_mut().save(),
            DocKind::Thread => self.thread.replica_mut().save(),
        };
        home::write_atomic(&doc_path(&self.dir, kind), &bytes)?;
        Ok(())
    }

    fn save_all(&mut self) -> Result<(), CircleError> {
        for kind in DocKind::ALL {
            self.save(kind)?;
        }
        Ok(())
    }
}

/// Loads every stored operation; the one without a circle is the genesis.
fn load_membership(dir: &std::path::Path) -> Result<MembershipLog, CircleError> {
    let ops_dir = dir.join(MEMBERSHIP_DIR);
    let entries = std::fs::read_dir(&ops_dir).map_err(|source| HomeError::Io {
        path: ops_dir.clone(),
        source,
    })?;
    let mut ops = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "op") {
            let bytes = home::read(&path)?;
            ops.push(SignedOp::decode(&bytes).map_err(|e| HomeError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?);
        }
    }
    let (genesis, rest): (Vec<_>, Vec<_>) =
        ops.into_iter().partition(|o| o.content().circle.is_none());
    let genesis = genesis
        .into_iter()
        .next()
        .ok_or_else(|| HomeError::Corrupt {
            path: ops_dir.clone(),
            reason: "no genesis operation".into(),
        })?;
    let mut log = MembershipLog::new(genesis)?;
    for op in rest {
        log.insert(op)?;
    }
    Ok(log)
}

fn doc_path(dir: &std::path::Path, kind: DocKind) -> PathBuf {
    dir.join(format!("{}.automerge", kind.as_str()))
}

fn load_doc(dir: &std::path::Path, kind: DocKind) -> Result<Vec<u8>, CircleError> {
    Ok(home::read(&doc_path(dir, kind))?)
}

fn load_error(dir: &std::path::Path, kind: DocKind, source: LoadError) -> CircleError {
    CircleError::Load {
        path: doc_path(dir, kind),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{LocalIdentity, Profile};
    use cercle_crdt::EntryKind;

    fn setup() -> (tempfile::TempDir, Home, LocalIdentity) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = Home::at(dir.path());
        let profile =
            Profile::new("Dr Martin", "médecin", None, None).unwrap_or_else(|e| panic!("{e}"));
        let me = LocalIdentity::generate(profile, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"));
        home.init(&me, None, crate::keyfile::KdfParams::FAST_INSECURE)
            .unwrap_or_else(|e| panic!("{e}"));
        (dir, home, me)
    }

    #[test]
    fn a_note_survives_reopening_the_circle() {
        let (_dir, home, me) = setup();
        let update = IdentityUpdate {
            family_name: Some("Durand".into()),
            given_names: Some("Jeanne".into()),
            ..Default::default()
        };
        let c = Circle::create(&home, &me, &update, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"));
        let id = c.info().id.clone();
        let mut c = Circle::open(&home, &me.public(), &id[..6]).unwrap_or_else(|e| panic!("{e}"));
        let entry = NewEntry {
            kind: EntryKind::Observation,
            text: "Tension 13/8".into(),
            vitals: None,
        };
        let note = c
            .add_note(&me.public(), entry, Timestamp(2))
            .unwrap_or_else(|e| panic!("{e}"));
        let c = Circle::open(&home, &me.public(), &id).unwrap_or_else(|e| panic!("{e}"));
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
        let mut c = Circle::create(&home, &gp, &IdentityUpdate::default(), Timestamp(1))
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
        let mut c = Circle::create(&home, &gp, &IdentityUpdate::default(), Timestamp(1))
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
        let mut c = Circle::create(&home, &gp, &IdentityUpdate::default(), Timestamp(1))
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
        let again =
            Circle::open(&home, &gp.public(), &c.info().id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.epoch_keys(&newcomer).map(|k| k.len()).ok(), Some(2));
    }

    #[test]
    fn unknown_and_empty_circle_queries_are_errors() {
        let (_dir, home, _me) = setup();
        assert!(matches!(
            Circle::find(&home, "abc"),
            Err(CircleError::Unknown { .. })
        ));
        assert!(matches!(
            Circle::find(&home, ""),
            Err(CircleError::Unknown { .. })
        ));
    }
}
