//! A professional in 1 500 circles, reached through a relay by every co-member
//! (`cargo bench -p cercle --bench reach`; `CERCLE_BENCH_CIRCLES`, 1 500 by default).
//!
//! Real processes on loopback: a relay (`cercle relay`), the professional's node (P) and
//! four co-members' nodes. Every circle is P's and names the relay. Co-member 0 is in all of
//! them (a colleague of the same practice); co-members 1 to 3 each in a third. No node is
//! given another's address: each knows only the relay's (`--relay`, no mDNS, no `--peer`).
//!
//! P creates the circles through its API with its node up, so they reach the relay's
//! mailbox; then the four co-members' nodes start together. Each finds P's first circle at
//! the relay as an invitation and accepts P's circles always (`circle accept --always`),
//! then must end up connected to P (P among its peers), through the relay's circuit or
//! directly after hole punching, and holding all its circles. Measured from each
//! co-member's start: the first invitation, P reached, every circle held. Also the relay's
//! resident memory and counters. Written to `target/bench-results/reach.json`.

// Printing the figures is this benchmark's output.
#![allow(clippy::print_stderr)]
// A benchmark that unwraps stops with the error in its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use cercle_crdt::Role;
use cercle_node::ops::circles::{CircleAccept, CircleCreate, CircleList};
use cercle_node::ops::members::MemberAdd;
use cercle_node::ops::relays::RelaysSet;
use cercle_node::ops::status::Status;

mod nodes;
use nodes::{Node, RelayProcess, ask, cercle};

/// Co-members: the first in every circle, the others each in a third of them.
const COLLEAGUES: usize = 4;

/// How long a co-member may take to reach P before the run is called failed.
const PATIENCE: Duration = Duration::from_secs(600);

/// The co-members of circle `i` (indices into the colleagues).
fn colleagues_of(i: usize) -> [usize; 2] {
    [0, 1 + i % (COLLEAGUES - 1)]
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// What one co-member saw, in milliseconds from its node's start.
#[derive(Debug, Default)]
struct Reached {
    circles: usize,
    invited_ms: f64,
    reached_ms: f64,
    all_held_ms: f64,
    path: String,
}

/// Starts co-member `node`; at P's first invitation, accepts P's circles always (`circle
/// accept --always`), and waits until P (`p_peer`) is among its peers and its `expected`
/// circles are all held.
async fn reach(
    http: reqwest::Client,
    mut node: Node,
    relay: String,
    expected: usize,
    p_peer: String,
) -> (Node, Reached) {
    let t0 = Instant::now();
    node.up_with(&[], &["--relay", &relay]);
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let first = loop {
        assert!(t0.elapsed() < PATIENCE, "no invitation came");
        let list = ask(&http, &node, CircleList {}).await;
        if let Some(row) = list.invitations.into_iter().next() {
            break row.circle;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let invited_ms = ms(t0);
    let accept = CircleAccept {
        circle: first,
        always: true,
    };
    ask(&http, &node, accept).await;
    let (mut reached_ms, mut path, mut all_held_ms) = (None, String::new(), None);
    while reached_ms.is_none() || all_held_ms.is_none() {
        assert!(
            t0.elapsed() < PATIENCE,
            "P reached: {reached_ms:?}; all {expected} circles held: {all_held_ms:?}"
        );
        if reached_ms.is_none() {
            let status = ask(&http, &node, Status {}).await;
            if let Some(row) = status.peers.iter().find(|r| r.peer_id == p_peer) {
                reached_ms = Some(ms(t0));
                path = format!("{:?}", row.path).to_lowercase();
            }
        }
        if all_held_ms.is_none() && ask(&http, &node, CircleList {}).await.circles.len() >= expected
        {
            all_held_ms = Some(ms(t0));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reached = Reached {
        circles: expected,
        invited_ms,
        reached_ms: reached_ms.unwrap_or_default(),
        all_held_ms: all_held_ms.unwrap_or_default(),
        path,
    };
    (node, reached)
}

async fn run(circles: usize) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let relay = RelayProcess::start(&root.join("relay"));
    let mut p = Node::init(root, "P");
    let colleagues: Vec<Node> = (0..COLLEAGUES)
        .map(|i| Node::init(root, &format!("C{i}")))
        .collect();
    let cards: Vec<String> = colleagues
        .iter()
        .map(|c| {
            cercle(&c.home, &["whoami"])["card"]
                .as_str()
                .expect("card")
                .to_string()
        })
        .collect();

    p.up_with(&[], &["--relay", &relay.address]);
    let p_peer = ask(&http, &p, Status {}).await.peer_id;
    let t0 = Instant::now();
    for i in 0..circles {
        let create = CircleCreate::for_patient(format!("Patient{i} Durand"));
        let id = ask(&http, &p, create).await.circles[0].id.clone();
        let relays = RelaysSet {
            circle: id.clone(),
            relays: vec![relay.address.clone()],
        };
        ask(&http, &p, relays).await;
        for k in colleagues_of(i) {
            let add = MemberAdd {
                circle: id.clone(),
                card: cards[k].clone(),
                role: Role::Professional,
            };
            ask(&http, &p, add).await;
        }
    }
    let made = t0.elapsed();
    eprintln!(
        "  P made {circles} circles naming the relay, with their co-members, in {:.1} s",
        made.as_secs_f64()
    );
    let deadline = Instant::now() + PATIENCE;
    while relay.metric(&http, "cercle_relay_mailbox_circles").await < circles as f64 {
        assert!(
            Instant::now() < deadline,
            "the relay never held all the circles"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = t0.elapsed();
    eprintln!(
        "  the relay held all {circles} circles {:.1} s after the first was made",
        held.as_secs_f64()
    );

    let mut expected = [0usize; COLLEAGUES];
    for i in 0..circles {
        for k in colleagues_of(i) {
            expected[k] += 1;
        }
    }
    // All four start at once.
    let runs: Vec<_> = colleagues
        .into_iter()
        .enumerate()
        .map(|(k, node)| {
            tokio::spawn(reach(
                http.clone(),
                node,
                relay.address.clone(),
                expected[k],
                p_peer.clone(),
            ))
        })
        .collect();
    let mut reached = Vec::new();
    for run in runs {
        reached.push(run.await.expect("co-member"));
    }
    let relay_rss = rss_mib(relay.child.id());
    let p_rss = p.child.as_ref().map_or(0.0, |c| rss_mib(c.id()));
    let mut rows = Vec::new();
    for (k, (_, r)) in reached.iter().enumerate() {
        eprintln!(
            "  co-member {k} in {} circles: first invitation after {:.0} ms, P reached after {:.0} ms ({}), every circle held after {:.0} ms",
            r.circles, r.invited_ms, r.reached_ms, r.path, r.all_held_ms
        );
        rows.push(serde_json::json!({
            "circles": r.circles,
            "first_invitation_ms": r.invited_ms,
            "reached_ms": r.reached_ms,
            "path": r.path,
            "all_held_ms": r.all_held_ms,
        }));
    }
    let introductions = relay.metric(&http, "cercle_relay_introductions").await;
    let connections = relay.metric(&http, "cercle_relay_connections").await;
    let ops = relay.metric(&http, "cercle_relay_mailbox_ops").await;
    eprintln!(
        "  relay: {relay_rss:.1} MiB resident, {connections} connections, {introductions} introductions, {ops} membership operations held; P's node: {p_rss:.1} MiB"
    );
    serde_json::json!({
        "circles": circles,
        "made_s": made.as_secs_f64(),
        "relay_held_all_s": held.as_secs_f64(),
        "co_members": rows,
        "relay_rss_mib": relay_rss,
        "relay_introductions": introductions,
        "relay_mailbox_ops": ops,
        "p_rss_mib": p_rss,
    })
}

fn main() {
    // `cargo test` runs benchmarks once as tests: a few circles then.
    let full = std::env::args().any(|a| a == "--bench");
    let circles = std::env::var("CERCLE_BENCH_CIRCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_500 } else { 6 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    eprintln!("a professional in {circles} circles, reached through a relay by every co-member");
    let report = runtime.block_on(run(circles));
    if full {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("reach.json"), format!("{report:#}\n"));
    }
}
