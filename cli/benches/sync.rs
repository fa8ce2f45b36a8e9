//! Sync between two real nodes: two `cercle up` processes on loopback (A writes through its
//! local API, B applies; B's event stream tells when), and bare Automerge sync of the same
//! notebook in the same run as the floor.
//!
//! 1. **Latency**: 1 000 notes one at a time; for each, from the moment A is asked to write
//!    it to the moment B has checked, stored and applied it (B's clock: same machine).
//!    A answers only once the note is durable, and pushes it then.
//! 2. **Bursts** of 1 000, 2 000, 10 000 and 100 000 notes, sent as `note import` does (requests of
//!    256 notes, each answered once durable; the node writes them 64 to an Automerge change):
//!    from the first request to the last note applied on B.
//! 3. **Catch-up**: an empty member's node connecting to A, which holds a circle of 10 000
//!    notes: from the dial to the last note applied.
//! 4. **Idle resync**: B reconnects to A with nothing new: messages and data bytes.
//! 6. **Mailbox**: A, whose circle names a relay and which has no other peer, writes 10 000
//!    notes and goes offline; a new member's empty node connects to the relay alone:
//!    how long until the relay holds everything, and the member's catch-up from it.
//! 7. **Invites and the demo**: `cercle join CODE` between two running nodes on loopback,
//!    from the command's start to its exit with the circle held (median of 5), and
//!    `cercle demo` from its start to its fourth member's URL printed.
//! 8. **Live web page**: a note submitted through A's web form (session cookie and form
//!    token, as the browser does) until B's open page would show it: B's `/ui/events`
//!    stream announces it and B's notebook page, fetched again as the page script does,
//!    contains it (the browser's own rendering is left out; the UI test sees it there).
//! 9. **Under a flood**: the one-note latency quiet, then while a member's process sends
//!    garbage envelopes without pause (`--bench` only: it builds `cercle-tests`' adversary).
//! 5. **Floor**: bare Automerge (`automerge::sync`) between two in-memory documents holding
//!    the same notes: per-note incremental sync, and a full sync of 10 000 notes.
//!
//! Prints a table and writes `target/bench-results/sync.json`; `-- bursts` runs parts 1–5
//! alone (`bursts.json`), `-- flood` part 9 alone (`flood.json`). Under `cargo test` it runs
//! a small smoke pass.

#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use automerge::sync::{State as SyncState, SyncDoc};
use cercle_crdt::{EntryKind, LiaisonNotebook, MemberId, NewEntry, Timestamp};
use cercle_node::api::NodeEvent;
use cercle_node::ops::circles::{CircleAccept, CircleCreate, CircleList};
use cercle_node::ops::members::MemberAdd;
use cercle_node::ops::notes::NoteAdd;
use cercle_node::ops::status::{Connect, Status};
use futures::StreamExt;
use tokio::sync::mpsc;

mod nodes;
use nodes::{BIN, Node, RelayProcess, ask, cercle};

fn text(i: usize) -> String {
    format!(
        "Passage {i}: pansement refait, plaie propre, douleur 2/10, tension 13/8, à revoir demain."
    )
}

/// B's notebook applications: (envelopes applied, when, µs since the epoch).
async fn watch(http: reqwest::Client, node: &Node) -> mpsc::UnboundedReceiver<(usize, i64)> {
    let api = node.api();
    let r = http
        .get(format!("http://{}/api/v1/events", api.address))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("events");
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stream = r.bytes_stream();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                if let Ok(NodeEvent::Applied {
                    doc,
                    count,
                    at_micros,
                    ..
                }) = serde_json::from_slice(&line)
                    && doc == "liaison_notebook"
                    && tx.send((count, at_micros)).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// Waits until `n` more notebook envelopes were applied; returns when the last one was.
/// (Notes sent together are written several to an envelope: see `envelopes_for`.)
async fn applied(rx: &mut mpsc::UnboundedReceiver<(usize, i64)>, n: usize) -> i64 {
    let mut seen = 0;
    let mut last = 0;
    while seen < n {
        let (count, at) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("B stopped applying")
            .expect("event stream closed");
        seen += count;
        last = at;
    }
    last
}

/// How many envelopes the node writes for `n` notes sent in requests of 256.
fn envelopes_for(n: usize) -> usize {
    let per_change = cercle_node::node::core::NOTES_PER_CHANGE;
    let full = n / 256;
    let rest = n % 256;
    full * 256usize.div_ceil(per_change) + rest.div_ceil(per_change)
}

/// Writes notes `from..to` to `circle` through `node`'s API, as `note import` does:
/// requests of 256, each answered once durable.
async fn write_notes(http: &reqwest::Client, node: &Node, circle: &str, from: usize, to: usize) {
    let mut i = from;
    while i < to {
        let end = (i + 256).min(to);
        ask(
            http,
            node,
            NoteAdd {
                circle: circle.into(),
                texts: (i..end).map(text).collect(),
                kind: EntryKind::Care,
                at: None,
                vitals: None,
                to: None,
            },
        )
        .await;
        i = end;
    }
}

async fn burst(
    http: &reqwest::Client,
    a: &Node,
    circle: &str,
    rx: &mut mpsc::UnboundedReceiver<(usize, i64)>,
    n: usize,
    from: usize,
) -> Duration {
    let started = now_micros();
    write_notes(http, a, circle, from, from + n).await;
    let last = applied(rx, envelopes_for(n)).await;
    Duration::from_micros((last - started).max(0) as u64)
}

/// Notes `range` written one at a time on A: for each, milliseconds from the request to B's
/// having applied it; sorted.
async fn latency(
    http: &reqwest::Client,
    a: &Node,
    circle: &str,
    rx: &mut mpsc::UnboundedReceiver<(usize, i64)>,
    range: std::ops::Range<usize>,
) -> Vec<f64> {
    let mut lat = Vec::new();
    for i in range {
        let t0 = now_micros();
        ask(
            http,
            a,
            NoteAdd {
                circle: circle.into(),
                texts: vec![text(i)],
                kind: EntryKind::Care,
                at: None,
                vitals: None,
                to: None,
            },
        )
        .await;
        let at = applied(rx, 1).await;
        lat.push((at - t0) as f64 / 1e3);
    }
    lat.sort_by(f64::total_cmp);
    lat
}

/// Part 9, under a flood: the same one-note latency, quiet, then while a member gone bad
/// (the `adversary` process of `cercle-tests`, built here) sends A garbage envelopes
/// without pause and reconnects whenever A cuts it off. Returns the figures.
async fn flood_run(notes: usize) -> serde_json::Value {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "cercle-tests",
            "--bin",
            "adversary",
        ])
        .status()
        .expect("cargo");
    assert!(built.success(), "the adversary does not build");
    let adversary = workspace.join("target/release/adversary");
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let (mut a, mut b, circle) = circle_of_two(dir.path(), "B");
    let saved = dir.path().join("mallory.json");
    let made = Command::new(&adversary)
        .args([
            "identity",
            &format!("out={}", saved.display()),
            "name=Marc Roux",
        ])
        .output()
        .expect("adversary identity");
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).expect("identity json");
    add_professional(&a, &circle, made["card"].as_str().expect("card"));
    let (addr_a, mut rx) = pair_up(&http, &mut a, &mut b).await;
    accept_when_invited(&http, &b, &circle).await;
    let quiet = latency(&http, &a, &circle, &mut rx, 0..notes).await;

    let mut attack = Command::new(&adversary)
        .args([
            "member",
            &format!("to={addr_a}"),
            &format!("identity={}", saved.display()),
            &format!("circle={circle}"),
            "flood=0",
            "secs=600",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("adversary");
    // The flood is on once A refuses its garbage; the member's one honest note reaches B
    // before anything is timed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = ask(&http, &a, Status {}).await;
        if s.refused.get("malformed").copied().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the flood never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    while rx.try_recv().is_ok() {}
    let before = ask(&http, &a, Status {}).await.ignored_messages;
    let t0 = Instant::now();
    let flooded = latency(&http, &a, &circle, &mut rx, notes..2 * notes).await;
    let elapsed = t0.elapsed();
    let after = ask(&http, &a, Status {}).await.ignored_messages;
    let _ = attack.kill();
    let _ = attack.wait();
    b.stop();
    a.stop();
    let (q50, q99) = (percentile(&quiet, 0.5), percentile(&quiet, 0.99));
    let (f50, f99) = (percentile(&flooded, 0.5), percentile(&flooded, 0.99));
    let rate = (after - before) as f64 / elapsed.as_secs_f64();
    eprintln!(
        "  while a member floods A with garbage and reconnects whenever cut off ({rate:.0} of its messages/s reached A's core; it is set aside, its streams unread): p50 {f50:.2} ms, p99 {f99:.2} ms; quiet p50 {q50:.2} ms, p99 {q99:.2} ms; p99 ratio {:.2}x (bound 2x)",
        f99 / q99
    );
    serde_json::json!({
        "notes": notes,
        "quiet_p50_ms": q50,
        "quiet_p99_ms": q99,
        "flood_p50_ms": f50,
        "flood_p99_ms": f99,
        "flood_messages_reaching_the_core_per_s": rate,
        "p99_ratio": f99 / q99,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Syncs `a` into `b` with Automerge's own sync protocol until neither has more to say.
fn bare_sync(
    a: &mut automerge::AutoCommit,
    b: &mut automerge::AutoCommit,
    sa: &mut SyncState,
    sb: &mut SyncState,
) {
    loop {
        let mut moved = false;
        if let Some(m) = a.sync().generate_sync_message(sa) {
            b.sync().receive_sync_message(sb, m).expect("sync");
            moved = true;
        }
        if let Some(m) = b.sync().generate_sync_message(sb) {
            a.sync().receive_sync_message(sa, m).expect("sync");
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

/// Bare Automerge: per-note time (µs, median) to write a note and sync it to another
/// document, and a full sync of `n` notes into an empty document. The notes are written by
/// the same notebook code, then moved as bare Automerge changes.
fn floor(latency_notes: usize, n: usize) -> (f64, Duration) {
    let author = MemberId::from_bytes([1; 32]);
    let entry = |i: usize| NewEntry {
        kind: EntryKind::Care,
        text: text(i),
        vitals: None,
    };
    let mut writer = LiaisonNotebook::new(automerge::ActorId::from(vec![1u8; 32]));
    let mut a = automerge::AutoCommit::load(&writer.replica_mut().save()).expect("load");
    let mut b = a.fork();
    let (mut sa, mut sb) = (SyncState::new(), SyncState::new());
    bare_sync(&mut a, &mut b, &mut sa, &mut sb);
    let mut per_note = Vec::new();
    for i in 0..latency_notes {
        let t = Instant::now();
        writer
            .add_entry(author, entry(i), Timestamp(i as i64))
            .expect("note");
        let change = writer.replica_mut().last_local_change().expect("change");
        a.apply_changes([change]).expect("apply");
        bare_sync(&mut a, &mut b, &mut sa, &mut sb);
        per_note.push(t.elapsed().as_secs_f64() * 1e6);
    }
    per_note.sort_by(f64::total_cmp);
    let mut big = LiaisonNotebook::new(automerge::ActorId::from(vec![2u8; 32]));
    for i in 0..n {
        big.add_entry(author, entry(i), Timestamp(i as i64))
            .expect("note");
    }
    let mut full = automerge::AutoCommit::load(&big.replica_mut().save()).expect("load");
    let mut empty = automerge::AutoCommit::new();
    let (mut s1, mut s2) = (SyncState::new(), SyncState::new());
    let t = Instant::now();
    bare_sync(&mut full, &mut empty, &mut s1, &mut s2);
    (percentile(&per_note, 0.5), t.elapsed())
}

/// A's circle with a second member (a professional): both homes and the circle's id.
fn circle_of_two(root: &Path, second: &str) -> (Node, Node, String) {
    let a = Node::init(root, "A");
    let b = Node::init(root, second);
    let circle = cercle(&a.home, &["circle", "create", "--patient", "Jeanne Durand"])["id"]
        .as_str()
        .expect("id")
        .to_string();
    let card = cercle(&b.home, &["whoami"])["card"]
        .as_str()
        .expect("card")
        .to_string();
    add_professional(&a, &circle, &card);
    (a, b, circle)
}

/// `node`'s member adds the member of `card` to `circle` as a professional (the CLI, as a
/// coordinator would).
fn add_professional(node: &Node, circle: &str, card: &str) {
    cercle(
        &node.home,
        &[
            "circle",
            "add",
            circle,
            "--card",
            card,
            "--role",
            "professional",
        ],
    );
}

/// Starts A, then B dialing A; returns A's TCP address and B's notebook applications.
async fn pair_up(
    http: &reqwest::Client,
    a: &mut Node,
    b: &mut Node,
) -> (String, mpsc::UnboundedReceiver<(usize, i64)>) {
    a.up(&[]);
    let sa = ask(http, a, Status {}).await;
    let addr_a = sa
        .addresses
        .iter()
        .find(|x| x.contains("/tcp/"))
        .expect("tcp")
        .clone();
    b.up(std::slice::from_ref(&addr_a));
    let rx = watch(http.clone(), b).await;
    (addr_a, rx)
}

async fn run(latency_notes: usize, bursts: &[usize], catch_up: usize) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let (mut a, mut b, circle) = circle_of_two(dir.path(), "B");
    let (addr_a, mut rx) = pair_up(&http, &mut a, &mut b).await;
    // B accepts the circle it was added to and joins it before anything is timed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = ask(&http, &b, CircleList {}).await;
        if !list.circles.is_empty() {
            break;
        }
        if let Some(invited) = list.invitations.first() {
            let circle = invited.circle.clone();
            ask(
                &http,
                &b,
                CircleAccept {
                    circle,
                    always: false,
                },
            )
            .await;
        }
        assert!(Instant::now() < deadline, "B never joined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 1. Latency.
    let lat = latency(&http, &a, &circle, &mut rx, 0..latency_notes).await;
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));

    // 2. Bursts.
    let mut written = latency_notes;
    let mut burst_rows = Vec::new();
    for &n in bursts {
        let d = burst(&http, &a, &circle, &mut rx, n, written).await;
        written += n;
        burst_rows.push((n, d));
    }

    // 4. Idle resync: B reconnects with nothing new.
    b.stop();
    b.up(std::slice::from_ref(&addr_a));
    let deadline = Instant::now() + Duration::from_secs(30);
    let idle = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = ask(&http, &b, Status {}).await;
        if let Some(p) = s.peers.first()
            && p.messages_received >= 1
        {
            // Let anything the Hellos would trigger happen.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = ask(&http, &b, Status {}).await;
            break s.peers[0].clone();
        }
        assert!(Instant::now() < deadline, "B did not reconnect");
    };

    // 3. Catch-up: a second circle of `catch_up` notes, and a new member's empty node.
    let circle2 = cercle_call_create(&http, &a).await;
    let mut c = Node::init(dir.path(), "C");
    let card_c = cercle(&c.home, &["whoami"])["card"]
        .as_str()
        .expect("card")
        .to_string();
    write_notes(&http, &a, &circle2, 0, catch_up).await;
    ask(
        &http,
        &a,
        MemberAdd {
            circle: circle2.clone(),
            card: card_c,
            role: cercle_crdt::Role::Professional,
        },
    )
    .await;
    c.up(&[]);
    let mut rx_c = watch(http.clone(), &c).await;
    let t0 = now_micros();
    ask(
        &http,
        &c,
        Connect {
            address: addr_a.clone(),
        },
    )
    .await;
    accept_when_invited(&http, &c, &circle2).await;
    let last = applied(&mut rx_c, envelopes_for(catch_up)).await;
    let catch_up_time = Duration::from_micros((last - t0).max(0) as u64);
    c.stop();
    b.stop();
    a.stop();

    let (mailbox_push, mailbox_catch_up) = mailbox_run(catch_up).await;
    let (floor_note_us, floor_full) = floor(latency_notes.min(1000), catch_up);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_note = |(n, d): &(usize, Duration)| ms(*d) / *n as f64;
    let first = burst_rows.first().map(per_note).unwrap_or(0.0);
    let last_row = burst_rows.last().map(per_note).unwrap_or(0.0);
    let quadratic = if first > 0.0 { last_row / first } else { 0.0 };

    eprintln!("\nsync between two cercle processes on loopback");
    eprintln!(
        "  latency, {latency_notes} notes one at a time: p50 {p50:.2} ms, p99 {p99:.2} ms (targets 1 ms, 5 ms)"
    );
    eprintln!(
        "  bare Automerge per-note sync (in memory): {:.0} µs; ratio of p50 {:.1}x",
        floor_note_us,
        p50 * 1e3 / floor_note_us
    );
    for (n, d) in &burst_rows {
        eprintln!(
            "  burst of {n:>6} notes: {:>8.0} ms ({:.3} ms/note)",
            ms(*d),
            ms(*d) / *n as f64
        );
    }
    eprintln!(
        "  per-note time at the largest burst / at the smallest: {quadratic:.2} (target <= 1.5)"
    );
    eprintln!(
        "  catch-up of an empty member on {catch_up} notes: {:.0} ms; bare Automerge full sync: {:.0} ms; ratio {:.1}x",
        ms(catch_up_time),
        ms(floor_full),
        ms(catch_up_time) / ms(floor_full).max(1e-9)
    );
    eprintln!(
        "  through a relay's mailbox, {catch_up} notes: all held by the relay {:.0} ms after the first write; an empty member's catch-up from the mailbox alone {:.0} ms, ratio to bare {:.1}x",
        ms(mailbox_push),
        ms(mailbox_catch_up),
        ms(mailbox_catch_up) / ms(floor_full).max(1e-9)
    );
    eprintln!(
        "  idle resync of an unchanged circle: {} message(s) sent, {} received by B, {} data bytes",
        idle.messages_sent,
        idle.messages_received,
        idle.data_bytes_received + idle.data_bytes_sent
    );
    serde_json::json!({
        "latency_notes": latency_notes,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "bare_automerge_note_sync_us": floor_note_us,
        "latency_p50_ratio_to_bare": p50 * 1e3 / floor_note_us,
        "bursts": burst_rows.iter().map(|(n, d)| serde_json::json!({"notes": n, "ms": ms(*d), "ms_per_note": ms(*d) / *n as f64})).collect::<Vec<_>>(),
        "per_note_largest_over_smallest": quadratic,
        "catch_up_notes": catch_up,
        "catch_up_ms": ms(catch_up_time),
        "bare_automerge_full_sync_ms": ms(floor_full),
        "catch_up_ratio_to_bare": ms(catch_up_time) / ms(floor_full).max(1e-9),
        "mailbox_all_held_ms": ms(mailbox_push),
        "mailbox_catch_up_ms": ms(mailbox_catch_up),
        "mailbox_catch_up_ratio_to_bare": ms(mailbox_catch_up) / ms(floor_full).max(1e-9),
        "idle_resync_messages_sent": idle.messages_sent,
        "idle_resync_messages_received": idle.messages_received,
        "idle_resync_data_bytes": idle.data_bytes_received + idle.data_bytes_sent,
    })
}

/// The mailbox: A writes `n` notes with only the circle's relay to push to and goes
/// offline; a new member's empty node then catches up from the relay alone. Returns the
/// time until the mailbox held everything (pushed from the first write) and the catch-up.
async fn mailbox_run(n: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let relay = RelayProcess::start(&dir.path().join("relay"));
    let (mut a, mut d, circle) = circle_of_two(dir.path(), "D");
    cercle(&a.home, &["circle", "relays", &circle, &relay.address]);
    a.up(&[]);
    let before = relay.envelopes(&http).await;
    let t0 = Instant::now();
    write_notes(&http, &a, &circle, 0, n).await;
    let want = before + envelopes_for(n) as f64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while relay.envelopes(&http).await < want {
        assert!(
            Instant::now() < deadline,
            "the mailbox never got every note"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Polled every 20 ms: the time is an upper bound by that much.
    let pushed = t0.elapsed();
    a.stop();

    d.up(&[]);
    let mut rx = watch(http.clone(), &d).await;
    let t0 = now_micros();
    ask(
        &http,
        &d,
        Connect {
            address: relay.address.clone(),
        },
    )
    .await;
    accept_when_invited(&http, &d, &circle).await;
    let last = applied(&mut rx, envelopes_for(n)).await;
    d.stop();
    (pushed, Duration::from_micros((last - t0).max(0) as u64))
}

/// Accepts `circle` as soon as it reaches `node` as an invitation, as its user would (the
/// node applies nothing of a circle before that).
async fn accept_when_invited(http: &reqwest::Client, node: &Node, circle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = ask(http, node, CircleList {}).await;
        if list.circles.iter().any(|c| c.id == circle) {
            return;
        }
        if list.invitations.iter().any(|i| i.circle == circle) {
            let circle = circle.to_string();
            ask(
                http,
                node,
                CircleAccept {
                    circle,
                    always: false,
                },
            )
            .await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{circle} never came as an invitation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn cercle_call_create(http: &reqwest::Client, a: &Node) -> String {
    let create = CircleCreate::for_patient("Marcel Leroy");
    ask(http, a, create).await.circles[0].id.clone()
}

/// `cercle join` between two running nodes (median of `rounds`), and `cercle demo` up.
fn invites_and_demo(rounds: usize) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Node::init(dir.path(), "A");
    let mut b = Node::init(dir.path(), "B");
    a.up(&[]);
    b.up(&[]);
    let mut joins = Vec::new();
    for i in 0..rounds {
        let patient = format!("Patient {i}");
        let circle = cercle(&a.home, &["circle", "create", "--patient", &patient])["id"]
            .as_str()
            .expect("id")
            .to_string();
        let code = cercle(
            &a.home,
            &["invite", "create", &circle, "--role", "professional"],
        )["code"]
            .as_str()
            .expect("code")
            .to_string();
        let t = Instant::now();
        let joined = cercle(&b.home, &["join", &code]);
        joins.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(joined["state"], "joined");
    }
    a.stop();
    b.stop();
    joins.sort_by(f64::total_cmp);
    let join_median = percentile(&joins, 0.5);

    let errors = dir.path().join("demo.err");
    let t = Instant::now();
    let mut demo = Command::new(BIN)
        .args(["--json", "demo"])
        .env("TMPDIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors).expect("demo.err"))
        .spawn()
        .expect("demo");
    let out = demo.stdout.take().expect("stdout");
    let lines = std::io::BufRead::lines(std::io::BufReader::new(out));
    let printed = lines.take(4).filter(Result::is_ok).count();
    assert_eq!(
        printed,
        4,
        "the demo stopped: {}",
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    let demo_up = t.elapsed().as_secs_f64() * 1e3;
    let _ = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status();
    let _ = demo.wait();
    eprintln!(
        "  invite: `cercle join` until the circle is held, median of {rounds}: {join_median:.0} ms; `cercle demo` up (relay and 4 nodes): {demo_up:.0} ms"
    );
    serde_json::json!({
        "invite_join_ms_median": join_median,
        "invite_joins": rounds,
        "demo_up_ms": demo_up,
    })
}

/// A signed-in web session with a node: its base URL and the session cookie.
async fn web_session(http: &reqwest::Client, node: &Node) -> (String, String) {
    let api = node.api();
    let base = format!("http://{}", api.address);
    let r = http
        .get(format!("{base}/?token={}", api.token))
        .send()
        .await
        .expect("login link");
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    (base, cookie)
}

async fn page(http: &reqwest::Client, base: &str, cookie: &str, path: &str) -> String {
    http.get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page body")
}

/// 8. Notes submitted on A's notebook form until on B's live page (ms, sorted).
async fn web_live(rounds: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    let (mut a, mut b, circle) = circle_of_two(dir.path(), "B");
    a.up(&[]);
    let sa = ask(&http, &a, Status {}).await;
    let addr_a = sa
        .addresses
        .iter()
        .find(|x| x.contains("/tcp/"))
        .expect("tcp")
        .clone();
    b.up(std::slice::from_ref(&addr_a));
    accept_when_invited(&http, &b, &circle).await;
    let (base_a, cookie_a) = web_session(&http, &a).await;
    let (base_b, cookie_b) = web_session(&http, &b).await;
    let notebook = format!("/c/{circle}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !page(&http, &base_b, &cookie_b, &notebook)
        .await
        .contains("Nouvelle note")
    {
        assert!(Instant::now() < deadline, "B never held the circle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let form = page(&http, &base_a, &cookie_a, &notebook).await;
    let token = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("form token")
        .to_string();
    let events = http
        .get(format!("{base_b}/ui/events"))
        .header("Cookie", &cookie_b)
        .send()
        .await
        .expect("events");
    let mut events = events.bytes_stream();
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let note = format!("Visite {i}: pansement refait, plaie propre");
        let t = Instant::now();
        let r = http
            .post(format!("{base_a}{notebook}/notes"))
            .header("Cookie", &cookie_a)
            .form(&[
                ("csrf", token.as_str()),
                ("kind", "care"),
                ("text", note.as_str()),
            ])
            .send()
            .await
            .expect("form");
        assert_eq!(r.status().as_u16(), 303, "the form was refused");
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("no event on B within 10 s")
                .expect("B's event stream ended")
                .expect("event stream");
            if String::from_utf8_lossy(&chunk).contains("liaison_notebook")
                && page(&http, &base_b, &cookie_b, &notebook)
                    .await
                    .contains(&note)
            {
                break;
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(events);
    a.stop();
    b.stop();
    times.sort_by(f64::total_cmp);
    times
}

/// Burst sizes: per-note time must stay flat from the first to the last.
const BURSTS: [usize; 4] = [1_000, 2_000, 10_000, 100_000];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if !std::env::args().any(|a| a == "--bench") {
        runtime.block_on(run(20, &[50, 100], 200));
        invites_and_demo(1);
        runtime.block_on(web_live(3));
        return;
    }
    if std::env::args().any(|a| a == "flood") {
        // `cargo bench -p cercle --bench sync -- flood`: this part alone.
        let flood = runtime.block_on(flood_run(500));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("flood.json"), format!("{flood:#}\n"));
        return;
    }
    if std::env::args().any(|a| a == "latency") {
        // `cargo bench -p cercle --bench sync -- latency`: the one-note latency over 1 000
        // notes, with one small burst and catch-up, to look at the writer's path alone.
        let report = runtime.block_on(run(1000, &[1_000], 1_000));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("latency.json"), format!("{report:#}\n"));
        return;
    }
    if std::env::args().any(|a| a == "bursts") {
        // `cargo bench -p cercle --bench sync -- bursts`: latency and bursts up to 100 000
        // notes, catch-up and idle resync, without the other parts.
        let report = runtime.block_on(run(1000, &BURSTS, 10_000));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("bursts.json"), format!("{report:#}\n"));
        return;
    }
    let mut report = runtime.block_on(run(1000, &BURSTS, 10_000));
    report["invites_and_demo"] = invites_and_demo(5);
    report["flood"] = runtime.block_on(flood_run(500));
    let live = runtime.block_on(web_live(100));
    let (median, p95, max) = (
        percentile(&live, 0.5),
        percentile(&live, 0.95),
        live.last().copied().unwrap_or(0.0),
    );
    let api_p50 = report["latency_p50_ms"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "  web: a note submitted on A's page until on B's live page, {} notes: median {median:.1} ms, p95 {p95:.1} ms, max {max:.1} ms (bound: 1 s); {:.1}x the API path's p50",
        live.len(),
        median / api_p50
    );
    report["web_live"] = serde_json::json!({
        "notes": live.len(),
        "median_ms": median,
        "p95_ms": p95,
        "max_ms": max,
        "median_ratio_to_api_latency_p50": median / api_p50,
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("sync.json"), format!("{report:#}\n"));
}
