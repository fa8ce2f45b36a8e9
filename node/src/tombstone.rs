//! A circle closed for good: what a node keeps of it once it is shredded (a [`Tombstone`]:
//! no care data), and the signed [`DeletionReceipt`] a relay answers a circle's closing with.
//!
//! A coordinator's signed `Close` operation ends a circle. Every node that takes it in, a
//! member's or a relay's, destroys what it held of the circle (see `store::circle_keys` for
//! a member's node, `mailbox` for a relay's) and keeps only this: when and by whom it was
//! closed, the `Close` operation itself (so that a member's node that missed it is told on
//! its next connection), the devices to tell, and the receipts of the relays that deleted
//! their copy. A relay's receipt is signed with its network key, whose public half is its
//! device id: anyone can check which relay said it deleted what.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::circle::membership::{CircleId, OpHash};
use crate::identity::DeviceId;

/// Receipts kept per closed circle, at most (one per relay).
pub const MAX_RECEIPTS: usize = 16;
/// Devices told of a closing, at most per closed circle.
pub const MAX_TOLD: usize = 256;

/// Why a receipt is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("the deletion receipt's signature does not verify")]
    BadSignature,
    #[error("the deletion receipt was signed by another relay than the one that sent it")]
    NotSender,
    #[error("the deletion receipt is for another closing of the circle")]
    OtherClosing,
}

/// A relay's signed statement that it deleted a closed circle's envelopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionReceipt {
    /// The circle (hex).
    pub circle: CircleId,
    /// The `Close` operation the relay took (hex of its hash).
    pub close: OpHash,
    /// The relay: the public half of its network key.
    pub relay: DeviceId,
    /// When it deleted them (milliseconds since the epoch, the relay's clock).
    pub at: i64,
    /// Envelopes and bytes deleted.
    pub envelopes: u64,
    pub bytes: u64,
    /// Ed25519 signature by the relay over all of the above (hex).
    pub signature: String,
}

impl DeletionReceipt {
    fn message(
        circle: &CircleId,
        close: &OpHash,
        relay: &DeviceId,
        at: i64,
        envelopes: u64,
        bytes: u64,
    ) -> Vec<u8> {
        let mut m = b"cercle deletion receipt v1".to_vec();
        m.extend_from_slice(&circle.0);
        m.extend_from_slice(&close.0);
        m.extend_from_slice(&relay.0);
        m.extend_from_slice(&at.to_be_bytes());
        m.extend_from_slice(&envelopes.to_be_bytes());
        m.extend_from_slice(&bytes.to_be_bytes());
        m
    }

    /// The receipt `key` (a relay's network key) signs for deleting `envelopes` of `circle`
    /// (`bytes` in all) on taking its `close`.
    pub fn sign(
        key: &SigningKey,
        circle: CircleId,
        close: OpHash,
        at: i64,
        envelopes: u64,
        bytes: u64,
    ) -> DeletionReceipt {
        let relay = DeviceId(key.verifying_key().to_bytes());
        let m = DeletionReceipt::message(&circle, &close, &relay, at, envelopes, bytes);
        DeletionReceipt {
            circle,
            close,
            relay,
            at,
            envelopes,
            bytes,
            signature: hex::encode(key.sign(&m).to_bytes()),
        }
    }

    /// Checks the signature against the relay named in the receipt.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        let key =
            VerifyingKey::from_bytes(&self.relay.0).map_err(|_| ReceiptError::BadSignature)?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(ReceiptError::BadSignature)?;
        let m = DeletionReceipt::message(
            &self.circle,
            &self.close,
            &self.relay,
            self.at,
            self.envelopes,
            self.bytes,
        );
        key.verify(&m, &Signature::from_bytes(&sig))
            .map_err(|_| ReceiptError::BadSignature)
    }
}

/// What a node keeps of a circle it shredded: no care data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The closing coordinator's time (milliseconds), and who.
    pub closed_at: i64,
    pub closed_by: cercle_crdt::MemberId,
    pub closed_by_name: Option<String>,
    /// When this node shredded the circle (milliseconds).
    pub shredded_at: i64,
    /// The signed `Close` operation (hex), passed to members' nodes that missed it.
    pub close: String,
    /// The other devices of the circle's members when it closed: told on connection.
    pub devices: Vec<DeviceId>,
    /// The relays' receipts, one per relay.
    pub receipts: Vec<DeletionReceipt>,
    /// The hash (hex) of the patient's objection that suspended the circle before it
    /// closed, if it did: the relays' receipts may be for it.
    #[serde(default)]
    pub withdrawal: Option<String>,
    /// The relays that kept a copy when it closed (the circle's and this node's own): a
    /// receipt is awaited from each.
    #[serde(default)]
    pub relays: Vec<DeviceId>,
}

impl Tombstone {
    /// The `Close` operation's bytes.
    pub fn close_op(&self) -> Vec<u8> {
        hex::decode(&self.close).unwrap_or_default()
    }

    /// The `Close` operation's hash.
    pub fn close_hash(&self) -> OpHash {
        OpHash(*blake3::hash(&self.close_op()).as_bytes())
    }

    /// Keeps `receipt` sent by `from` if it is a valid receipt of this closing (or of the
    /// objection that suspended the circle before it), from that relay, not held yet;
    /// returns whether it was new.
    pub fn keep(
        &mut self,
        from: &DeviceId,
        receipt: DeletionReceipt,
    ) -> Result<bool, ReceiptError> {
        let withdrawal = self
            .withdrawal
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .map(OpHash);
        let ending = match withdrawal {
            Some(w) if w == receipt.close => w,
            _ => self.close_hash(),
        };
        keep_receipt(&mut self.receipts, &ending, from, receipt)
    }

    /// The relays that kept a copy and have not given their receipt yet.
    pub fn awaited(&self) -> Vec<DeviceId> {
        self.relays
            .iter()
            .filter(|r| !self.has_receipt(r))
            .copied()
            .collect()
    }

    /// Whether `relay` has given its receipt.
    pub fn has_receipt(&self, relay: &DeviceId) -> bool {
        self.receipts.iter().any(|r| r.relay == *relay)
    }
}

/// Adds `receipt`, sent by `from`, to `held` (the receipts for the operation `ending` that
/// ended the circle's sharing: its closing, or the patient's objection) if it is valid and
/// new; returns whether it was.
pub fn keep_receipt(
    held: &mut Vec<DeletionReceipt>,
    ending: &OpHash,
    from: &DeviceId,
    receipt: DeletionReceipt,
) -> Result<bool, ReceiptError> {
    if receipt.relay != *from {
        return Err(ReceiptError::NotSender);
    }
    if receipt.close != *ending {
        return Err(ReceiptError::OtherClosing);
    }
    receipt.verify()?;
    if held.iter().any(|r| r.relay == receipt.relay) || held.len() >= MAX_RECEIPTS {
        return Ok(false);
    }
    held.push(receipt);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn tombstone(close: &[u8]) -> Tombstone {
        Tombstone {
            closed_at: 1,
            closed_by: cercle_crdt::MemberId::from_bytes([1; 32]),
            closed_by_name: None,
            shredded_at: 2,
            close: hex::encode(close),
            devices: Vec::new(),
            receipts: Vec::new(),
            withdrawal: None,
            relays: Vec::new(),
        }
    }

    #[test]
    fn a_relays_receipt_is_kept_once_and_a_forged_or_misdirected_one_refused() {
        let close = b"close op".to_vec();
        let mut t = tombstone(&close);
        let relay = key(3);
        let r = DeletionReceipt::sign(&relay, CircleId([9; 32]), t.close_hash(), 5, 10, 2000);
        let from = r.relay;
        t.relays = vec![from, DeviceId(key(4).verifying_key().to_bytes())];
        assert_eq!(t.awaited().len(), 2);
        assert_eq!(t.keep(&from, r.clone()), Ok(true));
        assert_eq!(t.keep(&from, r.clone()), Ok(false));
        assert!(t.has_receipt(&from));
        assert_eq!(t.awaited(), vec![t.relays[1]]);
        // Sent by another device than the relay that signed it.
        let mut other = tombstone(&close);
        assert_eq!(
            other.keep(&DeviceId([7; 32]), r.clone()),
            Err(ReceiptError::NotSender)
        );
        // A figure changed after signing.
        let mut forged = r.clone();
        forged.envelopes = 0;
        assert_eq!(other.keep(&from, forged), Err(ReceiptError::BadSignature));
        // For another closing.
        let stale = DeletionReceipt::sign(&relay, CircleId([9; 32]), OpHash([0; 32]), 5, 10, 2000);
        assert_eq!(other.keep(&from, stale), Err(ReceiptError::OtherClosing));
        // It travels as JSON (the tombstone's record) and comes back verifying.
        let json = serde_json::to_string(&t).unwrap_or_default();
        let back: Tombstone = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.receipts[0].verify(), Ok(()));
    }

    proptest! {
        #[test]
        fn a_receipt_altered_anywhere_does_not_verify(at in any::<i64>(), n in any::<u64>(), b in any::<u64>(), flip in 0usize..6) {
            let r = DeletionReceipt::sign(&key(4), CircleId([1; 32]), OpHash([2; 32]), at, n, b);
            prop_assert_eq!(r.verify(), Ok(()));
            let mut bad = r.clone();
            match flip {
                0 => bad.circle = CircleId([3; 32]),
                1 => bad.close = OpHash([4; 32]),
                2 => bad.relay = DeviceId(key(5).verifying_key().to_bytes()),
                3 => bad.at = at.wrapping_add(1),
                4 => bad.envelopes = n.wrapping_add(1),
                _ => bad.bytes = b.wrapping_add(1),
            }
            prop_assert!(bad.verify().is_err());
        }
    }
}
