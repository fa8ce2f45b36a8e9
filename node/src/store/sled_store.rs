//! The store on disk: a `sled` database, a journal beside it, and one writer thread that
//! makes batches durable together (group commit).
//!
//! Layout of `DIR` (the home's `store/`):
//!
//! ```text
//! DIR/lock      held (flock) while a process uses the store
//! DIR/journal   every acknowledged batch, checksummed (see `journal`)
//! DIR/circle-keys  each circle's own key at rest (see `circle_keys`)
//! DIR/db/       the sled database: the indexes that reads and sync use
//! ```
//!
//! A batch is acknowledged once its journal record is `fdatasync`ed; it is applied to sled
//! when the writer is idle or holds back enough (a read asks for it first), and sled
//! flushes on its own schedule. The database records (in `meta/journal`) a
//! journal offset that it is known to hold everything before; at start-up the records after
//! it are applied again (writes are idempotent and replayed in order). If sled cannot open
//! its files, they are moved aside and the database is rebuilt from the whole journal.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::circle_keys::CircleKeys;
use super::journal::{Journal, JournalError};
use super::{
    Batch, CIRCLE_TREES, KeyValues, Keys, Opened, SCHEMA_VERSION, Store, StoreError, Ticket, Tree,
    Write, run,
};
use crate::circle::membership::CircleId;
use crate::crypto::StorageKey;

const LOCK_FILE: &str = "lock";
const JOURNAL_FILE: &str = "journal";
const DB_DIR: &str = "db";
const META_SCHEMA: &[u8] = b"schema";
const META_JOURNAL: &[u8] = b"journal";
const META_KEY_CHECK: &str = "key_check";
const KEY_CHECK_TEXT: &[u8] = b"cercle store key check";

/// Jobs queued to the writer thread (bounded).
const QUEUE: usize = 4096;
/// At most this many batches share one flush...
const MAX_GROUP: usize = 1024;
/// ... and the bytes they write, at most (a group gathered from a long queue would
/// otherwise be journaled and applied as one, and a read that waits for it would wait for
/// all of it: up to 0.7 s for a catch-up's 60 MB).
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;
/// The database's journal position is advanced after this many journal bytes...
const MARK_EVERY_BYTES: u64 = 4 * 1024 * 1024;
/// ...or after this long without writes.
const MARK_IDLE: Duration = Duration::from_millis(500);
/// Acknowledged groups wait to be applied to sled until the writer has had nothing to do
/// for this long (or a reader waits for them, or there are [`APPLY_GROUPS`] of them, or
/// [`APPLY_BYTES`]): applying them right after the flush took the CPU the note's push
/// needed at that moment.
const APPLY_IDLE: Duration = Duration::from_millis(3);
/// Acknowledged groups held back from sled, at most...
const APPLY_GROUPS: usize = 64;
/// ... and their bytes, at most.
const APPLY_BYTES: usize = 1024 * 1024;

/// What happened when the store was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The database could not be opened and was rebuilt from the journal.
    pub rebuilt: bool,
    /// Where the damaged database files were moved, if they were.
    pub moved_aside: Option<PathBuf>,
    /// Journal records applied to the database at start.
    pub replayed: usize,
    /// Bytes of an unfinished, unacknowledged write cut from the journal's end.
    pub dropped: u64,
}

/// What the writer thread is asked to do.
enum Job {
    /// A batch to make durable, and where to say when it is.
    Write(Batch, SyncSender<Result<(), StoreError>>),
    /// A reader waits for the acknowledged groups to be in sled.
    Settle,
}

/// Where the writer thread is: a group of batches is acknowledged once its journal record
/// is flushed, then applied to sled; a read first waits for every acknowledged group to be
/// in sled, so whoever was told a write is durable reads it back.
#[derive(Debug, Default)]
struct Settled {
    /// The last group acknowledged.
    acked: AtomicU64,
    /// The last group applied to sled (or given up on: `u64::MAX` once the writer stops).
    applied: AtomicU64,
    /// A reader asked the writer to apply what it holds back, which it has not begun yet.
    asked: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Settled {
    /// Whether every group acknowledged so far is in sled.
    fn holds_all(&self) -> bool {
        self.applied.load(Ordering::SeqCst) >= self.acked.load(Ordering::SeqCst)
    }

    /// Returns once every group acknowledged so far is in sled.
    fn wait(&self) {
        let want = self.acked.load(Ordering::SeqCst);
        if self.applied.load(Ordering::SeqCst) >= want {
            return;
        }
        let Ok(mut guard) = self.lock.lock() else {
            return;
        };
        while self.applied.load(Ordering::SeqCst) < want {
            guard = match self.changed.wait(guard) {
                Ok(g) => g,
                Err(_) => return,
            };
        }
    }

    fn applied(&self, group: u64) {
        let _guard = self.lock.lock();
        self.applied.store(group, Ordering::SeqCst);
        self.changed.notify_all();
    }
}

/// Releases the readers for good when the writer thread ends, however it ends.
struct Release(Arc<Settled>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.applied(u64::MAX);
    }
}

/// How long closing the store waits for its writer's last flush.
const SHUTDOWN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// The sled-backed [`Store`].
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    trees: BTreeMap<Tree, sled::Tree>,
    key: StorageKey,
    /// Each circle's own key (shared with the writer, which forgets a shredded one).
    circle_keys: Arc<Mutex<CircleKeys>>,
    jobs: Option<SyncSender<Job>>,
    writer: Option<JoinHandle<()>>,
    /// Set by the writer once a write failed.
    failed: Arc<AtomicBool>,
    settled: Arc<Settled>,
    report: OpenReport,
    _lock: File,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn damaged(dir: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Damaged {
        path: dir.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn from_sled(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::io(dir, &io),
        other => StoreError::Io {
            path: dir.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

fn from_journal(dir: &Path, e: JournalError) -> StoreError {
    match e {
        JournalError::Io { path, source } => StoreError::io(&path, &source),
        other => damaged(dir, other),
    }
}

/// Opens sled at `path`, turning its errors and panics on damaged files into an error.
fn open_sled(path: &Path) -> Result<sled::Db, String> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(64 * 1024 * 1024)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the database engine failed while reading its files".into()),
    }
}

/// Opens sled at `path` just written by another handle to it.
fn open_sled_released(path: &Path) -> Result<sled::Db, String> {
    once_released(|| open_sled(path))
}

/// Runs `open` (of a sled database) until sled's file lock is free: sled's background
/// threads may hold it for a moment after the last handle is dropped, so a lock refusal is
/// retried for up to 5 s.
pub(crate) fn once_released<T>(open: impl Fn() -> Result<T, String>) -> Result<T, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open() {
            Err(e)
                if e.contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn open_trees(dir: &Path, db: &sled::Db) -> Result<BTreeMap<Tree, sled::Tree>, StoreError> {
    Tree::ALL
        .into_iter()
        .map(|t| Ok((t, db.open_tree(t.name()).map_err(|e| from_sled(dir, e))?)))
        .collect()
}

/// Applies a batch's writes one by one; returns the circles shredded, whose keys the caller
/// forgets. Atomicity comes from the journal (a group is replayed whole after a crash) and
/// from readers waiting until the group is applied (`Settled`), not from sled: sled's
/// `apply_batch` held memory for every write of a large batch for the life of the process
/// (importing 100 000 professionals of the directory: 640 MB resident against 76 MB written
/// one by one, and faster).
fn apply(
    dir: &Path,
    trees: &BTreeMap<Tree, sled::Tree>,
    writes: &[Write],
) -> Result<Vec<CircleId>, StoreError> {
    let mut shredded = Vec::new();
    for w in writes {
        let result = match w {
            Write::Put { tree, key, value } => trees
                .get(tree)
                .map(|t| t.insert(key.as_slice(), value.as_slice()).map(|_| ())),
            Write::Delete {
                tree: Tree::Envelopes,
                key,
            } => {
                if let Some(t) = trees.get(&Tree::Envelopes) {
                    forget_envelope(dir, t, key)?;
                }
                continue;
            }
            Write::Delete { tree, key } => trees
                .get(tree)
                .map(|t| t.remove(key.as_slice()).map(|_| ())),
            Write::Shred { circle } => {
                shredded.push(*circle);
                Some(shred(trees, circle))
            }
        };
        result.transpose().map_err(|e| from_sled(dir, e))?;
    }
    Ok(shredded)
}

/// Forgets the envelope under `key`: its row, or its place in a run (see `run`).
fn forget_envelope(dir: &Path, tree: &sled::Tree, key: &[u8]) -> Result<(), StoreError> {
    let floor = run::first_key_of_log(key);
    let Some(found) = tree.range(floor..=key.to_vec()).next_back() else {
        return Ok(());
    };
    let (row_key, row) = found.map_err(|e| from_sled(dir, e))?;
    let writes = run::forget(key, &row_key, &row).map_err(|e| damaged(dir, e))?;
    for (k, v) in writes {
        match v {
            Some(v) => tree.insert(k, v),
            None => tree.remove(k),
        }
        .map_err(|e| from_sled(dir, e))?;
    }
    Ok(())
}

/// Deletes every row of `circle` in the trees keyed by circle.
fn shred(trees: &BTreeMap<Tree, sled::Tree>, circle: &CircleId) -> sled::Result<()> {
    for t in CIRCLE_TREES {
        if let Some(tree) = trees.get(&t) {
            delete_prefix(tree, &circle.0)?;
        }
    }
    Ok(())
}

/// Deletes every key of `tree` starting with `prefix`, one by one (see [`apply`] on why not
/// in one sled batch).
pub(crate) fn delete_prefix(tree: &sled::Tree, prefix: &[u8]) -> sled::Result<()> {
    let keys: Vec<sled::IVec> = tree.scan_prefix(prefix).keys().collect::<Result<_, _>>()?;
    for k in keys {
        tree.remove(k)?;
    }
    Ok(())
}

/// The place a sealed value is bound to.
fn place(tree: Tree, key: &[u8]) -> Vec<u8> {
    let mut p = vec![tree.code()];
    p.extend_from_slice(key);
    p
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, sealing with `key`. Takes the home's lock,
    /// checks the schema and that the store is this identity's, applies the journal's
    /// latest records, and rebuilds the database from the journal if sled cannot open it
    /// (with a warning).
    pub fn open(dir: &Path, key: StorageKey) -> Result<SledStore, StoreError> {
        create_private_dir(dir)?;
        let lock = take_lock(dir)?;
        let journal_path = dir.join(JOURNAL_FILE);
        let db_path = dir.join(DB_DIR);
        let mut report = OpenReport::default();

        let fresh = !journal_path.exists() && !db_path.exists();
        // Circles shredded by the journal's records applied at opening: their keys are
        // forgotten once the circles' keys are read (after the key check).
        let mut shredded = Vec::new();
        if fresh {
            Journal::create(&journal_path).map_err(|e| from_journal(dir, e))?;
        } else if !journal_path.exists() {
            return Err(damaged(
                dir,
                "its journal is missing; restore the home from a backup",
            ));
        }
        let db = match open_sled_released(&db_path) {
            Ok(db) => db,
            Err(reason) => {
                tracing::warn!(store = %dir.display(), %reason, "the database does not open; rebuilding it from the journal");
                let (db, aside, replayed, gone) = rebuild(dir, &reason)?;
                shredded.extend(gone);
                report.rebuilt = true;
                report.moved_aside = aside;
                report.replayed = replayed;
                db
            }
        };
        let trees = open_trees(dir, &db)?;
        let mut store = SledStore {
            dir: dir.to_path_buf(),
            db,
            trees,
            key,
            circle_keys: Arc::new(Mutex::new(CircleKeys::in_memory())),
            jobs: None,
            writer: None,
            failed: Arc::new(AtomicBool::new(false)),
            settled: Arc::default(),
            report,
            _lock: lock,
        };
        let journal = store.check_schema().and_then(|()| {
            let mut journal = store.catch_up(&journal_path, &mut shredded)?;
            store.check_key(fresh, &mut journal)?;
            // Only a store of this identity's has its circles' keys read.
            let mut keys = CircleKeys::load(dir, &store.key)?;
            keys.forget(&shredded, &store.key)?;
            store.circle_keys = Arc::new(Mutex::new(keys));
            Ok(journal)
        });
        match journal {
            Ok(journal) => {
                store.start_writer(journal);
                Ok(store)
            }
            Err(e) => {
                // Opening wrote to sled (a migration, the journal's latest records) and may
                // have failed for a full disk: closing must not wait on sled's flush.
                store.failed.store(true, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Rebuilds the database from the journal even though it opens (`cercle repair`).
    pub fn repair(dir: &Path, key: StorageKey) -> Result<OpenReport, StoreError> {
        create_private_dir(dir)?;
        let lock = take_lock(dir)?;
        if !dir.join(JOURNAL_FILE).exists() {
            return Err(damaged(dir, "its journal is missing"));
        }
        let (db, aside, replayed, shredded) = rebuild(dir, "repair requested")?;
        drop(db);
        drop(lock);
        let store = SledStore::open(dir, key)?;
        store.forget(&shredded)?;
        let mut report = store.report.clone();
        report.rebuilt = true;
        report.moved_aside = aside;
        report.replayed = replayed;
        Ok(report)
    }

    /// What opening found and did.
    pub fn report(&self) -> &OpenReport {
        &self.report
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A tree to read, once every acknowledged write is in it.
    fn tree(&self, t: Tree) -> Result<&sled::Tree, StoreError> {
        if !self.settled.holds_all() {
            // The writer holds groups back from sled until it is idle: it is asked (once
            // until it begins) to apply them now.
            if !self.settled.asked.swap(true, Ordering::SeqCst)
                && let Some(jobs) = &self.jobs
            {
                let _ = jobs.send(Job::Settle);
            }
            self.settled.wait();
        }
        self.trees
            .get(&t)
            .ok_or_else(|| damaged(&self.dir, "missing tree"))
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let meta = self.tree(Tree::Meta)?;
        let found = match meta.get(META_SCHEMA).map_err(|e| from_sled(&self.dir, e))? {
            None => 0,
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| damaged(&self.dir, "bad schema version"))?,
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.dir.clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for from in found..SCHEMA_VERSION {
            self.migrate(from)?;
        }
        if found != SCHEMA_VERSION {
            meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                .map_err(|e| from_sled(&self.dir, e))?;
        }
        Ok(())
    }

    /// The migration hook: brings a store of schema `from` to `from + 1`.
    fn migrate(&self, from: u32) -> Result<(), StoreError> {
        match from {
            // 0 is an empty or freshly rebuilt database: nothing to convert.
            0 => Ok(()),
            // 2 adds the `received` tree: items received before have no time of receipt.
            1 => Ok(()),
            // 3 seals each circle's values with the circle's own key and keys attachments
            // by circle: values written before stay readable with the storage key (and
            // operations as they were, unsealed), attachments under their hash alone.
            2 => Ok(()),
            // 4 keeps a run of one device's consecutive envelopes in one row (`run`): the
            // rows written before are each one envelope, which a run's reader reads as such.
            3 => Ok(()),
            other => Err(damaged(
                &self.dir,
                format!("no migration from store schema {other}"),
            )),
        }
    }

    /// Applies the journal records the database may not hold yet.
    fn catch_up(
        &mut self,
        journal_path: &Path,
        shredded: &mut Vec<CircleId>,
    ) -> Result<Journal, StoreError> {
        let meta = self.tree(Tree::Meta)?;
        let mark = meta
            .get(META_JOURNAL)
            .map_err(|e| from_sled(&self.dir, e))?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0);
        let (journal, scan) =
            Journal::open(journal_path, mark).map_err(|e| from_journal(&self.dir, e))?;
        if mark > journal.len() {
            return Err(damaged(
                &self.dir,
                "the journal is shorter than the database remembers",
            ));
        }
        for (_, record) in &scan.records {
            let batch = Batch::decode(record).map_err(|e| damaged(&self.dir, e))?;
            shredded.extend(apply(&self.dir, &self.trees, &batch.writes)?);
        }
        self.report.replayed += scan.records.len();
        self.report.dropped = scan.dropped;
        Ok(journal)
    }

    /// Checks that the store was sealed with this key; a new store records a check value.
    fn check_key(&mut self, fresh: bool, journal: &mut Journal) -> Result<(), StoreError> {
        match self.meta(META_KEY_CHECK)? {
            Some(sealed) => {
                let ok = self
                    .key
                    .open(&place(Tree::Meta, META_KEY_CHECK.as_bytes()), &sealed)
                    .is_ok_and(|p| p.as_slice() == KEY_CHECK_TEXT);
                if ok {
                    Ok(())
                } else {
                    Err(StoreError::Foreign {
                        path: self.dir.clone(),
                    })
                }
            }
            None if fresh || self.is_empty()? => {
                let sealed = self
                    .key
                    .seal(
                        &place(Tree::Meta, META_KEY_CHECK.as_bytes()),
                        KEY_CHECK_TEXT,
                    )
                    .map_err(|e| damaged(&self.dir, e))?;
                let mut b = Batch::new();
                b.meta(META_KEY_CHECK, &sealed);
                // Written through the journal, like every acknowledged write.
                journal
                    .append(&b.encode())
                    .map_err(|e| from_journal(&self.dir, e))?;
                journal.sync().map_err(|e| from_journal(&self.dir, e))?;
                apply(&self.dir, &self.trees, &b.writes).map(|_| ())
            }
            None => Err(damaged(&self.dir, "its key check is missing")),
        }
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        for t in [Tree::Circles, Tree::Ops, Tree::Envelopes] {
            if !self.tree(t)?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn start_writer(&mut self, journal: Journal) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            dir: self.dir.clone(),
            db: self.db.clone(),
            trees: self.trees.clone(),
            circle_keys: self.circle_keys.clone(),
            key: self.key.clone(),
            journal,
            failed: None,
            failed_flag: self.failed.clone(),
            settled: self.settled.clone(),
            group: 0,
            marked: 0,
            unflushed: 0,
            held: Held::default(),
        };
        let handle = std::thread::Builder::new()
            .name("cercle-store".into())
            .spawn(move || writer.run(rx));
        match handle {
            Ok(h) => {
                self.jobs = Some(tx);
                self.writer = Some(h);
            }
            Err(e) => tracing::error!(error = %e, "cannot start the store's writer thread"),
        }
    }

    /// Forgets the keys of circles shredded (by journal records applied again).
    fn forget(&self, shredded: &[CircleId]) -> Result<(), StoreError> {
        if shredded.is_empty() {
            return Ok(());
        }
        self.circle_keys
            .lock()
            .map_err(|_| damaged(&self.dir, "the circles' keys are poisoned"))?
            .forget(shredded, &self.key)
    }

    /// Seals the values of sealed trees in place: with their circle's own key (made, and
    /// made durable, first if the circle has none yet), or with the storage key.
    fn seal(&self, batch: &mut Batch) -> Result<(), StoreError> {
        let mut circle_keys = None;
        for w in &mut batch.writes {
            if let Write::Put { tree, key, value } = w
                && tree.sealed()
            {
                let place = place(*tree, key);
                let sealed = match tree.sealing_circle(key) {
                    Some(circle) => {
                        let keys = match &mut circle_keys {
                            Some(k) => k,
                            None => circle_keys.insert(self.circle_keys.lock().map_err(|_| {
                                damaged(&self.dir, "the circles' keys are poisoned")
                            })?),
                        };
                        keys.get_or_make(&circle, &self.key)?.seal(&place, value)
                    }
                    None => self.key.seal(&place, value),
                }
                .map_err(|e| damaged(&self.dir, e))?;
                let plain = std::mem::replace(value, sealed);
                drop(Zeroizing::new(plain));
            }
        }
        Ok(())
    }

    fn open_value(
        &self,
        tree: Tree,
        key: &[u8],
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let place = place(tree, key);
        if let Some(circle) = tree.sealing_circle(key) {
            let keys = self
                .circle_keys
                .lock()
                .map_err(|_| damaged(&self.dir, "the circles' keys are poisoned"))?;
            if let Some(opened) = keys.get(&circle).and_then(|k| k.open(&place, value).ok()) {
                return Ok(opened);
            }
            // Written before schema 3: operations were not sealed, the rest was sealed
            // with the storage key.
            if tree == Tree::Ops {
                return Ok(Zeroizing::new(value.to_vec()));
            }
        }
        self.key
            .open(&place, value)
            .map_err(|_| StoreError::BadValue {
                path: self.dir.clone(),
                what: format!("a sealed value in {}", tree.name()),
            })
    }

    fn send(&self, job: Job, rx: mpsc::Receiver<Result<(), StoreError>>) -> Ticket {
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => Ticket::pending(rx, self.dir.clone()),
            _ => Ticket::ready(Err(StoreError::Stopped {
                cause: "the store's writer is not running".into(),
            })),
        }
    }

    /// A stored value as readers take it: opened if its tree is sealed.
    fn opened(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<Opened, StoreError> {
        if tree.sealed() {
            self.open_value(tree, key, value)
        } else {
            Ok(Zeroizing::new(value.to_vec()))
        }
    }

    /// Waits for every queued write, marks the journal position and flushes the database.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        self.jobs = None;
        let Some(h) = self.writer.take() else {
            return Ok(());
        };
        // The writer's last act is sled's flush, which a disk that was full can keep
        // waiting for ever: past the patience, the store is left as after a failed write
        // (its journal holds everything acknowledged, and the next opening replays it).
        let deadline = std::time::Instant::now() + SHUTDOWN_PATIENCE;
        while !h.is_finished() {
            if std::time::Instant::now() > deadline {
                self.failed.store(true, Ordering::SeqCst);
                tracing::warn!(store = %self.dir.display(), "the database did not finish its last flush in {SHUTDOWN_PATIENCE:?}; the journal covers it");
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if h.join().is_err() {
            return Err(damaged(&self.dir, "the store's writer failed"));
        }
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the store");
        }
        if self.failed.load(Ordering::SeqCst) {
            // sled flushes what it buffered when its last handle goes; after a write the
            // disk refused (it is full), that flush can wait for ever. The journal holds
            // everything acknowledged and the next opening replays it: the handles are left
            // open instead, and the process's end releases them.
            std::mem::forget(self.db.clone());
            for tree in self.trees.values() {
                std::mem::forget(tree.clone());
            }
            tracing::warn!(store = %self.dir.display(), "the store stopped after a failed write; its journal will be replayed at the next opening");
        }
    }
}

/// Creates the store's directory, readable by its owner only.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| StoreError::io(dir, &e))
}

/// Whether another process holds the store in `dir` (a node running or starting, or a
/// command): its lock is taken. Takes nothing: a free lock is released at once.
pub fn in_use(dir: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new().write(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock))
}

fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(dir, &e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.parent().unwrap_or(dir).to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::io(dir, &e)),
    }
}

/// Moves the database aside (if any) and rebuilds it from the whole journal.
fn rebuild(
    dir: &Path,
    why: &str,
) -> Result<(sled::Db, Option<PathBuf>, usize, Vec<CircleId>), StoreError> {
    let journal_path = dir.join(JOURNAL_FILE);
    let (journal, scan) = Journal::open(&journal_path, 0).map_err(|e| match e {
        JournalError::NotAJournal { .. } => {
            damaged(dir, format!("{why}; and its journal is not readable"))
        }
        other => from_journal(dir, other),
    })?;
    let mut batches = Vec::with_capacity(scan.records.len());
    for (_, record) in &scan.records {
        batches.push(Batch::decode(record).map_err(|e| damaged(dir, format!("{why}; and {e}")))?);
    }
    let db_path = dir.join(DB_DIR);
    let tmp = dir.join("db.rebuild");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| StoreError::io(dir, &e))?;
    }
    let db = open_sled(&tmp).map_err(|e| damaged(dir, e))?;
    let trees = open_trees(dir, &db)?;
    let mut shredded = Vec::new();
    for b in &batches {
        shredded.extend(apply(dir, &trees, &b.writes)?);
    }
    trees
        .get(&Tree::Meta)
        .ok_or_else(|| damaged(dir, "missing tree"))?
        .insert(META_JOURNAL, &journal.len().to_be_bytes())
        .map_err(|e| from_sled(dir, e))?;
    db.flush().map_err(|e| from_sled(dir, e))?;
    drop(trees);
    drop(db);
    let aside = if db_path.exists() {
        let stamp = jiff::Timestamp::now().as_second();
        let aside = (0..)
            .map(|n| dir.join(format!("db.damaged-{stamp}-{n}")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| dir.join("db.damaged"));
        fs::rename(&db_path, &aside).map_err(|e| StoreError::io(dir, &e))?;
        Some(aside)
    } else {
        None
    };
    fs::rename(&tmp, &db_path).map_err(|e| StoreError::io(dir, &e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, &e))?;
    let db = open_sled_released(&db_path).map_err(|e| damaged(dir, e))?;
    tracing::warn!(store = %dir.display(), batches = batches.len(), "the database was rebuilt from the journal");
    Ok((db, aside, batches.len(), shredded))
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    db: sled::Db,
    trees: BTreeMap<Tree, sled::Tree>,
    circle_keys: Arc<Mutex<CircleKeys>>,
    key: StorageKey,
    journal: Journal,
    /// After a failed write every later one fails too: a later batch may chain on the
    /// failed one (an envelope's `prev`), and a gap must never be acknowledged.
    failed: Option<StoreError>,
    /// Tells the store a write failed.
    failed_flag: Arc<AtomicBool>,
    /// Tells readers which groups sled holds.
    settled: Arc<Settled>,
    /// The groups committed so far.
    group: u64,
    /// The journal offset the database is known to hold.
    marked: u64,
    /// Bytes of writes outside the journal (snapshots, the directory) applied since the
    /// database was last flushed: nothing else makes them durable.
    unflushed: u64,
    /// Groups acknowledged and not yet applied to sled.
    held: Held,
}

/// The writes of groups acknowledged (their journal record flushed) and not yet applied to
/// sled, in order.
#[derive(Debug, Default)]
struct Held {
    writes: Vec<Write>,
    groups: usize,
    bytes: usize,
}

impl Writer {
    fn run(mut self, jobs: Receiver<Job>) {
        let _release = Release(self.settled.clone());
        self.marked = self.journal.len();
        loop {
            let idle = if self.held.groups > 0 {
                Some(APPLY_IDLE)
            } else if self.journal.len() > self.marked || self.unflushed > 0 {
                Some(MARK_IDLE)
            } else {
                None
            };
            let first = match idle {
                Some(idle) => match jobs.recv_timeout(idle) {
                    Ok(j) => j,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.held.groups > 0 {
                            self.apply_held();
                        } else {
                            self.mark();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match jobs.recv() {
                    Ok(j) => j,
                    Err(_) => break,
                },
            };
            let mut settle = false;
            let mut group = Vec::new();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Write(batch, reply) => {
                        bytes += batch.writes.iter().map(Write::size).sum::<usize>();
                        group.push((batch, reply));
                    }
                    Job::Settle => settle = true,
                }
                if group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                    next = jobs.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit_group(group, bytes);
            }
            if settle || self.held.groups >= APPLY_GROUPS || self.held.bytes >= APPLY_BYTES {
                self.apply_held();
            }
            if self.journal.len() - self.marked >= MARK_EVERY_BYTES
                || self.unflushed >= MARK_EVERY_BYTES
            {
                self.mark();
            }
        }
        // Clean shutdown: the database holds everything; the next start replays nothing. The
        // second mark flushes the journal position the first one recorded.
        self.mark();
        self.mark();
    }

    /// The whole group becomes one journal record (one write, one flush): it is
    /// acknowledged together, so it may be durable together. It is acknowledged once the
    /// journal holds it, then applied to sled (readers wait for that; a crash before the
    /// end replays the whole record at the next start). `bytes`: what its writes put in
    /// the database, counted as the group was gathered.
    fn commit_group(
        &mut self,
        group: Vec<(Batch, SyncSender<Result<(), StoreError>>)>,
        bytes: usize,
    ) {
        let started = Instant::now();
        let n = group.len();
        let mut writes = Vec::new();
        let mut replies = Vec::with_capacity(n);
        for (batch, reply) in group {
            writes.extend(batch.writes);
            replies.push(reply);
        }
        let batch = Batch { writes };
        self.unflushed += batch
            .writes
            .iter()
            .filter(|w| !w.journaled())
            .map(|w| w.size() as u64)
            .sum::<u64>();
        let journaled = self.journal_group(&batch);
        if journaled.is_ok() {
            // Held before readers can learn of the group: a read waits for what it holds.
            self.held.bytes += bytes;
            self.held.writes.extend(batch.writes);
            self.held.groups += 1;
            self.group += 1;
            self.settled.acked.store(self.group, Ordering::SeqCst);
        }
        for reply in replies {
            // The caller may have stopped waiting; nothing to do then.
            let _ = reply.send(journaled.clone());
        }
        tracing::trace!(batches = n, elapsed = ?started.elapsed(), "group committed");
    }

    /// Applies the groups held back to sled, and tells the readers waiting for them.
    fn apply_held(&mut self) {
        self.settled.asked.store(false, Ordering::SeqCst);
        let mut held = std::mem::take(&mut self.held);
        if held.groups == 0 {
            return;
        }
        super::coalesce(&mut held.writes);
        let applied = apply(&self.dir, &self.trees, &held.writes).and_then(|shredded| {
            if shredded.is_empty() {
                return Ok(());
            }
            // The rows are gone from the trees; forgetting the key makes every copy left
            // (the journal's, sled's old segments) unreadable.
            self.circle_keys
                .lock()
                .map_err(|_| damaged(&self.dir, "the circles' keys are poisoned"))?
                .forget(&shredded, &self.key)
        });
        self.settled.applied(self.group);
        if let Err(e) = applied {
            // The journal holds the groups: the next start applies them again.
            self.fail(e);
        }
    }

    /// Appends the group to the journal and flushes it.
    fn journal_group(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if let Some(e) = &self.failed {
            return Err(StoreError::Stopped {
                cause: e.to_string(),
            });
        }
        // The circles' keys the group's values are sealed with are durable before any of
        // them reaches the journal or sled (whose own flushes may come at any time).
        let keys = self
            .circle_keys
            .lock()
            .map_err(|_| damaged(&self.dir, "the circles' keys are poisoned"))
            .and_then(|mut k| k.sync());
        if let Err(e) = keys {
            self.fail(e.clone());
            return Err(e);
        }
        if !batch.writes.iter().any(|w| w.journaled()) {
            return Ok(());
        }
        let result = self
            .journal
            .append(&batch.encode())
            .and_then(|_| self.journal.sync())
            .map_err(|e| from_journal(&self.dir, e));
        if let Err(e) = &result {
            let _ = self.journal.rollback();
            self.fail(e.clone());
        }
        result
    }

    /// Refuses every later write: one failed, and a later one may chain on it.
    fn fail(&mut self, e: StoreError) {
        tracing::error!(error = %e, "store write failed; refusing further writes");
        self.failed = Some(e);
        self.failed_flag.store(true, Ordering::SeqCst);
    }

    /// Flushes the database, then records that it holds the journal up to where it was.
    fn mark(&mut self) {
        // The position recorded covers only what sled holds.
        self.apply_held();
        if self.failed.is_some() {
            return;
        }
        let upto = self.journal.len();
        let result = self
            .db
            .flush()
            .and_then(|_| match self.trees.get(&Tree::Meta) {
                Some(meta) => meta.insert(META_JOURNAL, &upto.to_be_bytes()).map(|_| ()),
                None => Ok(()),
            });
        match result {
            Ok(()) => {
                self.marked = upto;
                self.unflushed = 0;
            }
            // The journal covers what sled did not keep; a flush after sled's own write
            // failed may wait for ever, so none is tried again (nor any write).
            Err(e) => self.fail(from_sled(&self.dir, e)),
        }
    }
}

impl Store for SledStore {
    fn submit(&self, mut batch: Batch) -> Ticket {
        batch.coalesce();
        if let Err(e) = self.seal(&mut batch) {
            return Ticket::ready(Err(e));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Write(batch, tx), rx)
    }

    fn location(&self) -> &Path {
        &self.dir
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Opened>, StoreError> {
        let value = self
            .tree(tree)?
            .get(key)
            .map_err(|e| from_sled(&self.dir, e))?;
        value.map(|v| self.opened(tree, key, &v)).transpose()
    }

    fn contains(&self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
        self.tree(tree)?
            .contains_key(key)
            .map_err(|e| from_sled(&self.dir, e))
    }

    fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Opened)>, StoreError> {
        self.tree(tree)?
            .scan_prefix(prefix)
            .map(|r| {
                let (k, v) = r.map_err(|e| from_sled(&self.dir, e))?;
                Ok((k.to_vec(), self.opened(tree, &k, &v)?))
            })
            .collect()
    }

    fn range(&self, tree: Tree, keys: Keys, limit: usize) -> Result<KeyValues, StoreError> {
        self.tree(tree)?
            .range(keys)
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(|e| from_sled(&self.dir, e))?;
                Ok((k.to_vec(), self.opened(tree, &k, &v)?))
            })
            .collect()
    }

    fn last(&self, tree: Tree, keys: Keys) -> Result<Option<(Vec<u8>, Opened)>, StoreError> {
        match self.tree(tree)?.range(keys).next_back() {
            None => Ok(None),
            Some(r) => {
                let (k, v) = r.map_err(|e| from_sled(&self.dir, e))?;
                Ok(Some((k.to_vec(), self.opened(tree, &k, &v)?)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circle::membership::CircleId;
    use crate::identity::DeviceId;
    use crate::store::{ForkRecord, RejectionRecord, Snapshot};
    use cercle_crdt::{DocKind, Timestamp};

    fn key() -> StorageKey {
        StorageKey::derive(&[7; 32])
    }

    fn circle() -> CircleId {
        CircleId([3; 32])
    }

    fn open(dir: &Path) -> SledStore {
        SledStore::open(dir, key()).unwrap()
    }

    fn record(text: &str) -> Batch {
        let mut b = Batch::new();
        b.circle(&circle(), text.as_bytes());
        b
    }

    fn record_text(s: &SledStore) -> Option<String> {
        s.circle(&circle())
            .ok()
            .flatten()
            .map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    #[test]
    fn committed_writes_survive_reopening_and_are_sealed_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.commit(record("Jeanne Durand")).unwrap();
        assert_eq!(record_text(&s).as_deref(), Some("Jeanne Durand"));
        s.close().unwrap();
        let s = open(dir.path());
        assert_eq!(record_text(&s).as_deref(), Some("Jeanne Durand"));
        assert_eq!(
            s.report().replayed,
            0,
            "a clean close leaves nothing to replay"
        );
        drop(s);
        for f in walk(dir.path()) {
            let bytes = fs::read(&f).unwrap_or_default();
            assert!(
                !bytes.windows(6).any(|w| w == b"Durand"),
                "{} holds the name in clear",
                f.display()
            );
        }
    }

    #[test]
    fn a_shredded_circles_copies_in_the_journal_open_with_no_key_left() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let other = CircleId([4; 32]);
        let mut b = record("Jeanne Durand");
        b.put(
            Tree::Ops,
            crate::store::keys::op(&circle(), &[1; 32]),
            b"an op with sealed keys".to_vec(),
        );
        b.blob(&circle(), b"%PDF compte-rendu");
        b.circle(&other, b"Paul Martin");
        s.commit(b).unwrap();
        let mut shred = Batch::new();
        shred.shred(&circle());
        s.commit(shred).unwrap();
        assert_eq!(record_text(&s), None);
        assert_eq!(
            s.circle(&other).unwrap().map(|v| v.to_vec()),
            Some(b"Paul Martin".to_vec()),
            "another circle is untouched"
        );
        assert!(s.scan(Tree::Ops, &circle().0).unwrap().is_empty());
        s.close().unwrap();

        // What is left: the journal still holds the circle's sealed values; neither the
        // device's storage key nor any circle key left opens one.
        let left = CircleKeys::load(dir.path(), &key()).unwrap();
        assert!(left.get(&circle()).is_none() && left.get(&other).is_some());
        let (_, scan) = Journal::open(&dir.path().join(JOURNAL_FILE), 0).unwrap();
        let mut copies = 0;
        for (_, record) in scan.records {
            for w in Batch::decode(&record).unwrap().writes {
                if let Write::Put {
                    tree,
                    key: k,
                    value,
                } = w
                    && tree.sealed()
                    && k.starts_with(&circle().0)
                {
                    copies += 1;
                    let place = place(tree, &k);
                    assert!(key().open(&place, &value).is_err());
                    assert!(
                        left.get(&other)
                            .is_some_and(|o| o.open(&place, &value).is_err())
                    );
                }
            }
        }
        assert_eq!(copies, 3, "the record, the operation and the document");
        // Reopening (and a rebuild from the journal) gives the circle back to nobody.
        let report = SledStore::repair(dir.path(), key()).unwrap();
        assert!(report.rebuilt);
        let s = open(dir.path());
        assert_eq!(record_text(&s), None);
        assert!(s.circle(&other).unwrap().is_some());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn a_second_opener_is_told_a_node_is_running() {
        let dir = tempfile::tempdir().unwrap();
        let _s = open(dir.path());
        assert!(matches!(
            SledStore::open(dir.path(), key()),
            Err(StoreError::Locked { .. })
        ));
    }

    #[test]
    fn another_identitys_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path()).close().unwrap();
        assert!(matches!(
            SledStore::open(dir.path(), StorageKey::derive(&[8; 32])),
            Err(StoreError::Foreign { .. })
        ));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.tree(Tree::Meta)
            .and_then(|m| {
                m.insert(META_SCHEMA, &(SCHEMA_VERSION + 1).to_be_bytes())
                    .map_err(|e| from_sled(dir.path(), e))
            })
            .unwrap();
        s.close().unwrap();
        assert!(matches!(
            SledStore::open(dir.path(), key()),
            Err(StoreError::NewerSchema { found, .. }) if found == SCHEMA_VERSION + 1
        ));
    }

    #[test]
    fn writes_the_database_missed_are_replayed_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path()).close().unwrap();
        // A batch that reached the journal, then the process died before sled held it.
        let (mut j, _) = Journal::open(&dir.path().join(JOURNAL_FILE), 0).unwrap();
        let mut b = record("Paul Martin");
        let helper = open_unlocked_sealer();
        helper(&mut b);
        j.append(&b.encode()).unwrap();
        j.sync().unwrap();
        let s = open(dir.path());
        assert_eq!(s.report().replayed, 1);
        assert_eq!(record_text(&s).as_deref(), Some("Paul Martin"));
    }

    /// Seals a batch as the store would.
    fn open_unlocked_sealer() -> impl Fn(&mut Batch) {
        |b: &mut Batch| {
            for w in &mut b.writes {
                if let Write::Put {
                    tree,
                    key: k,
                    value,
                } = w
                    && tree.sealed()
                {
                    *value = key().seal(&place(*tree, k), value).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_database_overwritten_with_random_bytes_is_rebuilt_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.commit(record("Jeanne Durand")).unwrap();
        s.close().unwrap();
        for f in walk(&dir.path().join(DB_DIR)) {
            let len = fs::metadata(&f).map(|m| m.len()).unwrap_or(0).max(64) as usize;
            let mut junk = vec![0u8; len];
            getrandom::fill(&mut junk).unwrap();
            fs::write(&f, &junk).unwrap();
        }
        let s = open(dir.path());
        assert_eq!(record_text(&s).as_deref(), Some("Jeanne Durand"));
        assert!(s.report().rebuilt || s.report().replayed > 0);
        drop(s);
        // And with the journal gone too: a clear error, no panic.
        let mut junk = vec![0u8; 4096];
        getrandom::fill(&mut junk).unwrap();
        fs::write(dir.path().join(JOURNAL_FILE), &junk).unwrap();
        for f in walk(&dir.path().join(DB_DIR)) {
            fs::write(&f, &junk).unwrap();
        }
        let err = SledStore::open(dir.path(), key()).map(|_| ());
        assert!(matches!(err, Err(StoreError::Damaged { .. })), "{err:?}");
    }

    #[test]
    fn a_write_acknowledged_is_read_back_at_once() {
        // Acknowledged once the journal holds it, applied to sled only when the writer is
        // idle: a read right after the acknowledgement asks the writer for it and waits,
        // and never misses the write (nor waits for the writer's idle time: 300 reads).
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for i in 0..300u32 {
            let key = i.to_be_bytes().to_vec();
            let mut b = Batch::new();
            b.put(Tree::Envelopes, key.clone(), vec![7; 600]);
            s.commit(b).unwrap();
            assert!(
                s.get(Tree::Envelopes, &key).unwrap().is_some(),
                "write {i} acknowledged but not read back"
            );
        }
    }

    #[test]
    fn many_concurrent_writers_share_flushes_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(open(dir.path()));
        let tickets: Vec<Ticket> = (0..200u32)
            .map(|i| {
                let mut b = Batch::new();
                b.meta(&format!("n{i}"), &i.to_be_bytes());
                s.submit(b)
            })
            .collect();
        for t in tickets {
            t.wait().unwrap();
        }
        for i in 0..200u32 {
            assert_eq!(
                s.meta(&format!("n{i}")).ok().flatten(),
                Some(i.to_be_bytes().to_vec())
            );
        }
    }

    #[test]
    fn snapshots_read_back_opened() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let snap = Snapshot {
            covers: [(DeviceId([1; 32]), 4)].into_iter().collect(),
            doc: b"automerge bytes".to_vec(),
        };
        let mut batch = Batch::new();
        batch.snapshot(&circle(), DocKind::LiaisonNotebook, &snap);
        s.commit(batch).unwrap();
        assert_eq!(
            s.snapshot(&circle(), DocKind::LiaisonNotebook)
                .ok()
                .flatten(),
            Some(snap)
        );
        assert_eq!(s.snapshot(&circle(), DocKind::Thread).ok().flatten(), None);
    }

    #[test]
    fn rejections_and_forks_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let rec = RejectionRecord {
            at: 5,
            from: "peer".into(),
            device: None,
            reason: serde_json::json!({"reason": "bad_signature"}),
            message: "the device signature does not verify".into(),
            hash: "ab".repeat(32),
        };
        let fork = ForkRecord {
            device: DeviceId([2; 32]),
            doc: DocKind::Thread,
            seq: 9,
            first: vec![1, 2],
            second: vec![3],
        };
        let mut b = Batch::new();
        b.rejection(&circle(), &rec);
        b.fork(&circle(), &fork);
        s.commit(b).unwrap();
        assert_eq!(s.rejections(&circle()).ok(), Some(vec![rec]));
        assert_eq!(s.forks(&circle()).ok(), Some(vec![fork]));
    }

    #[test]
    fn receipts_read_back_with_their_device_and_without_it_from_earlier_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let device = DeviceId([4; 32]);
        let mut b = Batch::new();
        b.received(&circle(), "note1", Timestamp(7), Some(&device));
        b.received(&circle(), "note2", Timestamp(8), None);
        s.commit(b).unwrap();
        let receipts = s.receipts(&circle()).unwrap();
        assert_eq!(receipts["note1"].device, Some(device));
        assert_eq!(receipts["note1"].at, Timestamp(7));
        assert_eq!(receipts["note2"].device, None);
        // What notes show beside each note: the time only.
        assert_eq!(s.received(&circle()).unwrap()["note2"], Timestamp(8));
    }

    #[test]
    fn professionals_are_found_by_number_and_by_the_start_of_their_name() {
        use crate::directory::{Professional, Register};
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let p = |number: &str, last: &str| Professional {
            register: Register::Rpps,
            number: number.into(),
            last_name: last.into(),
            first_name: "CLAIRE".into(),
            profession_code: "10".into(),
            profession: "Médecin".into(),
        };
        let mut b = Batch::new();
        for (n, last) in [
            ("10003456786", "MARTIN"),
            ("10009876540", "MARTINEZ"),
            ("10001112225", "DUPONT"),
        ] {
            b.professional(&p(n, last));
        }
        s.commit(b).unwrap();
        assert_eq!(
            s.professional(Register::Rpps, "10009876540").unwrap(),
            Some(p("10009876540", "MARTINEZ"))
        );
        assert_eq!(
            s.professional(Register::Adeli, "10009876540").unwrap(),
            None
        );
        let names = |q: &str| -> Vec<String> {
            s.professionals_named(q, 10)
                .unwrap()
                .into_iter()
                .map(|p| p.last_name)
                .collect()
        };
        assert_eq!(names("Martin"), vec!["MARTIN", "MARTINEZ"]);
        assert_eq!(names("martine"), vec!["MARTINEZ"]);
        assert!(names("durand").is_empty());
        assert_eq!(s.professionals_named("m", 1).unwrap().len(), 1, "bounded");
    }
}
