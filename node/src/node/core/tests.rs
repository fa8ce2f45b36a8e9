//! Two and three node cores wired by hand (sans I/O): invites, and document contents
//! fetched between members and refused to strangers.

use std::sync::Arc;

use cercle_crdt::{Role, Timestamp};

use super::{NodeCore, Output};
use crate::api::{Answer, Request};
use crate::identity::{DeviceId, LocalIdentity, Profile};
use crate::store::SledStore;
use crate::sync::Message;

struct Node {
    _dir: tempfile::TempDir,
    core: NodeCore,
    device: DeviceId,
}

fn node(name: &str) -> Node {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = Profile::new(name, "infirmière", None, None).unwrap_or_else(|e| panic!("{e}"));
    let me = LocalIdentity::generate(p, Timestamp(1)).unwrap_or_else(|e| panic!("{e}"));
    let device = me.device();
    let peer = crate::net::keypair(&me)
        .map(|k| k.public().to_peer_id().to_string())
        .unwrap_or_default();
    let store = SledStore::open(dir.path(), me.storage_key()).unwrap_or_else(|e| panic!("{e}"));
    let mut core =
        NodeCore::open(Arc::new(store), me, peer.clone()).unwrap_or_else(|e| panic!("{e}"));
    core.set_running();
    core.set_addresses(vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")]);
    Node {
        _dir: dir,
        core,
        device,
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Handles a request, waits for its writes, and returns the answer and what to send.
fn ask(n: &mut Node, request: Request) -> (Answer, Vec<Output>) {
    let h = n
        .core
        .handle(request, Timestamp(now()))
        .unwrap_or_else(|e| panic!("{e}"));
    for t in h.tickets {
        t.wait().unwrap_or_else(|e| panic!("{e}"));
    }
    (h.answer, h.after)
}

fn circle_count(n: &mut Node) -> usize {
    match ask(n, Request::CircleList).0 {
        Answer::Circles { circles } => circles.len(),
        other => panic!("{other:?}"),
    }
}

/// Delivers messages between the nodes until none is left.
fn pump(nodes: &mut [&mut Node], mut queue: Vec<(DeviceId, Output)>) {
    let mut rounds = 0;
    while let Some((from, out)) = queue.pop() {
        rounds += 1;
        assert!(rounds < 10_000, "the exchange does not end");
        let Output::Send(to, message) = out else {
            continue;
        };
        if let Some(n) = nodes.iter_mut().find(|n| n.device == to) {
            let outs = n.core.from_peer(from, message, now());
            let me = n.device;
            queue.extend(outs.into_iter().map(|o| (me, o)));
        }
    }
}

/// Connects every pair of `nodes` and runs the exchange.
fn connect(nodes: &mut [&mut Node]) {
    let mut queue = Vec::new();
    let devices: Vec<DeviceId> = nodes.iter().map(|n| n.device).collect();
    for n in nodes.iter_mut() {
        for d in &devices {
            if *d != n.device {
                let me = n.device;
                let outs = n.core.peer_connected(*d, String::new(), now());
                queue.extend(outs.into_iter().map(|o| (me, o)));
            }
        }
    }
    pump(nodes, queue);
}

fn circle_and_code(a: &mut Node) -> (String, String) {
    let (answer, _) = ask(
        a,
        Request::CircleCreate {
            patient: "Jeanne Durand".into(),
            birth_date: None,
        },
    );
    let Answer::Circles { circles } = answer else {
        panic!("{answer:?}")
    };
    let circle = circles[0].id.clone();
    let (answer, _) = ask(
        a,
        Request::InviteCreate {
            circle: circle.clone(),
            role: Role::Professional,
            expires_in: 3600,
        },
    );
    let Answer::Invite(v) = answer else {
        panic!("{answer:?}")
    };
    (circle, v.code)
}

fn join(n: &mut Node, code: &str) -> (String, Vec<Output>) {
    let (answer, after) = ask(n, Request::Join { code: code.into() });
    let Answer::Join(v) = answer else {
        panic!("{answer:?}")
    };
    (v.invite, after)
}

fn state(n: &mut Node, invite: &str) -> (String, Option<String>) {
    let (answer, _) = ask(
        n,
        Request::JoinStatus {
            invite: invite.into(),
        },
    );
    let Answer::Join(v) = answer else {
        panic!("{answer:?}")
    };
    (v.state, v.reason)
}

#[test]
fn an_invite_admits_one_member_once() {
    let (mut a, mut b, mut c) = (node("A"), node("B"), node("C"));
    let (circle, code) = circle_and_code(&mut a);
    let (invite, after) = join(&mut b, &code);
    assert!(after.iter().any(|o| matches!(o, Output::Dial(_))));
    assert_eq!(state(&mut b, &invite).0, "reaching");
    connect(&mut [&mut a, &mut b]);
    assert_eq!(state(&mut b, &invite).0, "joined");
    let (answer, _) = ask(
        &mut b,
        Request::CircleShow {
            circle: circle.clone(),
        },
    );
    let Answer::Circle(shown) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(shown.members.len(), 2);
    // B never saw A's card: A's name comes from the profile A published in the circle.
    let mut names: Vec<_> = shown
        .members
        .iter()
        .filter_map(|m| m.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["A", "B"]);

    // The same code from another device: refused, nothing of the circle sent.
    let (invite_c, _) = join(&mut c, &code);
    connect(&mut [&mut a, &mut c]);
    let (s, reason) = state(&mut c, &invite_c);
    assert_eq!(s, "refused");
    assert!(reason.is_some_and(|r| r.contains("already used")));
    assert_eq!(circle_count(&mut c), 0);
}

#[test]
fn a_forged_secret_is_refused() {
    let (mut a, mut b) = (node("A"), node("B"));
    let (_, code) = circle_and_code(&mut a);
    let mut parsed = crate::invite::InviteCode::decode(&code).unwrap_or_else(|e| panic!("{e}"));
    parsed.secret[0] ^= 1;
    let (invite, _) = join(&mut b, &parsed.encode());
    connect(&mut [&mut a, &mut b]);
    let (s, reason) = state(&mut b, &invite);
    assert_eq!(s, "refused");
    // A forged secret names another invite id: the inviter does not know it.
    assert!(reason.is_some_and(|r| r.contains("does not know")), "{s}");
}

#[test]
fn a_document_reaches_a_member_on_demand_and_never_a_stranger() {
    let (mut a, mut b, stranger) = (node("A"), node("B"), node("S"));
    let (circle, code) = circle_and_code(&mut a);
    join(&mut b, &code);
    connect(&mut [&mut a, &mut b]);
    // Three parts' worth.
    let content: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let blob = *blake3::hash(&content).as_bytes();
    let (answer, after) = ask(
        &mut a,
        Request::DocAdd {
            circle: circle.clone(),
            name: "radio.png".into(),
            media_type: "image/png".into(),
            content: hex::encode(&content),
        },
    );
    let Answer::Added { ids, .. } = answer else {
        panic!("{answer:?}")
    };
    let me = a.device;
    pump(
        &mut [&mut a, &mut b],
        after.into_iter().map(|o| (me, o)).collect(),
    );
    let get = Request::DocGet {
        circle: circle.clone(),
        doc: ids[0].clone(),
    };
    let (first, asks) = ask(&mut b, get.clone());
    assert!(
        matches!(first, Answer::Document { content: None, .. }),
        "{first:?}"
    );
    let me = b.device;
    pump(
        &mut [&mut a, &mut b],
        asks.into_iter().map(|o| (me, o)).collect(),
    );
    let (got, _) = ask(&mut b, get);
    let Answer::Document {
        content: Some(hex_content),
        ..
    } = got
    else {
        panic!("{got:?}")
    };
    assert_eq!(hex::decode(hex_content).ok(), Some(content));

    // A device that is not a member asks for it: no answer.
    let id = crate::circle::membership::CircleId(
        hex::decode(&circle)
            .ok()
            .and_then(|v| v.try_into().ok())
            .unwrap_or([0; 32]),
    );
    let out = a.core.from_peer(
        stranger.device,
        Message::BlobWant {
            circle: id,
            blob: blob.to_vec(),
            offset: 0,
        },
        now(),
    );
    assert!(out.is_empty(), "{out:?}");
}
