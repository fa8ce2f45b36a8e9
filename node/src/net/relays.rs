//! A node's relays: where it reserves a slot (to be reachable through each relay), and how
//! it dials the members a relay introduces (through that relay).

use std::collections::{BTreeMap, BTreeSet};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm};

use super::{Behaviour, NetError, device_of, dial};
use crate::identity::DeviceId;

/// The device of a relay named by its full address (ending in `/p2p/<peer id>`).
pub fn relay_device(address: &str) -> Result<DeviceId, NetError> {
    let parsed: Multiaddr = address
        .parse()
        .map_err(|e: libp2p::multiaddr::Error| NetError::Address(address.into(), e.to_string()))?;
    relay_device_at(&parsed)
}

/// The device of the relay at `address`, which must end with the relay's peer id.
pub(super) fn relay_device_at(address: &Multiaddr) -> Result<DeviceId, NetError> {
    relay_peer(address)
        .and_then(|p| device_of(&p))
        .ok_or_else(|| NetError::RelayAddress(address.to_string()))
}

/// The peer id an address ends with.
pub(super) fn relay_peer(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// The node's relays: their addresses as this node reaches them, and their reservations.
#[derive(Debug, Default)]
pub(super) struct Relays {
    /// The relays given in the configuration: always kept.
    pub(super) configured: BTreeSet<PeerId>,
    pub(super) addresses: BTreeMap<PeerId, Multiaddr>,
    /// Relays we listen through (a reservation asked or held).
    pub(super) listening: BTreeMap<PeerId, ListenerId>,
}

impl Relays {
    /// The relays named by the circles changed: new ones are dialed, dropped ones let go.
    pub(super) fn named(&mut self, swarm: &mut Swarm<Behaviour>, named: Vec<String>) {
        let mut wanted: BTreeMap<PeerId, Multiaddr> = BTreeMap::new();
        for a in named {
            match a.parse::<Multiaddr>() {
                Ok(address) => match relay_peer(&address) {
                    Some(peer) => {
                        wanted.insert(peer, address);
                    }
                    None => tracing::warn!(%a, "a circle names a relay without its peer id"),
                },
                Err(e) => {
                    tracing::warn!(%a, error = %e, "a circle names a relay that is no address")
                }
            }
        }
        let dropped: Vec<PeerId> = self
            .addresses
            .keys()
            .filter(|p| !self.configured.contains(p) && !wanted.contains_key(p))
            .copied()
            .collect();
        for peer in dropped {
            self.addresses.remove(&peer);
            if let Some(id) = self.listening.remove(&peer) {
                swarm.remove_listener(id);
            }
        }
        for (peer, address) in wanted {
            if self.configured.contains(&peer) || self.addresses.contains_key(&peer) {
                continue;
            }
            tracing::info!(relay = %peer, "using a relay a circle names");
            self.addresses.insert(peer, address.clone());
            dial(swarm, address);
        }
    }

    /// Dials `peer`, a member's device the relay `relay` introduced, through that relay
    /// (DCUtR then tries for a direct connection). No address of the peer's own is used:
    /// an introduction carries none.
    pub(super) fn meet(&self, swarm: &mut Swarm<Behaviour>, peer: PeerId, relay: PeerId) {
        let Some(relay_address) = self.addresses.get(&relay) else {
            tracing::debug!(%relay, "an introduction from a relay this node does not use");
            return;
        };
        if peer == *swarm.local_peer_id() || swarm.is_connected(&peer) {
            return;
        }
        let circuit = relay_address
            .clone()
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(peer));
        tracing::info!(%peer, %relay, "reaching a member through the relay");
        let opts = DialOpts::peer_id(peer)
            .addresses(vec![circuit])
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "cannot dial a member");
        }
    }
}
