//! The node itself: its status (network identity, addresses, peers), this member's contact
//! card with the node's addresses, and dialing a peer by address.

use serde::{Deserialize, Serialize};

use super::{Done, NodeError, Operation};
use crate::node::NodeCore;

/// The node's peer id, addresses and connected peers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Status {}

/// The node's network state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeStatus {
    /// The libp2p peer id (derived from the device key).
    pub peer_id: String,
    /// The device id.
    pub device: String,
    /// The member this node belongs to.
    pub member: String,
    /// Listen addresses, each ending in `/p2p/<peer_id>`.
    pub addresses: Vec<String>,
    /// Connected peers.
    pub peers: Vec<PeerRow>,
    /// Whether the node is running (false when the command opened the store itself).
    pub running: bool,
    /// What peers sent that this node refused since it started, by reason.
    #[serde(default)]
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Of those, how many were not recorded (the peer was over its budget of records).
    #[serde(default)]
    pub refused_unrecorded: u64,
    /// Messages dropped unread from peers set aside for sending refused data.
    #[serde(default)]
    pub ignored_messages: u64,
    /// Envelopes received again though already held (passed on by several peers, or
    /// replayed): never applied twice.
    #[serde(default)]
    pub replayed_envelopes: u64,
    /// Envelopes held here, in all circles and documents (checked or not).
    #[serde(default)]
    pub held_envelopes: u64,
    /// Circles holding envelopes not checked yet: they are checked and applied while the
    /// node is idle.
    #[serde(default)]
    pub settling: usize,
}

/// One connected peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeerRow {
    pub peer_id: String,
    pub device: String,
    /// The member whose device it is, by a circle shared with it.
    pub member: Option<String>,
    /// A relay this node uses or one of its circles names.
    pub relay: bool,
    /// That member's name, as their profile in that circle gives it.
    pub name: Option<String>,
    /// The circles this node shares with the peer's device (ids).
    pub circles: Vec<String>,
    /// Envelope ranges and operation lists queued for the peer.
    pub pending: usize,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Bytes of operations and envelopes sent to and received from the peer.
    pub data_bytes_sent: u64,
    pub data_bytes_received: u64,
    /// Milliseconds since the epoch of the last message from the peer.
    pub last_seen: Option<i64>,
    /// How the sync with the peer travels.
    #[serde(default)]
    pub path: PeerPath,
}

/// How the sync with a peer travels.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PeerPath {
    /// A connection of its own (on the LAN, to a known address, or punched through NATs).
    #[default]
    Direct,
    /// A relay's circuit (the relay carries the encrypted connection, it cannot read it).
    Relayed,
}

impl Operation for Status {
    type Answer = NodeStatus;

    fn run(self, core: &mut NodeCore) -> Result<NodeStatus, NodeError> {
        Ok(core.status())
    }
}

/// This member's contact card, with the node's addresses.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Card {}

/// A contact card, as people copy it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CardText {
    pub card: String,
}

impl Operation for Card {
    type Answer = CardText;

    fn run(self, core: &mut NodeCore) -> Result<CardText, NodeError> {
        let addresses = core.status().addresses;
        Ok(CardText {
            card: core.me().public().card(&addresses).encode(),
        })
    }
}

/// Dials a peer's multiaddress.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Connect {
    pub address: String,
}

impl Operation for Connect {
    type Answer = Done;

    fn run(self, core: &mut NodeCore) -> Result<Done, NodeError> {
        if !core.running {
            return Err(NodeError::not_running("dialing a peer"));
        }
        core.emit(crate::node::Effect::Dial(self.address));
        Ok(Done {})
    }
}
