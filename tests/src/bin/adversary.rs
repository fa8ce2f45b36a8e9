//! A hostile peer, as a real process speaking the real protocol (libp2p over TCP, Noise,
//! yamux, the sync stream's frames): what the end-to-end tests attack a node with. Each
//! mode does one thing a stranger or a member could do, then prints one JSON line saying
//! what happened, and stops by itself.
//!
//! ```text
//! adversary identity out=FILE name=NAME            a member identity; prints its card
//! adversary streams to=ADDR count=N declare=BYTES send=BYTES hold=SECS
//!     opens N sync streams, each announcing a frame of `declare` bytes, sending `send`
//!     of them and never the rest
//! adversary never-read to=ADDR identity=FILE secs=SECS
//!     connects as that identity, says Hello, and never reads what it is sent
//! adversary mute to=ADDR secs=SECS
//!     connects as a stranger, reads the sync stream the node opens, and never opens one
//!     of its own (a half-open connection): says whether and when it was disconnected
//! adversary member to=ADDR identity=FILE circle=ID flood=N [secs=S]
//!     a member gone bad: fetches the circle like any member, writes one honest note,
//!     then replays it, forges it, forks its own log, rewrites another member's note (a
//!     validly signed change to it), sends an oversized message and N envelopes of
//!     garbage (or garbage for S seconds, if given)
//! adversary discover to=ADDR
//!     asks the peer's rendezvous service for every registration (no namespace)
//! adversary meet to=ADDR identity=FILE circle=ID secs=SECS
//!     says Hello naming the circle and counts the introductions it is sent
//! adversary rogue-relay forward=K secs=SECS
//!     a relay gone bad, for the nodes started with `--relay` at the address it prints
//!     first: it takes and acknowledges what they push, then passes the first K notebook
//!     envelopes of each log on to the other nodes badly (an altered copy first, then
//!     all in reverse order, then all again) and withholds every later one
//! ```

// A tool of the tests: it fails loudly.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cercle_node::identity::{LocalIdentity, Profile, PublicIdentity};
use cercle_node::net::SYNC_PROTOCOL;
use cercle_node::sync::{Message, wire};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};

#[derive(NetworkBehaviour)]
struct Behaviour {
    stream: libp2p_stream::Behaviour,
}

type Args = BTreeMap<String, String>;

fn arg<'a>(args: &'a Args, key: &str) -> &'a str {
    args.get(key)
        .map(String::as_str)
        .unwrap_or_else(|| fail(&format!("missing {key}=")))
}

fn number(args: &Args, key: &str) -> u64 {
    arg(args, key)
        .parse()
        .unwrap_or_else(|_| fail(&format!("{key}= is not a number")))
}

fn fail(why: &str) -> ! {
    eprintln!("adversary: {why}");
    std::process::exit(2)
}

fn swarm(key: libp2p::identity::Keypair) -> Swarm<Behaviour> {
    swarm_with(key, |_| Behaviour {
        stream: libp2p_stream::Behaviour::new(),
    })
}

/// A swarm over TCP (Noise, Yamux) with the behaviour `make` builds.
fn swarm_with<B: NetworkBehaviour>(
    key: libp2p::identity::Keypair,
    make: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap_or_else(|e| fail(&e.to_string()))
        .with_behaviour(|key| make(key))
        .unwrap_or_else(|e| fail(&e.to_string()))
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// The sync streams peers open to this swarm.
fn accept_sync(swarm: &Swarm<Behaviour>) -> libp2p_stream::IncomingStreams {
    swarm
        .behaviour()
        .stream
        .new_control()
        .accept(SYNC_PROTOCOL)
        .unwrap_or_else(|e| fail(&e.to_string()))
}

/// Dials `to` and drives the swarm until connected; returns the peer.
async fn connect(swarm: &mut Swarm<Behaviour>, to: &str) -> PeerId {
    let address: Multiaddr = to
        .parse()
        .unwrap_or_else(|_| fail("to= is not a multiaddress"));
    swarm
        .dial(address)
        .unwrap_or_else(|e| fail(&format!("cannot dial: {e}")));
    let deadline = tokio::time::sleep(Duration::from_secs(20));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => fail("never connected"),
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => return peer_id,
                SwarmEvent::OutgoingConnectionError { error, .. } => fail(&format!("cannot connect: {error}")),
                _ => {}
            },
        }
    }
}

/// A member identity for the tests to add to a circle; its secrets go to `out`.
fn identity(args: &Args) {
    let profile = Profile::new(arg(args, "name"), "inconnu", None, None)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let me = LocalIdentity::generate(profile, cercle_crdt::Timestamp(1))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let saved = serde_json::json!({
        "secrets": hex::encode(&me.secrets()[..]),
        "public": me.public(),
    });
    std::fs::write(arg(args, "out"), saved.to_string()).unwrap_or_else(|e| fail(&e.to_string()));
    println!(
        "{}",
        serde_json::json!({ "card": me.public().card(&[]).encode(), "member": me.member().to_hex() })
    );
}

fn load(path: &str) -> LocalIdentity {
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| fail(&e.to_string())))
            .unwrap_or_else(|e| fail(&e.to_string()));
    let secrets = hex::decode(saved["secrets"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| fail(&e.to_string()));
    let public: PublicIdentity =
        serde_json::from_value(saved["public"].clone()).unwrap_or_else(|e| fail(&e.to_string()));
    LocalIdentity::from_secrets(&secrets, public).unwrap_or_else(|e| fail(&e.to_string()))
}

/// Many sync streams, each announcing a large frame and sending almost nothing of it.
async fn streams(args: &Args) {
    let count = number(args, "count");
    let declare = u32::try_from(number(args, "declare")).unwrap_or(u32::MAX);
    let send = usize::try_from(number(args, "send")).unwrap_or(usize::MAX);
    let hold = Duration::from_secs(number(args, "hold"));
    let body: std::sync::Arc<[u8]> = vec![0xA5; send].into();
    let mut swarm = swarm(libp2p::identity::Keypair::generate_ed25519());
    let peer = connect(&mut swarm, arg(args, "to")).await;
    let control = swarm.behaviour().stream.new_control();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<bool>(count as usize + 1);
    for _ in 0..count {
        let mut control = control.clone();
        let done = done_tx.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let opened = match control.open_stream(peer, SYNC_PROTOCOL).await {
                Ok(mut s) => {
                    let ok = s.write_all(&declare.to_be_bytes()).await.is_ok()
                        && s.write_all(&body).await.is_ok()
                        && s.flush().await.is_ok();
                    let _ = done.send(ok).await;
                    // Held open, never finished.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(s);
                    return;
                }
                Err(_) => false,
            };
            let _ = done.send(opened).await;
        });
    }
    drop(done_tx);
    let (mut opened, mut failed) = (0u64, 0u64);
    let until = tokio::time::Instant::now() + hold;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            got = done_rx.recv() => match got {
                Some(true) => opened += 1,
                Some(false) => failed += 1,
                None => {}
            },
            _ = swarm.select_next_some() => {}
        }
    }
    println!(
        "{}",
        serde_json::json!({ "sent": opened, "refused": failed, "connected": swarm.is_connected(&peer) })
    );
}

/// A connection to the node at `to=` as the member saved at `identity=`: the streams the
/// node opens to it, and one sync stream of its own.
struct Session {
    me: LocalIdentity,
    swarm: Swarm<Behaviour>,
    incoming: libp2p_stream::IncomingStreams,
    peer: PeerId,
    control: libp2p_stream::Control,
    ours: libp2p::Stream,
}

impl Session {
    async fn open(args: &Args) -> Session {
        let me = load(arg(args, "identity"));
        let key = cercle_node::net::keypair(&me).unwrap_or_else(|e| fail(&e.to_string()));
        let mut swarm = swarm(key);
        let incoming = accept_sync(&swarm);
        let peer = connect(&mut swarm, arg(args, "to")).await;
        let mut control = swarm.behaviour().stream.new_control();
        let ours = control
            .open_stream(peer, SYNC_PROTOCOL)
            .await
            .unwrap_or_else(|e| fail(&format!("no sync stream: {e}")));
        Session {
            me,
            swarm,
            incoming,
            peer,
            control,
            ours,
        }
    }
}

/// Connects as a member, says Hello, and never reads what the node sends.
async fn never_read(args: &Args) {
    let secs = Duration::from_secs(number(args, "secs"));
    let Session {
        mut swarm,
        mut incoming,
        mut ours,
        ..
    } = Session::open(args).await;
    let started = Instant::now();
    let hello = wire::frame(&Message::Hello { circles: vec![] });
    ours.write_all(&hello)
        .await
        .unwrap_or_else(|e| fail(&e.to_string()));
    let mut held = Vec::new();
    let until = tokio::time::Instant::now() + secs;
    let mut disconnected = None;
    while disconnected.is_none() {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            Some((_, stream)) = incoming.next() => held.push(stream),
            event = swarm.select_next_some() => {
                if let SwarmEvent::ConnectionClosed { num_established: 0, .. } = event {
                    disconnected = Some(started.elapsed());
                }
            }
        }
    }
    // Nothing was ever read from the streams held.
    let mut probe = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_millis(1), ours.read(&mut probe)).await;
    println!(
        "{}",
        serde_json::json!({
            "disconnected": disconnected.is_some(),
            "after_ms": disconnected.map(|d| d.as_millis() as u64),
            "streams_held": held.len(),
        })
    );
}

/// Connects with a fresh key, reads what the node sends on its stream, and says nothing.
async fn mute(args: &Args) {
    let secs = Duration::from_secs(number(args, "secs"));
    let mut swarm = swarm(libp2p::identity::Keypair::generate_ed25519());
    let incoming = accept_sync(&swarm);
    let mut messages = read_incoming(incoming);
    connect(&mut swarm, arg(args, "to")).await;
    let started = Instant::now();
    let until = tokio::time::Instant::now() + secs;
    let mut heard = 0u64;
    let mut disconnected = None;
    while disconnected.is_none() {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            Some(_) = messages.recv() => heard += 1,
            event = swarm.select_next_some() => {
                if let SwarmEvent::ConnectionClosed { num_established: 0, .. } = event {
                    disconnected = Some(started.elapsed());
                }
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "disconnected": disconnected.is_some(),
            "after_ms": disconnected.map(|d| d.as_millis() as u64),
            "messages_heard": heard,
        })
    );
}

/// The frames arriving on the sync streams peers open to us, decoded, with the peer.
fn read_incoming(
    mut incoming: libp2p_stream::IncomingStreams,
) -> tokio::sync::mpsc::Receiver<(PeerId, Message)> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some((peer, mut stream)) = incoming.next().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut decoder = wire::FrameDecoder::default();
                decoder.open_up();
                let mut buffer = bytes::BytesMut::new();
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    while let Ok(Some(frame)) = decoder.next_frame(&mut buffer) {
                        if let Ok(m) = wire::decode(&frame)
                            && tx.send((peer, m)).await.is_err()
                        {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    rx
}

/// A stranger's rendezvous discovery with no namespace: what a relay that served the
/// libp2p rendezvous protocol answered with every registration (circles' namespaces, peer
/// ids and their addresses).
async fn discover(args: &Args) {
    use libp2p::rendezvous;

    #[derive(NetworkBehaviour)]
    struct Asker {
        rendezvous: rendezvous::client::Behaviour,
    }
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut swarm = swarm_with(key, |key| Asker {
        rendezvous: rendezvous::client::Behaviour::new(key.clone()),
    });
    let address: Multiaddr = arg(args, "to")
        .parse()
        .unwrap_or_else(|_| fail("to= is not a multiaddress"));
    swarm
        .dial(address)
        .unwrap_or_else(|e| fail(&format!("cannot dial: {e}")));
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break serde_json::json!({ "registrations": 0, "error": "no answer" }),
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    swarm.behaviour_mut().rendezvous.discover(None, None, None, peer_id);
                }
                SwarmEvent::Behaviour(AskerEvent::Rendezvous(rendezvous::client::Event::Discovered { registrations, .. })) => {
                    let peers: Vec<String> = registrations.iter().map(|r| r.record.peer_id().to_string()).collect();
                    break serde_json::json!({ "registrations": registrations.len(), "peers": peers });
                }
                SwarmEvent::Behaviour(AskerEvent::Rendezvous(rendezvous::client::Event::DiscoverFailed { error, .. })) => {
                    break serde_json::json!({ "registrations": 0, "error": format!("{error:?}") });
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => fail(&format!("cannot connect: {error}")),
                _ => {}
            },
        }
    };
    println!("{outcome}");
}

/// Says Hello naming `circle=`, then that its membership changed there (`Changed`, which
/// a member joining a circle sends), and counts the introductions (`Met`) the peer sends
/// back.
async fn meet(args: &Args) {
    use cercle_node::circle::membership::CircleId;

    let circle: CircleId = arg(args, "circle")
        .parse()
        .unwrap_or_else(|_| fail("circle= is not a circle id"));
    let secs = Duration::from_secs(number(args, "secs"));
    let Session {
        mut swarm,
        incoming,
        mut ours,
        ..
    } = Session::open(args).await;
    let mut messages = read_incoming(incoming);
    let hello = Message::Hello {
        circles: vec![(circle, [0; 32])],
    };
    let changed = Message::Changed {
        circles: vec![(circle, [0; 32])],
        answer: false,
    };
    for m in [hello, changed] {
        ours.write_all(&wire::frame(&m))
            .await
            .unwrap_or_else(|e| fail(&e.to_string()));
    }
    let _ = ours.flush().await;
    let (mut met, mut devices, mut other) = (0u64, Vec::new(), 0u64);
    let until = tokio::time::Instant::now() + secs;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            m = messages.recv() => match m {
                Some((_, Message::Met { devices: d, .. })) => {
                    met += 1;
                    devices.extend(d.iter().map(ToString::to_string));
                }
                Some(_) => other += 1,
                None => break
            },
            _ = swarm.select_next_some() => {}
        }
    }
    println!(
        "{}",
        serde_json::json!({ "met": met, "devices": devices, "other_messages": other })
    );
}

/// What the rogue relay holds of one circle: the operations, and the envelopes of each
/// notebook log by sequence number, with the device that pushed them.
#[derive(Default)]
struct Held {
    ops: Vec<Vec<u8>>,
    notebook: BTreeMap<cercle_node::envelope::LogId, BTreeMap<u64, (PeerId, Vec<u8>)>>,
}

/// A relay gone bad (see the module's comment).
async fn rogue_relay(args: &Args) {
    use cercle_crdt::DocKind;
    use cercle_node::circle::membership::CircleId;
    use cercle_node::envelope::Envelope;
    use std::io::Write as _;

    let forward = usize::try_from(number(args, "forward")).unwrap_or(usize::MAX);
    let secs = Duration::from_secs(number(args, "secs"));
    let mut swarm = swarm(libp2p::identity::Keypair::generate_ed25519());
    let me = *swarm.local_peer_id();
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0"
        .parse()
        .unwrap_or_else(|_| fail("no loopback address"));
    swarm
        .listen_on(listen)
        .unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
    let control = swarm.behaviour().stream.new_control();
    let mut from_rx = read_incoming(accept_sync(&swarm));
    // One writer task per connected peer, fed through a channel.
    let mut writers: BTreeMap<PeerId, tokio::sync::mpsc::Sender<Message>> = BTreeMap::new();
    let mut held: BTreeMap<CircleId, Held> = BTreeMap::new();
    // Logs already passed on (badly) to each peer.
    let mut done: std::collections::BTreeSet<(PeerId, cercle_node::envelope::LogId)> =
        Default::default();
    let mut count: BTreeMap<&str, u64> = BTreeMap::new();
    let mut printed = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let until = tokio::time::Instant::now() + secs;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } if !printed => {
                    printed = true;
                    println!("{}", serde_json::json!({ "address": format!("{address}/p2p/{me}") }));
                    let _ = std::io::stdout().flush();
                }
                SwarmEvent::ConnectionEstablished { peer_id, .. } if !writers.contains_key(&peer_id) => {
                    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(1024);
                    writers.insert(peer_id, tx);
                    let mut control = control.clone();
                    tokio::spawn(async move {
                        let Ok(mut out) = control.open_stream(peer_id, SYNC_PROTOCOL).await else {
                            return;
                        };
                        while let Some(m) = rx.recv().await {
                            if out.write_all(&wire::frame(&m)).await.is_err() || out.flush().await.is_err() {
                                return;
                            }
                        }
                    });
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    writers.remove(&peer_id);
                    done.retain(|(p, _)| *p != peer_id);
                }
                _ => {}
            },
            Some((peer, message)) = from_rx.recv() => {
                let Some(writer) = writers.get(&peer) else { continue };
                match message {
                    // Like a mailbox that holds nothing yet: "send me everything".
                    Message::Hello { circles } => {
                        let zeros = circles.iter().map(|(c, _)| (*c, [0; 32])).collect();
                        let _ = writer.try_send(Message::Hello { circles: zeros });
                        for (circle, _) in circles {
                            let _ = writer.try_send(Message::Have { circle, ops: vec![], vectors: vec![] });
                        }
                    }
                    Message::Data { circle, ops, envelopes } => {
                        let bytes = ops.iter().chain(&envelopes).map(Vec::len).sum::<usize>() as u64;
                        let _ = writer.try_send(Message::Ack { bytes });
                        let h = held.entry(circle).or_default();
                        for op in ops {
                            if !h.ops.contains(&op) {
                                h.ops.push(op);
                            }
                        }
                        for bytes in envelopes {
                            let Ok(env) = Envelope::decode(&bytes) else { continue };
                            let log = env.header.log();
                            if log.doc == DocKind::LiaisonNotebook {
                                h.notebook.entry(log).or_default().insert(env.header.seq, (peer, bytes));
                                *count.entry("held").or_default() += 1;
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                for (circle, h) in &held {
                    for (log, envelopes) in &h.notebook {
                        if envelopes.len() < forward {
                            continue;
                        }
                        let first: Vec<(PeerId, Vec<u8>)> = envelopes.values().take(forward).cloned().collect();
                        let Some((source, _)) = first.first().cloned() else { continue };
                        for (peer, writer) in &writers {
                            if *peer == source || !done.insert((*peer, *log)) {
                                continue;
                            }
                            let data = |envelopes: Vec<Vec<u8>>| Message::Data {
                                circle: *circle,
                                ops: h.ops.clone(),
                                envelopes,
                            };
                            // An altered copy of the first (one bit of its signature).
                            let mut altered = first[0].1.clone();
                            if let Some(b) = altered.last_mut() {
                                *b ^= 1;
                            }
                            let _ = writer.try_send(data(vec![altered]));
                            *count.entry("altered").or_default() += 1;
                            // Then every one, last first, each alone; then all again.
                            for _ in 0..2 {
                                for (_, bytes) in first.iter().rev() {
                                    let _ = writer.try_send(data(vec![bytes.clone()]));
                                    *count.entry("sent_reversed").or_default() += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let withheld: usize = held
        .values()
        .flat_map(|h| h.notebook.values())
        .map(|e| e.len().saturating_sub(forward))
        .sum();
    count.insert("withheld", withheld as u64);
    println!("{}", serde_json::json!(count));
}

/// An envelope that follows `honest` in the member's own notebook log, validly signed and
/// sealed, whose change rewrites the text of a note another member wrote.
fn rewrite_other_note(
    me: &LocalIdentity,
    circle: cercle_node::circle::membership::CircleId,
    ops: &[Vec<u8>],
    theirs: &[Vec<u8>],
    honest: &[u8],
    rng: &mut cercle_node::crypto::SecureRng,
) -> Vec<u8> {
    use automerge::transaction::Transactable as _;
    use automerge::{ObjType, ROOT, ReadDoc as _, Value};
    use cercle_crdt::DocKind;
    use cercle_node::circle::Circle;
    use cercle_node::envelope::{Envelope, Slot};

    let (mut c, _) =
        Circle::join(me, circle, ops).unwrap_or_else(|e| fail(&format!("not a member: {e}")));
    let _ = c.receive(me, "node", &[], theirs, cercle_crdt::Timestamp(5));
    let saved = c
        .save(DocKind::LiaisonNotebook)
        .unwrap_or_else(|e| fail(&format!("no notebook: {e}")));
    let mut doc =
        automerge::AutoCommit::load(&saved).unwrap_or_else(|e| fail(&format!("no notebook: {e}")));
    doc.set_actor(me.actor());
    let object =
        |doc: &automerge::AutoCommit, obj: &automerge::ObjId, key: &str| match doc.get(obj, key) {
            Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
            _ => None,
        };
    let entries = object(&doc, &ROOT, "entries").unwrap_or_else(|| fail("no entries"));
    let keys: Vec<String> = doc.keys(&entries).collect();
    let Some(target) = keys.iter().find_map(|k| object(&doc, &entries, k)) else {
        fail("no note of another member to rewrite")
    };
    doc.put(&target, "text", "Texte réécrit par un autre membre")
        .unwrap_or_else(|e| fail(&e.to_string()));
    doc.commit();
    let changes: Vec<cercle_crdt::Change> = doc.get_last_local_change().into_iter().collect();
    let epoch = c.resolution().epoch.unwrap_or_else(|| fail("no epoch"));
    let key = c
        .epoch_keys(me)
        .remove(&epoch)
        .unwrap_or_else(|| fail("no epoch key"));
    let prev = Envelope::decode(honest)
        .unwrap_or_else(|e| fail(&e.to_string()))
        .hash();
    let slot = Slot {
        circle,
        doc: DocKind::LiaisonNotebook,
        seq: 2,
        prev,
    };
    Envelope::seal(me, slot, (epoch, &key), &changes, rng)
        .unwrap_or_else(|e| fail(&e.to_string()))
        .bytes()
        .to_vec()
}

/// A member gone bad (see the module's comment).
async fn member(args: &Args) {
    use cercle_node::circle::Circle;
    use cercle_node::circle::membership::CircleId;
    use rand::SeedableRng as _;

    let circle: CircleId = arg(args, "circle")
        .parse()
        .unwrap_or_else(|_| fail("circle= is not a circle id"));
    let flood = number(args, "flood");
    let Session {
        me,
        mut swarm,
        incoming,
        peer,
        mut control,
        mut ours,
    } = Session::open(args).await;
    let mut messages = read_incoming(incoming);
    // Sends one message; false once the node closed the stream (it set this peer aside).
    let mut send = async |m: &Message| -> bool {
        ours.write_all(&wire::frame(m)).await.is_ok() && ours.flush().await.is_ok()
    };
    // Like any member: Hello with a digest that differs, then "I have nothing".
    send(&Message::Hello {
        circles: vec![(circle, [0; 32])],
    })
    .await;
    send(&Message::Have {
        circle,
        ops: vec![],
        vectors: vec![],
    })
    .await;
    let mut ops = Vec::new();
    let mut theirs = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    // Everything the node sends for the circle within a moment of the first data.
    let mut settled: Option<tokio::time::Instant> = None;
    loop {
        let deadline = settled.unwrap_or(until);
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                if ops.is_empty() {
                    fail("the node sent no data for the circle");
                }
                break;
            }
            m = messages.recv() => match m {
                Some((_, Message::Data { circle: c, ops: o, envelopes })) if c == circle => {
                    let bytes = o.iter().chain(&envelopes).map(Vec::len).sum::<usize>() as u64;
                    ops.extend(o);
                    theirs.extend(envelopes);
                    send(&Message::Ack { bytes }).await;
                    settled.get_or_insert(tokio::time::Instant::now() + Duration::from_secs(2));
                }
                Some(_) => {}
                None => fail("the node closed its streams"),
            },
            _ = swarm.select_next_some() => {}
        }
    }
    let mut rng = cercle_node::crypto::SecureRng::seed_from_u64(99);
    let write = |text: &str, rng: &mut cercle_node::crypto::SecureRng| {
        let (mut c, _) =
            Circle::join(&me, circle, &ops).unwrap_or_else(|e| fail(&format!("not a member: {e}")));
        let w =
            c.write::<cercle_crdt::LiaisonNotebook, _>(&me, cercle_crdt::Timestamp(5), rng, |nb| {
                nb.add_entry(
                    me.member(),
                    cercle_crdt::NewEntry {
                        kind: cercle_crdt::EntryKind::Observation,
                        text: text.into(),
                        vitals: None,
                    },
                    cercle_crdt::Timestamp(5),
                )
            });
        w.staged.batch.envelope_bytes().remove(0)
    };
    let data = |envelopes: Vec<Vec<u8>>| Message::Data {
        circle,
        ops: vec![],
        envelopes,
    };
    let honest = write("Visite faite, RAS", &mut rng);
    let rewrite = rewrite_other_note(&me, circle, &ops, &theirs, &honest, &mut rng);
    // The same position, other content: a fork of its own log.
    let fork = write("Visite annulée", &mut rng);
    let mut forged = honest.clone();
    if let Some(last) = forged.last_mut() {
        *last ^= 1;
    }
    let mut sent = BTreeMap::new();
    send(&data(vec![honest.clone()])).await;
    sent.insert("honest", 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(&data(vec![honest])).await;
    sent.insert("replayed", 1);
    send(&data(vec![forged])).await;
    sent.insert("forged", 1);
    send(&data(vec![fork])).await;
    sent.insert("forked", 1);
    send(&data(vec![rewrite])).await;
    sent.insert("rewrote", 1);
    send(&data(vec![vec![
        0x42;
        cercle_node::sync::MAX_DATA_BYTES + 1
    ]]))
    .await;
    sent.insert("oversized", 1);
    let mut garbage = 0u64;
    let mut disconnected = false;
    let mut reconnections = 0u64;
    let flood_until = args
        .get("secs")
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| Instant::now() + Duration::from_secs(s));
    while garbage < flood || flood_until.is_some_and(|t| Instant::now() < t) {
        let left = if flood_until.is_some() {
            256
        } else {
            flood.saturating_sub(garbage).min(256)
        };
        let batch: Vec<Vec<u8>> = (0..left)
            .map(|i| (garbage + i).to_be_bytes().to_vec())
            .collect();
        garbage += batch.len() as u64;
        let frame = wire::frame(&data(batch));
        if ours.write_all(&frame).await.is_ok() && ours.flush().await.is_ok() {
            continue;
        }
        // The node closed on us: a flood for a time comes back, as a determined peer would.
        disconnected = true;
        if flood_until.is_none() {
            break;
        }
        reconnections += 1;
        // Let the swarm see the connection close before asking for another.
        let settle = tokio::time::sleep(Duration::from_millis(100));
        tokio::pin!(settle);
        loop {
            tokio::select! {
                () = &mut settle => break,
                _ = swarm.select_next_some() => {}
            }
        }
        if !swarm.is_connected(&peer) {
            connect(&mut swarm, arg(args, "to")).await;
        }
        match control.open_stream(peer, SYNC_PROTOCOL).await {
            Ok(s) => ours = s,
            Err(_) => continue,
        }
        let hello = Message::Hello {
            circles: vec![(circle, [0; 32])],
        };
        let _ = ours.write_all(&wire::frame(&hello)).await;
    }
    sent.insert("garbage", garbage);
    sent.insert("reconnections", reconnections);
    // Keep the connection while the node reads it all.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            _ = messages.recv() => {}
            _ = swarm.select_next_some() => {}
        }
    }
    println!(
        "{}",
        serde_json::json!({ "sent": sent, "disconnected": disconnected })
    );
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    let args: Args = argv
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    match mode.as_str() {
        "identity" => identity(&args),
        "streams" => streams(&args).await,
        "never-read" => never_read(&args).await,
        "mute" => mute(&args).await,
        "member" => member(&args).await,
        "discover" => discover(&args).await,
        "meet" => meet(&args).await,
        "rogue-relay" => rogue_relay(&args).await,
        other => fail(&format!("unknown mode {other:?}")),
    }
}
