//! A member's devices: a pairing code made on the first device, the pairing followed on a new
//! one (what `cercle init --pair` runs), the member's devices listed, and a lost one revoked.
//! The protocol's messages are handled in `node::core::devices`.

use serde::{Deserialize, Serialize};

use super::{NodeError, Operation};
use crate::identity::{DeviceId, PublicIdentity};
use crate::node::NodeCore;
use crate::node::core::devices::{PairState, Pairing};
use crate::node::core::reachable_addresses;
use crate::pairing::{MAX_DEVICE_ADDRESSES, PairCode, PairRecord};
use crate::store::Batch;

/// Makes a one-time pairing code for a new device of this member (on the device holding the
/// member key, with the node running).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DevicePair {}

/// A pairing code.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PairingCode {
    pub code: String,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    /// Where the new device will reach this one.
    pub addresses: Vec<String>,
}

impl Operation for DevicePair {
    type Answer = PairingCode;

    fn run(self, core: &mut NodeCore) -> Result<PairingCode, NodeError> {
        if !core.me().holds_member_key() {
            return Err(NodeError::not_allowed(
                crate::pairing::PairError::NoMemberKey.to_string(),
            ));
        }
        if !core.running {
            return Err(NodeError::not_running("pairing a device"));
        }
        let mut addresses = reachable_addresses(&core.status(), &core.circle_relays());
        addresses.truncate(MAX_DEVICE_ADDRESSES);
        if addresses.is_empty() {
            return Err(NodeError::unavailable(
                "this node has no address yet; wait a moment and try again",
            ));
        }
        let now = core.now().millis();
        let secret = crate::pairing::new_secret(core.rng());
        let record = PairRecord::new(&secret, now);
        let code = PairCode {
            device: core.me().device(),
            secret,
            expires_at: record.expires_at,
            addresses: addresses.clone(),
        };
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| NodeError::internal(format!("cannot record the pairing: {e}")))?;
        let mut batch = Batch::new();
        batch.meta(&PairRecord::key(&code.id()), &bytes);
        core.write_batch(batch, Default::default());
        tracing::info!(pairing = %code.id(), "pairing code created");
        Ok(PairingCode {
            code: code.encode(),
            expires_at: record.expires_at,
            addresses,
        })
    }
}

/// Follows a pairing code on a new device: reaches the first device and proves the code.
/// Follow it with [`PairStatus`]. Only a node holding no circle pairs.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PairWith {
    pub code: String,
}

/// Where a pairing stands on the new device.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PairView {
    /// `reaching`, `paired` or `refused`.
    pub state: String,
    pub reason: Option<String>,
    /// Once paired: the identity to keep (this device's certificate, the member's profile).
    #[schemars(with = "Option<serde_json::Value>")]
    pub identity: Option<PublicIdentity>,
}

impl Operation for PairWith {
    type Answer = PairView;

    fn run(self, core: &mut NodeCore) -> Result<PairView, NodeError> {
        let now = core.now().millis();
        let code = PairCode::decode(&self.code).map_err(|e| NodeError::bad_input(e.to_string()))?;
        code.check_expiry(now)
            .map_err(|e| NodeError::bad_input(e.to_string()))?;
        if !core.circles.open.is_empty() {
            return Err(NodeError::conflict(
                "this home already holds circles: pair a new home (`cercle init --pair CODE`)",
            ));
        }
        if !core.running {
            return Err(NodeError::not_running("pairing"));
        }
        for address in &code.addresses {
            core.emit(crate::node::Effect::Dial(address.clone()));
        }
        let device = code.device;
        core.pairing = Some(Pairing::new(code, now));
        for e in core.send_pair(&device) {
            core.emit(e);
        }
        Ok(view(core))
    }
}

/// Where the pairing started with [`PairWith`] stands.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PairStatus {}

impl Operation for PairStatus {
    type Answer = PairView;

    fn run(self, core: &mut NodeCore) -> Result<PairView, NodeError> {
        if core.pairing.is_none() {
            return Err(NodeError::not_found("no pairing is under way here"));
        }
        Ok(view(core))
    }
}

fn view(core: &NodeCore) -> PairView {
    let (state, reason, identity) = match core.pairing.as_ref().map(|p| &p.state) {
        Some(PairState::Paired(id)) => ("paired", None, Some((**id).clone())),
        Some(PairState::Refused(r)) => ("refused", Some(r.clone()), None),
        _ => ("reaching", None, None),
    };
    PairView {
        state: state.into(),
        reason,
        identity,
    }
}

/// This member's devices.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceList {}

/// One of this member's devices.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceRow {
    pub device: String,
    /// The device this node runs on.
    pub this: bool,
    pub connected: bool,
    /// When it was last connected to this device (milliseconds).
    pub last_seen: Option<i64>,
    /// When it was certified by the member key (milliseconds).
    pub certified_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// How many circles held here count it among the member's devices.
    pub circles: usize,
}

/// This member's devices, this one first.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Devices {
    pub member: String,
    /// Whether this device holds the member key (pairs new devices).
    pub holds_member_key: bool,
    pub devices: Vec<DeviceRow>,
}

impl Operation for DeviceList {
    type Answer = Devices;

    fn run(self, core: &mut NodeCore) -> Result<Devices, NodeError> {
        let member = core.me().member();
        let counted = |device: &DeviceId| {
            core.circles
                .open
                .values()
                .filter(|c| {
                    c.resolution()
                        .members
                        .get(&member)
                        .is_some_and(|m| m.devices.iter().any(|d| d.device == *device))
                })
                .count()
        };
        let me = core.me().device();
        let mut devices = vec![DeviceRow {
            device: me.to_string(),
            this: true,
            connected: true,
            last_seen: Some(core.now().millis()),
            certified_at: core.me().certificate.issued_at,
            revoked_at: None,
            circles: counted(&me),
        }];
        let siblings = core.siblings();
        for (device, cert) in &siblings.certificates {
            let record = core.devices.get(device);
            let connected = core.peers.contains_key(device);
            devices.push(DeviceRow {
                device: device.to_string(),
                this: false,
                connected,
                last_seen: if connected {
                    Some(core.now().millis())
                } else {
                    record.and_then(|r| r.last_seen)
                },
                certified_at: cert.issued_at,
                revoked_at: siblings.revoked.get(device).copied(),
                circles: counted(device),
            });
        }
        Ok(Devices {
            member: member.to_hex(),
            holds_member_key: core.me().holds_member_key(),
            devices,
        })
    }
}

/// Revokes one of this member's other devices (lost, stolen, replaced) in every circle.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceRevoke {
    /// The device's id, or the start of it.
    pub device: String,
}

/// A device revoked.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceRevoked {
    pub device: String,
    /// Circles it was revoked from here.
    pub circles: usize,
}

impl Operation for DeviceRevoke {
    type Answer = DeviceRevoked;

    fn run(self, core: &mut NodeCore) -> Result<DeviceRevoked, NodeError> {
        let query = self.device.trim().to_lowercase();
        if query.len() < 4 {
            return Err(NodeError::bad_input(
                "give at least the first 4 characters of the device's id (`cercle device list`)",
            ));
        }
        let mut found: Vec<DeviceId> = core
            .siblings()
            .certificates
            .into_keys()
            .filter(|d| d.to_string().starts_with(&query))
            .collect();
        if core.me().device().to_string().starts_with(&query) {
            found.push(core.me().device());
        }
        let device = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(NodeError::not_found(format!(
                    "no device of yours starts with {query:?}; `cercle device list` shows them"
                )));
            }
            _ => {
                return Err(NodeError::bad_input(format!(
                    "{query:?} names several of your devices; give more of its id"
                )));
            }
        };
        let circles = core.revoke_sibling(device)?;
        Ok(DeviceRevoked {
            device: device.to_string(),
            circles,
        })
    }
}
