//! Circles of care: the team around one patient, and the three documents it shares.
//!
//! A circle is named by a 64-hex-digit id; people may type any unambiguous prefix of it. For
//! now a circle lives only on the node that created it; signed membership, keys and
//! replication build on this.

use std::path::PathBuf;

use cercle_crdt::{
    DocKind, Entry, IdentityUpdate, LiaisonNotebook, LoadError, MemberId, NewEntry, PatientFile,
    Thread, Timestamp, WriteError,
};
use serde::{Deserialize, Serialize};

pub mod membership;

use crate::home::{self, Home, HomeError};
use crate::identity::PublicIdentity;

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

/// A circle opened from disk with its three documents.
#[derive(Debug)]
pub struct Circle {
    info: CircleInfo,
    dir: PathBuf,
    /// The patient file.
    pub patient_file: PatientFile,
    /// The liaison notebook.
    pub notebook: LiaisonNotebook,
    /// The thread.
    pub thread: Thread,
}

const INFO_FILE: &str = "circle.json";

impl Circle {
    /// Creates a circle for a patient named `family_name` `given_names`, born `birth_date`
    /// (YYYY-MM-DD) if known, and stores it durably.
    pub fn create(
        home: &Home,
        me: &PublicIdentity,
        update: &IdentityUpdate,
        now: Timestamp,
    ) -> Result<Circle, CircleError> {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).map_err(|e| CircleError::Random(e.to_string()))?;
        let mut h = blake3::Hasher::new_derive_key("cercle 2026 circle id v1");
        h.update(me.member().as_bytes());
        h.update(&now.millis().to_le_bytes());
        h.update(&nonce);
        let id = h.finalize().to_hex().to_string();

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
        home::create_dir(&dir)?;
        let mut circle = Circle {
            info,
            dir,
            patient_file,
            notebook: LiaisonNotebook::new(actor.clone()),
            thread: Thread::new(actor),
        };
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
        Ok(Circle {
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

    /// Adds a note to the liaison notebook and stores it durably; returns the note's id.
    pub fn add_note(
        &mut self,
        me: &PublicIdentity,
        entry: NewEntry,
        now: Timestamp,
    ) -> Result<String, CircleError> {
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

    fn setup() -> (tempfile::TempDir, Home, PublicIdentity) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = Home::at(dir.path());
        let profile =
            Profile::new("Dr Martin", "médecin", None, None).unwrap_or_else(|e| panic!("{e}"));
        let me = LocalIdentity::generate(profile, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"));
        home.init(&me, None, crate::keyfile::KdfParams::FAST_INSECURE)
            .unwrap_or_else(|e| panic!("{e}"));
        (dir, home, me.public())
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
        let mut c = Circle::open(&home, &me, &id[..6]).unwrap_or_else(|e| panic!("{e}"));
        let entry = NewEntry {
            kind: EntryKind::Observation,
            text: "Tension 13/8".into(),
            vitals: None,
        };
        let note = c
            .add_note(&me, entry, Timestamp(2))
            .unwrap_or_else(|e| panic!("{e}"));
        let c = Circle::open(&home, &me, &id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.notes().iter().map(|n| n.id.clone()).collect::<Vec<_>>(),
            vec![note]
        );
        assert_eq!(c.info().patient, "Jeanne Durand");
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
