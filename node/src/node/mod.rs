//! The running node: the [`NodeCore`] on its own thread, the network task and the local API,
//! wired by channels. This shell only moves things around; every decision is the core's.
//!
//! ```text
//!  API handlers ──Request──▶ ┌──────────┐ ──Send──▶ per-peer writer tasks ──▶ libp2p
//!  network task ─NetEvent──▶ │ NodeCore │ ──Dial──▶ network task
//!  ticker ─────────Tick────▶ │ (thread) │ ──Event─▶ event stream (API)
//!                            └──────────┘
//!                 tickets ──▶ durability waiter ──Durable──▶ core (push, then answer)
//! ```
//!
//! A write is answered, and its envelopes pushed to peers, only once the store has made it
//! durable: a peer never holds an envelope this node could lose in a crash (which would let
//! the device sign a different one at the same position, a fork).

pub mod care;
pub mod core;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::api::{self, Answer, ApiFile, NodeEvent, Request};
use crate::identity::LocalIdentity;
use crate::net::{self, NetCommand, NetConfig, NetEvent, Outbox};
use crate::store::{Store, Ticket};
pub use core::{Circles, Handled, NodeCore, NodeError, Output};

/// Inputs waiting for the core, at most.
const INPUT_QUEUE: usize = 1024;
/// How often the core's clock ticks (anti-entropy timers).
const TICK: Duration = Duration::from_secs(1);

/// How to run a node.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub net: NetConfig,
    /// Where the local API listens; a free port on 127.0.0.1 if `None`.
    pub api: Option<SocketAddr>,
    /// The home directory (where `api.json` is written).
    pub home: PathBuf,
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("cannot serve the local API on {address}: {reason}")]
    Api { address: String, reason: String },
    #[error(transparent)]
    ApiFile(#[from] api::ApiError),
}

/// A request's reply channel.
pub type Reply = oneshot::Sender<Result<Answer, String>>;

/// What the core thread receives.
#[derive(Debug)]
pub enum Input {
    Net(NetEvent),
    Request(Request, Reply),
    /// A request's writes are durable: push and answer.
    Durable {
        answer: Answer,
        after: Vec<Output>,
        reply: Reply,
    },
    /// A request's writes failed.
    Failed {
        error: String,
        reply: Reply,
    },
    Tick,
    Stop,
}

/// What the API server needs to reach the core.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    input: mpsc::Sender<Input>,
    events: broadcast::Sender<NodeEvent>,
}

impl NodeHandle {
    /// Asks the core; the answer comes once any write is durable.
    pub async fn call(&self, request: Request) -> Result<Answer, String> {
        let (reply, answer) = oneshot::channel();
        self.input
            .send(Input::Request(request, reply))
            .await
            .map_err(|_| "the node is stopping".to_string())?;
        answer
            .await
            .unwrap_or_else(|_| Err("the node is stopping".to_string()))
    }

    /// Live events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }
}

/// Runs the node until `shutdown` completes (`ready` is called once its API answers); then
/// stops accepting requests, finishes the
/// writes under way and closes the store.
pub async fn run(
    store: Arc<dyn Store>,
    me: LocalIdentity,
    config: NodeConfig,
    ready: impl FnOnce(&ApiFile),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let key = net::keypair(&me)?;
    let peer_id = key.public().to_peer_id();
    let mut core = NodeCore::open(store, me, peer_id.to_string())?;
    core.set_running();
    core.set_relays(config.net.relay_devices()?);

    let (input_tx, input_rx) = mpsc::channel::<Input>(INPUT_QUEUE);
    let (net_events_tx, mut net_events_rx) = mpsc::channel::<NetEvent>(net::INBOUND_QUEUE);
    let (net_cmd_tx, net_cmd_rx) = mpsc::channel::<NetCommand>(64);
    let (events_tx, _) = broadcast::channel::<NodeEvent>(4096);
    let handle = NodeHandle {
        input: input_tx.clone(),
        events: events_tx.clone(),
    };

    // The API first: a port that cannot be bound is a clear error before anything runs.
    // Without a port given, the one recorded by the last start is tried first (bookmarks
    // of the UI stay valid), then any free one.
    let recorded = api::recorded_port(&config.home).map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    let api_addr = config
        .api
        .or(recorded)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = match tokio::net::TcpListener::bind(api_addr).await {
        Ok(l) => l,
        Err(e) if config.api.is_none() && recorded.is_some() => {
            tracing::info!(address = %api_addr, error = %e, "the recorded API port is taken; using another");
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(|e| RunError::Api {
                    address: "127.0.0.1:0".into(),
                    reason: e.to_string(),
                })?
        }
        Err(e) => {
            return Err(RunError::Api {
                address: api_addr.to_string(),
                reason: e.to_string(),
            });
        }
    };
    let bound = listener.local_addr().map_err(|e| RunError::Api {
        address: api_addr.to_string(),
        reason: e.to_string(),
    })?;
    if config.api.is_none() {
        api::record_port(&config.home, bound.port())?;
    }
    let token = api::home_token(&config.home)?;

    let _ = net_cmd_tx.try_send(NetCommand::Relays(core.circle_relays()));
    let _ = net_cmd_tx.try_send(NetCommand::Spots(core.spots()));
    let net = tokio::spawn(net::run(key, config.net.clone(), net_events_tx, net_cmd_rx));
    // Network events go to the core through the same queue as requests.
    let forward_input = input_tx.clone();
    let forwarder = tokio::spawn(async move {
        while let Some(e) = net_events_rx.recv().await {
            if forward_input.send(Input::Net(e)).await.is_err() {
                break;
            }
        }
    });
    let tick_input = input_tx.clone();
    let ticker = tokio::spawn(async move {
        let mut t = tokio::time::interval(TICK);
        loop {
            t.tick().await;
            if tick_input.send(Input::Tick).await.is_err() {
                break;
            }
        }
    });
    let waiter_input = input_tx.clone();
    let core_thread = std::thread::Builder::new()
        .name("cercle-core".into())
        .spawn(move || drive(core, input_rx, waiter_input, net_cmd_tx, events_tx))
        .map_err(|e| RunError::Api {
            address: bound.to_string(),
            reason: format!("cannot start the core thread: {e}"),
        })?;

    let server = tokio::spawn(api::server::serve(listener, handle.clone(), token.clone()));
    let api_file = ApiFile {
        address: bound,
        token,
        pid: std::process::id(),
    };
    api_file.write(&config.home)?;
    ready(&api_file);
    tracing::info!(%peer_id, api = %bound, "node running");

    tokio::select! {
        () = shutdown => tracing::info!("stopping"),
        r = net => match r {
            Ok(Err(e)) => {
                stop(&config, &input_tx, core_thread).await;
                return Err(e.into());
            }
            _ => tracing::error!("the network task ended"),
        },
    }
    server.abort();
    ticker.abort();
    forwarder.abort();
    stop(&config, &input_tx, core_thread).await;
    Ok(())
}

async fn stop(config: &NodeConfig, input: &mpsc::Sender<Input>, core: std::thread::JoinHandle<()>) {
    ApiFile::remove(&config.home);
    let _ = input.send(Input::Stop).await;
    // The core finishes the writes under way and drops the store, which flushes it.
    let _ = tokio::task::spawn_blocking(move || core.join()).await;
}

/// Where the core's outputs go: per-peer writers, the event stream, the network task.
struct Outlets {
    outbox: Outbox,
    net: mpsc::Sender<NetCommand>,
    events: broadcast::Sender<NodeEvent>,
}

impl Outlets {
    fn route(&mut self, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Send(device, message) => self.outbox.send(device, message),
                Output::Event(e) => {
                    let _ = self.events.send(e);
                }
                Output::Dial(address) => {
                    if self.net.try_send(NetCommand::Dial(address)).is_err() {
                        tracing::warn!("too many dials queued; one was dropped");
                    }
                }
                Output::Relays(relays) => {
                    if self.net.try_send(NetCommand::Relays(relays)).is_err() {
                        tracing::warn!("the network is busy; the circles' relays not updated");
                    }
                }
                Output::Spots(spots) => {
                    if self.net.try_send(NetCommand::Spots(spots)).is_err() {
                        tracing::warn!("the network is busy; circles' meeting spots not updated");
                    }
                }
            }
        }
    }
}

/// The core thread: takes inputs one at a time and carries out the outputs.
fn drive(
    mut core: NodeCore,
    mut input: mpsc::Receiver<Input>,
    back: mpsc::Sender<Input>,
    net: mpsc::Sender<NetCommand>,
    events: broadcast::Sender<NodeEvent>,
) {
    let mut out = Outlets {
        outbox: Outbox::default(),
        net,
        events,
    };
    // Writes wait for durability on their own thread, in order, so the core keeps going.
    let (durable_tx, durable_rx) =
        std::sync::mpsc::channel::<(Vec<Ticket>, Answer, Vec<Output>, Reply)>();
    let waiter = std::thread::Builder::new()
        .name("cercle-durable".into())
        .spawn(move || {
            for (tickets, answer, after, reply) in durable_rx {
                let result = tickets.into_iter().try_for_each(Ticket::wait);
                let input = match result {
                    Ok(()) => Input::Durable {
                        answer,
                        after,
                        reply,
                    },
                    Err(e) => Input::Failed {
                        error: e.to_string(),
                        reply,
                    },
                };
                if back.blocking_send(input).is_err() {
                    break;
                }
            }
        });
    let now = || jiff::Timestamp::now().as_millisecond();
    while let Some(i) = input.blocking_recv() {
        match i {
            Input::Net(NetEvent::Connected {
                device,
                peer_id,
                writer,
            }) => {
                out.outbox.connected(device, writer);
                out.route(core.peer_connected(device, peer_id.to_string(), now()));
            }
            Input::Net(NetEvent::Disconnected { device }) => {
                out.outbox.disconnected(&device);
                out.route(core.peer_disconnected(&device));
            }
            Input::Net(NetEvent::Message { device, message }) => {
                out.route(core.from_peer(device, message, now()));
            }
            Input::Net(NetEvent::Addresses(a)) => core.set_addresses(a),
            Input::Request(request, reply) => {
                match core.handle(request, cercle_crdt::Timestamp(now())) {
                    Ok(h) if h.tickets.is_empty() => {
                        out.route(h.after);
                        let _ = reply.send(Ok(h.answer));
                    }
                    Ok(h) => {
                        if let Err(std::sync::mpsc::SendError((_, _, _, reply))) =
                            durable_tx.send((h.tickets, h.answer, h.after, reply))
                        {
                            let _ = reply.send(Err("the node is stopping".into()));
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Input::Durable {
                answer,
                after,
                reply,
            } => {
                out.route(after);
                let _ = reply.send(Ok(answer));
            }
            Input::Failed { error, reply } => {
                let _ = reply.send(Err(error));
            }
            Input::Tick => out.route(core.tick(now())),
            Input::Stop => break,
        }
    }
    drop(durable_tx);
    // Answers still in the waiter get their durability before the store closes.
    if let Ok(w) = waiter {
        input.close();
        while let Ok(i) = input.try_recv() {
            if let Input::Durable { answer, reply, .. } = i {
                let _ = reply.send(Ok(answer));
            }
        }
        let _ = w.join();
    }
    drop(core);
}
