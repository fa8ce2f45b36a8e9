//! The store's trees in memory: what the deterministic cluster of node cores (tests,
//! simulations) writes to. A batch is applied when submitted and its ticket is ready at
//! once; the cluster decides when to report it durable to the core, on its virtual clock.
//! Nothing here is sealed or flushed: it is never a node's store on a disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use zeroize::Zeroizing;

use super::{Batch, KeyValues, Keys, Opened, Store, StoreError, Ticket, Tree, Write, run};

/// One tree's keys and values, in key order.
type Values = BTreeMap<Vec<u8>, Vec<u8>>;

/// Trees of keys and values, in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    trees: Mutex<BTreeMap<Tree, Values>>,
    place: PathBuf,
}

impl MemoryStore {
    /// An empty store; `name` stands for its place in errors.
    pub fn new(name: &str) -> MemoryStore {
        MemoryStore {
            trees: Mutex::default(),
            place: PathBuf::from(format!("memory:{name}")),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<Tree, Values>) -> T) -> T {
        // A panic while holding the lock leaves whole batches: keep using it.
        let mut trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut trees)
    }

    /// Keys and values held, in all (for tests that look at what was written).
    pub fn len(&self) -> usize {
        self.with(|t| t.values().map(BTreeMap::len).sum())
    }

    /// Bytes of keys and values held, in all.
    pub fn bytes(&self) -> usize {
        self.with(|t| {
            t.values()
                .flat_map(|v| v.iter())
                .map(|(k, v)| k.len() + v.len())
                .sum()
        })
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Forgets the envelope under `key`: its row, or its place in a run (see `run`). A row that
/// does not decode stays as it is: nothing here is a node's store on a disk.
fn forget_envelope(envelopes: &mut Values, key: &[u8]) {
    let floor = run::first_key_of_log(key);
    let Some((row_key, row)) = envelopes.range(floor..=key.to_vec()).next_back() else {
        return;
    };
    let writes = run::forget(key, row_key, row).unwrap_or_default();
    for (k, v) in writes {
        match v {
            Some(v) => envelopes.insert(k, v),
            None => envelopes.remove(&k),
        };
    }
}

impl Store for MemoryStore {
    fn submit(&self, batch: Batch) -> Ticket {
        self.with(|trees| {
            for w in batch.writes {
                match w {
                    Write::Put { tree, key, value } => {
                        trees.entry(tree).or_default().insert(key, value);
                    }
                    Write::Delete {
                        tree: Tree::Envelopes,
                        key,
                    } => forget_envelope(trees.entry(Tree::Envelopes).or_default(), &key),
                    Write::Delete { tree, key } => {
                        trees.entry(tree).or_default().remove(&key);
                    }
                    Write::Shred { circle } => {
                        for tree in super::CIRCLE_TREES {
                            trees
                                .entry(tree)
                                .or_default()
                                .retain(|k, _| !k.starts_with(&circle.0));
                        }
                    }
                }
            }
        });
        Ticket::ready(Ok(()))
    }

    fn location(&self) -> &Path {
        &self.place
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Opened>, StoreError> {
        Ok(self.with(|t| t.get(&tree)?.get(key).cloned().map(Zeroizing::new)))
    }

    fn contains(&self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.with(|t| t.get(&tree).is_some_and(|t| t.contains_key(key))))
    }

    fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Opened)>, StoreError> {
        Ok(self.with(|t| {
            let Some(t) = t.get(&tree) else {
                return Vec::new();
            };
            t.range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), Zeroizing::new(v.clone())))
                .collect()
        }))
    }

    fn range(&self, tree: Tree, keys: Keys, limit: usize) -> Result<KeyValues, StoreError> {
        Ok(self.with(|t| {
            let Some(t) = t.get(&tree) else {
                return Vec::new();
            };
            t.range(keys)
                .take(limit)
                .map(|(k, v)| (k.clone(), Zeroizing::new(v.clone())))
                .collect()
        }))
    }

    fn last(&self, tree: Tree, keys: Keys) -> Result<Option<(Vec<u8>, Opened)>, StoreError> {
        Ok(self.with(|t| {
            let (k, v) = t.get(&tree)?.range(keys).next_back()?;
            Some((k.clone(), Zeroizing::new(v.clone())))
        }))
    }
}
