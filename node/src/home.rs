//! The node's home directory: where its identity and its circles live on disk.
//!
//! Layout:
//! ```text
//! HOME/identity.json    public identity: profile, device certificate
//! HOME/keys.json        secret keys, encrypted (see `keyfile`)
//! HOME/store/           circles, envelopes, snapshots... (see `store`), sealed or encrypted
//! ```
//! The two identity files are replaced atomically (write to a temporary file, fsync, rename,
//! fsync the directory), so a crash leaves either the old or the new version, never a torn
//! file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::identity::{LocalIdentity, PublicIdentity};
use crate::keyfile::{KdfParams, KeyFile, KeyFileError};

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
    /// The key file could not be opened.
    #[error(transparent)]
    Keys(#[from] KeyFileError),
}

/// An opened home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

const IDENTITY_FILE: &str = "identity.json";
const KEY_FILE: &str = "keys.json";
const STORE_DIR: &str = "store";

impl Home {
    /// The home at `root` (which may not exist yet).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the home and stores `identity` in it: the secrets sealed with `passphrase`
    /// (`None`: an insecure demo key file), the public part in clear. Refuses to overwrite
    /// an identity.
    pub fn init(
        &self,
        identity: &LocalIdentity,
        passphrase: Option<&str>,
        kdf: KdfParams,
    ) -> Result<(), HomeError> {
        let path = self.root.join(IDENTITY_FILE);
        if path.exists() || self.root.join(KEY_FILE).exists() {
            return Err(HomeError::AlreadyInitialised {
                path: self.root.clone(),
            });
        }
        create_dir(&self.root)?;
        let keys = KeyFile::seal(&identity.secrets(), passphrase, kdf)?;
        // Keys first: an identity file without its key file would be unusable.
        let bytes = serde_json::to_vec_pretty(&keys).map_err(|e| HomeError::Corrupt {
            path: self.root.join(KEY_FILE),
            reason: e.to_string(),
        })?;
        write_private(&self.root.join(KEY_FILE), &bytes)?;
        write_json(&path, &identity.public())
    }

    /// The public identity stored by `init` (no passphrase needed).
    pub fn identity(&self) -> Result<PublicIdentity, HomeError> {
        let path = self.root.join(IDENTITY_FILE);
        if !path.exists() {
            return Err(HomeError::NotInitialised {
                path: self.root.clone(),
            });
        }
        let identity: PublicIdentity = read_json(&path)?;
        let signed = match &identity.profile_signature {
            Some(sig) => identity.profile.verify(&identity.member(), sig),
            None => Ok(()),
        };
        identity
            .certificate
            .verify()
            .and(signed)
            .map_err(|e| HomeError::Corrupt {
                path,
                reason: e.to_string(),
            })?;
        Ok(identity)
    }

    /// Whether the key file was written without a passphrase (demo homes).
    pub fn is_insecure(&self) -> Result<bool, HomeError> {
        let keys: KeyFile = read_json(&self.root.join(KEY_FILE))?;
        Ok(keys.insecure)
    }

    /// Opens the key file with `passphrase` and returns the full identity.
    pub fn unlock(&self, passphrase: &str) -> Result<LocalIdentity, HomeError> {
        let public = self.identity()?;
        let path = self.root.join(KEY_FILE);
        let keys: KeyFile = read_json(&path)?;
        let secrets = keys.open(passphrase)?;
        let unsigned = public.profile_signature.is_none();
        let identity =
            LocalIdentity::from_secrets(&secrets, public).map_err(|e| HomeError::Corrupt {
                path,
                reason: e.to_string(),
            })?;
        // A home made by an earlier version: its profile is signed now, so that its
        // card is taken by others even when read without the passphrase.
        if unsigned {
            write_json(&self.root.join(IDENTITY_FILE), &identity.public())?;
        }
        Ok(identity)
    }

    /// The directory of the store.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join(STORE_DIR)
    }

    /// Whether another process holds this home's store (a node running or starting).
    pub fn store_in_use(&self) -> bool {
        crate::store::in_use(&self.store_dir())
    }

    /// Whether the process holding this home's store is a node (`cercle up`), perhaps still
    /// starting, rather than another command: it left its mark ([`Home::mark_node`]).
    pub fn node_holds_store(&self) -> bool {
        self.store_in_use() && self.root.join(NODE_MARK).exists()
    }

    /// Marks this home as held by a node until the mark is dropped: a command run
    /// meanwhile waits for the node's API instead of failing.
    pub fn mark_node(&self) -> NodeMark {
        let path = self.root.join(NODE_MARK);
        if let Err(e) = fs::write(&path, std::process::id().to_string()) {
            tracing::warn!(error = %e, "cannot mark the home as held by this node");
        }
        NodeMark { path }
    }

    /// Opens this home's store with `identity`'s storage key (see `store::SledStore::open`).
    pub fn open_store(
        &self,
        identity: &LocalIdentity,
    ) -> Result<crate::store::SledStore, crate::store::StoreError> {
        crate::store::SledStore::open(&self.store_dir(), identity.storage_key())
    }
}

/// The file that says a node holds the home's store (its process id).
const NODE_MARK: &str = "node.pid";

/// A home marked as held by a node; the mark goes when this is dropped.
#[derive(Debug)]
pub struct NodeMark {
    path: PathBuf,
}

impl Drop for NodeMark {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Creates a directory of ours (a home), readable by its owner only: it holds who the
/// member is and the circles they belong to.
pub(crate) fn create_dir(path: &Path) -> Result<(), HomeError> {
    let io = |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(io)?;
    // A directory that existed already is closed too when it is ours: empty (made by hand
    // for us) or holding our files (an older version). Any other directory (`--home /tmp`)
    // keeps its permissions; only our files inside are private.
    #[cfg(unix)]
    if is_ours(path).map_err(io)? {
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io)?;
    }
    Ok(())
}

/// Whether `dir` is empty or already holds a home's or a relay's files.
#[cfg(unix)]
fn is_ours(dir: &Path) -> std::io::Result<bool> {
    let mut entries = fs::read_dir(dir)?.peekable();
    if entries.peek().is_none() {
        return Ok(true);
    }
    let ours = [
        IDENTITY_FILE,
        KEY_FILE,
        STORE_DIR,
        crate::relay::KEY_FILE,
        crate::relay::MAILBOX_DIR,
    ];
    Ok(ours.iter().any(|name| dir.join(name).exists()))
}

/// Replaces `path` with `bytes`, durably and atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    write_atomic_mode(path, bytes, 0o644)
}

/// Like [`write_atomic`], for files only the owner may read (keys, tokens).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), HomeError> {
    let io = |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable only once the directory entry is. (Windows cannot open a
    // directory as a file; its renames are journaled by NTFS.)
    #[cfg(unix)]
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Writes `value` as JSON, readable by the owner only (a profile names the member).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), HomeError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| HomeError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_private(path, &bytes)
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

    fn identity() -> LocalIdentity {
        let profile = Profile::new("Claire Martin", "infirmière", None, None).unwrap();
        LocalIdentity::generate(profile, cercle_crdt::Timestamp(1)).unwrap()
    }

    #[test]
    fn init_stores_the_identity_and_refuses_a_second_init() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        assert!(matches!(
            home.identity(),
            Err(HomeError::NotInitialised { .. })
        ));
        let id = identity();
        home.init(&id, Some("pw"), KdfParams::FAST_INSECURE)
            .unwrap();
        assert_eq!(home.identity().ok(), Some(id.public()));
        let unlocked = home.unlock("pw").unwrap();
        assert_eq!(unlocked.sign(b"m"), id.sign(b"m"));
        assert!(matches!(
            home.unlock("nope"),
            Err(HomeError::Keys(KeyFileError::WrongPassphrase))
        ));
        assert!(matches!(
            home.init(&id, Some("pw"), KdfParams::FAST_INSECURE),
            Err(HomeError::AlreadyInitialised { .. })
        ));
    }

    #[test]
    fn a_home_from_an_earlier_version_has_its_profile_signed_when_next_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        let id = identity();
        home.init(&id, Some("pw"), KdfParams::FAST_INSECURE)
            .unwrap();
        let mut old = id.public();
        old.profile_signature = None;
        write_json(&dir.path().join("h").join(IDENTITY_FILE), &old).unwrap();
        assert!(home.identity().unwrap().profile_signature.is_none());
        home.unlock("pw").unwrap();
        let card = home.identity().unwrap().card(&[]).encode();
        assert!(crate::identity::ContactCard::decode(&card).is_ok());
        // A profile edited by hand in the file no longer matches its signature.
        let mut edited = id.public();
        edited.profile.name = "Dr Usurpateur".into();
        write_json(&dir.path().join("h").join(IDENTITY_FILE), &edited).unwrap();
        assert!(matches!(home.identity(), Err(HomeError::Corrupt { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn only_the_owner_can_read_the_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.init(&identity(), Some("pw"), KdfParams::FAST_INSECURE)
            .unwrap();
        for name in [KEY_FILE, IDENTITY_FILE] {
            let mode = fs::metadata(dir.path().join(name))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            assert_eq!(mode, 0o600, "{name}");
        }
        let home_mode = fs::metadata(dir.path()).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(home_mode.ok(), Some(0o700), "the home is its owner's only");
    }

    #[cfg(unix)]
    #[test]
    fn a_shared_directory_named_as_home_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("someone-else.txt"), b"x").unwrap();
        Home::at(dir.path())
            .init(&identity(), Some("pw"), KdfParams::FAST_INSECURE)
            .unwrap();
        let mode = fs::metadata(dir.path()).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o755));
        let key = fs::metadata(dir.path().join(KEY_FILE)).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(key.ok(), Some(0o600));
    }

    #[test]
    fn the_key_file_holds_no_raw_secret_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let id = identity();
        home.init(&id, Some("pw"), KdfParams::FAST_INSECURE)
            .unwrap();
        let secrets = id.secrets();
        for name in [KEY_FILE, IDENTITY_FILE] {
            let file = fs::read(dir.path().join(name)).unwrap_or_default();
            let text = String::from_utf8_lossy(&file).to_lowercase();
            for key in secrets.chunks(32) {
                assert!(
                    !file.windows(32).any(|w| w == key),
                    "{name} holds a raw key"
                );
                assert!(!text.contains(&hex::encode(key)), "{name} holds a hex key");
                let b32 = data_encoding::BASE32_NOPAD.encode(key).to_lowercase();
                let b64 = data_encoding::BASE64.encode(key).to_lowercase();
                assert!(
                    !text.contains(&b32[..40]) && !text.contains(&b64[..40]),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn a_damaged_identity_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        fs::write(dir.path().join(IDENTITY_FILE), b"{not json").unwrap();
        assert!(matches!(home.identity(), Err(HomeError::Corrupt { .. })));
        assert_eq!(
            fs::read(dir.path().join(IDENTITY_FILE)).ok().as_deref(),
            Some(&b"{not json"[..])
        );
    }
}
