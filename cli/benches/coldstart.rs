//! Cold start of a GP's node: `cercle up` on a home holding N circles of K notes each (a
//! GP's patients), against the same start on a home holding one circle of K notes, in the
//! same run.
//!
//! The homes are filled through a running node's API, as the members write: one note per
//! request, each answered once durable (so each note is its own envelope, as in a real
//! notebook), the circles created one by one. The node is then stopped and started once
//! (its first start after the writes takes the documents' snapshots), and measured over
//! several starts:
//!
//! - **time to ready**: from the process's spawn until its API answers `status` with a
//!   listening address (an answering API and a listening network), the keys sealed with a
//!   passphrase as a professional's are (Argon2id included, the same in both homes);
//! - **resident memory** (`VmRSS`) when ready, and after 2 s at rest;
//! - then **a second computer of the GP** paired with the large home: from its node's
//!   spawn (and from its connection to the first) until it lists every circle, holds every
//!   envelope and has checked them all; as many times as the starts, each on a fresh copy
//!   of the home, and the median taken.
//!
//! `CERCLE_BENCH_CIRCLES` (default 1 000) and `CERCLE_BENCH_NOTES` (default 100) set the
//! size; `CERCLE_BENCH_HOME=DIR` keeps the homes in `DIR` and starts from them again (to
//! profile a start). Prints a table and writes `target/bench-results/coldstart.json`. Under `cargo test`
//! it runs a small smoke pass.

#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use cercle_crdt::EntryKind;
use cercle_node::api::ApiFile;
use cercle_node::ops::Answer;
use cercle_node::ops::circles::CircleCreate;
use cercle_node::ops::notes::NoteAdd;
use cercle_node::ops::status::Status;

mod nodes;
use nodes::{Node, ask, call};

const PASSPHRASE: &str = "un mot de passe de démonstration assez long";
/// Requests in flight while the home is filled.
const WRITERS: usize = 16;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn text(circle: usize, note: usize) -> String {
    format!("Passage n°{note} chez le patient {circle} : pansement refait, plaie propre, TA 13/8.")
}

/// Creates `circles` circles on the running `node` and writes `notes` notes in each, one
/// per request, `WRITERS` requests at a time.
async fn fill(http: &reqwest::Client, node: &Node, circles: usize, notes: usize) {
    let mut ids = Vec::with_capacity(circles);
    for i in 0..circles {
        let made = ask(
            http,
            node,
            CircleCreate::for_patient(format!("Patient{i} Durand")),
        )
        .await;
        let id = made
            .circles
            .iter()
            .find(|c| c.patient.starts_with(&format!("Patient{i} ")))
            .expect("the new circle is listed")
            .id
            .clone();
        ids.push(id);
    }
    let ids = std::sync::Arc::new(ids);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (http, ids) = (http.clone(), ids.clone());
        let api = node.api().clone();
        tasks.push(tokio::spawn(async move {
            for (i, id) in ids.iter().enumerate().skip(w).step_by(WRITERS) {
                for j in 0..notes {
                    let note = NoteAdd {
                        circle: id.clone(),
                        texts: vec![text(i, j)],
                        kind: EntryKind::Care,
                        at: None,
                        vitals: None,
                        to: None,
                    };
                    let answer = call(&http, &api, note.into()).await;
                    assert!(answer.is_some(), "note {j} of circle {i} refused");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
}

/// `VmRSS` of a process, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Start {
    ready: Duration,
    rss_ready_kib: u64,
    rss_rest_kib: u64,
}

/// Starts the node and times it until its API answers `status` with a listening address.
async fn start(http: &reqwest::Client, node: &mut Node) -> Start {
    let t = Instant::now();
    node.spawn(&[]);
    ready(http, node).await;
    let ready = t.elapsed();
    let pid = node.child.as_ref().expect("running").id();
    let rss_ready_kib = resident_kib(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_rest_kib = resident_kib(pid);
    node.stop();
    Start {
        ready,
        rss_ready_kib,
        rss_rest_kib,
    }
}

/// The node's status once its API answers with a listening address.
async fn ready(http: &reqwest::Client, node: &mut Node) -> cercle_node::ops::status::NodeStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the node did not start");
        if let Ok(Some(api)) = ApiFile::read(&node.home)
            && let Some(Answer::Status(s)) = call(http, &api, Status {}.into()).await
            && s.running
            && !s.addresses.is_empty()
        {
            node.api = Some(api);
            return s;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A second computer of the GP, paired with the home `first` (of `circles` circles): from
/// the spawn of its `cercle up` until it is connected to the first, lists every circle,
/// holds every envelope the first holds, and has checked and applied them all (its
/// status); and from its connection until it lists and holds everything.
async fn second_device(
    http: &reqwest::Client,
    root: &Path,
    first: &str,
    circles: usize,
) -> serde_json::Value {
    // On a copy of the home: pairing adds a device to every circle, and the cold starts
    // measure the home as filled.
    let copy = format!("{first}-copy");
    let _ = std::fs::remove_dir_all(root.join(&copy));
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(root.join(first))
        .arg(root.join(&copy))
        .status()
        .expect("cp");
    assert!(copied.success(), "cannot copy the home");
    let mut gp = Node::sealed(root, &copy, PASSPHRASE);
    gp.up(&[]);
    let held = ready(http, &mut gp).await.held_envelopes;
    let code = ask(http, &gp, cercle_node::ops::devices::DevicePair {})
        .await
        .code;
    let name = format!("{first}-second");
    let _ = std::fs::remove_dir_all(root.join(&name));
    let mut second = Node::pair_sealed(root, &name, &code, PASSPHRASE);
    let t = Instant::now();
    second.spawn(&[]);
    let up = ready(http, &mut second).await;
    let started = t.elapsed();
    let api = second.api().clone();
    let (mut listed, mut all_held) = (None, None);
    let deadline = t + Duration::from_secs(600);
    // When its status first shows the GP's first device connected (polled every 2 ms:
    // seen at most a poll and a request after the connection).
    let mut status = up.clone();
    let connected = loop {
        assert!(
            Instant::now() < deadline,
            "the second device did not connect"
        );
        if !status.peers.is_empty() {
            break t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        if let Some(Answer::Status(s)) = call(http, &api, Status {}.into()).await {
            status = s;
        }
    };
    let settled = loop {
        assert!(
            Instant::now() < deadline,
            "the second device did not catch up: {listed:?} {all_held:?}"
        );
        if let Some(Answer::Status(s)) = call(http, &api, Status {}.into()).await {
            if listed.is_none()
                && let Some(Answer::Circles(l)) =
                    call(http, &api, cercle_node::ops::circles::CircleList {}.into()).await
                && l.circles.len() == circles
            {
                listed = Some(t.elapsed());
            }
            if all_held.is_none() && s.held_envelopes >= held {
                all_held = Some(t.elapsed());
            }
            if listed.is_some() && all_held.is_some() && s.settling == 0 {
                break t.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let after_connecting = ms(listed.max(all_held)) - ms(Some(connected));
    eprintln!(
        "  a second device of the GP, from the spawn of its node (ready after {:.0} ms, connected after {:.0} ms, {} envelopes to take): every circle listed {:.0} ms, every envelope held {:.0} ms, every envelope checked and applied {:.0} ms; after connecting: every circle listed and every envelope held {:.0} ms (target ≤ 1 000 ms)",
        ms(Some(started)),
        ms(Some(connected)),
        held,
        ms(listed),
        ms(all_held),
        ms(Some(settled)),
        after_connecting,
    );
    drop(up);
    second.stop();
    gp.stop();
    serde_json::json!({
        "envelopes": held,
        "ready_ms": ms(Some(started)),
        "connected_ms": ms(Some(connected)),
        "every_circle_listed_ms": ms(listed),
        "every_envelope_held_ms": ms(all_held),
        "every_envelope_applied_ms": ms(Some(settled)),
        "after_connecting_ms": after_connecting,
    })
}

/// [`second_device`] `rounds` times, each from a fresh copy of the first device's home:
/// the catch-up varies by ±15 % from one run to the next on a machine shared by both
/// nodes, so its figure is the median of several.
async fn second_devices(
    http: &reqwest::Client,
    root: &Path,
    first: &str,
    circles: usize,
    rounds: usize,
) -> serde_json::Value {
    let mut runs = Vec::new();
    for _ in 0..rounds {
        runs.push(second_device(http, root, first, circles).await);
    }
    let mut after: Vec<f64> = runs
        .iter()
        .map(|r| r["after_connecting_ms"].as_f64().unwrap_or(f64::NAN))
        .collect();
    after.sort_by(f64::total_cmp);
    let median = after[after.len() / 2];
    let runs_word = if rounds == 1 { "run" } else { "runs" };
    eprintln!(
        "  a second device, {rounds} {runs_word}: every circle listed and every envelope held {median:.0} ms after connecting (median; {:.0}–{:.0}; target ≤ 1 000 ms)",
        after[0],
        after[after.len() - 1],
    );
    serde_json::json!({
        "runs": runs,
        "after_connecting_ms": after,
        "after_connecting_median_ms": median,
    })
}

/// A home of `circles` × `notes`, filled, restarted once, then started `rounds` times.
async fn measure(
    http: &reqwest::Client,
    root: &Path,
    name: &str,
    circles: usize,
    notes: usize,
    rounds: usize,
) -> serde_json::Value {
    let t = Instant::now();
    let mut node = if root.join(name).exists() {
        // A home kept from an earlier run (`CERCLE_BENCH_HOME`): not filled again.
        Node::sealed(root, name, PASSPHRASE)
    } else {
        let mut node = Node::init_sealed(root, name, "médecin généraliste", PASSPHRASE);
        node.up(&[]);
        fill(http, &node, circles, notes).await;
        node.stop();
        node
    };
    let filled = t.elapsed();
    let first = start(http, &mut node).await;
    let mut starts = Vec::new();
    for _ in 0..rounds {
        starts.push(start(http, &mut node).await);
    }
    starts.sort_by_key(|s| s.ready);
    let median = &starts[starts.len() / 2];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mib = |k: u64| k as f64 / 1024.0;
    eprintln!(
        "  {circles} circles × {notes} notes: filled in {:.1} s; first start {:.0} ms; ready in {:.0} ms (median of {rounds}, {:.0}–{:.0}); memory {:.1} MiB when ready, {:.1} MiB at rest",
        filled.as_secs_f64(),
        ms(first.ready),
        ms(median.ready),
        ms(starts[0].ready),
        ms(starts[starts.len() - 1].ready),
        mib(median.rss_ready_kib),
        mib(median.rss_rest_kib),
    );
    serde_json::json!({
        "circles": circles,
        "notes_per_circle": notes,
        "fill_s": filled.as_secs_f64(),
        "first_start_ms": ms(first.ready),
        "ready_ms": starts.iter().map(|s| ms(s.ready)).collect::<Vec<_>>(),
        "ready_median_ms": ms(median.ready),
        "rss_ready_mib": mib(median.rss_ready_kib),
        "rss_rest_mib": mib(median.rss_rest_kib),
    })
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (circles, notes, rounds) = if bench {
        (
            size("CERCLE_BENCH_CIRCLES", 1000),
            size("CERCLE_BENCH_NOTES", 100),
            5,
        )
    } else {
        (20, 5, 1)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // `CERCLE_BENCH_HOME=DIR` keeps the homes there (and takes them again), to profile.
    let kept = std::env::var_os("CERCLE_BENCH_HOME").map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = kept.as_deref().unwrap_or(dir.path());
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let build = if cfg!(debug_assertions) {
        "debug build, a smoke pass"
    } else {
        "release build"
    };
    eprintln!("cold start, {build}, keys sealed with a passphrase:");
    let one = runtime.block_on(measure(&http, root, "one", 1, notes, rounds));
    let many = runtime.block_on(measure(&http, root, "many", circles, notes, rounds));
    let ratio = many["ready_median_ms"].as_f64().unwrap_or(f64::NAN)
        / one["ready_median_ms"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "  ratio {circles} circles / 1 circle: {ratio:.2} (target ≤ 1.5); memory at rest {:.1} MiB (target ≤ 100 MiB)",
        many["rss_rest_mib"].as_f64().unwrap_or(f64::NAN)
    );
    let second = runtime.block_on(second_devices(&http, root, "many", circles, rounds));
    let report =
        serde_json::json!({ "one": one, "many": many, "ratio": ratio, "second_device": second });
    if bench {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::write(out.join("coldstart.json"), format!("{report:#}\n"));
    }
}
