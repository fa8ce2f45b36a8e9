//! Break-glass: the patient's emergency code. Printed from the patient page and kept in
//! the patient's home, it names the circle, a few of its members' devices, where to reach
//! them (the printing device's addresses and the circle's relays) and nothing of the care.
//! An on-call professional who scans it asks any of those devices for read access
//! (`Message::BreakGlass`); the member's node checks the circle's on-call list, which a
//! coordinator signed, and grants at most 24 hours as an observer (`OpBody::BreakGlass`).
//! The code is no secret: possession alone lets no one in.

use libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};

use crate::circle::membership::{CircleId, MAX_RELAYS};
use crate::identity::DeviceId;
use crate::invite::{pack_addresses, unpack_addresses};

/// The prefix of an emergency code.
pub const EMERGENCY_PREFIX: &str = "cercleurg1";
/// Member devices a code names, at most (the printing device first).
pub const MAX_CODE_DEVICES: usize = 8;
/// Addresses of the printing device a code carries, at most.
pub const MAX_CODE_ADDRESSES: usize = 16;
/// The longest code read.
pub const MAX_CODE_CHARS: usize = 4_096;
/// Addresses an on-call node dials per try, at most.
pub const MAX_DIALS: usize = 32;
/// The longest reason given for an emergency access, in bytes.
pub const MAX_REASON: usize = crate::circle::membership::MAX_CONSENT_REASON;
/// The longest emergency access asked for, in minutes: 24 hours.
pub const MAX_MINUTES: u32 = 24 * 60;

/// Why a text is not a usable emergency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmergencyError {
    #[error("this is not an emergency code (it starts with {EMERGENCY_PREFIX})")]
    NotACode,
    #[error("the emergency code is damaged or incomplete; scan or copy it again")]
    Damaged,
    #[error("give the reason for the emergency access (at most {MAX_REASON} bytes)")]
    Reason,
    #[error("an emergency access lasts from 1 minute to 24 hours ({MAX_MINUTES} minutes)")]
    Minutes,
}

/// What an emergency code carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyCode {
    pub circle: CircleId,
    /// The device that printed it; its addresses follow.
    pub device: DeviceId,
    pub addresses: Vec<String>,
    /// Other member devices that may answer (reached through the relays or the LAN).
    pub devices: Vec<DeviceId>,
    /// The circle's relays (multiaddresses ending with the relay's peer id).
    pub relays: Vec<String>,
}

/// The code as encoded (CBOR, short field names).
#[derive(Serialize, Deserialize)]
struct Wire {
    c: serde_bytes::ByteBuf,
    d: serde_bytes::ByteBuf,
    a: Vec<serde_bytes::ByteBuf>,
    m: Vec<serde_bytes::ByteBuf>,
    r: Vec<String>,
}

impl EmergencyCode {
    /// The code as one string (see [`crate::textcode`]).
    pub fn encode(&self) -> String {
        let wire = Wire {
            c: serde_bytes::ByteBuf::from(self.circle.0.to_vec()),
            d: serde_bytes::ByteBuf::from(self.device.0.to_vec()),
            a: pack_addresses(&self.addresses, &self.device),
            m: self
                .devices
                .iter()
                .map(|d| serde_bytes::ByteBuf::from(d.0.to_vec()))
                .collect(),
            r: self.relays.clone(),
        };
        let mut bytes = Vec::with_capacity(512);
        if let Err(e) = ciborium::into_writer(&wire, &mut bytes) {
            tracing::error!(error = %e, "an emergency code could not be encoded");
        }
        crate::textcode::encode(EMERGENCY_PREFIX, &bytes)
    }

    /// Parses a code (spaces and line breaks ignored), checksum and bounds checked.
    pub fn decode(s: &str) -> Result<EmergencyCode, EmergencyError> {
        let cbor =
            crate::textcode::decode(EMERGENCY_PREFIX, s, MAX_CODE_CHARS).map_err(|e| match e {
                crate::textcode::TextCodeError::OtherKind => EmergencyError::NotACode,
                _ => EmergencyError::Damaged,
            })?;
        let wire: Wire =
            ciborium::from_reader(cbor.as_slice()).map_err(|_| EmergencyError::Damaged)?;
        if wire.a.len() > MAX_CODE_ADDRESSES
            || wire.m.len() > MAX_CODE_DEVICES
            || wire.r.len() > MAX_RELAYS
            || wire.r.iter().any(|r| crate::net::relay_device(r).is_err())
        {
            return Err(EmergencyError::Damaged);
        }
        let fixed = |b: &[u8]| <[u8; 32]>::try_from(b).map_err(|_| EmergencyError::Damaged);
        let device = DeviceId(fixed(&wire.d)?);
        let addresses = unpack_addresses(wire.a, &device).ok_or(EmergencyError::Damaged)?;
        let devices = wire
            .m
            .iter()
            .map(|d| fixed(d).map(DeviceId))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EmergencyCode {
            circle: CircleId(fixed(&wire.c)?),
            device,
            addresses,
            devices,
            relays: wire.r,
        })
    }

    /// The id an on-call node follows its request by (16 hex digits, one per circle).
    pub fn request_id(&self) -> String {
        let mut h = blake3::Hasher::new_derive_key("cercle emergency request v1");
        h.update(&self.circle.0);
        hex::encode(&h.finalize().as_bytes()[..8])
    }

    /// Whether `device` is one the code names.
    pub fn names(&self, device: &DeviceId) -> bool {
        self.device == *device || self.devices.contains(device)
    }

    /// What to dial: the printing device's addresses, then each named device through each
    /// relay's circuit; at most [`MAX_DIALS`].
    pub fn dials(&self) -> Vec<String> {
        let mut out = self.addresses.clone();
        for device in std::iter::once(&self.device).chain(&self.devices) {
            let Some(peer) = crate::net::peer_of(device) else {
                continue;
            };
            for relay in &self.relays {
                let Ok(address) = relay.parse::<libp2p::Multiaddr>() else {
                    continue;
                };
                out.push(
                    address
                        .with(Protocol::P2pCircuit)
                        .with(Protocol::P2p(peer))
                        .to_string(),
                );
            }
        }
        out.truncate(MAX_DIALS);
        out
    }
}

/// Checks what an on-call professional gives: a reason, and a duration within 24 hours.
pub fn check_request(reason: &str, minutes: u32) -> Result<(), EmergencyError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON {
        return Err(EmergencyError::Reason);
    }
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(EmergencyError::Minutes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device(seed: u8) -> DeviceId {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        DeviceId(key.verifying_key().to_bytes())
    }

    fn code() -> EmergencyCode {
        let d = device(1);
        let peer = crate::net::peer_of(&d)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let relay = crate::net::peer_of(&device(9))
            .map(|p| p.to_string())
            .unwrap_or_default();
        EmergencyCode {
            circle: CircleId([7; 32]),
            device: d,
            addresses: vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")],
            devices: vec![device(2), device(3)],
            relays: vec![format!("/ip4/127.0.0.1/tcp/4100/p2p/{relay}")],
        }
    }

    #[test]
    fn a_code_comes_back_whole_and_dials_every_device_through_every_relay() {
        let c = code();
        let text = c.encode();
        assert!(text.starts_with(EMERGENCY_PREFIX));
        assert_eq!(EmergencyCode::decode(&text), Ok(c.clone()));
        let dials = c.dials();
        assert_eq!(dials.len(), 1 + 3);
        assert!(dials[1..].iter().all(|a| a.contains("/p2p-circuit/p2p/")));
        assert!(c.names(&device(3)) && !c.names(&device(4)));
    }

    #[test]
    fn other_codes_and_damaged_ones_are_refused() {
        let text = code().encode();
        let invite = text.replacen(EMERGENCY_PREFIX, "cercleinv1", 1);
        assert_eq!(
            EmergencyCode::decode(&invite),
            Err(EmergencyError::NotACode)
        );
        let mut damaged = text.clone();
        damaged.truncate(text.len() - 3);
        assert_eq!(
            EmergencyCode::decode(&damaged),
            Err(EmergencyError::Damaged)
        );
        let long = format!("{EMERGENCY_PREFIX}{}", "a".repeat(MAX_CODE_CHARS));
        assert_eq!(EmergencyCode::decode(&long), Err(EmergencyError::Damaged));
    }

    #[test]
    fn a_request_needs_a_reason_and_at_most_a_day() {
        assert_eq!(check_request("  ", 60), Err(EmergencyError::Reason));
        assert_eq!(check_request("chute", 0), Err(EmergencyError::Minutes));
        assert_eq!(
            check_request("chute", MAX_MINUTES + 1),
            Err(EmergencyError::Minutes)
        );
        assert_eq!(check_request("chute", MAX_MINUTES), Ok(()));
    }

    proptest! {
        /// Whatever bytes follow the prefix, decoding answers without panicking.
        #[test]
        fn decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let text = crate::textcode::encode(EMERGENCY_PREFIX, &bytes);
            let _ = EmergencyCode::decode(&text);
        }
    }
}
