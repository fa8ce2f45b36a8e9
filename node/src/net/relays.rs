//! A node's relays: where it reserves a slot (to be reachable through each relay), where it
//! registers each circle's [`Spot`] at the relay's rendezvous, and how it dials the members
//! it finds there (through the relay, then at the addresses they gave).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, rendezvous};

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

/// Whether `relays` (as a circle names them) include the relay whose device is `device`.
pub fn names_relay(relays: &[String], device: &DeviceId) -> bool {
    relays
        .iter()
        .any(|a| relay_device(a).ok().as_ref() == Some(device))
}

/// The peer id an address ends with.
pub(super) fn relay_peer(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Where the members of one circle meet at relays: an opaque namespace (derived from the
/// circle's current epoch key) and the peers that belong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    pub namespace: String,
    pub members: BTreeSet<PeerId>,
}

/// The node's relays: their addresses as this node reaches them, and their reservations.
#[derive(Debug, Default)]
pub(super) struct Relays {
    /// The relays given in the configuration: always kept.
    pub(super) configured: BTreeSet<PeerId>,
    pub(super) addresses: BTreeMap<PeerId, Multiaddr>,
    /// Relays we listen through (a reservation asked or held).
    pub(super) listening: BTreeMap<PeerId, ListenerId>,
    /// Relays holding a reservation for us: where we register and discover.
    pub(super) reserved: BTreeSet<PeerId>,
    pub(super) spots: Vec<Spot>,
    /// Rendezvous requests not sent yet, [`RENDEZVOUS_PER_TICK`] a second (each is a stream
    /// on the relay's connection, whose streams are capped); at most one of each kind per
    /// relay and spot.
    asks: VecDeque<Ask>,
    queued: HashSet<Ask>,
}

/// Rendezvous requests sent per second and relay, at most: a GP's 1 500 circles register
/// in about a minute instead of opening 3 000 streams at once.
pub(super) const RENDEZVOUS_PER_TICK: usize = 24;

/// One rendezvous request waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ask {
    Register(PeerId, String),
    Discover(PeerId, String),
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
            self.reserved.remove(&peer);
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

    /// Registers every spot at `relay` and looks for members there (queued; see
    /// [`Relays::pump`]).
    pub(super) fn register(&mut self, relay: PeerId) {
        for i in 0..self.spots.len() {
            let ask = Ask::Register(relay, self.spots[i].namespace.clone());
            self.queue(ask);
        }
        self.discover(relay);
    }

    /// Looks for the members of every spot at `relay` (queued).
    pub(super) fn discover(&mut self, relay: PeerId) {
        for i in 0..self.spots.len() {
            let ask = Ask::Discover(relay, self.spots[i].namespace.clone());
            self.queue(ask);
        }
    }

    fn queue(&mut self, ask: Ask) {
        if self.queued.insert(ask.clone()) {
            self.asks.push_back(ask);
        }
    }

    /// Sends the next rendezvous requests, at most [`RENDEZVOUS_PER_TICK`] per relay; those
    /// for relays no longer reserved are dropped.
    pub(super) fn pump(&mut self, swarm: &mut Swarm<Behaviour>) {
        let mut sent: BTreeMap<PeerId, usize> = BTreeMap::new();
        let mut later = VecDeque::new();
        while let Some(ask) = self.asks.pop_front() {
            let (Ask::Register(relay, namespace) | Ask::Discover(relay, namespace)) = &ask;
            let relay = *relay;
            if !self.reserved.contains(&relay) {
                self.queued.remove(&ask);
                continue;
            }
            let count = sent.entry(relay).or_default();
            if *count >= RENDEZVOUS_PER_TICK {
                later.push_back(ask);
                continue;
            }
            *count += 1;
            self.queued.remove(&ask);
            let Ok(ns) = rendezvous::Namespace::new(namespace.clone()) else {
                continue;
            };
            let client = &mut swarm.behaviour_mut().rendezvous;
            match ask {
                Ask::Register(..) => {
                    if let Err(e) = client.register(ns, relay, None) {
                        tracing::debug!(%relay, error = %e, "cannot register at the relay yet");
                    }
                }
                Ask::Discover(..) => client.discover(Some(ns), None, None, relay),
            }
        }
        later.append(&mut self.asks);
        self.asks = later;
    }

    /// Dials the members found at `relay`, through it and at the addresses they gave.
    pub(super) fn found(
        &self,
        swarm: &mut Swarm<Behaviour>,
        relay: PeerId,
        registrations: Vec<rendezvous::Registration>,
    ) {
        let Some(relay_address) = self.addresses.get(&relay) else {
            return;
        };
        for r in registrations {
            let peer = r.record.peer_id();
            let member = self
                .spots
                .iter()
                .any(|s| s.namespace == r.namespace.to_string() && s.members.contains(&peer));
            if !member || peer == *swarm.local_peer_id() || swarm.is_connected(&peer) {
                continue;
            }
            let mut addresses = vec![
                relay_address
                    .clone()
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(peer)),
            ];
            addresses.extend(r.record.addresses().iter().cloned());
            tracing::info!(%peer, %relay, "found a member at the relay");
            let opts = DialOpts::peer_id(peer)
                .addresses(addresses)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "cannot dial a member");
            }
        }
    }
}
