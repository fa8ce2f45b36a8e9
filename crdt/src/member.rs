//! Who writes, with which role, and when: the inputs every write and every validation takes.
//!
//! The model never reads a clock or a key. A [`MemberId`] is the public member key (32 bytes,
//! shown as 64 lowercase hex digits); a [`Timestamp`] is given by the caller.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A member of a circle: a professional or a family caregiver, named by their member key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemberId([u8; 32]);

impl MemberId {
    /// The member id of these 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The same, usable in constants (test fixtures, the demo's fixed members).
    pub const fn from_const(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-hex-digit form stored in documents.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short form for people (first 8 hex digits).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", self.short())
    }
}

/// A string that is not a member id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a member id is 64 lowercase hexadecimal digits, got {0:?}")]
pub struct ParseMemberIdError(pub String);

impl FromStr for MemberId {
    type Err = ParseMemberIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseMemberIdError(s.chars().take(80).collect());
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

impl TryFrom<String> for MemberId {
    type Error = ParseMemberIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MemberId> for String {
    fn from(m: MemberId) -> String {
        m.to_hex()
    }
}

/// What a member may do in a circle. Enforced on receipt of every change, not only in the UI.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Administers the circle (adds and removes members) and writes like a professional.
    Coordinator,
    /// Writes the patient file, the liaison notebook and the thread.
    Professional,
    /// A family caregiver: reads the notebook, acknowledges alerts, writes in the thread.
    Caregiver,
    /// Reads only.
    Observer,
}

impl Role {
    /// All roles, strongest first.
    pub const ALL: [Role; 4] = [
        Role::Coordinator,
        Role::Professional,
        Role::Caregiver,
        Role::Observer,
    ];

    /// The lowercase name used in documents, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Professional => "professional",
            Role::Caregiver => "caregiver",
            Role::Observer => "observer",
        }
    }

    /// Whether this role writes clinical content (patient file, notebook entries).
    pub fn writes_clinical(self) -> bool {
        matches!(self, Role::Coordinator | Role::Professional)
    }

    /// Whether this role writes anything at all.
    pub fn writes_anything(self) -> bool {
        !matches!(self, Role::Observer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use coordinator, professional, caregiver or observer")]
pub struct ParseRoleError(pub String);

impl FromStr for Role {
    type Err = ParseRoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseRoleError(s.chars().take(40).collect()))
    }
}

/// A moment, in milliseconds since the Unix epoch (UTC). Always given by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (Automerge change times are in seconds).
    pub fn seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// RFC 3339 form in UTC, e.g. `2026-11-23T08:15:00Z`.
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(t) => t.to_string(),
            Err(_) => format!("@{}ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_round_trips_through_hex_and_rejects_other_strings() {
        let m = MemberId::from_bytes([0xab; 32]);
        assert_eq!(m.to_hex().parse::<MemberId>(), Ok(m));
        assert!(
            "AB".repeat(32).parse::<MemberId>().is_err(),
            "uppercase is not canonical"
        );
        assert!("ab".repeat(31).parse::<MemberId>().is_err());
        assert!("zz".repeat(32).parse::<MemberId>().is_err());
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("admin".parse::<Role>().is_err());
    }

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        assert_eq!(
            Timestamp(1_700_000_000_000).to_rfc3339(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(Timestamp(-1).seconds(), -1);
    }
}
