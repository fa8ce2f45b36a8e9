//! The network shell: a libp2p swarm (TCP and QUIC, Noise, Yamux, identify, ping, mDNS,
//! connection limits) and the sync stream protocol [`SYNC_PROTOCOL`] that carries
//! [`Message`]s, framed by [`crate::sync::wire`]. No protocol decision is taken here: every
//! message goes to the node's core and every message out comes from it.
//!
//! Relays (`--relay`): the node keeps a connection to each, reserves a slot there (so it can
//! be reached at `RELAY/p2p-circuit/p2p/ME`), and dials through the relay the members it
//! introduces (the relay's side of the sync protocol tells each member device which other
//! devices of its circles are connected there); DCUtR then tries to punch a direct
//! connection, and the relayed one stays if it fails. The relay is also a peer of the sync
//! protocol: its mailbox.
//!
//! A device's Ed25519 key is its libp2p identity, so a connected [`PeerId`] *is* a proven
//! [`DeviceId`] (Noise authenticates it) and gating by circle membership needs no extra
//! handshake. Peers whose key is not Ed25519 (other libp2p software) get identify and ping
//! only.
//!
//! Per connected Cercle peer there is one outbound stream, written by a task fed from a
//! channel of at most [`PEER_QUEUE_BYTES`] of encoded frames (a peer that does not read
//! fills it and is disconnected), and one inbound stream, read by a task that forwards each frame to the
//! core through a bounded channel (so a peer faster than the core is slowed down by TCP,
//! not buffered here).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, dcutr, identify, mdns, noise,
    ping, relay, tcp, yamux,
};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

mod outbox;
mod relays;

pub use outbox::{MAX_EARLY, PEER_QUEUE, PEER_QUEUE_BYTES, PeerQueue, PeerWriter};
pub(crate) use outbox::{Outbox, Undelivered};
pub use relays::relay_device;
use relays::{Relays, relay_peer};

use crate::identity::{DeviceId, LocalIdentity};
use crate::sync::Message;
use crate::sync::wire::{self, MAX_FRAME};

/// The sync protocol's name and version.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/cercle/sync/1.0.0");
/// The identify protocol version string.
pub const PROTOCOL_VERSION: &str = "/cercle/1.0.0";
/// Connections kept at most, in all and per peer.
pub const MAX_CONNECTIONS: u32 = 256;
pub const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Peers found by mDNS waiting for their turn to be dialed, at most.
const MAX_DIAL_LATER: usize = 256;
/// Messages from peers waiting for the core, at most.
pub const INBOUND_QUEUE: usize = 256;

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("the device key cannot serve as a network identity: {0}")]
    Key(String),
    #[error("cannot set up the network: {0}")]
    Setup(String),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: String, reason: String },
    #[error("{0:?} is not a valid multiaddress: {1}")]
    Address(String, String),
    #[error("the relay address {0} must end with /p2p/<relay peer id>")]
    RelayAddress(String),
}

/// How the network runs.
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    /// Addresses to listen on; none means `/ip4/0.0.0.0/tcp/0` and `/ip4/0.0.0.0/udp/0/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and whenever the connection drops.
    pub peers: Vec<Multiaddr>,
    /// Whether to find peers on the LAN by mDNS.
    pub mdns: bool,
    /// Relays to reserve a slot at, meet members at, and keep a mailbox at; each ends with
    /// `/p2p/<relay peer id>`.
    pub relays: Vec<Multiaddr>,
}

impl NetConfig {
    /// The devices of the configured relays (their peer ids name them).
    pub fn relay_devices(&self) -> Result<BTreeSet<DeviceId>, NetError> {
        self.relays.iter().map(relays::relay_device_at).collect()
    }
}

/// What the network tells the core.
#[derive(Debug)]
pub enum NetEvent {
    /// A Cercle peer's sync stream is open: messages for it go into `writer`.
    Connected {
        device: DeviceId,
        peer_id: PeerId,
        /// The stream goes through a relay's circuit (no direct connection to the peer
        /// when it opened).
        relayed: bool,
        writer: PeerWriter,
    },
    /// The last connection to the peer closed.
    Disconnected { device: DeviceId },
    /// A message from the peer.
    Message { device: DeviceId, message: Message },
    /// This node's listen addresses changed.
    Addresses(Vec<String>),
}

/// What the core asks of the network.
#[derive(Debug)]
pub enum NetCommand {
    Dial(String),
    /// Closes every connection to a peer (one that does not read what it is sent).
    Disconnect(PeerId),
    /// Closes every connection to a peer device and reads none of its streams for a while
    /// (it sent refused data without pause).
    SetAside(DeviceId, Duration),
    /// Reach `device` through the relay `via`, which introduced it.
    Meet {
        device: DeviceId,
        via: DeviceId,
    },
    /// The relays the circles name (the full list; the configured ones stay too).
    Relays(Vec<String>),
}

/// The libp2p keypair of a device: its Ed25519 device key.
pub fn keypair(me: &LocalIdentity) -> Result<Keypair, NetError> {
    let mut secret = me.device_secret();
    Keypair::ed25519_from_bytes(&mut secret[..]).map_err(|e| NetError::Key(e.to_string()))
}

/// The device whose key is behind `peer`, if it is an Ed25519 key.
pub fn device_of(peer: &PeerId) -> Option<DeviceId> {
    let mh = peer.as_ref();
    // Ed25519 peer ids inline the public key (identity multihash).
    if mh.code() != 0 {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    Some(DeviceId(ed.to_bytes()))
}

/// The peer id of a device.
pub fn peer_of(device: &DeviceId) -> Option<PeerId> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(&device.0).ok()?;
    Some(PublicKey::from(ed).to_peer_id())
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: libp2p::swarm::behaviour::toggle::Toggle<mdns::tokio::Behaviour>,
    stream: libp2p_stream::Behaviour,
    relay: relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
}

/// The running network: the swarm and its streams, until `commands` closes.
pub async fn run(
    key: Keypair,
    config: NetConfig,
    events: mpsc::Sender<NetEvent>,
    mut commands: mpsc::Receiver<NetCommand>,
) -> Result<(), NetError> {
    let mut swarm = build(key, config.mdns)?;
    let listen = if config.listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/tcp/0"
                .parse()
                .map_err(|e| NetError::Setup(format!("{e}")))?,
            "/ip4/0.0.0.0/udp/0/quic-v1"
                .parse()
                .map_err(|e| NetError::Setup(format!("{e}")))?,
        ]
    } else {
        config.listen.clone()
    };
    for address in listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| NetError::Listen {
                address: address.to_string(),
                reason: e.to_string(),
            })?;
    }
    for address in &config.peers {
        dial(&mut swarm, address.clone());
    }
    let mut relays = Relays::default();
    for address in &config.relays {
        let peer =
            relay_peer(address).ok_or_else(|| NetError::RelayAddress(address.to_string()))?;
        relays.addresses.insert(peer, address.clone());
        relays.configured.insert(peer);
        dial(&mut swarm, address.clone());
    }
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = control
        .accept(SYNC_PROTOCOL)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    let mut addresses: BTreeSet<String> = BTreeSet::new();
    let mut readers = Readers::default();
    // Writers whose peer stopped reading (see `WRITE_STALL`).
    let (stalled_tx, mut stalled_rx) = mpsc::channel::<DeviceId>(64);
    let local = *swarm.local_peer_id();
    // Peers found by mDNS with a larger peer id than ours: they dial us; we dial them only
    // if they have not after a while. (Two nodes dialing each other at the same moment from
    // their listen ports make one TCP connection with two initiators, which Noise refuses.)
    let mut dial_later: Vec<(tokio::time::Instant, Multiaddr, PeerId)> = Vec::new();
    let mut redial = tokio::time::interval(Duration::from_secs(1));
    let mut redial_count: u64 = 0;
    let mut links = Links::default();
    redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            Some(device) = stalled_rx.recv() => {
                if let Some(peer) = peer_of(&device) {
                    let _ = swarm.disconnect_peer_id(peer);
                }
            }
            command = commands.recv() => match command {
                Some(NetCommand::Dial(address)) => match address.parse::<Multiaddr>() {
                    Ok(a) => dial(&mut swarm, a),
                    Err(e) => tracing::warn!(%address, error = %e, "not a multiaddress"),
                },
                Some(NetCommand::Disconnect(peer)) => {
                    let _ = swarm.disconnect_peer_id(peer);
                }
                Some(NetCommand::SetAside(device, span)) => {
                    readers.set_aside(device, span);
                    if let Some(peer) = peer_of(&device) {
                        let _ = swarm.disconnect_peer_id(peer);
                    }
                }
                Some(NetCommand::Relays(named)) => relays.named(&mut swarm, named),
                Some(NetCommand::Meet { device, via }) => {
                    if let (Some(peer), Some(relay)) = (peer_of(&device), peer_of(&via)) {
                        relays.meet(&mut swarm, peer, relay);
                    }
                }
                None => break,
            },
            Some((peer, stream)) = incoming.next() => {
                match device_of(&peer) {
                    Some(device) => readers.read(device, stream, &events),
                    None => tracing::debug!(%peer, "sync stream from a peer without a device key"),
                }
            }
            _ = redial.tick() => {
                let now = tokio::time::Instant::now();
                dial_later.retain(|(at, address, peer)| {
                    if *at > now {
                        return true;
                    }
                    if !swarm.is_connected(peer) {
                        dial(&mut swarm, address.clone());
                    }
                    false
                });
                redial_count += 1;
                if !redial_count.is_multiple_of(5) {
                    continue;
                }
                for (peer, address) in &relays.addresses {
                    if !swarm.is_connected(peer) {
                        dial(&mut swarm, address.clone());
                    }
                }
                // Configured peers are dialed again whenever they are not connected.
                for address in &config.peers {
                    let connected = address.iter().find_map(|p| match p {
                        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                        _ => None,
                    }).is_some_and(|id| swarm.is_connected(&id));
                    if !connected {
                        dial(&mut swarm, address.clone());
                    }
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    tracing::info!(%address, "listening");
                    addresses.insert(address.to_string());
                    let _ = events.send(NetEvent::Addresses(addresses.iter().cloned().collect())).await;
                }
                SwarmEvent::ExpiredListenAddr { address, .. } => {
                    addresses.remove(&address.to_string());
                    let _ = events.send(NetEvent::Addresses(addresses.iter().cloned().collect())).await;
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    tracing::debug!(?listener_id, ?reason, "listener closed");
                    // A relay's reservation ended (the relay went away): ask again on reconnect.
                    relays.listening.retain(|relay, id| {
                        let closed = *id == listener_id;
                        if closed {
                            tracing::info!(%relay, ?reason, "the reservation at the relay ended");
                        }
                        !closed
                    });
                }
                SwarmEvent::Behaviour(BehaviourEvent::Relay(relay::client::Event::ReservationReqAccepted { relay_peer_id, renewal: false, .. })) => {
                    tracing::info!(relay = %relay_peer_id, "reachable through the relay");
                }
                SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result })) => match result {
                    Ok(_) => tracing::info!(peer = %remote_peer_id, "direct connection punched through"),
                    Err(e) => tracing::info!(peer = %remote_peer_id, error = %e, "no direct connection; staying on the relayed one"),
                },
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, num_established, endpoint, .. } => {
                    tracing::debug!(%peer_id, address = %endpoint.get_remote_address(), "connected");
                    let relayed = endpoint.is_relayed();
                    links.established(peer_id, connection_id, relayed);
                    // A relay of ours: reserve a slot there, to be reachable through it.
                    if !relayed
                        && !relays.listening.contains_key(&peer_id)
                        && let Some(address) = relays.addresses.get(&peer_id)
                    {
                        match swarm.listen_on(address.clone().with(Protocol::P2pCircuit)) {
                            Ok(id) => {
                                relays.listening.insert(peer_id, id);
                            }
                            Err(e) => tracing::warn!(relay = %peer_id, error = %e, "cannot listen through the relay"),
                        }
                    }
                    let Some(device) = device_of(&peer_id) else { continue };
                    if num_established.get() == 1 {
                        tokio::spawn(open_stream(device, peer_id, relayed, control.clone(), events.clone(), stalled_tx.clone()));
                    } else if links.direct(&peer_id) {
                        // A direct connection (punched through, or found on the LAN) to a
                        // peer also reached through a relay: the circuits are closed, so
                        // the sync moves to the direct one and the relay's circuit slots
                        // are free for others.
                        for circuit in links.circuits(&peer_id) {
                            tracing::info!(peer = %peer_id, "direct connection; closing the relayed one");
                            swarm.close_connection(circuit);
                        }
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                    links.closed(&peer_id, connection_id);
                    if let Some(device) = device_of(&peer_id) {
                        tracing::debug!(%peer_id, remaining = num_established, "connection closed");
                        let _ = events.send(NetEvent::Disconnected { device }).await;
                        // Another connection remains (a relayed circuit closed after a hole
                        // punch, or the reverse): the sync stream may have been on the
                        // closed one, so it starts again on what remains.
                        if num_established > 0 {
                            let relayed = !links.direct(&peer_id);
                            tokio::spawn(open_stream(device, peer_id, relayed, control.clone(), events.clone(), stalled_tx.clone()));
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                    for (peer, address) in found {
                        if swarm.is_connected(&peer) {
                            continue;
                        }
                        tracing::info!(%peer, %address, "found on the local network");
                        let address = address.with_p2p(peer).unwrap_or_else(|a| a);
                        if local < peer {
                            dial(&mut swarm, address);
                        } else if dial_later.len() < MAX_DIAL_LATER {
                            let at = tokio::time::Instant::now() + Duration::from_secs(3);
                            dial_later.push((at, address, peer));
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    tracing::debug!(%peer_id, agent = %info.agent_version, "identified");
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    tracing::debug!(?peer_id, %error, "dial failed");
                }
                SwarmEvent::IncomingConnectionError { error, .. } => {
                    tracing::debug!(%error, "incoming connection failed");
                }
                _ => {}
            },
        }
    }
    Ok(())
}

/// Streams a peer may have open at once on one connection (yamux's default is 512): the
/// sync stream each way, and the few of identify, ping, relay and hole punching.
pub const MAX_STREAMS_PER_CONNECTION: usize = 64;

/// Yamux with [`MAX_STREAMS_PER_CONNECTION`].
fn muxer() -> yamux::Config {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    c
}

/// QUIC with [`MAX_STREAMS_PER_CONNECTION`].
fn quic(mut c: libp2p::quic::Config) -> libp2p::quic::Config {
    c.max_concurrent_stream_limit = u32::try_from(MAX_STREAMS_PER_CONNECTION).unwrap_or(64);
    c
}

/// What a behaviour's constructor may fail with.
pub(crate) type BehaviourError = Box<dyn std::error::Error + Send + Sync>;

/// A swarm on TCP (Noise, Yamux) and QUIC with tokio: the relay's. (A node's, in [`build`],
/// adds the relay client transport, which changes the builder's type.)
pub(crate) fn swarm<B: NetworkBehaviour>(
    key: Keypair,
    idle: Duration,
    behaviour: impl FnOnce(&Keypair) -> Result<B, BehaviourError>,
) -> Result<Swarm<B>, String> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            muxer,
        )
        .map_err(|e| e.to_string())?
        .with_quic_config(quic)
        .with_behaviour(behaviour)
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build())
}

fn build(key: Keypair, with_mdns: bool) -> Result<Swarm<Behaviour>, NetError> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            muxer,
        )
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_quic_config(quic)
        .with_relay_client(noise::Config::new, muxer)
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_behaviour(|key, relay| behaviour(key, relay, with_mdns))
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

fn behaviour(
    key: &Keypair,
    relay: relay::client::Behaviour,
    with_mdns: bool,
) -> Result<Behaviour, BehaviourError> {
    {
        let peer = key.public().to_peer_id();
        let mdns = if with_mdns {
            Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
        } else {
            None
        };
        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(MAX_CONNECTIONS))
                    .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                    .with_max_pending_incoming(Some(64))
                    .with_max_pending_outgoing(Some(64)),
            ),
            identify: identify::Behaviour::new(
                identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                    .with_agent_version(format!("cercle/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            mdns: mdns.into(),
            stream: libp2p_stream::Behaviour::new(),
            relay,
            dcutr: dcutr::Behaviour::new(peer),
        })
    }
}

fn dial(swarm: &mut Swarm<Behaviour>, address: Multiaddr) {
    tracing::debug!(%address, "dialing");
    if let Err(e) = swarm.dial(address.clone()) {
        tracing::debug!(%address, error = %e, "cannot dial");
    }
}

/// Tries to open (or reopen) a sync stream this many times in a row before giving up.
const STREAM_ATTEMPTS: u32 = 3;

/// A peer that takes none of one frame for this long does not read: it is disconnected.
pub const WRITE_STALL: Duration = Duration::from_secs(20);

/// Opens the sync stream to a newly connected peer and writes the core's messages to it.
/// A stream that breaks while the core still writes to the peer (one of two connections
/// closed, a reset) is opened again: the core sees a new `Connected` and says `Hello`, so
/// what was lost on the way is asked for again. A peer to which no stream opens after
/// [`STREAM_ATTEMPTS`] tries in a row is disconnected (through `stalled`).
pub(crate) async fn open_stream(
    device: DeviceId,
    peer: PeerId,
    relayed: bool,
    mut control: libp2p_stream::Control,
    events: mpsc::Sender<NetEvent>,
    stalled: mpsc::Sender<DeviceId>,
) {
    let mut failures = 0;
    while failures < STREAM_ATTEMPTS {
        let stream = match control.open_stream(peer, SYNC_PROTOCOL).await {
            Ok(s) => s,
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => {
                tracing::debug!(%peer, "no sync stream (not a Cercle node)");
                return;
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(%peer, error = %e, attempt = failures, "cannot open the sync stream");
                tokio::time::sleep(Duration::from_millis(300 * u64::from(failures))).await;
                continue;
            }
        };
        let (writer, mut queue) = Outbox::channel();
        if events
            .send(NetEvent::Connected {
                device,
                peer_id: peer,
                relayed,
                writer,
            })
            .await
            .is_err()
        {
            return;
        }
        let mut framed = FramedWrite::new(stream.compat_write(), codec());
        let mut wrote = false;
        loop {
            // The core dropped the writer: the peer is gone, or a newer stream replaced
            // this one.
            let Some(frame) = queue.recv().await else {
                return;
            };
            let len = frame.len();
            let sent = tokio::time::timeout(WRITE_STALL, framed.send(frame)).await;
            queue.written(len);
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "sync stream closed; opening another");
                    break;
                }
                Err(_) => {
                    tracing::warn!(%peer, "a peer read nothing of what this node sent for {WRITE_STALL:?}; disconnecting it");
                    let _ = stalled.try_send(device);
                    return;
                }
            }
            wrote = true;
        }
        failures = if wrote { 1 } else { failures + 1 };
    }
    // Were it still connected with no stream to write on, the peer would hear nothing from
    // this side while its own messages kept coming: it is disconnected, and the next connection
    // (members redial their relays and configured peers) starts the exchange afresh.
    tracing::debug!(%peer, "cannot open a sync stream to the peer; disconnecting it");
    let _ = stalled.try_send(device);
}

/// Lines about what peers' streams and frames did wrong, at most [`PEER_LINES_PER_MINUTE`]
/// a minute in all: any peer, a stranger with a fresh key each time, can cause one for every
/// few bytes it sends, and a log is a disk.
static PEER_LINES: LogBudget = LogBudget::new();
pub const PEER_LINES_PER_MINUTE: u64 = 32;

/// A budget of log lines per minute, for the whole process.
struct LogBudget {
    minute: AtomicU64,
    used: AtomicU64,
    over: AtomicU64,
}

impl LogBudget {
    const fn new() -> LogBudget {
        LogBudget {
            minute: AtomicU64::new(0),
            used: AtomicU64::new(0),
            over: AtomicU64::new(0),
        }
    }

    /// Whether one more line may be written now. When a new minute starts, one line says
    /// how many were left out in the last.
    fn allow(&self) -> bool {
        let minute = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        if self.minute.swap(minute, Ordering::Relaxed) != minute {
            self.used.store(0, Ordering::Relaxed);
            let over = self.over.swap(0, Ordering::Relaxed);
            if over > 0 {
                tracing::warn!(
                    left_out = over,
                    "more lines about peers' refused frames were left out of the log"
                );
            }
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < PEER_LINES_PER_MINUTE {
            return true;
        }
        self.over.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Reads a peer's sync stream and hands each message to the core. Frames are cut as their
/// bytes arrive ([`wire::FrameDecoder`]); large ones only after the peer's `Hello`.
pub(crate) async fn read_stream(
    device: DeviceId,
    stream: libp2p::Stream,
    events: mpsc::Sender<NetEvent>,
) {
    let mut framed = FramedRead::new(stream.compat(), wire::FrameDecoder::default());
    while let Some(frame) = framed.next().await {
        match frame {
            Ok(bytes) => match wire::decode(&bytes) {
                Ok(message) => {
                    if matches!(
                        message,
                        crate::sync::Message::Hello { .. } | crate::sync::Message::Summary { .. }
                    ) {
                        framed.decoder_mut().open_up();
                    }
                    if events
                        .send(NetEvent::Message { device, message })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    if PEER_LINES.allow() {
                        tracing::warn!(%device, reason = %e, "refused a sync frame");
                    }
                }
            },
            Err(e) => {
                // Framing is lost (a frame over the limit, or the stream broke).
                if PEER_LINES.allow() {
                    tracing::warn!(%device, reason = %e, "closing a sync stream");
                }
                return;
            }
        }
    }
}

/// The connections open to each peer, and which go through a relay's circuit.
#[derive(Debug, Default)]
struct Links {
    open: std::collections::HashMap<PeerId, Vec<(libp2p::swarm::ConnectionId, bool)>>,
}

impl Links {
    fn established(&mut self, peer: PeerId, id: libp2p::swarm::ConnectionId, relayed: bool) {
        self.open.entry(peer).or_default().push((id, relayed));
    }

    fn closed(&mut self, peer: &PeerId, id: libp2p::swarm::ConnectionId) {
        if let Some(links) = self.open.get_mut(peer) {
            links.retain(|(c, _)| *c != id);
            if links.is_empty() {
                self.open.remove(peer);
            }
        }
    }

    /// Whether a direct connection to `peer` is open.
    fn direct(&self, peer: &PeerId) -> bool {
        self.open
            .get(peer)
            .is_some_and(|l| l.iter().any(|(_, relayed)| !relayed))
    }

    /// The connections to `peer` through a relay.
    fn circuits(&self, peer: &PeerId) -> Vec<libp2p::swarm::ConnectionId> {
        self.open
            .get(peer)
            .map(|l| l.iter().filter(|(_, r)| *r).map(|(c, _)| *c).collect())
            .unwrap_or_default()
    }
}

/// The task reading each peer device's sync stream: one per device (a new stream from a
/// device replaces its old one, so opening many costs a peer, not this node), and at most
/// [`MAX_INBOUND_STREAMS`] in all. A device set aside has none of its streams read.
#[derive(Debug, Default)]
pub(crate) struct Readers {
    tasks: std::collections::HashMap<DeviceId, tokio::task::JoinHandle<()>>,
    /// Devices whose streams are not read, until when.
    aside: std::collections::HashMap<DeviceId, tokio::time::Instant>,
}

/// Peer devices whose sync streams are read at once, at most.
pub const MAX_INBOUND_STREAMS: usize = 1024;

impl Readers {
    /// Reads `stream` from `device`, in place of any earlier one of the device's.
    pub(crate) fn read(
        &mut self,
        device: DeviceId,
        stream: libp2p::Stream,
        events: &mpsc::Sender<NetEvent>,
    ) {
        let now = tokio::time::Instant::now();
        if self.aside.get(&device).is_some_and(|until| *until > now) {
            tracing::debug!(%device, "a stream from a peer set aside; not read");
            return;
        }
        self.tasks.retain(|_, task| !task.is_finished());
        if let Some(old) = self.tasks.remove(&device) {
            old.abort();
        } else if self.tasks.len() >= MAX_INBOUND_STREAMS {
            if PEER_LINES.allow() {
                tracing::warn!(%device, "too many peers' sync streams open; one more refused");
            }
            return;
        }
        self.tasks.insert(
            device,
            tokio::spawn(read_stream(device, stream, events.clone())),
        );
    }

    /// Stops reading `device` and reads none of its streams for `span`.
    pub(crate) fn set_aside(&mut self, device: DeviceId, span: Duration) {
        let now = tokio::time::Instant::now();
        self.aside.retain(|_, until| *until > now);
        if self.aside.len() < MAX_INBOUND_STREAMS {
            self.aside.insert(device, now + span);
        }
        if let Some(task) = self.tasks.remove(&device) {
            task.abort();
        }
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_and_its_peer_id_name_each_other() {
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let device = device_of(&peer).unwrap_or_else(|| panic!("not an ed25519 peer id"));
        assert_eq!(peer_of(&device), Some(peer));
    }

    #[test]
    fn a_peers_circuits_are_named_while_a_direct_connection_is_open() {
        use libp2p::swarm::ConnectionId;
        let (peer, other) = (PeerId::random(), PeerId::random());
        let (circuit, direct) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        let mut links = Links::default();
        links.established(peer, circuit, true);
        links.established(other, ConnectionId::new_unchecked(3), true);
        assert!(!links.direct(&peer));
        links.established(peer, direct, false);
        assert!(links.direct(&peer));
        assert_eq!(links.circuits(&peer), vec![circuit]);
        links.closed(&peer, circuit);
        assert!(links.circuits(&peer).is_empty());
        links.closed(&peer, direct);
        assert!(!links.direct(&peer));
        // Nothing kept for a peer with no connection left.
        assert!(!links.open.contains_key(&peer));
        assert_eq!(links.circuits(&other).len(), 1);
    }

    #[test]
    fn a_peer_without_an_ed25519_key_is_no_device() {
        assert_eq!(device_of(&PeerId::random()), None);
    }
}
