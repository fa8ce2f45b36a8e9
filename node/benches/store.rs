//! What durability costs, measured on this machine's disk in one run:
//!
//! 1. **Group commit vs a flush per note.** 10 000 notes, each acknowledged only once durable
//!    (its ticket waited on). With group commit, notes are written as fast as they come and
//!    a second thread waits for each acknowledgement, so notes written during a flush share
//!    the next one. With a flush per note, each note waits for its own flush before the next
//!    is written. Both go through the same write path (`Circle::write`, then the store's
//!    `submit` of the staged batch, as the node's shell does) and `SledStore`.
//!    Then the store alone: the same envelopes, already sealed, committed to a fresh store one
//!    flush each and then sharing flushes, to show what group commit does where Automerge's
//!    own cost per change does not bound it.
//! 2. **Cold start vs bare Automerge.** Opening the store and the circle that holds those
//!    notes (sled, journal tail, circle record, membership log, epoch keys, the three
//!    documents' sealed snapshots and the envelopes after them) until the notes can be read,
//!    against `AutoCommit::load` of the same notebook's saved bytes. The identity is already
//!    unlocked in both: the passphrase's key derivation is a fixed cost paid once per start
//!    whatever the data. Also measured: the worst case between snapshots (999 envelopes
//!    after the last one).
//!
//! Prints a table and writes `target/bench-results/store.json`. Under `cargo test` it runs a
//! small smoke pass.

#![allow(clippy::print_stderr)] // the table is this benchmark's output

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use cercle_crdt::{DocKind, EntryKind, IdentityUpdate, LiaisonNotebook, NewEntry, Timestamp};
use cercle_node::circle::membership::CircleId;
use cercle_node::circle::{Circle, SNAPSHOT_EVERY};
use cercle_node::crypto::SecureRng;
use cercle_node::envelope::{Envelope, LogId};
use cercle_node::store::{Batch, SledStore, Store, Ticket};
use cercle_node::{LocalIdentity, Profile};

fn rng() -> SecureRng {
    rand::SeedableRng::seed_from_u64(1)
}

/// One note through the write path, handed to the store (with any snapshot due, as the
/// node does); the ticket completes once it is durable.
fn add_note(
    store: &dyn Store,
    c: &mut Circle,
    me: &LocalIdentity,
    i: usize,
    rng: &mut SecureRng,
) -> Ticket {
    let at = Timestamp(2 + i as i64);
    let w =
        c.write::<LiaisonNotebook, _>(me, at, rng, |nb| nb.add_entry(me.member(), entry(i), at));
    w.value.unwrap_or_else(|e| panic!("{e}"));
    let ticket = store.submit(w.staged.batch);
    let snapshots = c.snapshots(SNAPSHOT_EVERY);
    if !snapshots.is_empty() {
        drop(store.submit(snapshots));
    }
    ticket
}

fn identity() -> LocalIdentity {
    let p = Profile::new("Bench", "infirmière", None, None).unwrap_or_else(|e| panic!("{e}"));
    LocalIdentity::generate(p, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"))
}

fn entry(i: usize) -> NewEntry {
    NewEntry {
        kind: EntryKind::Care,
        text: format!(
            "Passage {i}: pansement refait, plaie propre, douleur 2/10, tension 13/8, à revoir demain."
        ),
        vitals: None,
    }
}

fn open_store(dir: &Path, me: &LocalIdentity) -> Arc<dyn Store> {
    Arc::new(SledStore::open(dir, me.storage_key()).unwrap_or_else(|e| panic!("{e}")))
}

/// A new store with one circle; returns the store and the circle's id.
fn new_circle(dir: &Path, me: &LocalIdentity) -> (Arc<dyn Store>, Circle) {
    let store = open_store(dir, me);
    let patient = IdentityUpdate {
        family_name: Some("Durand".into()),
        ..Default::default()
    };
    let (c, staged) =
        Circle::create(me, &patient, Timestamp(1), &mut rng()).unwrap_or_else(|e| panic!("{e}"));
    store.commit(staged.batch).unwrap_or_else(|e| panic!("{e}"));
    (store, c)
}

/// Writes `n` notes, each acknowledged once durable, sharing flushes. Returns the time.
fn group_commit(
    store: &dyn Store,
    c: &mut Circle,
    me: &LocalIdentity,
    n: usize,
    from: usize,
) -> Duration {
    let started = Instant::now();
    let mut rng = rng();
    let (acks, pending) = mpsc::sync_channel::<Ticket>(256);
    let waiter = std::thread::spawn(move || {
        for t in pending {
            t.wait().unwrap_or_else(|e| panic!("{e}"));
        }
    });
    for i in from..from + n {
        if acks.send(add_note(store, c, me, i, &mut rng)).is_err() {
            break;
        }
    }
    drop(acks);
    let _ = waiter.join();
    started.elapsed()
}

/// Writes `n` notes, each waiting for its own flush before the next.
fn flush_per_note(store: &dyn Store, c: &mut Circle, me: &LocalIdentity, n: usize) -> Duration {
    let started = Instant::now();
    let mut rng = rng();
    for i in 0..n {
        add_note(store, c, me, i, &mut rng)
            .wait()
            .unwrap_or_else(|e| panic!("{e}"));
    }
    started.elapsed()
}

/// The store alone: the same envelopes committed to a fresh store one flush each, then
/// sharing flushes. Returns (flush per envelope, group commit).
fn store_only(envelopes: &[Envelope], me: &LocalIdentity) -> (Duration, Duration) {
    let one = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open_store(one.path(), me);
    let started = Instant::now();
    for env in envelopes {
        let mut b = Batch::new();
        b.envelope(env);
        store.commit(b).unwrap_or_else(|e| panic!("{e}"));
    }
    let each = started.elapsed();
    drop(store);
    let grouped = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open_store(grouped.path(), me);
    let started = Instant::now();
    let (acks, pending) = mpsc::sync_channel::<Ticket>(256);
    let waiter = std::thread::spawn(move || {
        for t in pending {
            t.wait().unwrap_or_else(|e| panic!("{e}"));
        }
    });
    for env in envelopes {
        let mut b = Batch::new();
        b.envelope(env);
        if acks.send(store.submit(b)).is_err() {
            break;
        }
    }
    drop(acks);
    let _ = waiter.join();
    (each, started.elapsed())
}

/// The envelopes of a circle's notebook, as stored.
fn stored_envelopes(dir: &Path, me: &LocalIdentity, id: &str) -> Vec<Envelope> {
    let store = open_store(dir, me);
    let circle: CircleId = id.parse().unwrap_or_else(|e| panic!("{e}"));
    let log = LogId {
        circle,
        doc: DocKind::LiaisonNotebook,
        device: me.device(),
    };
    store
        .envelopes(&log, 1, usize::MAX)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|b| Envelope::decode(b).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Opens the store and the circle until its notes are readable; returns the time and count.
fn cold_start(dir: &Path, me: &LocalIdentity, id: &str) -> (Duration, usize) {
    let started = Instant::now();
    let store = open_store(dir, me);
    let circle: CircleId = id.parse().unwrap_or_else(|e| panic!("{e}"));
    let (mut c, mut snapshots) =
        Circle::open(store.as_ref(), me, &circle).unwrap_or_else(|e| panic!("{e}"));
    snapshots.extend(c.wake(store.as_ref(), me).unwrap_or_else(|e| panic!("{e}")));
    let n = c.notebook().unwrap_or_else(|e| panic!("{e}")).len();
    let elapsed = started.elapsed();
    // Written in the background, as a node does after opening.
    store.commit(snapshots).unwrap_or_else(|e| panic!("{e}"));
    drop(c);
    (elapsed, n)
}

fn bare_load(bytes: &[u8]) -> (Duration, usize) {
    let started = Instant::now();
    let doc = automerge::AutoCommit::load(bytes).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    (elapsed, automerge::ReadDoc::length(&doc, automerge::ROOT))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Cold {
    ours: Duration,
    bare: Duration,
    notes: usize,
}

/// Median of `rounds` interleaved cold starts and bare loads.
fn compare_cold(dir: &Path, me: &LocalIdentity, id: &str, rounds: usize) -> Cold {
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    let mut notes = 0;
    let saved = {
        let store = open_store(dir, me);
        let circle: CircleId = id.parse().unwrap_or_else(|e| panic!("{e}"));
        let (mut c, mut snapshots) =
            Circle::open(store.as_ref(), me, &circle).unwrap_or_else(|e| panic!("{e}"));
        snapshots.extend(c.wake(store.as_ref(), me).unwrap_or_else(|e| panic!("{e}")));
        store.commit(snapshots).unwrap_or_else(|e| panic!("{e}"));
        c.save(DocKind::LiaisonNotebook)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    for _ in 0..rounds {
        let (t, n) = cold_start(dir, me, id);
        ours.push(t);
        notes = n;
        bare.push(bare_load(&saved).0);
    }
    Cold {
        ours: median(ours),
        bare: median(bare),
        notes,
    }
}

fn run(n: usize, rounds: usize) -> serde_json::Value {
    let me = identity();
    let per_s = |d: Duration| n as f64 / d.as_secs_f64();

    let flush_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (s, mut c) = new_circle(flush_dir.path(), &me);
    let flush = flush_per_note(s.as_ref(), &mut c, &me, n);
    drop(c);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (store, mut c) = new_circle(dir.path(), &me);
    let group = group_commit(store.as_ref(), &mut c, &me, n, 0);
    let id = c.info().id.clone();
    drop(c);
    drop(store);
    let cold = compare_cold(dir.path(), &me, &id, rounds);
    assert_eq!(cold.notes, n, "every note is back after a cold start");
    let envelopes = stored_envelopes(dir.path(), &me, &id);
    assert_eq!(envelopes.len(), n);
    let (store_each, store_group) = store_only(&envelopes, &me);

    // The worst case between snapshots: 999 envelopes after the last one.
    let (extra, cold_tail) = {
        let store = open_store(dir.path(), &me);
        let circle: CircleId = id.parse().unwrap_or_else(|e| panic!("{e}"));
        let (mut c, mut snapshots) =
            Circle::open(store.as_ref(), &me, &circle).unwrap_or_else(|e| panic!("{e}"));
        snapshots.extend(
            c.wake(store.as_ref(), &me)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        store.commit(snapshots).unwrap_or_else(|e| panic!("{e}"));
        let extra = (SNAPSHOT_EVERY - 1).min(n);
        let _ = group_commit(store.as_ref(), &mut c, &me, extra, n);
        drop(c);
        drop(store);
        (extra, compare_cold(dir.path(), &me, &id, rounds))
    };

    // Closing it among a GP's 1 000 circles: every row deleted, its key forgotten (the
    // file of circle keys rewritten without it).
    let (shred, others) = {
        let store = open_store(dir.path(), &me);
        let others = 999u32;
        let mut b = Batch::new();
        for i in 0..others {
            let mut other = [7u8; 32];
            other[..4].copy_from_slice(&i.to_be_bytes());
            b.circle(&CircleId(other), b"a record");
        }
        store.commit(b).unwrap_or_else(|e| panic!("{e}"));
        let circle: CircleId = id.parse().unwrap_or_else(|e| panic!("{e}"));
        let mut b = Batch::new();
        b.shred(&circle);
        let started = Instant::now();
        store.commit(b).unwrap_or_else(|e| panic!("{e}"));
        // Acknowledged once journaled; a read waits until the rows are gone too.
        assert!(
            store
                .circle(&circle)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        (started.elapsed(), others)
    };

    let speedup = flush.as_secs_f64() / group.as_secs_f64();
    let store_speedup = store_each.as_secs_f64() / store_group.as_secs_f64();
    let ratio = cold.ours.as_secs_f64() / cold.bare.as_secs_f64();
    let ratio_tail = cold_tail.ours.as_secs_f64() / cold_tail.bare.as_secs_f64();
    eprintln!("{n} notes, each acknowledged once durable");
    eprintln!(
        "flush per note          {:>9.1} ms  {:>8.0} notes/s",
        flush.as_secs_f64() * 1e3,
        per_s(flush)
    );
    eprintln!(
        "group commit            {:>9.1} ms  {:>8.0} notes/s   {speedup:.1}x",
        group.as_secs_f64() * 1e3,
        per_s(group)
    );
    eprintln!("the store alone, the same {n} envelopes already sealed");
    eprintln!(
        "  flush per envelope    {:>9.1} ms  {:>8.0} notes/s",
        store_each.as_secs_f64() * 1e3,
        per_s(store_each)
    );
    eprintln!(
        "  group commit          {:>9.1} ms  {:>8.0} notes/s   {store_speedup:.1}x",
        store_group.as_secs_f64() * 1e3,
        per_s(store_group)
    );
    eprintln!("cold start, median of {rounds}");
    eprintln!(
        "  bare Automerge load   {:>9.1} ms   ({} notes)",
        cold.bare.as_secs_f64() * 1e3,
        cold.notes
    );
    eprintln!(
        "  store + circle        {:>9.1} ms   {ratio:.2}x",
        cold.ours.as_secs_f64() * 1e3
    );
    eprintln!(
        "  ... {extra} envelopes after the snapshot: {:.1} ms vs {:.1} ms bare ({} notes)   {ratio_tail:.2}x",
        cold_tail.ours.as_secs_f64() * 1e3,
        cold_tail.bare.as_secs_f64() * 1e3,
        cold_tail.notes
    );
    eprintln!(
        "closing it among {} circles (acknowledged, every row deleted, its key forgotten): {:.1} ms",
        others + 1,
        shred.as_secs_f64() * 1e3
    );
    serde_json::json!({
        "shred_ms": shred.as_secs_f64() * 1e3,
        "notes": n,
        "flush_per_note_ms": flush.as_secs_f64() * 1e3,
        "flush_per_note_notes_per_s": per_s(flush),
        "group_commit_ms": group.as_secs_f64() * 1e3,
        "group_commit_notes_per_s": per_s(group),
        "group_commit_speedup": speedup,
        "store_only_flush_per_envelope_notes_per_s": per_s(store_each),
        "store_only_group_commit_notes_per_s": per_s(store_group),
        "store_only_group_commit_speedup": store_speedup,
        "cold_start_ms": cold.ours.as_secs_f64() * 1e3,
        "bare_automerge_load_ms": cold.bare.as_secs_f64() * 1e3,
        "cold_start_ratio": ratio,
        "envelopes_after_snapshot": extra,
        "cold_start_after_envelopes_ms": cold_tail.ours.as_secs_f64() * 1e3,
        "bare_automerge_load_after_envelopes_ms": cold_tail.bare.as_secs_f64() * 1e3,
        "cold_start_after_envelopes_ratio": ratio_tail,
    })
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        run(50, 1);
        return;
    }
    let report = run(10_000, 5);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("store.json"), format!("{report:#}\n"));
}
