//! A region's relay taking pushes from many circles at once: the mailbox's storage path
//! (the checks a relay can make without keys, the sled writes, and the flush that makes a
//! push durable before it is acknowledged), on a real sled database on disk.
//!
//! C circles (a GP and a nurse each) are adopted first; then P pushes of one new note each,
//! round-robin over the circles (members typing in many circles at the same moment), are
//! taken two ways in the same run:
//! - **one flush per push** (the relay before group commit);
//! - **group commit**: the pushes waiting together (up to `GROUP`, the relay's
//!   `GROUP_COMMIT`) share one flush.
//!
//! Against bare Automerge: applying the same notes' changes to a document per circle
//! (`load_incremental`) with nothing written, the least any Automerge relay that reads
//! the data does. `CERCLE_BENCH_CIRCLES` (default 256) and `CERCLE_BENCH_PUSHES` (default
//! 2 048) set the size. Prints a table and writes `target/bench-results/mailbox.json`.
//! Under `cargo test` it runs a small smoke pass.

#![allow(clippy::print_stderr)] // the table is this benchmark's output

use std::path::Path;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc as _};

use cercle_crdt::{EntryKind, IdentityUpdate, NewEntry, Role, Timestamp};
use cercle_node::circle::Circle;
use cercle_node::crypto::SecureRng;
use cercle_node::identity::{LocalIdentity, Profile};
use cercle_node::mailbox::{Mailbox, MailboxLimits};
use cercle_node::relay::GROUP_COMMIT;
use cercle_node::sync::Received;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn person(name: &str) -> LocalIdentity {
    let p = Profile::new(name, "infirmière", None, None).unwrap_or_else(|e| panic!("{e}"));
    LocalIdentity::generate(p, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"))
}

/// What the relay is given: each circle's operations, then the pushes in arrival order;
/// and the notes' Automerge changes per circle, for the bare side.
struct Region {
    adopt: Vec<Received>,
    pushes: Vec<Received>,
    changes: Vec<Vec<Vec<u8>>>,
}

fn region(circles: usize, pushes: usize) -> (LocalIdentity, Region) {
    let gp = person("Dr Martin");
    let nurse = person("Julien");
    let mut rng: SecureRng = rand::SeedableRng::seed_from_u64(7);
    let mut held: Vec<Circle> = (0..circles)
        .map(|i| {
            let t = Timestamp(i as i64 + 1);
            let (mut c, _) = Circle::create(&gp, &IdentityUpdate::default(), t, &mut rng)
                .unwrap_or_else(|e| panic!("{e}"));
            let card = nurse.public().card(&[]);
            let _ = c
                .add_member(&gp, &card, Role::Professional, t, &mut rng)
                .unwrap_or_else(|e| panic!("{e}"));
            c
        })
        .collect();
    let ops = |c: &Circle| c.membership().ops().map(|o| o.bytes().to_vec()).collect();
    let adopt = held
        .iter()
        .map(|c| Received {
            circle: c.id(),
            ops: ops(c),
            envelopes: Vec::new(),
        })
        .collect();
    let mut bare_docs: Vec<AutoCommit> = (0..circles).map(|_| bare_notebook()).collect();
    // Each bare notebook's first change (its empty list of entries), then one per note.
    let mut changes: Vec<Vec<Vec<u8>>> = bare_docs
        .iter_mut()
        .map(|d| vec![d.save_incremental()])
        .collect();
    let member = gp.member();
    let pushes = (0..pushes)
        .map(|n| {
            let i = n % circles;
            let c = &mut held[i];
            let entry = NewEntry {
                kind: EntryKind::Observation,
                text: format!("Passage n°{n} : pansement refait, plaie propre, TA 13/8."),
                vitals: None,
            };
            let at = Timestamp(1_000 + n as i64);
            let w = c.write::<cercle_crdt::LiaisonNotebook, _>(&gp, at, &mut rng, |nb| {
                nb.add_entry(member, entry, at)
            });
            if let Err(e) = w.value {
                panic!("{e}");
            }
            changes[i].push(bare_note(&mut bare_docs[i], n));
            Received {
                circle: c.id(),
                ops: Vec::new(),
                envelopes: w.staged.batch.envelope_bytes(),
            }
        })
        .collect();
    (
        gp,
        Region {
            adopt,
            pushes,
            changes,
        },
    )
}

/// A bare notebook: an empty list of entries.
fn bare_notebook() -> AutoCommit {
    let mut doc = AutoCommit::new();
    if let Err(e) = doc.put_object(ROOT, "entries", ObjType::List) {
        panic!("{e}");
    }
    doc.commit();
    doc
}

/// One note in a bare notebook (a map with the note's text, kind and time), as the bytes
/// of its change.
fn bare_note(doc: &mut AutoCommit, n: usize) -> Vec<u8> {
    let Ok(Some((_, entries))) = doc.get(ROOT, "entries") else {
        panic!("a notebook without entries");
    };
    let made = doc.insert_object(&entries, 0, ObjType::Map).and_then(|e| {
        doc.put(
            &e,
            "text",
            format!("Passage n°{n} : pansement refait, plaie propre, TA 13/8."),
        )?;
        doc.put(&e, "kind", "observation")?;
        doc.put(&e, "at", 1_767_225_600_000i64 + n as i64)
    });
    if let Err(e) = made {
        panic!("{e}");
    }
    doc.commit();
    doc.save_incremental()
}

/// Takes every push, committing after every `group` of them; the time of the pushes.
fn take(dir: &Path, gp: &LocalIdentity, r: &Region, group: usize) -> Duration {
    let mut mailbox = Mailbox::open(
        dir,
        MailboxLimits::default(),
        cercle_node::crypto::StorageKey::derive(&[5; 32]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let device = gp.device();
    for a in &r.adopt {
        let d = mailbox.receive(&device, a.clone(), 0);
        assert!(d.refused.is_empty(), "{:?}", d.refused);
    }
    mailbox.commit().unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    for (n, p) in r.pushes.iter().enumerate() {
        let d = mailbox.receive(&device, p.clone(), 1);
        assert!(d.refused.is_empty() && d.envelopes == 1, "{:?}", d.refused);
        if (n + 1) % group == 0 {
            mailbox.commit().unwrap_or_else(|e| panic!("{e}"));
        }
    }
    mailbox.commit().unwrap_or_else(|e| panic!("{e}"));
    let took = start.elapsed();
    assert_eq!(mailbox.totals().envelopes, r.pushes.len() as u64);
    took
}

/// Bare Automerge: every note's change loaded into its circle's document (which starts
/// from the first change, the empty notebook, not timed).
fn bare(r: &Region) -> Duration {
    let mut docs: Vec<AutoCommit> = r
        .changes
        .iter()
        .map(|c| {
            let mut doc = AutoCommit::new();
            doc.load_incremental(&c[0])
                .unwrap_or_else(|e| panic!("{e}"));
            doc
        })
        .collect();
    let start = Instant::now();
    for (doc, changes) in docs.iter_mut().zip(&r.changes) {
        let changes = &changes[1..];
        for c in changes {
            doc.load_incremental(c).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let took = start.elapsed();
    let applied: usize = docs
        .iter()
        .map(|d| match d.get(ROOT, "entries") {
            Ok(Some((_, entries))) => d.length(&entries),
            _ => 0,
        })
        .sum();
    assert_eq!(applied, r.pushes.len(), "bare Automerge left notes out");
    took
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (circles, pushes) = if bench {
        (
            size("CERCLE_BENCH_CIRCLES", 256),
            size("CERCLE_BENCH_PUSHES", 2_048),
        )
    } else {
        (8, 32)
    };
    let (gp, r) = region(circles, pushes);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-mailbox");
    let _ = std::fs::remove_dir_all(&root);
    let each = take(&root.join("each"), &gp, &r, 1);
    let grouped = take(&root.join("grouped"), &gp, &r, GROUP_COMMIT);
    let _ = std::fs::remove_dir_all(&root);
    let automerge = bare(&r);
    let us = |d: Duration| d.as_secs_f64() * 1e6 / pushes as f64;
    eprintln!("{pushes} pushes of one note over {circles} circles, into the relay's mailbox");
    eprintln!(
        "  one flush per push        {:>9.1} µs/push  ({:.0} pushes/s)",
        us(each),
        pushes as f64 / each.as_secs_f64()
    );
    eprintln!(
        "  group commit ({GROUP_COMMIT})      {:>9.1} µs/push  ({:.0} pushes/s)",
        us(grouped),
        pushes as f64 / grouped.as_secs_f64()
    );
    eprintln!("  bare Automerge (apply)    {:>9.1} µs/push", us(automerge));
    eprintln!(
        "  per-push speed-up {:.1}×; group commit / bare Automerge {:.1}×",
        us(each) / us(grouped).max(1e-3),
        us(grouped) / us(automerge).max(1e-3)
    );
    if !bench {
        return;
    }
    let report = serde_json::json!({
        "circles": circles,
        "pushes": pushes,
        "group": GROUP_COMMIT,
        "flush_per_push_us": us(each),
        "group_commit_us": us(grouped),
        "bare_automerge_apply_us": us(automerge),
        "speed_up": us(each) / us(grouped).max(1e-3),
        "ratio_to_bare": us(grouped) / us(automerge).max(1e-3),
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("mailbox.json"), format!("{report:#}\n"));
}
