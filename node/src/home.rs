//! The node's home directory: where its identity and its circles live on disk.
//!
//! Layout:
//! ```text
//! HOME/identity.json                      member id, device id, profile
//! HOME/circles/ID/circle.json             circle metadata
//! HOME/circles/ID/<doc kind>.automerge    one saved Automerge document per kind
//! ```
//! Every file is replaced atomically (write to a temporary file, fsync, rename, fsync the
//! directory), so a crash leaves either the old or the new version, never a torn file, and a
//! write is reported done only once it is on disk.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::identity::LocalIdentity;

/// Why the home directory could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// `init` was never run for this home.
    #[error("no identity in {path}: run `cercle init --name NAME --profession PROFESSION` first")]
    NotInitialised { path: PathBuf },
    /// `init` was already run for this home.
    #[error("{path} already holds an identity; use another --home to create a second one")]
    AlreadyInitialised { path: PathBuf },
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{path} is damaged ({reason}); restore it from a backup")]
    Corrupt { path: PathBuf, reason: String },
}

/// An opened home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

const IDENTITY_FILE: &str = "identity.json";
const CIRCLES_DIR: &str = "circles";

impl Home {
    /// The home at `root` (which may not exist yet).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the home and stores `identity` in it. Refuses to overwrite an identity.
    pub fn init(&self, identity: &LocalIdentity) -> Result<(), HomeError> {
        let path = self.root.join(IDENTITY_FILE);
        if path.exists() {
            return Err(HomeError::AlreadyInitialised {
                path: self.root.clone(),
            });
        }
        create_dir(&self.root.join(CIRCLES_DIR))?;
        write_json(&path, identity)
    }

    /// The identity stored by `init`.
    pub fn identity(&self) -> Result<LocalIdentity, HomeError> {
        let path = self.root.join(IDENTITY_FILE);
        if !path.exists() {
            return Err(HomeError::NotInitialised {
                path: self.root.clone(),
            });
        }
        let identity: LocalIdentity = read_json(&path)?;
        if identity.device.len() != 32 || hex::decode(&identity.device).is_err() {
            return Err(HomeError::Corrupt {
                path,
                reason: "the device id is not 32 hex digits".into(),
            });
        }
        Ok(identity)
    }

    /// The directory of the circles.
    pub(crate) fn circles_dir(&self) -> PathBuf {
        self.root.join(CIRCLES_DIR)
    }
}

pub(crate) fn create_dir(path: &Path) -> Result<(), HomeError> {
    fs::create_dir_all(path).map_err(|source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces `path` with `bytes`, durably and atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    let io = |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable only once the directory entry is.
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), HomeError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| HomeError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, HomeError> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| HomeError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, HomeError> {
    fs::read(path).map_err(|source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Profile;

    #[test]
    fn init_stores_the_identity_and_refuses_a_second_init() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = Home::at(dir.path().join("h"));
        assert!(matches!(
            home.identity(),
            Err(HomeError::NotInitialised { .. })
        ));
        let profile = Profile::new("Claire Martin", "infirmière", None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let id = LocalIdentity::generate(profile).unwrap_or_else(|e| panic!("{e}"));
        home.init(&id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(home.identity().ok(), Some(id.clone()));
        assert!(matches!(
            home.init(&id),
            Err(HomeError::AlreadyInitialised { .. })
        ));
    }

    #[test]
    fn a_damaged_identity_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = Home::at(dir.path());
        fs::write(dir.path().join(IDENTITY_FILE), b"{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(home.identity(), Err(HomeError::Corrupt { .. })));
        assert_eq!(
            fs::read(dir.path().join(IDENTITY_FILE)).ok().as_deref(),
            Some(&b"{not json"[..])
        );
    }
}
