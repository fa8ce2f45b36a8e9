//! Each circle's own key for what this node keeps of it at rest, in a small file of its own,
//! so that forgetting a circle's key is what shreds it.
//!
//! The sealed trees (records, snapshots, documents' contents) and the membership operations
//! (which carry the circle's epoch keys, sealed to this device) are sealed with their
//! circle's key, not with the device's storage key. A closed circle's rows are deleted, but
//! copies outlive a deletion: the journal keeps every acknowledged batch, and sled rewrites
//! its segments on its own schedule. Once the circle's key is gone from this file, those
//! copies cannot be opened by anything left on the device, the device's own keys included;
//! the envelopes themselves were only ever readable with epoch keys that the operations
//! carried.
//!
//! A relay's mailbox keeps the membership operations of each circle it serves the same way
//! (they carry the epoch keys sealed to the members' devices), in its own file.
//!
//! `DIR/circle-keys`: a 16-byte magic, then one 104-byte record per circle: its id, then
//! its 32-byte key sealed with the storage key (XChaCha20-Poly1305, bound to the circle).
//! A circle's key is appended when first needed, and `fsync`ed ([`CircleKeys::sync`]) by
//! the writer before the journal record of anything sealed with it is (one flush for all the
//! circles a group of writes starts); forgetting one rewrites the whole file beside it, `fsync`s it and renames
//! it over (the old file's blocks are the file system's, not in any file of the home). A
//! record torn by a crash is one that was never used: it is dropped.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::StoreError;
use crate::circle::membership::CircleId;
use crate::crypto::StorageKey;

/// The file's name in the store's directory.
pub(crate) const FILE: &str = "circle-keys";
const MAGIC: &[u8; 16] = b"cercle-ckeys-v1\n";
/// A circle's id, then its key sealed: nonce (24), key (32), tag (16).
const RECORD: usize = 32 + 24 + 32 + 16;

/// The circles' keys, opened, and the file they are kept in (none: in memory only, for a
/// simulated relay).
pub(crate) struct CircleKeys {
    path: Option<PathBuf>,
    keys: BTreeMap<CircleId, StorageKey>,
    /// Keys appended and not flushed yet; the file was created by one of them.
    unsynced: bool,
    created: bool,
}

impl std::fmt::Debug for CircleKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CircleKeys({} circles)", self.keys.len())
    }
}

fn place(circle: &CircleId) -> Vec<u8> {
    let mut p = b"circle-key".to_vec();
    p.extend_from_slice(&circle.0);
    p
}

impl CircleKeys {
    /// Reads the file in `dir` (an absent file holds no key), opening each key with
    /// `storage`.
    pub(crate) fn load(dir: &Path, storage: &StorageKey) -> Result<CircleKeys, StoreError> {
        CircleKeys::load_file(dir.join(FILE), storage)
    }

    /// Keys kept in memory only.
    pub(crate) fn in_memory() -> CircleKeys {
        CircleKeys {
            path: None,
            keys: BTreeMap::new(),
            unsynced: false,
            created: false,
        }
    }

    /// Reads the file at `path` (an absent file holds no key).
    pub(crate) fn load_file(path: PathBuf, storage: &StorageKey) -> Result<CircleKeys, StoreError> {
        let mut keys = BTreeMap::new();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io(&path, &e)),
        };
        // A header torn by a crash during the first key's write: no key was ever used.
        let torn_header = bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes);
        if !bytes.is_empty() && !torn_header {
            let body = bytes
                .strip_prefix(MAGIC.as_slice())
                .ok_or_else(|| bad(&path, "its header"))?;
            // A torn last record is one whose write was never acknowledged.
            for record in body.chunks_exact(RECORD) {
                let circle = CircleId(
                    record[..32]
                        .try_into()
                        .map_err(|_| bad(&path, "a circle id"))?,
                );
                let key = storage
                    .open(&place(&circle), &record[32..])
                    .map_err(|_| bad(&path, "a circle's key"))?;
                let key: [u8; 32] = key
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad(&path, "a circle's key"))?;
                keys.insert(circle, StorageKey::from_bytes(Zeroizing::new(key)));
            }
        }
        Ok(CircleKeys {
            path: Some(path),
            keys,
            unsynced: false,
            created: false,
        })
    }

    /// The key of `circle`, if it has one.
    pub(crate) fn get(&self, circle: &CircleId) -> Option<&StorageKey> {
        self.keys.get(circle)
    }

    /// The key of `circle`, made if it has none (durable once [`CircleKeys::sync`] returns).
    pub(crate) fn get_or_make(
        &mut self,
        circle: &CircleId,
        storage: &StorageKey,
    ) -> Result<&StorageKey, StoreError> {
        if !self.keys.contains_key(circle) {
            let mut key = Zeroizing::new([0u8; 32]);
            getrandom::fill(key.as_mut_slice()).map_err(|e| StoreError::Io {
                path: self.path.clone().unwrap_or_default(),
                reason: format!("no randomness for a circle's key: {e}"),
            })?;
            self.append(circle, &key, storage)?;
            self.keys
                .insert(*circle, StorageKey::from_bytes(Zeroizing::new(*key)));
        }
        self.keys
            .get(circle)
            .ok_or_else(|| bad(Path::new(""), "a circle's key"))
    }

    fn append(
        &mut self,
        circle: &CircleId,
        key: &[u8; 32],
        storage: &StorageKey,
    ) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let sealed = storage
            .seal(&place(circle), key)
            .map_err(|e| bad(path, &e.to_string()))?;
        let io = |e: std::io::Error| StoreError::io(path, &e);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut record = Vec::with_capacity(MAGIC.len() + RECORD);
        if len == 0 {
            record.extend_from_slice(MAGIC);
        } else if len < MAGIC.len() as u64
            || !(len - MAGIC.len() as u64).is_multiple_of(RECORD as u64)
        {
            // A torn record from a crash: rewritten without it before appending.
            drop(file);
            self.rewrite_all(storage)?;
            return self.append(circle, key, storage);
        }
        record.extend_from_slice(&circle.0);
        record.extend_from_slice(&sealed);
        file.write_all(&record).map_err(io)?;
        self.unsynced = true;
        self.created |= len == 0;
        Ok(())
    }

    /// Makes the keys appended since the last call durable: called before the journal
    /// takes anything sealed with them.
    pub(crate) fn sync(&mut self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.unsynced {
            return Ok(());
        }
        let io = |e: std::io::Error| StoreError::io(path, &e);
        File::open(path).and_then(|f| f.sync_data()).map_err(io)?;
        if self.created {
            sync_dir(path)?;
        }
        self.unsynced = false;
        self.created = false;
        Ok(())
    }

    /// Forgets the keys of `circles`: the file is rewritten without them. Forgetting a key
    /// not held does nothing.
    pub(crate) fn forget(
        &mut self,
        circles: &[CircleId],
        storage: &StorageKey,
    ) -> Result<(), StoreError> {
        let before = self.keys.len();
        for c in circles {
            self.keys.remove(c);
        }
        if self.keys.len() != before {
            self.rewrite_all(storage)?;
        }
        Ok(())
    }

    /// Writes every key held to a new file, then renames it over.
    fn rewrite(&self, storage: &StorageKey) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |e: std::io::Error| StoreError::io(path, &e);
        let tmp = path.with_extension("new");
        let mut out = Zeroizing::new(MAGIC.to_vec());
        let mut put = |circle: &CircleId, key: &[u8]| -> Result<(), StoreError> {
            let sealed = storage
                .seal(&place(circle), key)
                .map_err(|e| bad(path, &e.to_string()))?;
            out.extend_from_slice(&circle.0);
            out.extend_from_slice(&sealed);
            Ok(())
        };
        for (circle, key) in &self.keys {
            put(circle, key.bytes())?;
        }
        let mut file = File::create(&tmp).map_err(io)?;
        file.write_all(&out).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, path).map_err(io)?;
        sync_dir(path)
    }

    /// Rewrites the file (after a torn record) and says everything in it is durable.
    fn rewrite_all(&mut self, storage: &StorageKey) -> Result<(), StoreError> {
        self.rewrite(storage)?;
        self.unsynced = false;
        self.created = false;
        Ok(())
    }
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, &e))
}

fn bad(path: &Path, what: &str) -> StoreError {
    StoreError::BadValue {
        path: path.to_path_buf(),
        what: format!("{what} in the circles' keys"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> StorageKey {
        StorageKey::derive(&[7; 32])
    }

    #[test]
    fn keys_survive_reloading_and_a_forgotten_one_is_gone_from_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut keys = CircleKeys::load(dir.path(), &storage()).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (CircleId([1; 32]), CircleId([2; 32]));
        let ka = keys
            .get_or_make(&a, &storage())
            .map(|k| *k.bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let kb = keys
            .get_or_make(&b, &storage())
            .map(|k| *k.bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(ka, kb);
        let again = CircleKeys::load(dir.path(), &storage()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.get(&a).map(|k| *k.bytes()), Some(ka));
        keys.forget(&[a], &storage())
            .unwrap_or_else(|e| panic!("{e}"));
        let after = CircleKeys::load(dir.path(), &storage()).unwrap_or_else(|e| panic!("{e}"));
        assert!(after.get(&a).is_none());
        assert_eq!(after.get(&b).map(|k| *k.bytes()), Some(kb));
        // Nothing in the directory holds the forgotten key's sealed record any more.
        let file = fs::read(dir.path().join(FILE)).unwrap_or_default();
        assert!(!file.windows(32).any(|w| w == a.0));
        // Another storage key opens nothing.
        assert!(CircleKeys::load(dir.path(), &StorageKey::derive(&[8; 32])).is_err());
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_next_key_appended_after_the_good_ones() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut keys = CircleKeys::load(dir.path(), &storage()).unwrap_or_else(|e| panic!("{e}"));
        let a = CircleId([1; 32]);
        let ka = keys
            .get_or_make(&a, &storage())
            .map(|k| *k.bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(FILE);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&[9; 50]).unwrap_or_else(|e| panic!("{e}"));
        let mut keys = CircleKeys::load(dir.path(), &storage()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.get(&a).map(|k| *k.bytes()), Some(ka));
        let b = CircleId([2; 32]);
        keys.get_or_make(&b, &storage())
            .unwrap_or_else(|e| panic!("{e}"));
        let back = CircleKeys::load(dir.path(), &storage()).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.get(&a).is_some() && back.get(&b).is_some());
    }
}
