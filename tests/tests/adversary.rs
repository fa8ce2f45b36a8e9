//! Hostile peers as real processes (`adversary`, a libp2p peer speaking the sync protocol
//! badly on purpose) against real `cercle up` nodes on loopback. Each test measures what the
//! attack cost the node (its resident memory, from `/proc`) and checks that the members'
//! work goes on while it lasts: a stranger's hundreds of streams of unfinished frames cost
//! less than 32 MiB; a member that never reads costs as little and is disconnected; a member
//! gone bad (replays, forgeries, a rewrite of another's note, a forked log, an oversized
//! message, a flood of garbage) is
//! refused with each reason counted, what its flood makes the node write is bounded, and it is
//! set aside (disconnected, not read for a while) once over its budget; a stranger at a relay
//! learns nobody there while the members meet through it; a relay gone bad (altering,
//! reordering, replaying, withholding) costs the members nothing but time.

use std::process::{Command, Stdio};

use cercle_tests::{
    Daemon, Relay, TestHome, loopback_args, pair_on_loopback, up_on_loopback, wait_until,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt as _, SeedableRng as _};

const MIB: u64 = 1024 * 1024;
/// A relay listening and serving its metrics on loopback.
const RELAY_ON_LOOPBACK: [&str; 4] = [
    "--listen",
    "/ip4/127.0.0.1/tcp/0",
    "--metrics",
    "127.0.0.1:0",
];

fn adversary(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adversary"));
    c.args(args).stderr(Stdio::inherit());
    c
}

/// A coordinator A and a member B of one circle (their nodes not started).
fn homes() -> (TestHome, TestHome, String) {
    let a = TestHome::new();
    let b = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    b.init("Julien Petit", "infirmier");
    let circle = a.create_circle("Jeanne Durand");
    a.add_member(&circle, &b.card(), "professional");
    (a, b, circle)
}

/// A coordinator's node A and a member's node B, connected, sharing one circle.
fn team() -> (TestHome, TestHome, String, Daemon, Daemon) {
    let (a, b, circle) = homes();
    let (node_a, node_b) = pair_on_loopback(&a, &b, &circle);
    (a, b, circle, node_a, node_b)
}

/// A new identity for the adversary, saved in `dir`; returns where, and what the adversary
/// printed (its card and member id).
fn adversary_identity(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, serde_json::Value) {
    let saved = dir.join(format!("{}.json", name.replace(' ', "-")));
    let made = adversary(&[
        "identity",
        &format!("out={}", saved.display()),
        &format!("name={name}"),
    ])
    .output()
    .unwrap_or_else(|e| panic!("cannot run the adversary: {e}"));
    let made: serde_json::Value = serde_json::from_slice(&made.stdout)
        .unwrap_or_else(|e| panic!("the adversary printed no identity: {e}"));
    (saved, made)
}

/// An adversary's member identity (saved in `dir`), added by A to `circle` as a
/// professional; returns where it is saved and what the adversary printed.
fn hostile_member(
    a: &TestHome,
    circle: &str,
    dir: &std::path::Path,
) -> (std::path::PathBuf, serde_json::Value) {
    let (saved, made) = adversary_identity(dir, "Marc Roux");
    a.add_member(
        circle,
        made["card"].as_str().unwrap_or_default(),
        "professional",
    );
    (saved, made)
}

/// `home`'s node on loopback whose only path to others is the relay at `address` (no
/// peer given, no mDNS).
fn only_through(home: &TestHome, address: &str) -> Daemon {
    let args = [
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--relay",
        address,
    ];
    Daemon::start(home, &[], &args)
}

/// Runs the `adversary member` process against the peer at `to` as the member saved at
/// `saved`, with a flood of `flood` garbage envelopes; returns what it reported.
fn member_attack(to: &str, saved: &std::path::Path, circle: &str, flood: u64) -> String {
    let out = adversary(&[
        "member",
        &format!("to={to}"),
        &format!("identity={}", saved.display()),
        &format!("circle={circle}"),
        &format!("flood={flood}"),
    ])
    .output()
    .unwrap_or_else(|e| panic!("cannot run the adversary: {e}"));
    assert!(out.status.success(), "the adversary failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lines of the log at `path` about refused or rejected data.
fn refusal_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("refused") || l.contains("rejected"))
        .count()
}

/// The last `lines` lines of the log at `path`, to say what a process saw when a test fails.
fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `home` lists `note` as written, and no rewrite of it.
fn a_note_stands(home: &TestHome, circle: &str, note: &str) {
    let notes = home.note_texts(circle);
    assert!(
        notes.iter().any(|t| t == note) && !notes.iter().any(|t| t.contains("réécrit")),
        "the note was rewritten: {notes:?}"
    );
}

/// A note written on A reaches B within 20 s.
fn a_note_still_reaches_b(a: &TestHome, b: &TestHome, circle: &str, text: &str) {
    a.json(&["note", "add", circle, text]);
    assert!(
        wait_until(20, || b.note_texts(circle).iter().any(|t| t == text)),
        "B never listed {text:?} during the attack"
    );
}

#[test]
fn a_stranger_sending_many_streams_of_unfinished_large_frames_costs_the_node_little() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let log_path = work.path().join("a.log");
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("no log file: {e}"));
    let (a, b, circle) = homes();
    let args = loopback_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node_a = Daemon::start_logging(&a, &[], &args, log);
    let _node_b = up_on_loopback(&b, &[&node_a]);
    b.accept(&circle);
    let before = node_a.resident_bytes();
    // 512 streams, each announcing a frame of almost 1 MiB and sending 900 kB of it: half a
    // gigabyte if a node buffered every partial frame of every stream.
    let attack = adversary(&[
        "streams",
        &format!("to={}", node_a.tcp_address()),
        "count=512",
        "declare=1000000",
        "send=900000",
        "hold=10",
    ])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap_or_else(|e| panic!("cannot start the adversary: {e}"));
    std::thread::sleep(std::time::Duration::from_secs(4));
    let during = node_a.resident_bytes();
    a_note_still_reaches_b(&a, &b, &circle, "Tension 13/8, traitement inchangé");
    let out = attack
        .wait_with_output()
        .unwrap_or_else(|e| panic!("the adversary did not finish: {e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    let peak = during.max(node_a.resident_bytes());
    assert!(
        peak.saturating_sub(before) < 32 * MIB,
        "the node grew from {} MiB to {} MiB under the attack ({report})",
        before / MIB,
        peak / MIB
    );
    // Each of the 512 streams was closed with a reason; the log took a bounded part of
    // them (a minute's budget, perhaps two if the attack straddled a minute).
    let lines = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("sync stream") || l.contains("sync frame"))
        .count() as u64;
    let most = 2 * cercle_node::net::PEER_LINES_PER_MINUTE + 1;
    assert!(
        lines <= most,
        "A wrote {lines} log lines about a stranger's streams"
    );
}

/// A stranger that connects, takes the node's stream and never opens its own (a half-open
/// connection: its side could tell the node nothing) holds its connection for a bounded
/// wait, then is disconnected; the node goes on serving its members meanwhile.
#[test]
fn a_peer_that_never_speaks_is_disconnected_after_a_bounded_wait() {
    let (a, b, circle) = homes();
    let args = loopback_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node_a = Daemon::start(&a, &[], &args);
    let _node_b = up_on_loopback(&b, &[&node_a]);
    b.accept(&circle);
    // The same against a relay, at the same time.
    let relay_home = TestHome::new();
    let relay = Relay::start(&relay_home, &[], &RELAY_ON_LOOPBACK);
    let mute = |to: &str| {
        adversary(&["mute", &format!("to={to}"), "secs=60"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the adversary: {e}"))
    };
    let at_node = mute(&node_a.tcp_address());
    let at_relay = mute(&relay.addresses()[0]);
    for (who, attack) in [("the node", at_node), ("the relay", at_relay)] {
        let out = attack
            .wait_with_output()
            .unwrap_or_else(|e| panic!("the adversary did not finish: {e}"));
        assert!(out.status.success(), "the adversary failed");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("the adversary's report is not JSON ({e})"));
        assert_eq!(report["disconnected"], true, "{who} kept it: {report}");
        // It was heard from (the Summary came), then let go after the wait.
        assert!(report["messages_heard"].as_u64() >= Some(1), "{report}");
        let after = report["after_ms"].as_u64().unwrap_or_default();
        assert!(
            after >= cercle_node::sync::HALF_OPEN_MS as u64,
            "{who} let go before the wait was over: {report}"
        );
    }
    a_note_still_reaches_b(&a, &b, &circle, "Pansement refait, plaie propre");
}

#[test]
fn a_member_that_never_reads_costs_bounded_memory_and_stalls_no_one() {
    let (a, b, circle, node_a, _node_b) = team();
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let (saved, made) = hostile_member(&a, &circle, work.path());

    let attack = adversary(&[
        "never-read",
        &format!("to={}", node_a.tcp_address()),
        &format!("identity={}", saved.display()),
        "secs=120",
    ])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap_or_else(|e| panic!("cannot start the adversary: {e}"));
    let member = made["member"].as_str().unwrap_or_default().to_string();
    assert!(
        wait_until(20, || a
            .json(&["peers"])
            .as_array()
            .is_some_and(|p| p.len() == 2)),
        "the silent member never connected to A: {}",
        a.json(&["peers"])
    );
    let before = node_a.resident_bytes();

    // 3 000 notes of 1 kB: 3 MB for every member, and the silent one reads none of it.
    let mut import = a
        .command(&["note", "import", &circle])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run note import: {e}"));
    {
        use std::io::Write as _;
        let mut stdin = import
            .stdin
            .take()
            .unwrap_or_else(|| panic!("no stdin for note import"));
        // Incompressible text: what reaches the wire is as large as what was written.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..3000 {
            let line: String = (0..1000)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("import refused input: {e}"));
        }
    }
    let status = import
        .wait()
        .unwrap_or_else(|e| panic!("note import did not finish: {e}"));
    assert!(status.success(), "note import failed");
    assert!(
        wait_until(60, || b.note_texts(&circle).len() >= 3000),
        "B has {} of the 3000 notes while a member does not read",
        b.note_texts(&circle).len()
    );
    a_note_still_reaches_b(&a, &b, &circle, "Pas de douleur ce matin");
    let after = node_a.resident_bytes();
    assert!(
        after.saturating_sub(before) < 32 * MIB,
        "A grew from {} MiB to {} MiB for member {member} that reads nothing",
        before / MIB,
        after / MIB
    );
    // The silent member is disconnected once its stream has taken nothing for a while; it
    // says when, and stops by itself otherwise.
    let out = attack
        .wait_with_output()
        .unwrap_or_else(|e| panic!("the adversary did not finish: {e}"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the adversary printed no report: {e}"));
    assert_eq!(
        report["disconnected"], true,
        "A kept a member that reads nothing connected: {report}"
    );
}

#[test]
fn a_member_gone_bad_is_refused_with_reasons_and_its_flood_costs_little_disk_or_log() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let (a, b, circle) = homes();
    let (saved, _) = hostile_member(&a, &circle, work.path());
    let log_path = work.path().join("a.log");
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("no log file: {e}"));
    let args = loopback_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node_a = Daemon::start_logging(&a, &[], &args, log);
    let _node_b = up_on_loopback(&b, &[&node_a]);
    b.accept(&circle);
    // A note of A's, which the member will try to rewrite.
    const A_NOTE: &str = "Glycémie 1,20 g/L à jeun";
    a_note_still_reaches_b(&a, &b, &circle, A_NOTE);

    let flood = 20_000;
    let report = member_attack(&node_a.tcp_address(), &saved, &circle, flood);

    // What the flood made A do: refuse the garbage, record a bounded part of it, and set
    // the member aside (disconnected, not read) once over its budget.
    let refused_garbage = || {
        a.json(&["status"])["refused"]["malformed"]
            .as_u64()
            .unwrap_or(0)
    };
    let garbage_refused = wait_until(30, || refused_garbage() >= 1);
    let set_aside = wait_until(30, || {
        a.json(&["status"])["peers"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    });
    let shown = a.json(&["circle", "show", &circle]);
    let recorded = shown["refused"].as_u64().unwrap_or(u64::MAX);
    assert!(
        recorded <= 64,
        "{recorded} refusals recorded for a flood of {flood}"
    );
    let logged = refusal_lines(&log_path);
    assert!(
        logged <= 64,
        "A wrote {logged} log lines about refusals for a flood of {flood}"
    );
    // Every attack refused and counted by its reason.
    let status = a.json(&["status"]);
    let refused = &status["refused"];
    let count = |reason: &str| refused[reason].as_u64().unwrap_or(0);
    assert!(
        count("bad_signature") >= 1,
        "the forgery was not refused: {status}"
    );
    assert!(
        count("fork") >= 1,
        "the forked log was not refused: {status}"
    );
    assert!(
        count("schema") >= 1,
        "the rewrite of A's note was not refused: {status}"
    );
    for home in [&a, &b] {
        a_note_stands(home, &circle, A_NOTE);
    }
    assert!(
        count("oversized_message") >= 1,
        "the oversized message was not refused: {status}"
    );
    assert!(garbage_refused, "the garbage was not refused: {status}");
    assert!(
        set_aside,
        "the flooding member was not disconnected ({report}): {status}"
    );
    assert!(
        status["refused_unrecorded"].as_u64().unwrap_or(0) >= 1,
        "{status}"
    );
    // The member's honest note went in, once: the replay changed nothing.
    assert!(
        wait_until(20, || b
            .note_texts(&circle)
            .iter()
            .filter(|t| *t == "Visite faite, RAS")
            .count()
            == 1),
        "the member's honest note did not reach B exactly once ({report})"
    );
    assert_eq!(
        a.note_texts(&circle)
            .iter()
            .filter(|t| t.starts_with("Visite"))
            .count(),
        1,
        "A holds the forked or replayed note"
    );
    // The honest members go on.
    a_note_still_reaches_b(&a, &b, &circle, "Pas de fièvre");
}

/// Anyone may connect to a relay. A stranger there learns nobody: a rendezvous discovery
/// with no namespace gets nothing (the libp2p rendezvous server relays used to run answered
/// it with every registration: each circle's namespace, the members' peer ids and their
/// local addresses), and a Hello or a Changed naming a circle whose id it knows gets no
/// introduction. Meanwhile the circle's members, given nothing but the relay, are
/// introduced to each other there and connect through it.
#[test]
fn a_stranger_at_the_relay_learns_nobody_while_the_members_meet_there() {
    let relay_home = TestHome::new();
    let relay = Relay::start(&relay_home, &[], &RELAY_ON_LOOPBACK);
    let address = relay.addresses()[0].clone();
    let (a, b, circle) = homes();
    a.json(&["circle", "relays", &circle, &address]);
    let node_a = only_through(&a, &address);
    let node_b = only_through(&b, &address);
    b.accept(&circle);
    let peers = |home: &TestHome| home.cercle(&["peers"]).stdout;
    assert!(
        wait_until(60, || peers(&b).contains(&node_a.peer_id)
            && peers(&a).contains(&node_b.peer_id)),
        "A and B never met at the relay: A's peers {}, B's peers {}",
        peers(&a),
        peers(&b)
    );
    let m = relay.metrics();
    assert!(
        m.value("cercle_relay_introductions_total", &[]) >= 2.0,
        "{}",
        m.text
    );

    let asked = adversary(&["discover", &format!("to={address}")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the adversary: {e}"));
    let asked: serde_json::Value = serde_json::from_slice(&asked.stdout)
        .unwrap_or_else(|e| panic!("the adversary printed nothing: {e}"));
    assert_eq!(
        asked["registrations"], 0,
        "the relay told a stranger: {asked}"
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (saved, _) = adversary_identity(dir.path(), "Inconnu");
    let met = adversary(&[
        "meet",
        &format!("to={address}"),
        &format!("identity={}", saved.display()),
        &format!("circle={circle}"),
        "secs=4",
    ])
    .output()
    .unwrap_or_else(|e| panic!("cannot run the adversary: {e}"));
    let met: serde_json::Value = serde_json::from_slice(&met.stdout)
        .unwrap_or_else(|e| panic!("the adversary printed nothing: {e}"));
    assert_eq!(met["met"], 0, "the relay introduced a stranger: {met}");
    let refused = relay.metrics().value(
        "cercle_relay_mailbox_refusals_total",
        &[("direction", "pull"), ("reason", "not_member")],
    );
    assert!(refused >= 1.0, "the stranger's Hello was not refused");
}

/// A relay gone bad between two members who have no other path: it takes A's notes and
/// acknowledges them like a mailbox, then gives B the first three badly (an altered copy
/// first, then all three last first, then all three again) and withholds the fourth. B
/// refuses the altered copy (counted as `bad_signature`), applies the others once each, in
/// A's order, counts the copies it already held, and gets the withheld note as soon as it
/// reaches A another way.
#[test]
fn a_relay_gone_bad_costs_the_members_time_and_nothing_else() {
    use std::io::BufRead as _;

    let (a, b, circle) = homes();
    {
        // B accepts the circle while the two are connected directly.
        let _nodes = pair_on_loopback(&a, &b, &circle);
    }
    let mut rogue = adversary(&["rogue-relay", "forward=3", "secs=90"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the adversary: {e}"));
    let mut out = std::io::BufReader::new(rogue.stdout.take().unwrap_or_else(|| panic!("stdout")));
    let mut first = String::new();
    out.read_line(&mut first)
        .unwrap_or_else(|e| panic!("the rogue relay said nothing: {e}"));
    let said: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    let address = said["address"].as_str().unwrap_or_default().to_string();
    let node_a = only_through(&a, &address);
    let mut node_b = only_through(&b, &address);
    let notes = [
        "Passage 1 : pansement refait",
        "Passage 2 : glycémie 1,10 g/L",
        "Passage 3 : patiente fatiguée",
        "Passage 4 : appeler le médecin",
    ];
    for n in notes {
        a.json(&["note", "add", &circle, n]);
    }
    assert!(
        wait_until(30, || {
            let on_b = b.note_texts(&circle);
            notes[..3].iter().all(|n| on_b.iter().any(|t| t == n))
        }),
        "B never got the first three notes from the rogue relay: {:?}",
        b.note_texts(&circle)
    );
    let peers = b.cercle(&["peers"]).stdout;
    assert!(
        !peers.contains(&node_a.peer_id),
        "A and B met another way; the test is void: {peers}"
    );
    // Each once, in A's order; the withheld one is not there.
    let on_b = b.note_texts(&circle);
    assert_eq!(on_b, notes[..3].to_vec(), "{on_b:?}");
    let status = b.json(&["status"]);
    assert!(
        status["refused"]["bad_signature"]
            .as_u64()
            .unwrap_or_default()
            >= 1,
        "the altered copy was not refused: {status}"
    );
    assert!(
        status["replayed_envelopes"].as_u64().unwrap_or_default() >= 3,
        "the copies sent again were not counted: {status}"
    );

    // Withheld is only late: B reaches A directly and the fourth note arrives.
    node_b.stop();
    let _node_b = up_on_loopback(&b, &[&node_a]);
    assert!(
        wait_until(30, || b.note_texts(&circle) == notes.to_vec()),
        "B never got the note the relay withheld: {:?}",
        b.note_texts(&circle)
    );
    let _ = rogue.kill();
    let _ = rogue.wait();
}

/// The same member gone bad against the circle's relay, which anyone may connect to and
/// every member pushes to: the relay refuses what it can check without a key (the forgery,
/// the fork, the oversized message, the garbage), counts each by reason, logs a bounded
/// part and sets the member aside once over its budget; what it cannot check (a validly
/// signed rewrite of A's note) it passes on, and the members refuse it. The honest members
/// go on through the relay.
#[test]
fn a_member_gone_bad_at_the_relay_is_refused_counted_and_set_aside() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let relay_log = work.path().join("relay.log");
    let log = std::fs::File::create(&relay_log).unwrap_or_else(|e| panic!("no log file: {e}"));
    let relay_home = TestHome::new();
    let relay = Relay::start_logging(&relay_home, &[], &RELAY_ON_LOOPBACK, log);
    let address = relay.addresses()[0].clone();
    let (a, b, circle) = homes();
    a.json(&["circle", "relays", &circle, &address]);
    let (saved, _) = hostile_member(&a, &circle, work.path());
    let mut args = loopback_args(&[]);
    args.extend(["--relay".to_string(), address.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node_a = Daemon::start(&a, &[], &args);
    let mut args_b = loopback_args(&[&node_a]);
    args_b.extend(["--relay".to_string(), address.clone()]);
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let _node_b = Daemon::start(&b, &[], &args_b);
    b.accept(&circle);
    const A_NOTE: &str = "Glycémie 1,20 g/L à jeun";
    a_note_still_reaches_b(&a, &b, &circle, A_NOTE);
    let stored = |m: &cercle_tests::Metrics| m.value("cercle_relay_mailbox_stored_total", &[]);
    assert!(
        wait_until(20, || stored(&relay.metrics()) >= 1.0),
        "A's note never reached the relay"
    );

    let flood = 20_000;
    let report = member_attack(&address, &saved, &circle, flood);

    let refused = |reason: &str| {
        relay.metrics().value(
            "cercle_relay_mailbox_refusals_total",
            &[("direction", "push"), ("reason", reason)],
        )
    };
    assert!(
        wait_until(20, || refused("malformed") >= 1.0),
        "the garbage was not refused: {}",
        relay.metrics().text
    );
    let m = relay.metrics();
    for reason in ["bad_signature", "fork", "oversized"] {
        assert!(refused(reason) >= 1.0, "{reason} not refused: {}", m.text);
    }
    assert!(
        m.value("cercle_relay_set_aside_total", &[]) >= 1.0,
        "the member was not set aside ({report}): {}",
        m.text
    );
    let logged = refusal_lines(&relay_log);
    assert!(
        logged <= 64,
        "the relay wrote {logged} log lines about refusals for a flood of {flood}"
    );
    // What the relay could not check, the members refuse; A's note stays as written.
    assert!(
        wait_until(20, || b.json(&["status"])["refused"]["schema"]
            .as_u64()
            .unwrap_or_default()
            >= 1),
        "B never refused the rewrite the relay passed on: {}\nthe relay's log ends with:\n{}",
        b.json(&["status"]),
        log_tail(&relay_log, 40)
    );
    for home in [&a, &b] {
        a_note_stands(home, &circle, A_NOTE);
    }
    a_note_still_reaches_b(&a, &b, &circle, "Pas de fièvre");
}

/// The audit of a circle (`cercle audit`, its CSV, the "Traçabilité" page), on the
/// coordinator's node of a team of three real nodes that a member gone bad attacked: each
/// member's note with its author, device, the author's time and the time it arrived, the
/// forgery refused with its reason, the forked log as evidence (also in `circle show`).
#[test]
fn a_circles_audit_lists_each_members_writes_with_both_times_and_the_refusals() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let (a, b, circle) = homes();
    let c = TestHome::new();
    c.init("Anne Leroy", "kinésithérapeute");
    a.add_member(&circle, &c.card(), "professional");
    let (saved, _) = hostile_member(&a, &circle, work.path());
    let node_a = up_on_loopback(&a, &[]);
    let _node_b = up_on_loopback(&b, &[&node_a]);
    let _node_c = up_on_loopback(&c, &[&node_a]);
    b.accept(&circle);
    c.accept(&circle);
    let written = [
        (&a, "Dr Claire Martin", "Ordonnance renouvelée"),
        (&b, "Julien Petit", "Pansement refait"),
        (&c, "Anne Leroy", "Marche 20 m avec déambulateur"),
    ];
    for (home, _, text) in written {
        home.json(&["note", "add", &circle, text]);
    }
    assert!(
        wait_until(30, || written
            .iter()
            .all(|(_, _, t)| a.note_texts(&circle).iter().any(|n| n == t))),
        "A never held every member's note"
    );
    member_attack(&node_a.tcp_address(), &saved, &circle, 0);
    assert!(
        wait_until(20, || {
            let trail = a.json(&["audit", &circle]);
            trail["forks"].as_array().is_some_and(|f| !f.is_empty())
                && trail["refusals"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["reason"] == "bad_signature"))
        }),
        "the forgery or the fork is not in the audit: {}",
        a.json(&["audit", &circle])
    );

    let trail = a.json(&["audit", &circle]);
    let writes = trail["writes"].as_array().cloned().unwrap_or_default();
    for (home, name, text) in written {
        let note = writes
            .iter()
            .find(|w| w["action"] == "note_written" && w["name"] == name)
            .unwrap_or_else(|| panic!("no note of {name} ({text}) in the audit: {trail}"));
        assert!(note["at"].as_i64().is_some_and(|t| t > 0), "{note}");
        let device = home.json(&["status"])["device"].clone();
        assert_eq!(note["device"], device, "the note's device: {note}");
        if name == "Dr Claire Martin" {
            assert!(note["received"].is_null(), "written on A: {note}");
        } else {
            let received = note["received"].as_i64().unwrap_or(0);
            assert!(
                received >= note["at"].as_i64().unwrap_or(i64::MAX),
                "received before it was written: {note}"
            );
        }
    }
    assert!(
        writes
            .iter()
            .any(|w| w["action"] == "member_added" && w["about"] == "Anne Leroy"),
        "the membership is not in the audit: {trail}"
    );
    // The member's honest note is there too, with its device; its forgeries are not.
    assert!(
        writes
            .iter()
            .any(|w| w["action"] == "note_written" && w["name"] == "Marc Roux"),
        "{trail}"
    );
    let shown = a.json(&["circle", "show", &circle]);
    assert_eq!(
        shown["forks"][0]["name"], "Marc Roux",
        "the fork is not shown with its member: {shown}"
    );

    // The same trail as a CSV file, and nothing from tomorrow on.
    let csv = work.path().join("audit.csv");
    let csv_arg = csv.to_string_lossy().to_string();
    a.json(&["audit", &circle, "--csv", &csv_arg]);
    let table = std::fs::read_to_string(&csv).unwrap_or_default();
    assert!(
        table.starts_with("kind,at,received,member,name,device"),
        "{table}"
    );
    assert!(
        table.contains("refusal,") && table.contains("fork,"),
        "{table}"
    );
    assert!(table.contains("Anne Leroy"), "{table}");
    let tomorrow = (jiff::Zoned::now().date() + jiff::Span::new().days(1)).to_string();
    let later = a.json(&["audit", &circle, "--since", &tomorrow]);
    assert_eq!(later["writes"], serde_json::json!([]), "{later}");
    let refused = a.cercle(&["audit", &circle, "--since", "yesterday"]);
    assert!(
        refused.stderr.contains("YYYY-MM-DD"),
        "a bad date is not explained: {}",
        refused.stderr
    );

    // In the FHIR export, one AuditEvent per row, valid against HL7's R4 schema.
    let bundle = a.fhir_export(&circle);
    cercle_tests::checkers::validate_fhir(&a.path().join("c.fhir.json"));
    let events = cercle_tests::fhir_resources(&bundle, "AuditEvent");
    assert!(
        events
            .iter()
            .any(|e| e["subtype"][0]["code"] == "note_written" && e["outcome"] == "0")
            && events
                .iter()
                .any(|e| e["subtype"][0]["code"] == "bad_signature" && e["outcome"] == "4"),
        "the export lacks the audit: {events:?}"
    );

    // The page, in French.
    let web = cercle_tests::browser::WebSession::login(&a.ui_link());
    let (status, page) = web.get(&format!("/c/{circle}/audit"));
    assert_eq!(status, 200);
    for expected in [
        "Traçabilité",
        "Transmission écrite",
        "Julien Petit",
        "bad_signature",
        "Historique falsifié",
    ] {
        assert!(page.contains(expected), "the audit page lacks {expected}");
    }
    // It says who did what and when, not what was said.
    assert!(
        !page.contains("Pansement refait"),
        "the audit page shows care data"
    );
}
