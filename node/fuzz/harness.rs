//! What each fuzz target does with one input: the entry points a peer (or the local user)
//! reaches with bytes of its choosing, and the properties that must hold whatever they are.
//! Shared by the libFuzzer targets (`fuzz_targets/*.rs`, run with `cargo +nightly fuzz`) and
//! by the stable test that replays the committed corpora on every CI run
//! (`tests/tests/fuzz_corpora.rs`). A target passes an input when it returns: a panic, an
//! abort or a broken property is a finding.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ObjId, ObjType, ReadDoc as _, ScalarValue, ValueRef};
use bytes::BytesMut;
use cercle_crdt::{
    ActorId, ChangeAuthor, DocKind, EntryKind, LiaisonNotebook, MemberId, NewEntry, Role,
    Timestamp, validate_changes,
};
use cercle_node::circle::Circle;
use cercle_node::circle::membership::{CircleId, SignedOp};
use cercle_node::crypto::SecureRng;
use cercle_node::envelope::Envelope;
use cercle_node::identity::{ContactCard, LocalIdentity, Profile};
use cercle_node::invite::InviteCode;
use cercle_node::sync::memory::Memory;
use cercle_node::sync::{PeerSync, wire};
use rand::SeedableRng as _;

/// The names of the targets, as the corpora's directories are named.
pub const TARGETS: &[&str] = &[
    "envelope",
    "membership_op",
    "card",
    "invite_code",
    "sync_file",
    "sync_frames",
    "api_request",
    "circle_receive",
    "notebook_changes",
    "relay_exchange",
];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "envelope" => envelope(data),
        "membership_op" => membership_op(data),
        "card" => card(data),
        "invite_code" => invite_code(data),
        "sync_file" => sync_file(data),
        "sync_frames" => sync_frames(data),
        "api_request" => api_request(data),
        "circle_receive" => circle_receive(data),
        "notebook_changes" => notebook_changes(data),
        "relay_exchange" => relay_exchange(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// An envelope's bytes: decoding never panics, and what decodes re-encodes to itself.
pub fn envelope(data: &[u8]) {
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.bytes(), data, "an envelope is its bytes");
    }
}

/// A membership operation's bytes: decoding never panics; a decoded one keeps its bytes.
pub fn membership_op(data: &[u8]) {
    if let Ok(op) = SignedOp::decode(data) {
        assert_eq!(op.bytes(), data);
    }
}

/// A contact card as pasted by a user (any text).
pub fn card(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(card) = ContactCard::decode(text)
    {
        // A card that decodes was signed by its member: decoding it again gives the same.
        let again = ContactCard::decode(&card.encode()).expect("a decoded card re-encodes");
        assert_eq!(again.member, card.member);
    }
}

/// An invite code as typed by a user (any text).
pub fn invite_code(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = InviteCode::decode(text);
        let _ = cercle_node::invite::AnyCode::parse(text);
    }
}

/// A sync file carried on a USB key (any bytes): read part by part, every signature
/// checked; nothing panics, and what reads back writes back to the same bytes.
pub fn sync_file(data: &[u8]) {
    if let Ok(parts) = cercle_node::sync::file::read(data) {
        let raw: Vec<Vec<u8>> = parts.into_iter().map(|(raw, _)| raw).collect();
        let mut again = Vec::new();
        cercle_node::sync::file::write(&raw, &mut again).expect("writing to memory");
        assert_eq!(again, data, "a sync file read back differently");
    }
}

/// A peer's sync stream: frames cut as the node cuts them, each decoded and given to the
/// sync state machine of a node that shares one circle with the peer. Nothing panics, the
/// early frame limit holds until `Hello`, and what the node answers is itself decodable.
pub fn sync_frames(data: &[u8]) {
    let peer = cercle_node::identity::DeviceId([9; 32]);
    let circle = CircleId([3; 32]);
    let mut local = Memory::default();
    local.share(circle, [peer]);
    local.add_op(circle, 1);
    local.write(circle, DocKind::LiaisonNotebook, peer, 40);
    let mut sync = PeerSync::new(peer);
    let mut decoder = wire::FrameDecoder::default();
    let mut buffer = BytesMut::from(data);
    let mut hello = false;
    for now in 0..256 {
        match decoder.next_frame(&mut buffer) {
            Ok(Some(frame)) => {
                assert!(hello || frame.len() <= wire::MAX_EARLY_FRAME);
                let Ok(message) = wire::decode(&frame) else {
                    continue;
                };
                if matches!(message, cercle_node::sync::Message::Hello { .. }) {
                    decoder.open_up();
                    hello = true;
                }
                if let Ok((replies, received)) = sync.receive(&local, message, now) {
                    for r in &replies {
                        assert!(wire::decode(&wire::encode(r)).is_ok(), "an answer decodes");
                    }
                    // Data of a circle not held here goes on to the node as a possible
                    // invitation; of those held, only the shared one's is ever taken.
                    if let Some(r) = received
                        && r.circle == circle
                    {
                        local.apply(r);
                    }
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
}

/// A request body to the local API: parsing never panics.
pub fn api_request(data: &[u8]) {
    let _ = serde_json::from_slice::<cercle_node::ops::Request>(data);
}

/// A member's circle, as a coordinator made it: the coordinator, a nurse, their ops, and
/// one envelope of the coordinator's, made once per process.
struct Team {
    gp: LocalIdentity,
    nurse: LocalIdentity,
    circle: CircleId,
    ops: Vec<Vec<u8>>,
    envelope: Vec<u8>,
}

fn person(name: &str, profession: &str) -> LocalIdentity {
    let p = Profile::new(name, profession, None, None).expect("a valid profile");
    LocalIdentity::generate(p, Timestamp(1)).expect("an identity")
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let mut rng = SecureRng::seed_from_u64(7);
        let gp = person("Dr Martin", "médecin");
        let nurse = person("Julie Petit", "infirmière");
        let (mut c, _) = Circle::create(
            &gp,
            &cercle_crdt::IdentityUpdate::default(),
            Timestamp(1),
            &mut rng,
        )
        .expect("a circle");
        let _added = c
            .add_member(
                &gp,
                &nurse.public().card(&[]),
                Role::Professional,
                Timestamp(2),
                &mut rng,
            )
            .expect("the nurse added");
        let w = c.write::<LiaisonNotebook, _>(&gp, Timestamp(3), &mut rng, |nb| {
            nb.add_entry(
                gp.member(),
                NewEntry {
                    kind: EntryKind::Observation,
                    text: "Tension 13/8".into(),
                    vitals: None,
                },
                Timestamp(3),
            )
        });
        let envelope = w.staged.batch.envelope_bytes().remove(0);
        let ops = c.membership().ops().map(|o| o.bytes().to_vec()).collect();
        Team {
            circle: c.id(),
            gp,
            nurse,
            ops,
            envelope,
        }
    })
}

/// Splits `data` into items, each prefixed by a 2-byte length.
fn items(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && out.len() < 64 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let len = len.min(rest.len() - 2);
        out.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    out
}

/// A member's circle receives operations and envelopes from a peer (first byte: how many
/// of the items are operations): nothing panics, the circle's members do not change unless
/// an operation was taken, and every refusal has a reason.
pub fn circle_receive(data: &[u8]) {
    let t = team();
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (mut c, _) = Circle::join(&t.nurse, t.circle, &t.ops).expect("the nurse joins");
    let members_before = c.resolution().members.len();
    let mut all = items(rest);
    let ops: Vec<Vec<u8>> = all.drain(..usize::from(split % 4).min(all.len())).collect();
    let receipt = c.receive(&t.nurse, "fuzz", &ops, &all, Timestamp(10));
    for (code, record) in &receipt.rejected {
        assert!(!code.is_empty() && !record.message.is_empty());
    }
    if ops.is_empty() {
        assert_eq!(c.resolution().members.len(), members_before);
    }
    // The coordinator's own envelope still goes in afterwards unless a replay of it came.
    let _ = c.receive(
        &t.nurse,
        "fuzz",
        &[],
        std::slice::from_ref(&t.envelope),
        Timestamp(11),
    );
}

/// The notebook as two entries of its author left it, saved once per process.
fn notebook() -> &'static (Vec<u8>, MemberId, usize) {
    static NB: OnceLock<(Vec<u8>, MemberId, usize)> = OnceLock::new();
    NB.get_or_init(|| {
        let author = MemberId::from_bytes([1; 32]);
        let mut nb = LiaisonNotebook::new(ActorId::from(vec![1u8; 16]));
        for text in ["Pansement refait", "Appeler le médecin"] {
            nb.add_entry(
                author,
                NewEntry {
                    kind: EntryKind::Observation,
                    text: text.into(),
                    vitals: None,
                },
                Timestamp(5),
            )
            .expect("an entry");
        }
        let count = nb.entries().len();
        (nb.replica_mut().save(), author, count)
    })
}

/// Keys the interpreter writes with: the schema's own names, an item-id-like key, and
/// nonsense.
const KEYS: &[&str] = &[
    "entries",
    "kind",
    "text",
    "author",
    "at",
    "acks",
    "amends",
    "by",
    "vitals",
    "profile",
    "0123456789abcdef01234567",
    "x",
    "",
];

/// Another member's device edits the notebook with operations the input chooses (put,
/// make, insert, delete, increment, on any object it finds); the changes are validated for
/// a role the input chooses. What validation accepts, applied, never loses or alters an
/// entry that was there.
pub fn notebook_changes(data: &[u8]) {
    let (saved, _, count) = notebook();
    let Some((&role_byte, ops)) = data.split_first() else {
        return;
    };
    let role = [
        Role::Coordinator,
        Role::Professional,
        Role::Caregiver,
        Role::Observer,
    ][usize::from(role_byte % 4)];
    let member = MemberId::from_bytes([2; 32]);
    static LOADED: OnceLock<(LiaisonNotebook, AutoCommit)> = OnceLock::new();
    let (base, doc) = LOADED.get_or_init(|| {
        let base = LiaisonNotebook::load(saved, ActorId::from(vec![1u8; 16])).expect("loads");
        let mut doc = AutoCommit::load(saved).expect("loads");
        doc.set_actor(ActorId::from(vec![2u8; 16]));
        (base, doc)
    });
    let base = base.clone();
    let mut doc = doc.clone();
    let before = base.entries();
    let heads = doc.get_heads();
    for chunk in ops.chunks(4).take(32) {
        let objects = objects_of(&doc);
        let [action, which, key, value] = [0, 1, 2, 3].map(|i| chunk.get(i).copied().unwrap_or(0));
        let obj = &objects[usize::from(which) % objects.len()];
        let key = KEYS[usize::from(key) % KEYS.len()];
        let scalar = match value % 6 {
            0 => ScalarValue::Str("x".repeat(usize::from(value)).into()),
            1 => ScalarValue::Int(i64::from(value) - 100),
            2 => ScalarValue::F64(f64::from(value) / 3.0),
            3 => ScalarValue::Timestamp(i64::from(value)),
            4 => ScalarValue::Boolean(value % 2 == 0),
            _ => ScalarValue::Str("observation".into()),
        };
        let is_list = matches!(doc.object_type(obj), Ok(ObjType::List | ObjType::Text));
        let len = doc.length(obj);
        let _ = match (action % 6, is_list) {
            (0, false) => doc.put(obj, key, scalar).map(|_| ()),
            (1, false) => doc.put_object(obj, key, ObjType::Map).map(|_| ()),
            (2, false) => doc.put_object(obj, key, ObjType::List).map(|_| ()),
            (3, false) => doc.delete(obj, key),
            (4, false) => doc.increment(obj, key, 1),
            (0 | 4, true) => doc.insert(obj, len, scalar),
            (1, true) => doc.insert_object(obj, len, ObjType::Map).map(|_| ()),
            (2 | 3, true) if len > 0 => doc.delete(obj, usize::from(value) % len),
            _ => doc.put(obj, key, ScalarValue::Null).map(|_| ()),
        };
    }
    doc.commit();
    let changes: Vec<_> = doc.get_changes(&heads);
    let author = ChangeAuthor { member, role };
    let mut after = base;
    if validate_changes(
        DocKind::LiaisonNotebook,
        after.replica().doc(),
        &changes,
        &author,
    )
    .is_ok()
        && after.replica_mut().apply_changes(changes, &author).is_ok()
    {
        let entries = after.entries();
        assert!(
            entries.len() >= *count,
            "an accepted change removed an entry"
        );
        for e in &before {
            assert!(
                entries.contains(e),
                "an accepted change altered an entry: {e:?}"
            );
        }
    }
}

/// The objects of `doc`, root first, found by walking it (at most 64).
fn objects_of(doc: &AutoCommit) -> Vec<ObjId> {
    let mut out = vec![automerge::ROOT];
    let mut i = 0;
    while i < out.len() && out.len() < 64 {
        let obj = out[i].clone();
        i += 1;
        let children: Vec<ObjId> = match doc.object_type(&obj) {
            Ok(ObjType::Map | ObjType::Table) => doc
                .map_range(&obj, ..)
                .filter_map(|item| match item.value {
                    ValueRef::Object(_) => Some(item.id()),
                    ValueRef::Scalar(_) => None,
                })
                .collect(),
            Ok(ObjType::List) => doc
                .list_range(&obj, ..)
                .filter_map(|item| match item.value {
                    ValueRef::Object(_) => Some(item.id()),
                    ValueRef::Scalar(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        out.extend(children);
    }
    out.truncate(64);
    out
}

/// The relay's side of the sync protocol: a member device's messages (length-prefixed
/// CBOR) given to the relay's exchange over a real mailbox on disk (one per process).
/// Nothing panics; the mailbox keeps within its limits.
pub fn relay_exchange(data: &[u8]) {
    use std::sync::Mutex;
    static RELAY: OnceLock<Mutex<(tempfile::TempDir, cercle_node::mailbox::exchange::Exchange)>> =
        OnceLock::new();
    let relay = RELAY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let limits = cercle_node::mailbox::MailboxLimits {
            named_only: None,
            ..Default::default()
        };
        let key = cercle_node::crypto::StorageKey::derive(&[5; 32]);
        let mailbox =
            cercle_node::mailbox::Mailbox::open(dir.path(), limits, key).expect("a mailbox");
        Mutex::new((dir, cercle_node::mailbox::exchange::Exchange::new(mailbox)))
    });
    let mut guard = relay.lock().unwrap_or_else(|p| p.into_inner());
    let exchange = &mut guard.1;
    let t = team();
    let device = t.gp.device();
    let _ = exchange.connected(device, 1);
    // A member's real data first, so that the exchange goes past the membership checks.
    let data_message = cercle_node::sync::Message::Data {
        circle: t.circle,
        ops: t.ops.clone(),
        envelopes: vec![t.envelope.clone()],
    };
    let _ = exchange.message(device, data_message, 2);
    for item in items(data) {
        if let Ok(message) = wire::decode(&item) {
            let _ = exchange.message(device, message, 3);
        }
    }
    exchange.disconnected(&device);
    let totals = exchange.mailbox().totals();
    assert!(totals.circles <= cercle_node::mailbox::MailboxLimits::default().circles as u64);
}

/// Seed inputs for each target: real bytes of each kind, as a node makes them, so that
/// the fuzzer starts past the first checks. Written by the ignored test `write_seeds`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let t = team();
    let mut out = vec![("envelope", t.envelope.clone())];
    for op in &t.ops {
        out.push(("membership_op", op.clone()));
    }
    out.push(("card", t.nurse.public().card(&[]).encode().into_bytes()));
    let code = InviteCode {
        circle: t.circle,
        inviter: t.gp.device(),
        secret: [5; cercle_node::invite::SECRET_BYTES],
        expires_at: 1_900_000_000_000,
        addresses: vec![format!(
            "/ip4/192.0.2.1/tcp/4001/p2p/{}",
            cercle_node::net::peer_of(&t.gp.device()).expect("a peer id")
        )],
    };
    out.push(("invite_code", code.encode().into_bytes()));
    let parts = cercle_node::sync::file::parts(
        t.circle,
        t.gp.device(),
        1_900_000_000_000,
        t.ops.clone(),
        vec![t.envelope.clone()],
    );
    let sealed: Vec<Vec<u8>> = parts.iter().map(|p| p.seal(&t.gp)).collect();
    let mut file = Vec::new();
    cercle_node::sync::file::write(&sealed, &mut file).expect("writing to memory");
    out.push(("sync_file", file));
    let data = cercle_node::sync::Message::Data {
        circle: t.circle,
        ops: t.ops.clone(),
        envelopes: vec![t.envelope.clone()],
    };
    let hello = cercle_node::sync::Message::Hello { circles: vec![] };
    let ack = cercle_node::sync::Message::Ack { bytes: 10 };
    let mut stream = Vec::new();
    for m in [&hello, &data, &ack] {
        stream.extend(wire::frame(m));
    }
    out.push(("sync_frames", stream));
    for body in [
        r#"{"request":"status"}"#,
        r#"{"request":"note_add","circle":"ab12","text":"Tension 13/8","kind":"observation"}"#,
        r#"{"request":"circle_list"}"#,
    ] {
        out.push(("api_request", body.as_bytes().to_vec()));
    }
    let mut prefixed = vec![0u8];
    prefixed.extend(
        u16::try_from(t.envelope.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    prefixed.extend(t.envelope.iter());
    out.push(("circle_receive", prefixed));
    let mut with_op = vec![1u8];
    for item in t.ops.iter().rev().take(1).chain([&t.envelope]) {
        with_op.extend(u16::try_from(item.len()).unwrap_or(u16::MAX).to_be_bytes());
        with_op.extend(item.iter());
    }
    out.push(("circle_receive", with_op));
    out.push(("notebook_changes", vec![1, 1, 0, 2, 0, 0, 1, 5, 0, 3, 2, 7]));
    let mut messages = Vec::new();
    for m in [&hello, &data] {
        let bytes = wire::encode(m);
        messages.extend(u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
        messages.extend(bytes);
    }
    out.push(("relay_exchange", messages));
    out
}
