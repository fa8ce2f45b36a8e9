//! Two members behind two NAT routers, and a relay on the internet between them: each
//! member's node sits in a private network namespace whose only way out is a router
//! namespace that masquerades (nftables) and lets in only the replies to what went out;
//! the relay's namespace is the internet that routes between the two routers.
//!
//! The story: the nodes know nothing of each other's address; the relay introduces them,
//! they connect through its circuit, and DCUtR punches a direct connection through both
//! NATs. The direct connection then carries the sync: with the relay killed (SIGKILL), a
//! new note still goes from one member to the other. When the internet does not carry
//! traffic between the two routers (punching cannot work), the members stay on the relay's
//! circuit and a note still arrives.
//!
//! Needs root and `nft` (the test command installs nftables when it can); without them the
//! test says it was skipped.

// Saying what was skipped is this test's output.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;

use cercle_tests::{Daemon, Netns, Relay, TestHome, is_root, wait_until};

/// The namespaces, in the order [`Netns::create`] is given them.
const A: usize = 0;
const NAT_A: usize = 1;
const B: usize = 2;
const NAT_B: usize = 3;
const INTERNET: usize = 4;

/// Addresses: each member's private network, each router's public address, and the
/// relay's address on each router's link.
const A_PRIVATE: &str = "192.168.11.2";
const A_GATEWAY: &str = "192.168.11.1";
const B_PRIVATE: &str = "192.168.12.2";
const B_GATEWAY: &str = "192.168.12.1";
const NAT_A_PUBLIC: &str = "10.79.1.2";
const NAT_B_PUBLIC: &str = "10.79.2.2";
const RELAY_FOR_A: &str = "10.79.1.1";
const RELAY_FOR_B: &str = "10.79.2.1";

/// Two private networks behind two NAT routers, joined by the relay's namespace.
/// `punchable`: whether the internet forwards between the two routers.
fn build(prefix: &str, punchable: bool) -> Result<Netns, String> {
    let names: Vec<String> = ["a", "na", "b", "nb", "r"]
        .iter()
        .map(|n| format!("{prefix}{n}"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut n = Netns::create(&names)?;
    n.link(A, A_PRIVATE, Some(NAT_A), A_GATEWAY)?;
    n.link(B, B_PRIVATE, Some(NAT_B), B_GATEWAY)?;
    n.link(NAT_A, NAT_A_PUBLIC, Some(INTERNET), RELAY_FOR_A)?;
    n.link(NAT_B, NAT_B_PUBLIC, Some(INTERNET), RELAY_FOR_B)?;
    n.ip(A, &["route", "add", "default", "via", A_GATEWAY])?;
    n.ip(B, &["route", "add", "default", "via", B_GATEWAY])?;
    n.ip(NAT_A, &["route", "add", "default", "via", RELAY_FOR_A])?;
    n.ip(NAT_B, &["route", "add", "default", "via", RELAY_FOR_B])?;
    forward(&n, NAT_A, true)?;
    forward(&n, NAT_B, true)?;
    forward(&n, INTERNET, punchable)?;
    nat(&n, NAT_A, "192.168.11.0/24")?;
    nat(&n, NAT_B, "192.168.12.0/24")?;
    Ok(n)
}

fn forward(n: &Netns, i: usize, on: bool) -> Result<(), String> {
    let value = format!("net.ipv4.ip_forward={}", u8::from(on));
    n.run(i, &["sysctl", "-q", "-w", &value]).map(|_| ())
}

/// A home router: what leaves the private network is masqueraded; from outside, only
/// replies to what went out come in, and anything else is dropped without an answer.
fn nat(n: &Netns, i: usize, private: &str) -> Result<(), String> {
    let rules = format!(
        "table ip router {{
            chain postrouting {{
                type nat hook postrouting priority srcnat; policy accept;
                ip saddr {private} ip daddr != {private} masquerade
            }}
            chain forward {{
                type filter hook forward priority filter; policy drop;
                ct state established,related accept
                ip saddr {private} accept
            }}
            chain input {{
                type filter hook input priority filter; policy drop;
                ct state established,related accept
                ip saddr {private} accept
            }}
        }}"
    );
    let dir = TestHome::new();
    let file = dir.path().join("router.nft");
    std::fs::write(&file, rules).map_err(|e| format!("cannot write the rules: {e}"))?;
    n.run(i, &["nft", "-f", &file.display().to_string()])
        .map(|_| ())
}

/// Which parts the test can build here, or why it skips.
fn topology(prefix: &str, punchable: bool) -> Option<Netns> {
    if !is_root() {
        eprintln!("NOTE: skipped: creating network namespaces and NAT rules needs root");
        return None;
    }
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("NOTE: skipped: nft (nftables) is not installed");
        return None;
    }
    match build(prefix, punchable) {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("NOTE: skipped: cannot build the NAT topology ({e})");
            None
        }
    }
}

/// A member's node in namespace `at`, listening on TCP and QUIC, knowing only the relay.
struct Member {
    home: TestHome,
    at: usize,
    log: PathBuf,
}

impl Member {
    fn new(name: &str, profession: &str, at: usize) -> Member {
        let home = TestHome::new();
        home.init(name, profession);
        let log = home.path().join("node.log");
        Member { home, at, log }
    }

    fn prefix<'n>(&self, n: &'n Netns) -> Vec<&'n str> {
        let mut p = n.exec(self.at).to_vec();
        // The node's log says what the network did (introductions, hole punching).
        p.extend(["env", "CERCLE_LOG=cercle_node::net=debug,warn"]);
        p
    }

    fn start(&self, n: &Netns, relay: &str) -> Daemon {
        let log = std::fs::File::create(&self.log)
            .unwrap_or_else(|e| panic!("cannot create the node's log: {e}"));
        Daemon::start_logging(
            &self.home,
            &self.prefix(n),
            &[
                "--listen",
                "/ip4/0.0.0.0/tcp/0",
                "--listen",
                "/ip4/0.0.0.0/udp/0/quic-v1",
                "--no-mdns",
                "--relay",
                relay,
            ],
            log,
        )
    }

    fn cercle(&self, n: &Netns, args: &[&str]) -> cercle_tests::Run {
        self.home.through(&n.exec(self.at), args)
    }

    fn notes(&self, n: &Netns, circle: &str) -> Vec<String> {
        self.cercle(n, &["--json", "note", "list", circle])
            .note_texts()
    }

    /// How the sync with the peer `peer_id` travels ("direct", "relayed"), if connected.
    fn path_to(&self, n: &Netns, peer_id: &str) -> Option<String> {
        let peers = self.cercle(n, &["--json", "peers"]);
        peers
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["peer_id"] == peer_id)
            .and_then(|p| p["path"].as_str().map(str::to_string))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The relay on the internet, and A and B started behind their routers knowing only the
/// relay, in a circle A made (naming the relay) and B accepted. Fields drop in order: the
/// nodes first, then their homes, then the relay.
struct Scene {
    node_a: Daemon,
    node_b: Daemon,
    a: Member,
    b: Member,
    circle: String,
    relay: Relay,
    _relay_home: TestHome,
}

fn scene(n: &Netns) -> Scene {
    let relay_home = TestHome::new();
    let relay = Relay::start(&relay_home, &n.exec(INTERNET), &relay_args());
    let a = Member::new("Dr Claire Martin", "médecin généraliste", A);
    let b = Member::new("Julien Petit", "infirmier", B);
    let circle = a.home.create_circle("Jeanne Durand");
    a.home
        .json(&["circle", "relays", &circle, &relay.address_on(RELAY_FOR_A)]);
    a.home.add_member(&circle, &b.home.card(), "professional");
    let node_a = a.start(n, &relay.address_on(RELAY_FOR_A));
    let node_b = b.start(n, &relay.address_on(RELAY_FOR_B));
    cercle_tests::accept_with(|args| b.cercle(n, args), &circle);
    Scene {
        node_a,
        node_b,
        a,
        b,
        circle,
        relay,
        _relay_home: relay_home,
    }
}

fn relay_args() -> Vec<&'static str> {
    vec![
        "--listen",
        "/ip4/0.0.0.0/tcp/0",
        "--listen",
        "/ip4/0.0.0.0/udp/0/quic-v1",
    ]
}

#[test]
fn members_behind_two_nats_punch_through_and_sync_directly() {
    let Some(n) = topology("h", true) else {
        return;
    };
    let s = scene(&n);
    let (a, b, circle) = (&s.a, &s.b, &s.circle);
    let (node_a, node_b) = (&s.node_a, &s.node_b);

    const FIRST: &str = "Plaie du talon propre, pansement refait";
    a.cercle(&n, &["note", "add", circle, FIRST]).ok();
    assert!(
        wait_until(60, || b.notes(&n, circle).contains(&FIRST.to_string())),
        "B never got A's note; B's log:\n{}",
        b.log()
    );
    // The relay introduced them; DCUtR punched through both NATs, and the relayed
    // circuit was closed for the direct connection.
    assert!(
        wait_until(60, || {
            a.path_to(&n, &node_b.peer_id).as_deref() == Some("direct")
                && b.path_to(&n, &node_a.peer_id).as_deref() == Some("direct")
        }),
        "no direct connection between A and B: A sees {:?}, B sees {:?}\nA's log:\n{}\nB's log:\n{}",
        a.path_to(&n, &node_b.peer_id),
        b.path_to(&n, &node_a.peer_id),
        a.log(),
        b.log()
    );
    assert!(
        a.log().contains("direct connection punched through")
            || b.log().contains("direct connection punched through"),
        "the direct connection did not come from hole punching:\nA's log:\n{}\nB's log:\n{}",
        a.log(),
        b.log()
    );
    // Each reached the other at the other's router, the only address the NAT exposes.
    for (log, peer, public) in [
        (a.log(), &node_b.peer_id, NAT_B_PUBLIC),
        (b.log(), &node_a.peer_id, NAT_A_PUBLIC),
    ] {
        assert!(
            log.lines().any(|l| l.contains(" connected ")
                && l.contains(peer.as_str())
                && l.contains(&format!("address=/ip4/{public}/"))),
            "no direct connection at {public}:\n{log}"
        );
    }

    // The direct connection carries the sync: with the relay gone, a note still arrives.
    let Scene { relay, .. } = s;
    relay.kill();
    const SECOND: &str = "Glycémie à jeun 1,32 g/L, à recontrôler";
    a.cercle(&n, &["note", "add", circle, SECOND]).ok();
    assert!(
        wait_until(30, || b.notes(&n, circle).contains(&SECOND.to_string())),
        "B never got the note written after the relay was killed; B's log:\n{}",
        b.log()
    );
    assert_eq!(
        b.path_to(&n, &node_a.peer_id).as_deref(),
        Some("direct"),
        "B is no longer connected to A directly"
    );
}

#[test]
fn members_stay_on_the_relay_when_punching_is_blocked() {
    let Some(n) = topology("k", false) else {
        return;
    };
    let s = scene(&n);
    let (a, b, circle, node_a) = (&s.a, &s.b, &s.circle, &s.node_a);

    // B is connected to A itself, through the relay's circuit, and stays so.
    assert!(
        wait_until(60, || b.path_to(&n, &node_a.peer_id).as_deref()
            == Some("relayed")),
        "B never reached A through the relay: {:?}\nB's log:\n{}",
        b.path_to(&n, &node_a.peer_id),
        b.log()
    );
    assert!(
        wait_until(60, || a
            .log()
            .contains("no direct connection; staying on the relayed one")
            || b.log()
                .contains("no direct connection; staying on the relayed one")),
        "hole punching was never tried and given up:\nA's log:\n{}\nB's log:\n{}",
        a.log(),
        b.log()
    );
    const NOTE: &str = "Tension 13/8, traitement inchangé";
    a.cercle(&n, &["note", "add", circle, NOTE]).ok();
    assert!(
        wait_until(60, || b.notes(&n, circle).contains(&NOTE.to_string())),
        "B never got A's note through the relay; B's log:\n{}",
        b.log()
    );
    assert_eq!(
        b.path_to(&n, &node_a.peer_id).as_deref(),
        Some("relayed"),
        "B is connected to A some other way than through the relay"
    );
}
