//! What a long membership history costs, measured in one run at 1 000 and 10 000
//! operations (a circle's relays named again and again by three coordinators, each on top
//! of the heads, as `cercle circle relays` does):
//!
//! 1. **Opening the circle** from a real store on disk (`Circle::open`: its record, the
//!    membership log decoded, each signature checked, every operation taken again by the
//!    admission rule and resolved, the epoch keys, the documents), and **starting a node**
//!    on that store (`OfflineNode::open`, every circle of the store).
//! 2. **One more operation**: admitting and resolving it (`Membership::append`), the median
//!    of 200, at both sizes. It must not grow with the log.
//! 3. **Resolving from scratch** (`Membership::load` of operations already decoded).
//!
//! There is no bare-Automerge equivalent of a membership log (it is not a document), so
//! the figures are absolute; the ratio that matters is the one between the two sizes.
//!
//! Prints a table and writes `target/bench-results/membership.json`. Under `cargo test` it
//! runs a small smoke pass.

#![allow(clippy::print_stderr)] // the table is this benchmark's output

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cercle_crdt::{IdentityUpdate, Role, Timestamp};
use cercle_node::circle::Circle;
use cercle_node::circle::membership::{Membership, OpBody, OpContent, SignedOp};
use cercle_node::crypto::SecureRng;
use cercle_node::node::offline::OfflineNode;
use cercle_node::store::{SledStore, Store};
use cercle_node::{LocalIdentity, Profile};

fn rng() -> SecureRng {
    rand::SeedableRng::seed_from_u64(1)
}

fn person(name: &str) -> LocalIdentity {
    let profile =
        Profile::new(name, "médecin généraliste", None, None).unwrap_or_else(|e| panic!("{e}"));
    LocalIdentity::generate(profile, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"))
}

fn relays(i: usize) -> Vec<String> {
    vec![format!(
        "/ip4/192.0.2.{}/tcp/{}/p2p/12D3KooWRelais",
        i % 250,
        4000 + i
    )]
}

/// A store holding one circle whose membership log has `n` operations; the coordinators.
fn circle_with(
    dir: &Path,
    n: usize,
) -> (
    Vec<LocalIdentity>,
    cercle_node::circle::membership::CircleId,
) {
    let people: Vec<LocalIdentity> = ["Dr A", "Dr B", "Dr C"].into_iter().map(person).collect();
    let me = &people[0];
    let store = SledStore::open(dir, me.storage_key()).unwrap_or_else(|e| panic!("{e}"));
    let mut r = rng();
    let patient = IdentityUpdate {
        family_name: Some("Durand".into()),
        given_names: Some("Jeanne".into()),
        ..Default::default()
    };
    let (mut c, staged) =
        Circle::create(me, &patient, Timestamp(2), &mut r).unwrap_or_else(|e| panic!("{e}"));
    let mut batch = staged.batch;
    for p in &people[1..] {
        let card = p.public().card(&[]);
        let s = c
            .add_member(me, &card, Role::Coordinator, Timestamp(3), &mut r)
            .unwrap_or_else(|e| panic!("{e}"));
        batch.extend(s.batch);
    }
    let mut i = c.membership().len();
    while i < n {
        let by = &people[i % people.len()];
        let s = c
            .set_relays(by, relays(i), Timestamp(4 + i as i64))
            .unwrap_or_else(|e| panic!("{e}"));
        batch.extend(s.batch);
        i += 1;
        if i % 1000 == 0 {
            store
                .submit(std::mem::take(&mut batch))
                .wait()
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    store.submit(batch).wait().unwrap_or_else(|e| panic!("{e}"));
    let id = c.id();
    drop(store);
    (people, id)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Figures {
    open: Duration,
    start: Duration,
    load: Duration,
    append: Duration,
}

fn measure(n: usize, rounds: usize, appends: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (people, id) = circle_with(dir.path(), n);
    let me = &people[0];
    let mut opens = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..rounds {
        let store = SledStore::open(dir.path(), me.storage_key()).unwrap_or_else(|e| panic!("{e}"));
        let t = Instant::now();
        let (mut c, _) = Circle::open(&store, me, &id).unwrap_or_else(|e| panic!("{e}"));
        c.wake(&store, me).unwrap_or_else(|e| panic!("{e}"));
        opens.push(t.elapsed());
        assert_eq!(c.membership().len(), n);
        drop(c);
        drop(store);
        let store: Arc<dyn Store> = Arc::new(
            SledStore::open(dir.path(), me.storage_key()).unwrap_or_else(|e| panic!("{e}")),
        );
        let t = Instant::now();
        let again = LocalIdentity::from_secrets(&me.secrets(), me.public())
            .unwrap_or_else(|e| panic!("{e}"));
        let node = OfflineNode::open(store, again, "12D3KooWBench".into())
            .unwrap_or_else(|e| panic!("{e}"));
        starts.push(t.elapsed());
        drop(node);
    }
    // The operations as a store gives them back, decoded once.
    let store = SledStore::open(dir.path(), me.storage_key()).unwrap_or_else(|e| panic!("{e}"));
    let ops: Vec<SignedOp> = store
        .ops(&id)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|b| SignedOp::decode(b).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    drop(store);
    let mut loads = Vec::new();
    let mut membership = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let (m, left_out) = Membership::load(ops.clone()).unwrap_or_else(|e| panic!("{e}"));
        loads.push(t.elapsed());
        assert!(left_out.is_empty());
        membership = Some(m);
    }
    let mut m = membership.unwrap_or_else(|| panic!("no rounds"));
    // One more operation at a time, each signed beforehand (signing is the author's cost).
    let mut appended = Vec::new();
    for k in 0..appends {
        let by = &people[k % people.len()];
        let op = SignedOp::sign(
            by,
            OpContent {
                circle: Some(m.log().circle()),
                parents: m.log().heads(),
                device: by.device(),
                at: 0,
                body: OpBody::SetRelays {
                    relays: relays(n + k),
                },
            },
        );
        let t = Instant::now();
        m.append(op).unwrap_or_else(|e| panic!("{e}"));
        appended.push(t.elapsed());
    }
    Figures {
        open: median(opens),
        start: median(starts),
        load: median(loads),
        append: median(appended),
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (sizes, rounds, appends): (&[usize], usize, usize) = if bench {
        (&[1_000, 10_000], 5, 200)
    } else {
        (&[50], 1, 5)
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut rows = Vec::new();
    eprintln!("operations  open circle  start node  resolve from scratch  one more op");
    for &n in sizes {
        let f = measure(n, rounds, appends);
        eprintln!(
            "{n:>10}  {:>8.1} ms  {:>7.1} ms  {:>17.1} ms  {:>8.1} µs",
            ms(f.open),
            ms(f.start),
            ms(f.load),
            f.append.as_secs_f64() * 1e6
        );
        rows.push(serde_json::json!({
            "operations": n,
            "open_circle_ms": ms(f.open),
            "start_node_ms": ms(f.start),
            "resolve_from_scratch_ms": ms(f.load),
            "one_more_operation_us": f.append.as_secs_f64() * 1e6,
        }));
    }
    if !bench {
        return;
    }
    let report = serde_json::json!({ "sizes": rows });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("membership.json"), format!("{report:#}\n"));
}
