//! `cercle relay`: a node for operators (a regional e-health agency, a hospital IT team) that
//! runs unattended and helps members' nodes reach each other: libp2p circuit relay v2
//! server (with reservation and circuit limits), AutoNAT server, the [`crate::mailbox`] that
//! keeps envelopes for members who are offline and introduces the members connected to it
//! to each other (only current members of the circles it keeps, to one another), and
//! Prometheus metrics with a health check on a local HTTP port.
//!
//! A relay holds no member identity and no epoch key: its own Ed25519 network key lives in
//! `HOME/relay.key` (mode 0600), created on first start, so its peer id survives restarts;
//! it signs the relay's deletion receipts of closed circles, and the key derived from it
//! seals the mailbox's keys at rest (`HOME/mailbox.keys`). It sees circle ids, peer ids,
//! sizes and timing, never content.
//!
//! The mailbox speaks the nodes' sync protocol on the same stream protocol; this shell
//! carries messages between the swarm and the sans-I/O [`Exchange`], and stores before it
//! acknowledges.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::mailbox::exchange::{Exchange, Step};
use crate::mailbox::{Mailbox, MailboxLimits};
use crate::net::{NetEvent, Outbox, SYNC_PROTOCOL, Undelivered, device_of};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, connection_limits, identify, ping, relay};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use zeroize::Zeroizing;

/// The file holding the relay's network key.
pub const KEY_FILE: &str = "relay.key";
/// The mailbox's database directory in the relay's home.
pub const MAILBOX_DIR: &str = "mailbox";

/// Reservations held at once, in all and per peer.
pub const MAX_RESERVATIONS: usize = 1024;
/// Relayed connections at once, in all and per peer.
pub const MAX_CIRCUITS: usize = 256;
pub const MAX_CIRCUITS_PER_PEER: usize = 8;
/// A relayed connection lasts at most this long and carries at most this many bytes before
/// the peers are expected to have punched a direct hole (or to reconnect).
pub const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(30 * 60);
pub const MAX_CIRCUIT_BYTES: u64 = 64 * 1024 * 1024;

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("cannot read or create the relay key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("cannot set up the relay's network: {0}")]
    Setup(String),
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: String, reason: String },
    #[error("cannot serve metrics on {address}: {reason}")]
    Metrics { address: String, reason: String },
    #[error(transparent)]
    Mailbox(#[from] crate::mailbox::MailboxError),
}

/// How to run a relay.
#[derive(Debug, Clone, Default)]
pub struct RelayConfig {
    /// The relay's home (its key).
    pub home: PathBuf,
    /// Listen addresses; none means TCP and QUIC on port 4001 of every interface.
    pub listen: Vec<Multiaddr>,
    /// Where `/metrics` and `/health` are served (loopback recommended).
    pub metrics: Option<SocketAddr>,
    /// The addresses members reach the relay at (behind a NAT or a load balancer); none
    /// means its listen addresses.
    pub external: Vec<Multiaddr>,
    /// What each circle's mailbox may hold.
    pub limits: MailboxLimits,
    /// Keep any circle a current member pushes, not only those that name this relay among
    /// their relays.
    pub open_mailbox: bool,
}

/// What the relay tells its operator once it listens.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RelayReady {
    pub peer_id: String,
    /// Full listen addresses, each ending in `/p2p/<peer_id>`.
    pub addresses: Vec<String>,
    pub metrics: Option<SocketAddr>,
}

/// The key that seals the mailbox's circle keys at rest, from the relay's key in `home`
/// (what `cercle relay --inspect` opens a stopped relay's mailbox with).
pub fn mailbox_key(home: &Path) -> Result<crate::crypto::StorageKey, RelayError> {
    let signer = receipt_signer(&load_or_create_key(home)?)?;
    Ok(crate::crypto::StorageKey::derive(&signer.to_bytes()))
}

/// The relay's network key as the Ed25519 key that signs its deletion receipts.
fn receipt_signer(key: &Keypair) -> Result<ed25519_dalek::SigningKey, RelayError> {
    let pair = key
        .clone()
        .try_into_ed25519()
        .map_err(|e| RelayError::Key {
            path: std::path::PathBuf::from(KEY_FILE),
            reason: e.to_string(),
        })?;
    let secret = Zeroizing::new(pair.secret().as_ref().to_vec());
    let bytes: [u8; 32] = secret.as_slice().try_into().map_err(|_| RelayError::Key {
        path: std::path::PathBuf::from(KEY_FILE),
        reason: "not a 32-byte Ed25519 key".into(),
    })?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&bytes))
}

/// The relay's key: read from `HOME/relay.key`, or created there.
pub fn load_or_create_key(home: &Path) -> Result<Keypair, RelayError> {
    let path = home.join(KEY_FILE);
    let err = |reason: String| RelayError::Key {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let mut secret = Zeroizing::new(bytes);
            if secret.len() != 32 {
                return Err(err(format!(
                    "it holds {} bytes, not a 32-byte key",
                    secret.len()
                )));
            }
            Keypair::ed25519_from_bytes(&mut secret[..]).map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::home::create_dir(home).map_err(|e| err(e.to_string()))?;
            let mut secret = Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut secret[..]).map_err(|e| err(e.to_string()))?;
            crate::home::write_private(&path, &secret[..]).map_err(|e| err(e.to_string()))?;
            Keypair::ed25519_from_bytes(&mut secret[..]).map_err(|e| err(e.to_string()))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Why a request was refused, as a metrics label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    kind: String,
}

/// Why a mailbox request was refused, as metrics labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxRefusal {
    direction: String,
    reason: String,
}

/// The relay's metrics.
#[derive(Debug, Default)]
struct Metrics {
    connections: Gauge,
    reservations: Gauge,
    reservations_accepted: Counter,
    circuits: Gauge,
    circuits_accepted: Counter,
    introductions: Counter,
    set_aside: Counter,
    ignored_messages: Counter,
    rejections: Family<Refusal, Counter>,
    mailbox_circles: Gauge,
    mailbox_ops: Gauge,
    mailbox_envelopes: Gauge,
    mailbox_bytes: Gauge,
    mailbox_closed: Gauge,
    mailbox_stored: Counter,
    mailbox_refusals: Family<MailboxRefusal, Counter>,
}

impl Metrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cercle_relay_connections",
            "Open connections",
            self.connections.clone(),
        );
        registry.register(
            "cercle_relay_reservations",
            "Relay reservations held",
            self.reservations.clone(),
        );
        registry.register(
            "cercle_relay_reservations_accepted",
            "Relay reservations accepted",
            self.reservations_accepted.clone(),
        );
        registry.register(
            "cercle_relay_circuits",
            "Relayed connections open",
            self.circuits.clone(),
        );
        registry.register(
            "cercle_relay_circuits_accepted",
            "Relayed connections accepted",
            self.circuits_accepted.clone(),
        );
        registry.register(
            "cercle_relay_set_aside",
            "Peers disconnected and ignored for a while for sending refused data without pause",
            self.set_aside.clone(),
        );
        registry.register(
            "cercle_relay_ignored_messages",
            "Messages dropped unread from peers set aside",
            self.ignored_messages.clone(),
        );
        registry.register(
            "cercle_relay_introductions",
            "Members' devices told which devices of their circles are connected here",
            self.introductions.clone(),
        );
        registry.register(
            "cercle_relay_rejections",
            "Requests refused, by kind",
            self.rejections.clone(),
        );
        registry.register(
            "cercle_relay_mailbox_circles",
            "Circles held in the mailbox",
            self.mailbox_circles.clone(),
        );
        registry.register(
            "cercle_relay_mailbox_closed_circles",
            "Circles closed or suspended whose envelopes were deleted (their receipts are given on request)",
            self.mailbox_closed.clone(),
        );
        registry.register(
            "cercle_relay_mailbox_ops",
            "Membership operations held in the mailbox",
            self.mailbox_ops.clone(),
        );
        registry.register(
            "cercle_relay_mailbox_envelopes",
            "Envelopes held in the mailbox",
            self.mailbox_envelopes.clone(),
        );
        registry.register(
            "cercle_relay_mailbox_bytes",
            "Envelope bytes held in the mailbox",
            self.mailbox_bytes.clone(),
        );
        registry.register(
            "cercle_relay_mailbox_stored",
            "Envelopes stored in the mailbox",
            self.mailbox_stored.clone(),
        );
        registry.register(
            "cercle_relay_mailbox_refusals",
            "Mailbox pushes and pulls refused, by direction and reason",
            self.mailbox_refusals.clone(),
        );
    }

    /// Counts what one mailbox step stored and refused.
    fn mailbox_step(&self, step: &Step) {
        for (direction, reason) in &step.refused {
            self.mailbox_refusals
                .get_or_create(&MailboxRefusal {
                    direction: direction.as_str().into(),
                    reason: (*reason).into(),
                })
                .inc();
        }
        self.mailbox_stored.inc_by(step.stored.envelopes as u64);
        self.introductions.inc_by(step.introductions as u64);
        if step.set_aside.is_some() {
            self.set_aside.inc();
        }
        if step.ignored {
            self.ignored_messages.inc();
        }
    }

    /// What the mailbox holds.
    fn mailbox_totals(&self, mailbox: &Mailbox) {
        let t = mailbox.totals();
        let gauge = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.mailbox_circles, t.circles);
        gauge(&self.mailbox_ops, t.ops);
        gauge(&self.mailbox_envelopes, t.envelopes);
        gauge(&self.mailbox_bytes, t.bytes);
        gauge(&self.mailbox_closed, t.closed);
    }

    fn refused(&self, kind: &str) {
        self.rejections
            .get_or_create(&Refusal { kind: kind.into() })
            .inc();
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    relay: relay::Behaviour,
    autonat: autonat::Behaviour,
    stream: libp2p_stream::Behaviour,
}

fn build(key: Keypair) -> Result<Swarm<Behaviour>, RelayError> {
    crate::net::swarm(key, Duration::from_secs(120), |key| {
        let peer = key.public().to_peer_id();
        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(4096))
                    .with_max_established_per_peer(Some(4))
                    .with_max_pending_incoming(Some(256)),
            ),
            identify: identify::Behaviour::new(
                identify::Config::new(crate::net::PROTOCOL_VERSION.into(), key.public())
                    .with_agent_version(format!("cercle-relay/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            relay: relay::Behaviour::new(
                peer,
                relay::Config {
                    max_reservations: MAX_RESERVATIONS,
                    max_reservations_per_peer: 4,
                    max_circuits: MAX_CIRCUITS,
                    max_circuits_per_peer: MAX_CIRCUITS_PER_PEER,
                    max_circuit_duration: MAX_CIRCUIT_DURATION,
                    max_circuit_bytes: MAX_CIRCUIT_BYTES,
                    ..Default::default()
                },
            ),
            autonat: autonat::Behaviour::new(peer, autonat::Config::default()),
            stream: libp2p_stream::Behaviour::new(),
        })
    })
    .map_err(RelayError::Setup)
}

/// Runs the relay until `shutdown` completes; `ready` is called once with its peer id and
/// listen addresses.
pub async fn run(
    config: RelayConfig,
    ready: impl FnOnce(RelayReady),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RelayError> {
    let key = load_or_create_key(&config.home)?;
    let peer_id = key.public().to_peer_id();
    // The same key signs the mailbox's deletion receipts: its public half is the relay's
    // device, which members know from the circle's relays.
    let signer = receipt_signer(&key)?;
    let mut swarm = build(key)?;
    let listen = if config.listen.is_empty() {
        vec!["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
            .into_iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    } else {
        config.listen.clone()
    };
    // Reservations carry the relay's public addresses: it serves only once it has some.
    for address in &config.external {
        swarm.add_external_address(address.clone());
    }
    swarm
        .behaviour_mut()
        .relay
        .set_status(Some(relay::Status::Enable));
    for address in &listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| RelayError::Listen {
                address: address.to_string(),
                reason: e.to_string(),
            })?;
    }

    let metrics = Arc::new(Metrics::default());
    // False once the mailbox cannot write: `/health` then answers 503.
    let healthy = Arc::new(AtomicBool::new(true));
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let registry = Arc::new(registry);
    let metrics_addr = match config.metrics {
        Some(address) => {
            let listener =
                tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|e| RelayError::Metrics {
                        address: address.to_string(),
                        reason: e.to_string(),
                    })?;
            let bound = listener.local_addr().map_err(|e| RelayError::Metrics {
                address: address.to_string(),
                reason: e.to_string(),
            })?;
            tokio::spawn(serve_metrics(listener, registry.clone(), healthy.clone()));
            Some(bound)
        }
        None => None,
    };

    let mut limits = config.limits;
    limits.named_only = if config.open_mailbox {
        None
    } else {
        device_of(&peer_id)
    };
    let mailbox = Mailbox::open(
        &config.home.join(MAILBOX_DIR),
        limits,
        crate::crypto::StorageKey::derive(&signer.to_bytes()),
    )?;
    metrics.mailbox_totals(&mailbox);
    let (net_tx, net_rx) = mpsc::channel::<NetEvent>(crate::net::INBOUND_QUEUE);
    // Peers that do not read what the mailbox sends them, to disconnect.
    let (drop_tx, mut drop_rx) = mpsc::channel::<crate::identity::DeviceId>(64);
    // Peers over their budget of refusals, to disconnect and not read for a while.
    let (aside_tx, mut aside_rx) = mpsc::channel::<crate::identity::DeviceId>(64);
    let carrier = tokio::spawn(carry(
        Exchange::new(mailbox).signing_with(signer),
        net_rx,
        metrics.clone(),
        healthy.clone(),
        (drop_tx.clone(), aside_tx),
    ));
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = control
        .accept(SYNC_PROTOCOL)
        .map_err(|e| RelayError::Setup(e.to_string()))?;

    // The addresses the operator gives to members: every one the listeners report first.
    let mut addresses: Vec<String> = Vec::new();
    let mut ready = Some(ready);
    let mut readers = crate::net::Readers::default();
    let settle = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(settle);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = &mut settle, if ready.is_some() => {
                if let Some(f) = ready.take() {
                    f(RelayReady { peer_id: peer_id.to_string(), addresses: addresses.clone(), metrics: metrics_addr });
                }
            }
            Some((peer, stream)) = incoming.next() => {
                if let Some(device) = device_of(&peer) {
                    readers.read(device, stream, &net_tx);
                }
            }
            Some(device) = drop_rx.recv() => {
                if let Some(peer) = crate::net::peer_of(&device) {
                    let _ = swarm.disconnect_peer_id(peer);
                }
            }
            Some(device) = aside_rx.recv() => {
                readers.set_aside(device, crate::refusals::SET_ASIDE_FOR);
                if let Some(peer) = crate::net::peer_of(&device) {
                    let _ = swarm.disconnect_peer_id(peer);
                }
            }
            event = swarm.select_next_some() => {
                match &event {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        addresses.push(format!("{address}/p2p/{peer_id}"));
                        if config.external.is_empty() {
                            swarm.add_external_address(address.clone());
                        }
                        if ready.is_some() {
                            // Listeners report their addresses together; answer shortly after.
                            settle.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(200));
                        }
                    }
                    SwarmEvent::ConnectionEstablished { peer_id: peer, num_established, endpoint, .. } => {
                        // Members reach the mailbox directly, not through another relay.
                        if num_established.get() == 1 && !endpoint.is_relayed()
                            && let Some(device) = device_of(peer)
                        {
                            tokio::spawn(crate::net::open_stream(device, *peer, false, control.clone(), net_tx.clone(), drop_tx.clone()));
                        }
                    }
                    SwarmEvent::ConnectionClosed { peer_id: peer, num_established, .. } => {
                        if let Some(device) = device_of(peer) {
                            let _ = net_tx.send(NetEvent::Disconnected { device }).await;
                            // Another connection remains: the stream to the member may have
                            // been on the closed one, where what is written is lost. The
                            // exchange starts again on a new stream, as the member's side
                            // does.
                            if *num_established > 0 {
                                tokio::spawn(crate::net::open_stream(device, *peer, false, control.clone(), net_tx.clone(), drop_tx.clone()));
                            }
                        }
                    }
                    _ => {}
                }
                observe(&metrics, &peer_id, event);
            }
        }
    }
    drop(net_tx);
    carrier.abort();
    Ok(())
}

/// Messages taken together at most before one flush makes what they stored durable.
pub const GROUP_COMMIT: usize = 256;

/// What the carrier takes in: a network event or the clock.
enum Input {
    Net(NetEvent),
    Tick,
}

/// Carries messages between the network and the mailbox's exchange. Storing blocks, so it
/// runs in place on this worker while the swarm goes on. Group commit: the messages already
/// waiting when one arrives are taken with it (up to [`GROUP_COMMIT`]), then one flush
/// makes all they stored durable, and only then does any acknowledgement go out. A stream
/// opening or closing ends a group (it is taken first in the next), so that no answer
/// meant for a device's old stream goes out on its new one.
async fn carry(
    mut exchange: Exchange,
    mut events: mpsc::Receiver<NetEvent>,
    metrics: Arc<Metrics>,
    healthy: Arc<AtomicBool>,
    (drop_peer, set_aside): (
        mpsc::Sender<crate::identity::DeviceId>,
        mpsc::Sender<crate::identity::DeviceId>,
    ),
) {
    let mut outbox = Outbox::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let now = || jiff::Timestamp::now().as_millisecond();
    // A stream's opening or closing that ended the last group.
    let mut held_over: Option<Input> = None;
    loop {
        let first = match held_over.take() {
            Some(input) => input,
            None => tokio::select! {
                event = events.recv() => match event {
                    None => return,
                    Some(e) => Input::Net(e),
                },
                _ = tick.tick() => Input::Tick,
            },
        };
        let (steps, durable) = tokio::task::block_in_place(|| {
            let mut steps: Vec<Step> = take(&mut exchange, &mut outbox, first, now())
                .into_iter()
                .collect();
            for _ in 1..GROUP_COMMIT {
                let Ok(event) = events.try_recv() else { break };
                if !matches!(event, NetEvent::Message { .. }) {
                    held_over = Some(Input::Net(event));
                    break;
                }
                steps.extend(take(&mut exchange, &mut outbox, Input::Net(event), now()));
            }
            let durable = exchange.commit();
            (steps, durable)
        });
        for step in steps {
            metrics.mailbox_step(&step);
            if let Some(device) = step.set_aside {
                tracing::warn!(
                    %device,
                    "a peer sends more refused data than is logged; it is disconnected and ignored for {:?}",
                    crate::refusals::SET_ASIDE_FOR
                );
                outbox.disconnected(&device);
                let _ = set_aside.try_send(device);
            }
            for device in &step.half_open {
                tracing::info!(%device, "a member's stream delivered nothing since the mailbox's opened; disconnecting it");
                outbox.disconnected(device);
                exchange.disconnected(device);
                let _ = drop_peer.try_send(*device);
            }
            // Not on disk: neither acknowledged nor passed on (the members push it again
            // to a restarted relay).
            if !durable {
                continue;
            }
            for (device, message) in step.sends {
                match outbox.send(device, message) {
                    Ok(()) => {}
                    Err(Undelivered::Overflow(device)) => {
                        tracing::warn!(%device, "a member does not read what the mailbox sends; disconnecting it");
                        exchange.disconnected(&device);
                        let _ = drop_peer.try_send(device);
                    }
                    // The stream closed: the device says Hello again on its next stream.
                    Err(Undelivered::Lost(device)) => exchange.disconnected(&device),
                }
            }
        }
        metrics.mailbox_totals(exchange.mailbox());
        if exchange.mailbox().failed() {
            healthy.store(false, Ordering::Relaxed);
        }
    }
}

/// One input through the exchange: the step to carry out, if any.
fn take(exchange: &mut Exchange, outbox: &mut Outbox, input: Input, now: i64) -> Option<Step> {
    Some(match input {
        Input::Tick => exchange.tick(now),
        Input::Net(NetEvent::Connected { device, writer, .. }) => {
            outbox.connected(device, writer);
            exchange.connected(device, now)
        }
        Input::Net(NetEvent::Disconnected { device }) => {
            outbox.disconnected(&device);
            exchange.disconnected(&device);
            return None;
        }
        Input::Net(NetEvent::Message { device, message }) => exchange.message(device, message, now),
        Input::Net(NetEvent::Addresses(_)) => return None,
    })
}

/// Keeps the metrics in step with the swarm's events.
fn observe(m: &Metrics, me: &PeerId, event: SwarmEvent<BehaviourEvent>) {
    match event {
        SwarmEvent::ConnectionEstablished { .. } => {
            m.connections.inc();
        }
        SwarmEvent::ConnectionClosed { .. } => {
            m.connections.dec();
        }
        SwarmEvent::IncomingConnectionError { .. } => m.refused("connection"),
        SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => match e {
            relay::Event::ReservationReqAccepted { renewed, .. } => {
                m.reservations_accepted.inc();
                if !renewed {
                    m.reservations.inc();
                }
            }
            relay::Event::ReservationClosed { .. } | relay::Event::ReservationTimedOut { .. } => {
                m.reservations.dec();
            }
            relay::Event::ReservationReqDenied { .. } => m.refused("reservation"),
            relay::Event::CircuitReqAccepted { .. } => {
                m.circuits_accepted.inc();
                m.circuits.inc();
            }
            relay::Event::CircuitClosed { .. } => {
                m.circuits.dec();
            }
            relay::Event::CircuitReqDenied { .. } => m.refused("circuit"),
            _ => {}
        },
        _ => {}
    }
    tracing::trace!(relay = %me, "event observed");
}

async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    healthy: Arc<AtomicBool>,
) {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut text = String::new();
                    match prometheus_client::encoding::text::encode(&mut text, &registry) {
                        Ok(()) => (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let ok = healthy.load(Ordering::Relaxed);
                async move {
                    if ok {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the mailbox cannot write; see the relay's log\n",
                        )
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_relay_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_key(dir.path()).unwrap();
        let b = load_or_create_key(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_damaged_relay_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let err = load_or_create_key(dir.path()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not a 32-byte key")));
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = Metrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.refused("circuit");
        m.connections.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("# TYPE cercle_relay_connections gauge"),
            "{text}"
        );
        assert!(text.contains("cercle_relay_connections 1"), "{text}");
        assert!(
            text.contains("cercle_relay_rejections_total{kind=\"circuit\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
