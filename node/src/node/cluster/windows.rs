//! Running the cluster a window of virtual time at a time, the ends of one window side by
//! side on the machine's cores (a rayon pool, [`Cluster::run_in_windows`]).
//!
//! No message arrives sooner than the shortest link latency after it was sent, so within a
//! window that long nothing one end does reaches another: each end (a node's core, a
//! relay's exchange) takes its window's inputs in order on its own, and what reaches beyond
//! it (messages sent, links made or cut, answers, events) is carried out after the window,
//! end after end in a fixed order. A message still leaves at the instant it was sent; a
//! change of links (a lost message breaking its connection, a relay's introduction, a
//! relay setting a peer aside) takes effect at the window's end rather than at its instant,
//! a shift of at most one window (2 ms in `region`). The outcome depends on the seed alone:
//! one thread and two give the same trace.

use std::collections::BTreeMap;

use rayon::iter::{IntoParallelIterator, ParallelIterator};

use super::{Cluster, Due, EPOCH_US, Member, Relay, TICK_US};
use crate::api::NodeEvent;
use crate::identity::DeviceId;
use crate::node::{Effect, Input, Now};
use crate::store::Store as _;
use crate::sync::{Message, wire};

/// Ends in a window beyond which the pool shares them out even if only ticks.
const MANY_ENDS: usize = 32;
/// Slices of background work a node does in one window, at most.
const IDLE_SLICES: usize = 8;

/// A relay's input: a device's message, or the tick (`None`).
type RelayInput = Option<(DeviceId, Message)>;

/// One end with its window's inputs, each at its virtual time, in order.
enum Job<'a> {
    Node(usize, &'a mut Member, Vec<(i64, Input)>),
    Relay(&'a mut Relay, Vec<(i64, RelayInput)>),
}

/// What an end's window leaves for the cluster to carry out after it, in order.
enum Out {
    /// A line of the trace.
    Note(String),
    /// Something due after the window.
    Later(i64, Due),
    /// A node's message, at the virtual time it sent it, and its encoded size.
    Send(i64, DeviceId, Message, usize),
    /// A node's other effect, at the virtual time it had it.
    Effect(i64, Effect),
    /// A relay's step once its mailbox committed, at the virtual time it took it, and the
    /// encoded size of each message it sends.
    Step(i64, crate::mailbox::exchange::Step, Vec<usize>),
}

impl Cluster {
    /// From now on, [`Cluster::run_for`] runs in windows of the shortest link latency, on
    /// up to `threads` threads (see this module's documentation). [`Cluster::step`] and
    /// what waits on it ([`Cluster::ask`]) still take one event at a time.
    pub fn run_in_windows(&mut self, threads: usize) {
        self.windows = true;
        // Without a pool (one thread, or none could start) the ends run one after the
        // other: the same outcome, later. The calling thread is one of the pool's (it
        // runs the windows, and waking another thread for each cost a tenth of the run);
        // rayon then keeps the pool until the process ends, so a thread builds one pool.
        self.pool = (threads > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .use_current_thread()
                    .build()
                    .ok()
            })
            .flatten();
    }

    /// Runs windows until every event due by `until` (microseconds) was carried out.
    pub(super) fn run_windows(&mut self, until: i64) {
        let length = self.config.latency_us.0.max(1);
        while let Some(((start, _), _)) = self.queue.first_key_value() {
            let start = *start;
            if start > until {
                break;
            }
            let end = (start + length).min(until + 1);
            let later = self.queue.split_off(&(end, 0));
            let due = std::mem::replace(&mut self.queue, later);
            self.now = self.now.max(start);
            let (mut nodes, relays) = self.window_inputs(due);
            // Nodes with background work take part in the window too.
            for (i, m) in self.members.iter().enumerate() {
                if !self.held.contains_key(&i) && m.core.has_work() {
                    nodes.entry(i).or_default();
                }
            }
            let outs = self.run_ends(nodes, relays, end);
            self.now = self.now.max(end - 1);
            self.carry_out(outs);
        }
    }

    /// Sorts what is due in a window by end: each node's and relay's inputs in order.
    #[allow(clippy::type_complexity)]
    fn window_inputs(
        &mut self,
        due: BTreeMap<(i64, u64), Due>,
    ) -> (
        BTreeMap<usize, Vec<(i64, Input)>>,
        BTreeMap<usize, Vec<(i64, RelayInput)>>,
    ) {
        let mut nodes: BTreeMap<usize, Vec<(i64, Input)>> = BTreeMap::new();
        let mut relays: BTreeMap<usize, Vec<(i64, RelayInput)>> = BTreeMap::new();
        for ((at, _), due) in due {
            match due {
                Due::Tick => {
                    for i in 0..self.members.len() {
                        nodes.entry(i).or_default().push((at, Input::Tick));
                    }
                    for r in 0..self.relays.len() {
                        relays.entry(r).or_default().push((at, None));
                    }
                    self.schedule_at(at + TICK_US, Due::Tick);
                }
                Due::Durable { node, write } => {
                    nodes
                        .entry(node)
                        .or_default()
                        .push((at, Input::Durable(write)));
                }
                Due::Request { node, id, request } => {
                    nodes
                        .entry(node)
                        .or_default()
                        .push((at, Input::Request(id, *request)));
                }
                Due::Deliver(delivery) => {
                    let to = delivery.to;
                    let Some((device, message)) = self.arriving(at, delivery) else {
                        continue;
                    };
                    match self.relay_of(to) {
                        Some(r) => relays
                            .entry(r)
                            .or_default()
                            .push((at, Some((device, message)))),
                        None => match self.held.get_mut(&to) {
                            Some(waiting) => waiting.push((device, message)),
                            None => nodes
                                .entry(to)
                                .or_default()
                                .push((at, Input::Message { device, message })),
                        },
                    }
                }
            }
        }
        (nodes, relays)
    }

    /// Runs each end's inputs of a window (ending at `end`), the ends shared out among
    /// the pool's threads; what each left, in end order.
    fn run_ends(
        &mut self,
        nodes: BTreeMap<usize, Vec<(i64, Input)>>,
        relays: BTreeMap<usize, Vec<(i64, RelayInput)>>,
        end: i64,
    ) -> Vec<(usize, Vec<Out>)> {
        let durable_us = self.config.durable_us;
        let first_relay = self.members.len();
        let mut jobs: Vec<(usize, Job<'_>)> = Vec::new();
        let mut members = self.members.iter_mut();
        let mut next = 0;
        for (i, inputs) in nodes {
            if let Some(m) = members.nth(i - next) {
                jobs.push((i, Job::Node(i, m, inputs)));
            }
            next = i + 1;
        }
        let mut all_relays = self.relays.iter_mut();
        let mut next = 0;
        for (r, inputs) in relays {
            if let Some(relay) = all_relays.nth(r - next) {
                jobs.push((first_relay + r, Job::Relay(relay, inputs)));
            }
            next = r + 1;
        }
        // Worth waking the pool for: two ends with a message or a request, or many ends
        // (a tick of the whole cluster). A few ticks alone cost less than the wake-up.
        let busy = jobs.iter().filter(|(_, job)| job.busy()).count();
        let shared = busy >= 2 || jobs.len() >= MANY_ENDS;
        match &self.pool {
            // Each thread of the pool takes ends as it is free (ends cost very different
            // amounts: a tick is cheap, a peer's batch of envelopes is not); the results
            // come back in end order.
            Some(pool) if shared => pool.install(|| {
                jobs.into_par_iter()
                    .map(|(e, job)| (e, job.run(end, durable_us)))
                    .collect()
            }),
            _ => jobs
                .into_iter()
                .map(|(e, job)| (e, job.run(end, durable_us)))
                .collect(),
        }
    }

    /// Carries out, end after end, what each end's window left.
    fn carry_out(&mut self, outs: Vec<(usize, Vec<Out>)>) {
        for (e, outs) in outs {
            for out in outs {
                match out {
                    Out::Note(line) => self.note(&line),
                    Out::Later(at, due) => self.schedule_at(at, due),
                    Out::Send(at, device, message, size) => {
                        self.send_from(e, device, message, at, Some(size))
                    }
                    Out::Effect(at, Effect::Event(NodeEvent::Applied { circle, .. }))
                        if self.record_applied =>
                    {
                        self.applied.push((e, circle, (at - EPOCH_US) / 1000));
                    }
                    Out::Effect(_, effect) => self.effect(e, effect),
                    Out::Step(at, step, sizes) => self.relay_committed(e, step, at, &sizes),
                }
            }
        }
    }
}

impl Job<'_> {
    /// Whether it has more than ticks and writes made durable to take.
    fn busy(&self) -> bool {
        match self {
            Job::Node(_, _, inputs) => inputs
                .iter()
                .any(|(_, i)| !matches!(i, Input::Tick | Input::Durable(_))),
            Job::Relay(_, inputs) => inputs.iter().any(|(_, i)| i.is_some()),
        }
    }

    /// Takes this end's inputs in order, and the writes it makes durable before `end`.
    fn run(self, end: i64, durable_us: i64) -> Vec<Out> {
        let mut out = Vec::new();
        match self {
            Job::Node(i, member, inputs) => {
                let mut waiting: BTreeMap<(i64, usize), Input> = inputs
                    .into_iter()
                    .enumerate()
                    .map(|(k, (at, input))| ((at, k), input))
                    .collect();
                let mut seq = waiting.len();
                // Background work once the window's inputs are taken, at its last instant,
                // a few slices at most.
                let mut slices = 0;
                loop {
                    let ((at, _), input) = match waiting.pop_first() {
                        Some(next) => next,
                        None if slices < IDLE_SLICES && member.core.has_work() => {
                            slices += 1;
                            ((end - 1, 0), Input::Idle)
                        }
                        None => break,
                    };
                    if let Input::Durable(write) = &input {
                        out.push(Out::Note(format!("{at} durable {i} {}", write.0)));
                    }
                    for effect in member.core.handle(input, Now(at)) {
                        let (id, batch) = match effect {
                            Effect::Write(id, batch) => (id, batch),
                            // Its size measured here, beside the other threads.
                            Effect::Send(device, message) => {
                                let size = wire::encode(&message).len();
                                out.push(Out::Send(at, device, message, size));
                                continue;
                            }
                            effect => {
                                out.push(Out::Effect(at, effect));
                                continue;
                            }
                        };
                        // Applied now, durable after the disk's delay: within this
                        // window, or due after it.
                        let _ = member.store.submit(batch).wait();
                        let durable = at + durable_us;
                        if durable < end {
                            waiting.insert((durable, seq), Input::Durable(id));
                            seq += 1;
                        } else {
                            out.push(Out::Later(durable, Due::Durable { node: i, write: id }));
                        }
                    }
                }
            }
            Job::Relay(relay, inputs) => {
                for (at, input) in inputs {
                    let step = match input {
                        Some((device, message)) => {
                            relay.exchange.message(device, message, at / 1000)
                        }
                        None => relay.exchange.tick(at / 1000),
                    };
                    if relay.exchange.commit() {
                        let sizes = step.sends.iter().map(|(_, m)| wire::encode(m).len());
                        let sizes = sizes.collect();
                        out.push(Out::Step(at, step, sizes));
                    }
                }
            }
        }
        out
    }
}
