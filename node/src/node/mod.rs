//! The running node: the [`NodeCore`] on its own thread, the network task and the local API,
//! wired by bounded channels. This shell only moves things around and owns the I/O (the
//! clock, the system's randomness, the store's writes, the sockets); every decision is the
//! core's.
//!
//! ```text
//!  API handlers ──Request──▶ ┌──────────┐ ──Send────▶ outbox: per-peer writers ──▶ libp2p
//!  network task ─NetEvent──▶ │ NodeCore │ ──Dial────▶ network task
//!  ticker ─────────Tick────▶ │ (thread) │ ──Event───▶ event stream (API)
//!                            │          │ ──Answer──▶ the request's reply
//!  durability ─Durable─────▶ │          │ ──Write───▶ store (group commit) ──▶ durability
//!                            └──────────┘
//! ```
//!
//! When nothing waits in its queue and the core has background work (circles settling:
//! envelopes taken in at rest to check and apply), the core thread gives it
//! [`Input::Idle`], one bounded slice at a time.
//!
//! A write is answered, and its envelopes pushed to peers, only once the store has made it
//! durable: a peer never holds an envelope this node could lose in a crash (which would let
//! the device sign a different one at the same position, a fork).

pub mod cluster;
pub mod core;
pub mod offline;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::api::{self, ApiFile, NodeEvent};
use crate::identity::LocalIdentity;
use crate::net::{self, NetCommand, NetConfig, NetEvent, Outbox, Undelivered};
use crate::ops::{Answer, NodeError, Operation, Request};
use crate::store::{Store, Ticket};
pub(crate) use core::closing::suspended_receipts;
pub use core::{Circles, Effect, Input, NodeCore, Now, RequestId, WriteId};

/// Requests and ticks waiting for the core, at most (the senders wait beyond; the
/// network's events have their own queue, `net::INBOUND_QUEUE`).
pub const INPUT_QUEUE: usize = 1024;
/// How long the core thread polls for a write's outcome before it sleeps.
const POLL_FOR_DURABLE: std::time::Duration = std::time::Duration::from_micros(500);
/// Writes handed to the store and not yet reported durable, at most: the core thread
/// waits for one to complete before handing over another.
pub const WRITES_IN_FLIGHT: usize = 1024;
/// Commands from the core to the network task waiting, at most (dials beyond are dropped
/// with a warning; the peers are dialed again later).
pub const NET_COMMANDS: usize = 64;
/// Live events kept for a slow listener, at most (it then misses the oldest).
pub const EVENTS: usize = 4096;
/// Data messages from one peer given to the core together, at most, when they wait in the
/// queue one behind the other (see [`Input::Messages`]).
pub const GATHERED: usize = 64;
/// Bytes of data given to the core together, at most (beyond, the next message waits for
/// the next batch). A peer has at most [`crate::sync::MAX_IN_FLIGHT`] unacknowledged. With
/// 8 MiB, a request (the circle list) waited up to 190 ms behind one batch of a catch-up.
pub const GATHERED_BYTES: usize = 2 * 1024 * 1024;
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
    /// Where alerts from other members are announced, if the member set a webhook.
    pub webhook: Option<crate::notify::Webhook>,
    /// Where the web UI is also served to the member's paired phones, over TLS, if set
    /// (a LAN address of this machine).
    pub ui_listen: Option<SocketAddr>,
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
    #[error(transparent)]
    Lan(#[from] api::lan::LanError),
}

/// A request's reply channel.
pub type Reply = oneshot::Sender<Result<Answer, NodeError>>;

/// What the core thread receives from the rest of the program (the network's events come
/// on their own queue, straight from the streams that read them).
#[derive(Debug)]
pub(crate) enum ToCore {
    Request(Box<Request>, Reply),
    Tick,
    Stop,
}

/// What the API server needs to reach the core: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    input: mpsc::Sender<ToCore>,
    events: broadcast::Sender<NodeEvent>,
}

impl NodeHandle {
    /// Asks the core; the answer comes once any write it made is durable.
    pub async fn call(&self, request: Request) -> Result<Answer, NodeError> {
        let (reply, answer) = oneshot::channel();
        let stopping = || NodeError::unavailable("the node is stopping");
        self.input
            .send(ToCore::Request(Box::new(request), reply))
            .await
            .map_err(|_| stopping())?;
        answer.await.unwrap_or_else(|_| Err(stopping()))
    }

    /// Carries out one operation, typed.
    pub async fn ask<O: Operation>(&self, op: O) -> Result<O::Answer, NodeError> {
        crate::ops::typed::<O>(self.call(op.into()).await)
    }

    /// Live events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// A handle whose core is the returned receiver (for tests of what sits in front).
    #[cfg(test)]
    pub(crate) fn detached() -> (NodeHandle, mpsc::Receiver<ToCore>) {
        let (input, rx) = mpsc::channel(INPUT_QUEUE);
        let (events, _) = broadcast::channel(EVENTS);
        (NodeHandle { input, events }, rx)
    }
}

/// Runs the node until `shutdown` completes (`ready` is called once its API answers, with a
/// handle to ask the core in process); then stops accepting requests, finishes the writes
/// under way and closes the store.
pub async fn run(
    store: Arc<dyn Store>,
    me: LocalIdentity,
    config: NodeConfig,
    ready: impl FnOnce(&ApiFile, &NodeHandle),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let key = net::keypair(&me)?;
    let peer_id = key.public().to_peer_id();
    let rng = crate::crypto::os_rng().map_err(|e| NodeError::internal(e.to_string()))?;
    let mut core = NodeCore::open(store.clone(), me, peer_id.to_string(), rng)?;
    let started = core.start(true, config.net.relay_devices()?, now());

    let (input_tx, input_rx) = mpsc::channel::<ToCore>(INPUT_QUEUE);
    let (net_events_tx, net_events_rx) = mpsc::channel::<NetEvent>(net::INBOUND_QUEUE);
    let (net_cmd_tx, net_cmd_rx) = mpsc::channel::<NetCommand>(NET_COMMANDS);
    let (events_tx, _) = broadcast::channel::<NodeEvent>(EVENTS);
    let handle = NodeHandle {
        input: input_tx.clone(),
        events: events_tx.clone(),
    };
    if let Some(webhook) = config.webhook.clone() {
        tokio::spawn(webhook.run(events_tx.subscribe()));
    }

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
    let token = api::ApiToken::load(&config.home)?;

    let net = tokio::spawn(net::run(key, config.net.clone(), net_events_tx, net_cmd_rx));
    let tick_input = input_tx.clone();
    let ticker = tokio::spawn(async move {
        let mut t = tokio::time::interval(TICK);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            if tick_input.send(ToCore::Tick).await.is_err() {
                break;
            }
        }
    });
    let shell = Shell::new(store, net_cmd_tx, events_tx);
    let core_thread = std::thread::Builder::new()
        .name("cercle-core".into())
        .spawn(move || shell.drive(core, started, input_rx, net_events_rx))
        .map_err(|e| RunError::Api {
            address: bound.to_string(),
            reason: format!("cannot start the core thread: {e}"),
        })?;

    let api_file = ApiFile {
        address: bound,
        token: token.current().to_string(),
        pid: std::process::id(),
    };
    api_file.write(&config.home)?;
    // The web UI for the member's phones on the LAN, over TLS, when asked for.
    let phones = api::phones::Phones::load(&config.home);
    let mut lan_server = None;
    let mut lan_info = None;
    if let Some(address) = config.ui_listen {
        let certificate =
            api::lan::NodeCertificate::load_or_make(&config.home, &[address.ip().to_string()])?;
        let tls = api::lan::TlsListener::bind(address, &certificate).await?;
        let bound = tls.local_addr_known();
        tracing::info!(address = %bound, fingerprint = %certificate.fingerprint, "web UI on the LAN");
        lan_info = Some(api::server::LanInfo {
            base: format!("https://{bound}"),
            fingerprint: certificate.fingerprint.clone(),
        });
        lan_server = Some(tokio::spawn(api::server::serve_lan(
            tls,
            handle.clone(),
            token.clone(),
            config.home.clone(),
            phones.clone(),
        )));
    }
    let server = tokio::spawn(api::server::serve(
        listener,
        handle.clone(),
        token,
        config.home.clone(),
        phones,
        lan_info,
    ));
    ready(&api_file, &handle);
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
    if let Some(lan) = lan_server {
        lan.abort();
    }
    ticker.abort();
    stop(&config, &input_tx, core_thread).await;
    Ok(())
}

/// The time now, as the core takes it.
pub fn now() -> Now {
    Now(jiff::Timestamp::now().as_microsecond())
}

async fn stop(
    config: &NodeConfig,
    input: &mpsc::Sender<ToCore>,
    core: std::thread::JoinHandle<()>,
) {
    ApiFile::remove(&config.home);
    let _ = input.send(ToCore::Stop).await;
    // The core finishes the writes under way and drops the store, which flushes it.
    let _ = tokio::task::spawn_blocking(move || core.join()).await;
}

/// The core thread's I/O: the store's writes and their outcomes, the per-peer writers, the
/// event stream, the network task, and the replies of requests under way.
struct Shell {
    store: Arc<dyn Store>,
    outbox: Outbox,
    net: mpsc::Sender<NetCommand>,
    events: broadcast::Sender<NodeEvent>,
    replies: BTreeMap<RequestId, Reply>,
    next_request: u64,
    /// Tickets of writes handed to the store, to the thread that waits on them in order.
    tickets: std::sync::mpsc::SyncSender<(WriteId, Ticket)>,
    /// Their outcomes, back from that thread.
    outcomes: mpsc::Receiver<Input>,
    in_flight: usize,
    waiter: Option<std::thread::JoinHandle<()>>,
}

impl Shell {
    fn new(
        store: Arc<dyn Store>,
        net: mpsc::Sender<NetCommand>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Shell {
        // Both channels hold at most WRITES_IN_FLIGHT items, and no more writes than that
        // are ever in flight: neither side of them can block the other for good.
        let (tickets, waiting) =
            std::sync::mpsc::sync_channel::<(WriteId, Ticket)>(WRITES_IN_FLIGHT);
        let (done, outcomes) = mpsc::channel::<Input>(WRITES_IN_FLIGHT);
        let waiter = std::thread::Builder::new()
            .name("cercle-durable".into())
            .spawn(move || {
                for (id, ticket) in waiting {
                    let outcome = match ticket.wait() {
                        Ok(()) => Input::Durable(id),
                        Err(e) => Input::WriteFailed(id, e),
                    };
                    if done.blocking_send(outcome).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the durability thread"))
            .ok();
        Shell {
            store,
            outbox: Outbox::default(),
            net,
            events,
            replies: BTreeMap::new(),
            next_request: 0,
            tickets,
            outcomes,
            in_flight: 0,
            waiter,
        }
    }

    /// The core thread: takes inputs one at a time (write outcomes first, then requests and
    /// ticks, then the network's events) and carries out the effects.
    fn drive(
        mut self,
        mut core: NodeCore,
        started: Vec<Effect>,
        mut input: mpsc::Receiver<ToCore>,
        mut net: mpsc::Receiver<NetEvent>,
    ) {
        self.carry_out(&mut core, started);
        // An event read from the network's queue while gathering a peer's data, not yet
        // given.
        let mut held: Option<NetEvent> = None;
        futures::executor::block_on(async {
            loop {
                // Background work is asked for once per turn (it looks through the circles
                // settling).
                let idle_work = held.is_none() && core.has_work();
                if held.is_none() && !idle_work {
                    self.poll_for_outcome(&input, &net);
                }
                let next = tokio::select! {
                    biased;
                    Some(outcome) = self.outcomes.recv() => {
                        self.in_flight -= 1;
                        outcome
                    }
                    i = input.recv() => match i {
                        Some(ToCore::Request(request, reply)) => {
                            let id = RequestId(self.next_request);
                            self.next_request += 1;
                            self.replies.insert(id, reply);
                            Input::Request(id, *request)
                        }
                        Some(ToCore::Tick) => Input::Tick,
                        Some(ToCore::Stop) | None => break,
                    },
                    e = async { held.take() }, if held.is_some() => match e {
                        Some(e) => self.take(e, &mut net, &mut held),
                        None => continue,
                    },
                    Some(e) = net.recv() => self.take(e, &mut net, &mut held),
                    // Nothing waiting: a slice of the background work.
                    () = std::future::ready(()), if idle_work => Input::Idle,
                };
                let effects = core.handle(next, now());
                self.carry_out(&mut core, effects);
            }
        });
        let effects = core.stopping(now());
        self.carry_out(&mut core, effects);
        // The writes under way complete before the store closes; their requests are
        // answered.
        while self.in_flight > 0 {
            let Some(outcome) = self.outcomes.blocking_recv() else {
                break;
            };
            self.in_flight -= 1;
            let effects = core.handle(outcome, now());
            self.carry_out(&mut core, effects);
        }
        drop(self.tickets);
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
        drop(core);
    }

    /// With a write in flight and nothing else to do, waits for its outcome by polling, for
    /// at most [`POLL_FOR_DURABLE`], rather than sleeping at once: a note's answer and its
    /// push to the circle's members wait for that outcome, and a sleeping core thread (on
    /// an idle processor, which a virtual machine's host may have descheduled) wakes tens
    /// of microseconds after it. Each turn yields the processor, so that a thread ready to
    /// run goes first: the store's writer this core waits for, the network, or another
    /// process. Spinning without yielding held the writer off its flush for up to 0.2 ms
    /// when both cores of the machine of BENCHMARKS.md were taken by spinning nodes.
    fn poll_for_outcome(&self, input: &mpsc::Receiver<ToCore>, net: &mpsc::Receiver<NetEvent>) {
        if self.in_flight == 0 {
            return;
        }
        let until = std::time::Instant::now() + POLL_FOR_DURABLE;
        while self.outcomes.is_empty()
            && input.is_empty()
            && net.is_empty()
            && std::time::Instant::now() < until
        {
            std::thread::yield_now();
        }
    }

    /// What the core takes for a network event. A peer's data message comes with the data
    /// messages from the same peer right behind it in the queue (at most [`GATHERED`]
    /// messages, [`GATHERED_BYTES`] of data), so that a backlog is applied in one batch; the
    /// first other event read is `held` for next.
    fn take(
        &mut self,
        event: NetEvent,
        queue: &mut mpsc::Receiver<NetEvent>,
        held: &mut Option<NetEvent>,
    ) -> Input {
        match event {
            NetEvent::Message { device, message } if message.data_size().is_some() => {
                let mut bytes = message.data_size().unwrap_or(0);
                let mut messages = vec![message];
                while messages.len() < GATHERED && bytes < GATHERED_BYTES {
                    match queue.try_recv() {
                        Ok(NetEvent::Message {
                            device: from,
                            message,
                        }) if from == device && message.data_size().is_some() => {
                            bytes += message.data_size().unwrap_or(0);
                            messages.push(message);
                        }
                        Ok(other) => {
                            *held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if messages.len() == 1 {
                    let message = messages.remove(0);
                    Input::Message { device, message }
                } else {
                    Input::Messages { device, messages }
                }
            }
            e => self.net_event(e),
        }
    }

    /// A network event as the core takes it (the outbox learns of writers here).
    fn net_event(&mut self, e: NetEvent) -> Input {
        match e {
            NetEvent::Connected {
                device,
                peer_id,
                relayed,
                writer,
            } => {
                self.outbox.connected(device, writer);
                Input::Connected {
                    device,
                    peer_id: peer_id.to_string(),
                    relayed,
                }
            }
            NetEvent::Disconnected { device } => {
                self.outbox.disconnected(&device);
                Input::Disconnected { device }
            }
            NetEvent::Message { device, message } => Input::Message { device, message },
            NetEvent::Addresses(a) => Input::Addresses(a),
        }
    }

    fn carry_out(&mut self, core: &mut NodeCore, effects: Vec<Effect>) {
        let mut lost = Vec::new();
        for effect in effects {
            match effect {
                Effect::Write(id, batch) => {
                    // No more than WRITES_IN_FLIGHT: the oldest completes first.
                    while self.in_flight >= WRITES_IN_FLIGHT {
                        let Some(outcome) = self.outcomes.blocking_recv() else {
                            return;
                        };
                        self.in_flight -= 1;
                        let more = core.handle(outcome, now());
                        self.carry_out(core, more);
                    }
                    let ticket = self.store.submit(batch);
                    self.in_flight += 1;
                    if self.tickets.send((id, ticket)).is_err() {
                        tracing::error!("the durability thread stopped; writes are not confirmed");
                    }
                }
                Effect::Send(device, message) => match self.outbox.send(device, message) {
                    Ok(()) => {}
                    Err(Undelivered::Overflow(device)) => {
                        tracing::warn!(peer = %device, "a peer does not read what this node sends; disconnecting it");
                        if let Some(peer) = net::peer_of(&device)
                            && self.net.try_send(NetCommand::Disconnect(peer)).is_err()
                        {
                            tracing::warn!(
                                "the network is busy; a peer that does not read stays connected for now"
                            );
                        }
                    }
                    Err(Undelivered::Lost(device)) => lost.push(device),
                },
                Effect::Answer(id, answer) => {
                    if let Some(reply) = self.replies.remove(&id) {
                        let _ = reply.send(*answer);
                    }
                }
                Effect::Event(e) => {
                    let _ = self.events.send(e.published(now().0));
                }
                Effect::Dial(address) => {
                    if self.net.try_send(NetCommand::Dial(address)).is_err() {
                        tracing::warn!("too many dials queued; one was dropped");
                    }
                }
                Effect::Relays(relays) => {
                    if self.net.try_send(NetCommand::Relays(relays)).is_err() {
                        tracing::warn!("the network is busy; the circles' relays not updated");
                    }
                }
                Effect::SetAside(device) => {
                    let span = core::SET_ASIDE_FOR;
                    if self
                        .net
                        .try_send(NetCommand::SetAside(device, span))
                        .is_err()
                    {
                        tracing::warn!(
                            "the network is busy; a peer set aside stays connected for now"
                        );
                    }
                }
                Effect::Disconnect(device) => {
                    if let Some(peer) = crate::net::peer_of(&device)
                        && self.net.try_send(NetCommand::Disconnect(peer)).is_err()
                    {
                        tracing::warn!("the network is busy; a half-open peer stays for now");
                    }
                }
                Effect::Meet { device, via } => {
                    if self.net.try_send(NetCommand::Meet { device, via }).is_err() {
                        tracing::debug!(
                            "the network is busy; a member introduced by a relay is not dialed"
                        );
                    }
                }
            }
        }
        // Messages lost with a closed stream: the core starts the exchange again (what it
        // sends now waits in the outbox for the stream that replaces it).
        for device in lost {
            let more = core.handle(Input::Undelivered { device }, now());
            self.carry_out(core, more);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    use super::*;
    use crate::store::{Batch, KeyValues, Keys, MemoryStore, Opened, StoreError, Tree};

    /// A disk that takes its time: each write completes only when the test lets it, and
    /// the most writes ever waiting at once is counted.
    #[derive(Debug, Default)]
    struct SlowDisk {
        reads: MemoryStore,
        waiting: Mutex<Vec<std::sync::mpsc::SyncSender<Result<(), StoreError>>>>,
        most: AtomicUsize,
    }

    impl SlowDisk {
        fn complete_one(&self) -> bool {
            let mut w = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            match w.pop() {
                Some(done) => {
                    let _ = done.send(Ok(()));
                    true
                }
                None => false,
            }
        }
    }

    impl Store for SlowDisk {
        fn submit(&self, _: Batch) -> Ticket {
            let (done, rx) = std::sync::mpsc::sync_channel(1);
            let mut w = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            w.push(done);
            self.most.fetch_max(w.len(), Ordering::SeqCst);
            Ticket::pending(rx, "slow".into())
        }
        fn location(&self) -> &std::path::Path {
            self.reads.location()
        }
        fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Opened>, StoreError> {
            self.reads.get(tree, key)
        }
        fn contains(&self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
            self.reads.contains(tree, key)
        }
        fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Opened)>, StoreError> {
            self.reads.scan(tree, prefix)
        }
        fn range(&self, tree: Tree, keys: Keys, limit: usize) -> Result<KeyValues, StoreError> {
            self.reads.range(tree, keys, limit)
        }
        fn last(&self, tree: Tree, keys: Keys) -> Result<Option<(Vec<u8>, Opened)>, StoreError> {
            self.reads.last(tree, keys)
        }
    }

    #[test]
    fn the_core_thread_holds_no_more_writes_in_flight_than_the_bound() {
        let disk = Arc::new(SlowDisk::default());
        let profile = crate::identity::Profile::new("A", "infirmière", None, None).unwrap();
        let me = LocalIdentity::generate(profile, cercle_crdt::Timestamp(1)).unwrap();
        let rng = crate::crypto::os_rng().unwrap();
        let mut core = NodeCore::open(disk.clone(), me, "p".into(), rng).unwrap();
        let (net, _commands) = mpsc::channel(NET_COMMANDS);
        let (events, _) = broadcast::channel(EVENTS);
        let mut shell = Shell::new(disk.clone(), net, events);
        // The disk lets writes complete slowly, from another thread.
        let releaser = {
            let disk = disk.clone();
            std::thread::spawn(move || {
                let mut released = 0;
                while released < 3 * WRITES_IN_FLIGHT {
                    if disk.complete_one() {
                        released += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let writes: Vec<Effect> = (0..3 * WRITES_IN_FLIGHT as u64)
            .map(|i| Effect::Write(WriteId(i), Batch::new()))
            .collect();
        shell.carry_out(&mut core, writes);
        assert!(shell.in_flight <= WRITES_IN_FLIGHT);
        releaser.join().unwrap();
        let most = disk.most.load(Ordering::SeqCst);
        assert!(
            most <= WRITES_IN_FLIGHT,
            "{most} writes were waiting at once"
        );
    }
}
