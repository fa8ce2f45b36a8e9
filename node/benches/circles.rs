//! A GP's circles between two devices of one member, through the cluster harness (real
//! `NodeCore`s with their checks, sealing and Automerge documents; memory stores; a
//! simulated network whose clock is virtual, so the wall time measured is the nodes' own
//! work):
//!
//! 1. **A second device meets the first**, which holds N circles of K notes each: the wall
//!    time (and virtual time) until it holds every circle, and until it has every note.
//!    Against bare Automerge on notebooks of the same shape: one `save` per notebook on one
//!    side and one `load` on the other, the least any Automerge-based sync of whole
//!    documents does, in the same run.
//! 2. **Idle resync**: the two reconnect holding the same; messages and bytes each way.
//!
//! `CERCLE_BENCH_CIRCLES` (default 1 000) and `CERCLE_BENCH_NOTES` (default 10) set the
//! size. Prints a table and writes `target/bench-results/circles.json`. Under `cargo test`
//! it runs a small smoke pass.

#![allow(clippy::print_stderr)] // the table is this benchmark's output

use std::path::Path;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ObjType, ROOT};
use cercle_crdt::{DocKind, EntryKind};
use cercle_node::node::cluster::{Cluster, WireConfig};
use cercle_node::ops::circles::{CircleCreate, CircleList};
use cercle_node::ops::notes::{NoteAdd, NoteList};

const WAIT: i64 = 60_000;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn text(i: usize, j: usize) -> String {
    format!("Passage n°{j} chez le patient {i} : pansement refait, plaie propre, TA 13/8.")
}

/// The bare side: N notebooks of K entries (a map per entry with the note's text, kind
/// and time, one commit each), saved on one side and loaded on the other.
fn bare(circles: usize, notes: usize) -> (Duration, usize) {
    let docs: Vec<AutoCommit> = (0..circles)
        .map(|i| {
            let mut doc = AutoCommit::new();
            let Ok(entries) = doc.put_object(ROOT, "entries", ObjType::List) else {
                panic!("a list in a new document");
            };
            for j in 0..notes {
                let made = doc.insert_object(&entries, j, ObjType::Map).and_then(|e| {
                    doc.put(&e, "text", text(i, j))?;
                    doc.put(&e, "kind", "observation")?;
                    doc.put(&e, "at", 1_767_225_600_000i64 + j as i64)
                });
                if let Err(e) = made {
                    panic!("{e}");
                }
                doc.commit();
            }
            doc
        })
        .collect();
    let start = Instant::now();
    let mut bytes = 0;
    for mut doc in docs {
        let saved = doc.save();
        bytes += saved.len();
        if let Err(e) = AutoCommit::load(&saved) {
            panic!("{e}");
        }
    }
    (start.elapsed(), bytes)
}

struct Figures {
    all_circles: Duration,
    all_circles_virtual_ms: i64,
    all_notes: Duration,
    all_notes_virtual_ms: i64,
    settled: Duration,
    settled_virtual_ms: i64,
    data_bytes: u64,
    idle_messages: u64,
    idle_bytes: u64,
}

/// The notebook envelopes node 1 holds, in all its circles (each note is one).
fn notes_held(c: &Cluster) -> usize {
    c.members[1]
        .core
        .circles()
        .held()
        .flat_map(|circle| circle.vector(DocKind::LiaisonNotebook).into_values())
        .map(|seq| usize::try_from(seq).unwrap_or(usize::MAX))
        .sum()
}

fn measure(circles: usize, notes: usize) -> Figures {
    let mut c = Cluster::new(1, &["Dr Martin", "second computer"], WireConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..circles {
        let create = CircleCreate::for_patient(format!("Patient {i}"));
        let id = match c.ask(0, create, WAIT) {
            Ok(shown) => shown.circles[0].id.clone(),
            Err(e) => panic!("{e}"),
        };
        for j in 0..notes {
            let note = NoteAdd {
                circle: id.clone(),
                texts: vec![text(i, j)],
                kind: EntryKind::Observation,
                at: None,
                vitals: None,
                to: None,
            };
            if let Err(e) = c.ask(0, note, WAIT) {
                panic!("{e}");
            }
        }
    }
    if let Err(e) = c.pair(0, 1) {
        panic!("{e}");
    }
    let before = c.stats;
    let (start, virtual_start) = (Instant::now(), c.now_ms());
    c.connect(0, 1);
    let since = |c: &Cluster| (start.elapsed(), c.now_ms() - virtual_start);
    let (mut all_circles, mut all_notes) = (None, None);
    let mut last = c.stats.messages;
    // Polled every 10 ms of virtual time: what the second device holds (stored, its
    // signatures and chain checked), then what it has checked and applied.
    loop {
        c.run_for(10);
        let core = &c.members[1].core;
        if all_circles.is_none() && core.circles().held().count() == circles {
            all_circles = Some(since(&c));
        }
        if all_notes.is_none() && all_circles.is_some() && notes_held(&c) == circles * notes {
            all_notes = Some(since(&c));
        }
        if all_notes.is_some() && core.settling() == 0 && c.stats.messages == last {
            break;
        }
        last = c.stats.messages;
        assert!(
            c.now_ms() - virtual_start < 3_600_000,
            "not synced after an hour of virtual time"
        );
    }
    let settled = since(&c);
    let (Some(all_circles), Some(all_notes)) = (all_circles, all_notes) else {
        panic!("never held every note");
    };
    let data_bytes = c.stats.bytes - before.bytes;
    // Every note arrived.
    let list = c
        .ask(1, CircleList {}, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    for circle in list.circles {
        let held = c.ask(1, NoteList { circle: circle.id }, WAIT);
        assert_eq!(held.map(|n| n.notes.len()).unwrap_or(0), notes);
    }
    c.disconnect(0, 1);
    c.run_for(1_000);
    let idle = c.stats;
    c.connect(0, 1);
    c.run_for(5_000);
    Figures {
        all_circles: all_circles.0,
        all_circles_virtual_ms: all_circles.1,
        all_notes: all_notes.0,
        all_notes_virtual_ms: all_notes.1,
        settled: settled.0,
        settled_virtual_ms: settled.1,
        data_bytes,
        idle_messages: c.stats.messages - idle.messages,
        idle_bytes: c.stats.bytes - idle.bytes,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (circles, notes) = if bench {
        (
            size("CERCLE_BENCH_CIRCLES", 1_000),
            size("CERCLE_BENCH_NOTES", 10),
        )
    } else {
        (20, 2)
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let f = measure(circles, notes);
    let (bare_time, bare_bytes) = bare(circles, notes);
    eprintln!("{circles} circles of {notes} notes to a second device of the member");
    eprintln!(
        "  every circle held     {:>9.1} ms  ({} ms virtual)",
        ms(f.all_circles),
        f.all_circles_virtual_ms
    );
    eprintln!(
        "  every note held       {:>9.1} ms  ({} ms virtual, {} bytes on the wire)",
        ms(f.all_notes),
        f.all_notes_virtual_ms,
        f.data_bytes
    );
    eprintln!(
        "  every note applied    {:>9.1} ms  ({} ms virtual: opened, checked, in the documents)",
        ms(f.settled),
        f.settled_virtual_ms
    );
    eprintln!(
        "  bare Automerge        {:>9.1} ms  (save + load of every notebook, {bare_bytes} bytes)",
        ms(bare_time)
    );
    eprintln!(
        "  ratio held / applied  {:>9.2} / {:.2}",
        ms(f.all_notes) / ms(bare_time).max(1e-3),
        ms(f.settled) / ms(bare_time).max(1e-3)
    );
    eprintln!(
        "idle resync, {circles} circles unchanged: {} messages, {} bytes",
        f.idle_messages, f.idle_bytes
    );
    if !bench {
        assert_eq!(f.idle_messages, 2);
        return;
    }
    let report = serde_json::json!({
        "circles": circles,
        "notes_per_circle": notes,
        "every_circle_held_ms": ms(f.all_circles),
        "every_circle_held_virtual_ms": f.all_circles_virtual_ms,
        "every_note_held_ms": ms(f.all_notes),
        "every_note_held_virtual_ms": f.all_notes_virtual_ms,
        "every_note_applied_ms": ms(f.settled),
        "every_note_applied_virtual_ms": f.settled_virtual_ms,
        "wire_bytes": f.data_bytes,
        "bare_automerge_save_load_ms": ms(bare_time),
        "bare_automerge_bytes": bare_bytes,
        "ratio": ms(f.all_notes) / ms(bare_time).max(1e-3),
        "ratio_applied": ms(f.settled) / ms(bare_time).max(1e-3),
        "idle_resync_messages": f.idle_messages,
        "idle_resync_bytes": f.idle_bytes,
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("circles.json"), format!("{report:#}\n"));
}
