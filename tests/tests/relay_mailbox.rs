//! Members who cannot reach each other, through a relay: A and B sit in two network
//! namespaces with no route to each other; the relay sits in a third, linked to both (and to
//! the test, which reads its metrics). Without root the same story runs on loopback and says
//! so.
//!
//! The story: a note written on A reaches B through the relay (B ends up connected to A
//! through a relayed circuit); a removed member's push and pull are refused and counted;
//! with B offline, A writes and goes offline, and B, back, gets the note from the mailbox;
//! the relay killed with SIGKILL comes back holding every envelope; nothing written (note
//! texts, names, the patient) appears in the relay's files or in a dump of its mailbox.

// Saying which topology ran is this test's output.
#![allow(clippy::print_stderr)]

use cercle_tests::{Daemon, Metrics, Netns, Relay, TestHome, is_root, wait_until};

/// Where each party runs.
struct Topology {
    /// Namespaces A, B, relay; none on loopback.
    netns: Option<Netns>,
}

const A: usize = 0;
const B: usize = 1;
const R: usize = 2;

impl Topology {
    fn new() -> Topology {
        if !is_root() {
            eprintln!("NOTE: not root, so no network namespaces: this run uses loopback");
            return Topology { netns: None };
        }
        let build = || -> Result<Netns, String> {
            let mut n = Netns::create(&["ma", "mb", "mr"])?;
            n.link(A, "10.78.1.2", Some(R), "10.78.1.1")?;
            n.link(B, "10.78.2.2", Some(R), "10.78.2.1")?;
            // The test's own link to the relay, to read its metrics.
            n.link(R, "10.78.3.2", None, "10.78.3.1")?;
            Ok(n)
        };
        match build() {
            Ok(n) => Topology { netns: Some(n) },
            Err(e) => {
                eprintln!("NOTE: cannot create namespaces ({e}): this run uses loopback");
                Topology { netns: None }
            }
        }
    }

    fn prefix(&self, who: usize) -> Vec<&str> {
        match &self.netns {
            Some(n) => n.exec(who).to_vec(),
            None => Vec::new(),
        }
    }

    /// The relay's address on `who`'s link.
    fn relay_ip(&self, who: usize) -> &'static str {
        match (&self.netns, who) {
            (None, _) => "127.0.0.1",
            (Some(_), A) => "10.78.1.1",
            _ => "10.78.2.1",
        }
    }

    fn relay_args(&self) -> Vec<&'static str> {
        match &self.netns {
            Some(_) => vec!["--listen", "/ip4/0.0.0.0/tcp/0", "--metrics", "10.78.3.2:0"],
            None => vec![
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--metrics",
                "127.0.0.1:0",
            ],
        }
    }

    fn node_args(&self, relay: &Relay, who: usize) -> Vec<String> {
        let listen = if self.netns.is_some() {
            "/ip4/0.0.0.0/tcp/0"
        } else {
            "/ip4/127.0.0.1/tcp/0"
        };
        vec![
            "--listen".into(),
            listen.into(),
            "--no-mdns".into(),
            "--relay".into(),
            relay.address_on(self.relay_ip(who)),
        ]
    }
}

/// A member: a home and where it runs.
struct Member<'t> {
    home: TestHome,
    at: usize,
    topology: &'t Topology,
}

impl Member<'_> {
    fn start(&self, relay: &Relay) -> Daemon {
        let args = self.topology.node_args(relay, self.at);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start(&self.home, &self.topology.prefix(self.at), &args)
    }

    fn cercle(&self, args: &[&str]) -> cercle_tests::Run {
        self.home.through(&self.topology.prefix(self.at), args)
    }

    fn notes(&self, circle: &str) -> Vec<String> {
        self.cercle(&["--json", "note", "list", circle])
            .note_texts()
    }

    fn peers(&self) -> String {
        self.cercle(&["--json", "peers"]).stdout
    }
}

fn mailbox(m: &Metrics, what: &str) -> f64 {
    m.value(&format!("cercle_relay_mailbox_{what}"), &[])
}

fn refusals(m: &Metrics, direction: &str, reason: &str) -> f64 {
    m.value(
        "cercle_relay_mailbox_refusals_total",
        &[("direction", direction), ("reason", reason)],
    )
}

const PATIENT: &str = "Jeanne Durand";
const NAMES: [&str; 3] = ["Claire Martin", "Julien Petit", "Sophie Bernard"];
const FIRST: &str = "Plaie du talon propre, pansement refait";
const REFUSED: &str = "Note écrite après mon retrait du cercle";
const OFFLINE: &str = "Glycémie à jeun 1,32 g/L, à recontrôler";

#[test]
fn members_without_a_route_meet_through_the_relay_and_its_mailbox() {
    let topology = Topology::new();
    let relay_home = TestHome::new();
    let relay = Relay::start(&relay_home, &topology.prefix(R), &topology.relay_args());

    let a = Member {
        home: TestHome::new(),
        at: A,
        topology: &topology,
    };
    let b = Member {
        home: TestHome::new(),
        at: B,
        topology: &topology,
    };
    let c = Member {
        home: TestHome::new(),
        at: B,
        topology: &topology,
    };
    a.home
        .init(&format!("Dr {}", NAMES[0]), "médecin généraliste");
    b.home.init(NAMES[1], "infirmier");
    c.home.init(NAMES[2], "kinésithérapeute");
    let circle = a.home.create_circle(PATIENT);
    // The relay keeps only the circles that name it.
    a.home.json(&[
        "circle",
        "relays",
        &circle,
        &relay.address_on(topology.relay_ip(A)),
    ]);
    a.home.add_member(&circle, &b.home.card(), "professional");
    a.home.add_member(&circle, &c.home.card(), "professional");

    if let Some(n) = &topology.netns {
        // A has no route to B's link: only the relay can join them.
        let route = n.ip(A, &["route", "get", "10.78.2.2"]);
        assert!(route.is_err(), "A has a route to B: {route:?}");
    }

    // 1. Through the relay: no address of each other given, no mDNS.
    let mut node_a = a.start(&relay);
    let mut node_b = b.start(&relay);
    let mut node_c = c.start(&relay);
    // B's and C's users accept the circle A added them to.
    cercle_tests::accept_with(|args| b.cercle(args), &circle);
    cercle_tests::accept_with(|args| c.cercle(args), &circle);
    a.cercle(&["note", "add", &circle, FIRST]).ok();
    assert!(
        wait_until(60, || b.notes(&circle).contains(&FIRST.to_string())),
        "B never got A's note through the relay; B's peers: {}",
        b.peers()
    );
    assert!(
        wait_until(60, || c.notes(&circle).contains(&FIRST.to_string())),
        "C never got A's note through the relay"
    );
    // B also reaches A itself, through a relayed circuit: the relay introduced them.
    assert!(
        wait_until(60, || b.peers().contains(&node_a.peer_id)),
        "B never connected to A through the relay: {}",
        b.peers()
    );
    let m = relay.metrics();
    for name in [
        "cercle_relay_reservations_accepted_total",
        "cercle_relay_circuits_accepted_total",
        "cercle_relay_introductions_total",
    ] {
        assert!(m.value(name, &[]) >= 1.0, "{name} is 0: {}", m.text);
    }

    // 2. A removed member may neither pull nor push.
    node_c.stop();
    let ops_before = mailbox(&relay.metrics(), "ops");
    a.cercle(&["circle", "remove", &circle, NAMES[2]]).ok();
    assert!(
        wait_until(30, || mailbox(&relay.metrics(), "ops") > ops_before),
        "the relay never got the removal"
    );
    let mut node_c = c.start(&relay);
    // C never heard of its removal: it still offers the circle and writes to it (once it
    // is connected to the relay, so that the note is pushed there).
    assert!(
        wait_until(30, || c.peers().contains(&relay.peer_id())),
        "C never reconnected to the relay"
    );
    c.cercle(&["note", "add", &circle, REFUSED]).ok();
    assert!(
        wait_until(30, || {
            let m = relay.metrics();
            refusals(&m, "pull", "not_member") >= 1.0 && refusals(&m, "push", "not_member") >= 1.0
        }),
        "the removed member's pull and push were not both refused and counted: {}",
        relay.metrics().text
    );
    node_c.stop();

    // 3. The mailbox: B offline, A writes and goes offline, B comes back.
    node_b.stop();
    let stored_before = mailbox(&relay.metrics(), "stored_total");
    a.cercle(&["note", "add", &circle, OFFLINE]).ok();
    assert!(
        wait_until(30, || mailbox(&relay.metrics(), "stored_total")
            > stored_before),
        "the relay never stored A's note"
    );
    node_a.stop();
    let _node_b = b.start(&relay);
    assert!(
        wait_until(60, || b.notes(&circle).contains(&OFFLINE.to_string())),
        "B did not get the note from the mailbox; B's peers: {}",
        b.peers()
    );
    assert!(
        !b.peers().contains(&node_a.peer_id),
        "A was supposed to be offline"
    );
    assert!(
        !b.notes(&circle).contains(&REFUSED.to_string()),
        "B got the removed member's note"
    );

    // 4. Killed with SIGKILL, the relay comes back with every envelope it accepted.
    let before = relay.metrics();
    let (envelopes, ops) = (mailbox(&before, "envelopes"), mailbox(&before, "ops"));
    assert!(envelopes >= 3.0, "{}", before.text);
    relay.kill();
    let relay = Relay::start(&relay_home, &topology.prefix(R), &topology.relay_args());
    let after = relay.metrics();
    assert_eq!(mailbox(&after, "envelopes"), envelopes, "{}", after.text);
    assert_eq!(mailbox(&after, "ops"), ops, "{}", after.text);
    relay.kill();

    // 5. Nothing readable on the relay: not in its files, not in a dump of its mailbox.
    let dump = relay_home.cercle(&["relay", "--dump"]).ok().stdout;
    assert!(
        dump.lines().count() >= 3,
        "an empty dump proves nothing: {dump}"
    );
    let inspect = relay_home.json(&["relay", "--inspect"]);
    assert_eq!(inspect[0]["circle"], circle.as_str(), "{inspect}");
    let mut needles: Vec<&str> = vec![FIRST, REFUSED, OFFLINE, PATIENT, "Durand"];
    needles.extend(NAMES);
    let files: Vec<(String, Vec<u8>)> = relay_home
        .files()
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p.display().to_string(), bytes)
        })
        .collect();
    assert!(files.len() > 1, "the relay wrote no files?");
    for needle in needles {
        let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !dump.contains(needle) && !dump.contains(&hex),
            "{needle:?} in the dump"
        );
        for (path, bytes) in &files {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} found in the relay's file {path}"
            );
        }
    }
}
