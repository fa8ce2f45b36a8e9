//! The typed liaison notebook against bare Automerge on the same data, in the same run:
//! 10 000 entries of about 200 bytes, one commit each, then save and load, and the FHIR R4
//! export of the notebook against reading the same entries with Automerge and writing them
//! as plain JSON.
//!
//! Criterion reports each side; a final interleaved pass prints the ratios (typed / bare) and
//! writes them to `target/bench-results/notebook.json`. Ratios from one run are the fair
//! comparison on a noisy machine.

// Printing the ratio table is this benchmark's output.
#![allow(clippy::print_stderr)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};
use cercle_crdt::document::item_id;
use cercle_crdt::fhir::{self, CircleRecord};
use cercle_crdt::{EntryKind, LiaisonNotebook, MemberId, NewEntry, PatientFile, Thread, Timestamp};
use criterion::{Criterion, criterion_group};

const ENTRIES: usize = 10_000;
const AUTHOR: MemberId = MemberId::from_const([0x42; 32]);
const T0: i64 = 1_790_000_000_000;

fn text(i: usize) -> String {
    // About 200 bytes of realistic French note text, different for each entry.
    format!(
        "Passage n°{i}: patiente vue à domicile, pansement du talon refait, plaie propre sans \
         signe d'infection, douleur 2/10, tension 13/8, bonne hydratation, à revoir demain {i:05}."
    )
}

fn actor() -> ActorId {
    ActorId::from(&[7u8; 16][..])
}

fn typed_add(n: usize) -> LiaisonNotebook {
    let mut nb = LiaisonNotebook::new(actor());
    for i in 0..n {
        let entry = NewEntry {
            kind: EntryKind::Observation,
            text: text(i),
            vitals: None,
        };
        let _ = nb.add_entry(AUTHOR, entry, Timestamp(T0 + i as i64 * 1000));
    }
    nb
}

/// The same operations written directly with Automerge: one map per entry, same keys (the
/// ids the typed notebook derives), same fields, same values.
fn bare_add(n: usize) -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(actor());
    let entries = doc
        .put_object(ROOT, "entries", ObjType::Map)
        .unwrap_or(ROOT);
    doc.commit();
    let author = AUTHOR.to_hex();
    for i in 0..n {
        let id = item_id(&actor(), i as u64 + 1, 0);
        let Ok(obj) = doc.put_object(&entries, id.as_str(), ObjType::Map) else {
            continue;
        };
        let _ = doc.put(&obj, "author", author.as_str());
        let _ = doc.put(&obj, "at", ScalarValue::Timestamp(T0 + i as i64 * 1000));
        let _ = doc.put(&obj, "kind", "observation");
        let _ = doc.put(&obj, "text", text(i));
        doc.commit_with(CommitOptions::default().with_time((T0 + i as i64 * 1000) / 1000));
    }
    doc
}

/// The notebook as a FHIR R4 bundle, serialised: what `cercle export --format fhir` does.
fn fhir_export(nb: &LiaisonNotebook) -> usize {
    let pf = PatientFile::new(actor());
    let th = Thread::new(actor());
    let bundle = fhir::bundle(&CircleRecord {
        circle: "bench",
        closed: false,
        patient_file: &pf,
        notebook: nb,
        thread: &th,
        members: &[],
        exported_at: Timestamp(T0),
        audit: &[],
        objection: None,
    });
    serde_json::to_vec(&bundle).map_or(0, |b| b.len())
}

/// The same entries read with bare Automerge and written as plain JSON objects.
fn bare_export(doc: &AutoCommit) -> usize {
    let Ok(Some((_, entries))) = doc.get(ROOT, "entries") else {
        return 0;
    };
    let rows: Vec<serde_json::Value> = doc
        .map_range(&entries, ..)
        .map(|item| {
            let field = |name: &str| match doc.get(item.id(), name) {
                Ok(Some((automerge::Value::Scalar(s), _))) => match s.as_ref() {
                    ScalarValue::Str(t) => serde_json::json!(t.as_str()),
                    ScalarValue::Timestamp(t) => serde_json::json!(t),
                    _ => serde_json::Value::Null,
                },
                _ => serde_json::Value::Null,
            };
            serde_json::json!({
                "id": item.key,
                "author": field("author"),
                "at": field("at"),
                "kind": field("kind"),
                "text": field("text"),
            })
        })
        .collect();
    serde_json::to_vec(&rows).map_or(0, |b| b.len())
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("notebook_10k");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("typed_add", |b| b.iter(|| black_box(typed_add(ENTRIES))));
    g.bench_function("bare_add", |b| b.iter(|| black_box(bare_add(ENTRIES))));
    let typed_bytes = typed_add(ENTRIES).replica_mut().save();
    let bare_bytes = bare_add(ENTRIES).save();
    g.bench_function("typed_save", |b| {
        let mut nb = typed_add(ENTRIES);
        b.iter(|| black_box(nb.replica_mut().save()))
    });
    g.bench_function("bare_save", |b| {
        let mut doc = bare_add(ENTRIES);
        b.iter(|| black_box(doc.save()))
    });
    g.bench_function("typed_load", |b| {
        b.iter(|| black_box(LiaisonNotebook::load(&typed_bytes, actor()).map(|n| n.len())))
    });
    g.bench_function("bare_load", |b| {
        b.iter(|| black_box(AutoCommit::load(&bare_bytes)))
    });
    g.finish();
}

/// The least any reminder look must do on the bare document: read every entry's kind.
fn bare_alerts(doc: &AutoCommit) -> usize {
    let Ok(Some((_, entries))) = doc.get(ROOT, "entries") else {
        return 0;
    };
    doc.map_range(&entries, ..)
        .filter(|item| {
            matches!(doc.get(item.id(), "kind"), Ok(Some((automerge::Value::Scalar(k), _))) if k.as_str() == Some("alert"))
        })
        .count()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Interleaved rounds of both sides, so drift on the machine hits both equally.
fn ratios() {
    const ROUNDS: usize = 5;
    let mut rows = Vec::new();
    let (mut ta, mut ba, mut ts, mut bs, mut tl, mut bl) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut tf, mut bf, mut small) = (vec![], vec![], vec![]);
    let (mut tr, mut br, mut full) = (vec![], vec![], vec![]);
    let me = MemberId::from_const([0x07; 32]);
    let small_nb = typed_add(ENTRIES / 5);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut nb = black_box(typed_add(ENTRIES));
        ta.push(t.elapsed());
        let t = Instant::now();
        let mut doc = black_box(bare_add(ENTRIES));
        ba.push(t.elapsed());
        let t = Instant::now();
        let typed_bytes = black_box(nb.replica_mut().save());
        ts.push(t.elapsed());
        let t = Instant::now();
        let bare_bytes = black_box(doc.save());
        bs.push(t.elapsed());
        let t = Instant::now();
        let loaded = black_box(LiaisonNotebook::load(&typed_bytes, actor()).map(|n| n.len()));
        tl.push(t.elapsed());
        assert_eq!(loaded, Ok(ENTRIES), "typed load lost entries");
        let t = Instant::now();
        let _ = black_box(AutoCommit::load(&bare_bytes));
        bl.push(t.elapsed());
        let t = Instant::now();
        assert!(black_box(fhir_export(&nb)) > 0);
        tf.push(t.elapsed());
        let t = Instant::now();
        assert!(black_box(bare_export(&doc)) > 0);
        bf.push(t.elapsed());
        let t = Instant::now();
        let _ = black_box(fhir_export(&small_nb));
        small.push(t.elapsed());
        // A reminder look: the alerts waiting for a member, against the bare kind scan
        // (and, for the record, against reading every entry as people see it).
        let role = Some(cercle_crdt::Role::Coordinator);
        let t = Instant::now();
        let _ = black_box(nb.alerts_waiting_for(&me, role));
        tr.push(t.elapsed());
        let t = Instant::now();
        let _ = black_box(bare_alerts(&doc));
        br.push(t.elapsed());
        let t = Instant::now();
        let _ = black_box(
            nb.entries()
                .iter()
                .filter(|e| e.waits_for(&me, role))
                .count(),
        );
        full.push(t.elapsed());
    }
    let (quick, whole) = (median(tr.clone()), median(full));
    eprintln!(
        "reminder look: alerts_waiting_for {:.1} ms vs entries().filter(waits_for) {:.1} ms",
        quick.as_secs_f64() * 1e3,
        whole.as_secs_f64() * 1e3
    );
    // Linear in the notebook: 5x the entries should cost about 5x (ratio near 1).
    let (big, small) = (median(tf.clone()), median(small));
    let per_entry =
        (big.as_secs_f64() / ENTRIES as f64) / (small.as_secs_f64() / (ENTRIES / 5) as f64);
    eprintln!(
        "fhir export per entry, 10k vs 2k entries: ratio {per_entry:.2} ({:.1} ms vs {:.1} ms)",
        big.as_secs_f64() * 1e3,
        small.as_secs_f64() * 1e3
    );
    rows.push(format!(
        "  {{\"case\": \"fhir export per entry, 10k vs 2k\", \"entries\": {ENTRIES}, \"ratio\": {per_entry:.3}}}"
    ));
    for (name, typed, bare) in [
        ("add 10k entries, one commit each", ta, ba),
        ("save", ts, bs),
        ("load", tl, bl),
        ("fhir r4 export (bare: read + plain json)", tf, bf),
        ("reminder look (bare: every entry's kind)", tr, br),
    ] {
        let (t, b) = (median(typed), median(bare));
        let ratio = t.as_secs_f64() / b.as_secs_f64();
        eprintln!(
            "{name:<34} typed {:>9.1} ms   bare automerge {:>9.1} ms   ratio {ratio:.2}",
            t.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3
        );
        rows.push(serde_json_row(name, t, b, ratio));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("notebook.json"),
        format!("[\n{}\n]\n", rows.join(",\n")),
    );
}

fn serde_json_row(name: &str, typed: Duration, bare: Duration, ratio: f64) -> String {
    format!(
        "  {{\"case\": \"{name}\", \"entries\": {ENTRIES}, \"typed_ms\": {:.3}, \"bare_ms\": {:.3}, \"ratio\": {ratio:.3}}}",
        typed.as_secs_f64() * 1e3,
        bare.as_secs_f64() * 1e3
    )
}

criterion_group!(notebook, benches);

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test` this is a quick smoke pass.
    if !std::env::args().any(|a| a == "--bench") {
        let mut nb = typed_add(100);
        let bytes = nb.replica_mut().save();
        assert_eq!(
            LiaisonNotebook::load(&bytes, actor()).map(|n| n.len()),
            Ok(100)
        );
        let doc = bare_add(100);
        assert!(fhir_export(&nb) > 0 && bare_export(&doc) > 0);
        return;
    }
    notebook();
    ratios();
    Criterion::default().configure_from_args().final_summary();
}
