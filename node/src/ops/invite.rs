//! One-time invite codes (coordinators only): the code carries the circle, this device and
//! its addresses (relayed ones first) and a 64-bit secret whose hash alone is kept here; the same invite as a short code.

use cercle_crdt::Role;
use serde::{Deserialize, Serialize};

use super::{NodeError, Operation};
use crate::invite::{InviteCode, InviteError, InviteRecord, MAX_CODE_ADDRESSES, MAX_VALIDITY_MS};
use crate::node::NodeCore;
use crate::node::core::invites::record_batch;
use crate::node::core::reachable_addresses;

/// A one-time invite code to the circle, for the role given (coordinators only).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InviteCreate {
    pub circle: String,
    pub role: Role,
    /// Seconds from now until the code expires.
    pub expires_in: u64,
}

/// A new invite.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InviteView {
    /// The code to hand over (single use).
    pub code: String,
    /// The same invite in 24 characters, to read out: the invitee's node finds this one
    /// on the LAN or through a relay both use.
    pub short: String,
    pub circle: String,
    pub role: Role,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
    /// Where the invitee's node will reach this one.
    pub addresses: Vec<String>,
}

impl Operation for InviteCreate {
    type Answer = InviteView;

    fn run(self, core: &mut NodeCore) -> Result<InviteView, NodeError> {
        let validity = i64::try_from(self.expires_in.saturating_mul(1000)).unwrap_or(i64::MAX);
        if validity <= 0 || validity > MAX_VALIDITY_MS {
            return Err(NodeError::bad_input(
                "an invite is valid from one minute up to 30 days",
            ));
        }
        let status = core.status();
        let me = core.me().member();
        let device = core.me().device();
        let now = core.now();
        let c = core.circle(&self.circle)?;
        if c.resolution().role(&me) != Some(Role::Coordinator) {
            return Err(NodeError::not_allowed(
                "only a coordinator of the circle can invite; ask one of them",
            ));
        }
        let relays = c.resolution().relays.clone();
        let mut addresses = reachable_addresses(&status, &relays);
        addresses.truncate(MAX_CODE_ADDRESSES);
        if addresses.is_empty() {
            return Err(NodeError::unavailable(format!(
                "{}; start the node with `cercle up` first",
                InviteError::NoAddress
            )));
        }
        let circle = c.id();
        let secret = crate::invite::new_secret(core.rng());
        let expires_at = now.millis().saturating_add(validity);
        let code = InviteCode {
            circle,
            inviter: device,
            secret,
            expires_at,
            addresses: addresses.clone(),
        };
        let record = InviteRecord::new(circle, self.role, &secret, now.millis(), expires_at);
        core.write_batch(record_batch(&code.id(), &record)?, Default::default());
        tracing::info!(%circle, invite = %code.id(), "invite created");
        core.announce_invites(Some(&record));
        Ok(InviteView {
            code: code.encode(),
            short: code.short().encode(),
            circle: circle.to_string(),
            role: self.role,
            expires_at,
            addresses,
        })
    }
}
