//! The cost of the envelope cryptography against applying the same changes in Automerge, on
//! the same data in the same run: 50 envelopes of 100 notebook changes each, sealed
//! (compressed, encrypted, signed), then decoded (signature verified) and opened (decrypted,
//! decompressed), versus what any receiver of those 5 000 changes does without envelopes:
//! parse them from bytes (`Change::from_bytes`) and `apply_changes` into one document.
//!
//! Prints changes per second for both and the ratio, and writes
//! `target/bench-results/envelope.json`. Under `cargo test` it runs one small smoke pass.

#![allow(clippy::print_stderr)] // the table is this benchmark's output

use std::hint::black_box;
use std::time::{Duration, Instant};

use cercle_crdt::{Change, DocKind, EntryKind, LiaisonNotebook, NewEntry, Timestamp};
use cercle_node::circle::membership::CircleId;
use cercle_node::crypto::{EpochId, EpochKey, SecureRng};
use cercle_node::envelope::{Envelope, Slot};
use cercle_node::{LocalIdentity, Profile};

fn author() -> LocalIdentity {
    let p = Profile::new("Bench", "infirmière", None, None).unwrap_or_else(|e| panic!("{e}"));
    LocalIdentity::generate(p, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"))
}

fn changes(me: &LocalIdentity, n: usize) -> Vec<Change> {
    let mut nb = LiaisonNotebook::new(me.actor());
    for i in 0..n {
        let entry = NewEntry {
            kind: EntryKind::Care,
            text: format!(
                "Passage {i}: pansement refait, plaie propre, douleur 2/10, tension 13/8, à revoir demain."
            ),
            vitals: None,
        };
        let _ = nb.add_entry(me.member(), entry, Timestamp(1_790_000_000_000 + i as i64));
    }
    // Skip the shared genesis: every replica already has it.
    nb.replica_mut()
        .changes_since(&[])
        .into_iter()
        .skip(1)
        .collect()
}

fn crypto_round_trip(
    me: &LocalIdentity,
    key: &EpochKey,
    batches: &[Vec<Change>],
    rng: &mut SecureRng,
) -> usize {
    let mut prev = [0u8; 32];
    let mut opened = 0;
    for (i, batch) in batches.iter().enumerate() {
        let slot = Slot {
            circle: CircleId([1; 32]),
            doc: DocKind::LiaisonNotebook,
            seq: i as u64 + 1,
            prev,
        };
        let env = Envelope::seal(me, slot, (EpochId([2; 16]), key), batch, rng)
            .unwrap_or_else(|e| panic!("{e}"));
        prev = env.hash();
        let received = Envelope::decode(env.bytes()).unwrap_or_else(|e| panic!("{e}"));
        opened += received.open_raw(key).map(|c| c.len()).unwrap_or(0);
    }
    opened
}

fn automerge_apply(me: &LocalIdentity, raw: &[Vec<Vec<u8>>]) -> usize {
    let target = LiaisonNotebook::new(me.actor());
    let mut doc = target.replica().doc().clone();
    let mut n = 0;
    for batch in raw {
        let parsed: Vec<Change> = batch
            .iter()
            .filter_map(|b| Change::from_bytes(b.clone()).ok())
            .collect();
        n += parsed.len();
        let _ = doc.apply_changes(parsed);
    }
    n
}

fn run(envelopes: usize, per_envelope: usize, rounds: usize) -> (Duration, Duration, usize) {
    let me = author();
    let mut rng: SecureRng = rand::SeedableRng::seed_from_u64(1);
    let key = EpochKey::generate(&mut rng);
    let all = changes(&me, envelopes * per_envelope);
    let batches: Vec<Vec<Change>> = all.chunks(per_envelope).map(<[Change]>::to_vec).collect();
    let raw: Vec<Vec<Vec<u8>>> = batches
        .iter()
        .map(|b| b.iter().map(|c| c.raw_bytes().to_vec()).collect())
        .collect();
    let (mut crypto, mut apply) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let n = black_box(crypto_round_trip(&me, &key, &batches, &mut rng));
        crypto.push(t.elapsed());
        assert_eq!(n, all.len());
        let t = Instant::now();
        assert_eq!(black_box(automerge_apply(&me, &raw)), all.len());
        apply.push(t.elapsed());
    }
    crypto.sort();
    apply.sort();
    (crypto[rounds / 2], apply[rounds / 2], all.len())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        run(2, 10, 1);
        return;
    }
    let (crypto, apply, n) = run(50, 100, 7);
    let per_s = |d: Duration| n as f64 / d.as_secs_f64();
    let ratio = crypto.as_secs_f64() / apply.as_secs_f64();
    eprintln!("{n} changes in envelopes of 100");
    eprintln!(
        "seal+sign+verify+open   {:>8.1} ms  {:>10.0} changes/s",
        crypto.as_secs_f64() * 1e3,
        per_s(crypto)
    );
    eprintln!(
        "automerge parse+apply   {:>8.1} ms  {:>10.0} changes/s",
        apply.as_secs_f64() * 1e3,
        per_s(apply)
    );
    eprintln!("crypto / apply          {:>8.1} %", ratio * 100.0);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let json = format!(
        "{{\"changes\": {n}, \"changes_per_envelope\": 100, \"crypto_ms\": {:.3}, \"apply_ms\": {:.3}, \"crypto_changes_per_s\": {:.0}, \"apply_changes_per_s\": {:.0}, \"ratio\": {ratio:.4}}}\n",
        crypto.as_secs_f64() * 1e3,
        apply.as_secs_f64() * 1e3,
        per_s(crypto),
        per_s(apply)
    );
    let _ = std::fs::write(dir.join("envelope.json"), json);
}
