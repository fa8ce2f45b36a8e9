//! The node core driven without a network: what the `cercle` command uses when no node runs
//! on its home (and the demo, to build a circle before its nodes start). A blocking shell:
//! each request's writes are handed to the store and waited for before its answer is
//! returned; messages for peers are dropped (there are none).

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Effect, Input, NodeCore, RequestId, now};
use crate::identity::LocalIdentity;
use crate::ops::{Answer, NodeError, Operation, Request};
use crate::store::Store;

/// A node core on an open store, answering one request at a time.
#[derive(Debug)]
pub struct OfflineNode {
    core: NodeCore,
    store: Arc<dyn Store>,
    next: u64,
}

impl OfflineNode {
    /// Opens every circle of `store` for `me` (whose libp2p peer id is `peer_id`).
    pub fn open(
        store: Arc<dyn Store>,
        me: LocalIdentity,
        peer_id: String,
    ) -> Result<OfflineNode, NodeError> {
        let rng = crate::crypto::os_rng().map_err(|e| NodeError::internal(e.to_string()))?;
        let mut core = NodeCore::open(store.clone(), me, peer_id, rng)?;
        let started = core.start(false, Default::default(), now());
        let mut node = OfflineNode {
            core,
            store,
            next: 0,
        };
        node.carry_out(started, None)?;
        node.settle()?;
        Ok(node)
    }

    /// Checks and applies every envelope held unchecked (taken in by a command, or left
    /// by a node that stopped before it got to them), so that what this command reads
    /// and leaves behind is settled.
    fn settle(&mut self) -> Result<(), NodeError> {
        while self.core.has_work() {
            let effects = self.core.handle(Input::Idle, now());
            self.carry_out(effects, None)?;
        }
        Ok(())
    }

    /// Carries out one request; returns once its writes are durable.
    pub fn call(&mut self, request: Request) -> Result<Answer, NodeError> {
        let id = RequestId(self.next);
        self.next += 1;
        let effects = self.core.handle(Input::Request(id, request), now());
        let answer = self
            .carry_out(effects, Some(id))?
            .unwrap_or_else(|| Err(NodeError::internal("the request was not answered")));
        self.settle()?;
        answer
    }

    /// Carries out one operation, typed.
    pub fn ask<O: Operation>(&mut self, op: O) -> Result<O::Answer, NodeError> {
        crate::ops::typed::<O>(self.call(op.into()))
    }

    /// Hands every write to the store (they share its flushes), then feeds each outcome
    /// back in order, until nothing is left; returns the answer to `request` if it came.
    fn carry_out(
        &mut self,
        effects: Vec<Effect>,
        request: Option<RequestId>,
    ) -> Result<Option<Result<Answer, NodeError>>, NodeError> {
        let mut queue: VecDeque<Effect> = effects.into();
        let mut answer = None;
        loop {
            let mut tickets = Vec::new();
            for effect in queue.drain(..) {
                match effect {
                    Effect::Write(id, batch) => tickets.push((id, self.store.submit(batch))),
                    Effect::Answer(id, a) if Some(id) == request => answer = Some(*a),
                    // No network here: nothing to send, dial or tell.
                    _ => {}
                }
            }
            if tickets.is_empty() {
                return Ok(answer);
            }
            for (id, ticket) in tickets {
                let outcome = match ticket.wait() {
                    Ok(()) => Input::Durable(id),
                    Err(e) => Input::WriteFailed(id, e),
                };
                queue.extend(self.core.handle(outcome, now()));
            }
        }
    }
}
