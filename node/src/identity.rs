//! Who runs this node: the member's profile (name, profession, RPPS or ADELI number) and the
//! ids of the member and of this device.
//!
//! The member id and the device's Automerge actor are random for now; they become the
//! Ed25519 member key and device key when signed identities arrive.

use cercle_crdt::{ActorId, MemberId};
use serde::{Deserialize, Serialize};

/// Why a profile was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// An empty or overlong display name.
    #[error("the name must be 1 to 120 characters")]
    BadName,
    /// An empty or overlong profession.
    #[error("the profession must be 1 to 80 characters")]
    BadProfession,
    /// Not 11 digits with a valid Luhn check digit.
    #[error("an RPPS number is 11 digits with a valid check digit; {0:?} is not")]
    BadRpps(String),
    /// Not 9 digits.
    #[error("an ADELI number is 9 digits; {0:?} is not")]
    BadAdeli(String),
    /// The operating system gave no randomness.
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// The member's public profile, shown to the other members of their circles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name, e.g. "Dr Claire Martin".
    pub name: String,
    /// Profession, e.g. "médecin généraliste", "infirmière", "aidant".
    pub profession: String,
    /// RPPS number (11 digits, Luhn-checked), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpps: Option<String>,
    /// ADELI number (9 digits), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adeli: Option<String>,
}

impl Profile {
    /// A checked profile.
    pub fn new(
        name: &str,
        profession: &str,
        rpps: Option<&str>,
        adeli: Option<&str>,
    ) -> Result<Self, ProfileError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 120 {
            return Err(ProfileError::BadName);
        }
        let profession = profession.trim();
        if profession.is_empty() || profession.chars().count() > 80 {
            return Err(ProfileError::BadProfession);
        }
        let rpps = rpps.map(str::trim).map(check_rpps).transpose()?;
        let adeli = adeli.map(str::trim).map(check_adeli).transpose()?;
        Ok(Self {
            name: name.to_string(),
            profession: profession.to_string(),
            rpps,
            adeli,
        })
    }
}

/// Checks an RPPS number: 11 digits whose Luhn checksum is valid.
pub fn check_rpps(s: &str) -> Result<String, ProfileError> {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if s.len() != 11 || digits.len() != 11 || !luhn_valid(&digits) {
        return Err(ProfileError::BadRpps(s.chars().take(20).collect()));
    }
    Ok(s.to_string())
}

/// Checks an ADELI number: 9 digits.
pub fn check_adeli(s: &str) -> Result<String, ProfileError> {
    if s.len() != 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProfileError::BadAdeli(s.chars().take(20).collect()));
    }
    Ok(s.to_string())
}

fn luhn_valid(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// This node's identity: the member it belongs to and its own device id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalIdentity {
    /// The member's id.
    pub member: MemberId,
    /// This device's Automerge actor (hex).
    pub device: String,
    /// The member's profile.
    pub profile: Profile,
}

impl LocalIdentity {
    /// A new identity with fresh random ids.
    pub fn generate(profile: Profile) -> Result<Self, ProfileError> {
        let mut member = [0u8; 32];
        let mut device = [0u8; 16];
        getrandom::fill(&mut member).map_err(|e| ProfileError::Random(e.to_string()))?;
        getrandom::fill(&mut device).map_err(|e| ProfileError::Random(e.to_string()))?;
        Ok(Self {
            member: MemberId::from_bytes(member),
            device: hex::encode(device),
            profile,
        })
    }

    /// This device's Automerge actor.
    pub fn actor(&self) -> ActorId {
        match hex::decode(&self.device) {
            Ok(bytes) => ActorId::from(bytes.as_slice()),
            // The identity file is checked on load; an unreadable device id cannot reach here.
            Err(_) => ActorId::from(self.device.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rpps_needs_eleven_digits_and_a_valid_luhn_key() {
        assert!(check_rpps("10003456786").is_ok());
        assert!(check_rpps("10003456787").is_err());
        assert!(check_rpps("1000345678").is_err());
        assert!(check_rpps("1000345678a").is_err());
    }

    #[test]
    fn adeli_needs_nine_digits() {
        assert!(check_adeli("751234567").is_ok());
        assert!(check_adeli("75123456").is_err());
        assert!(check_adeli("75123456x").is_err());
    }

    #[test]
    fn profiles_reject_empty_names() {
        assert_eq!(
            Profile::new(" ", "infirmière", None, None),
            Err(ProfileError::BadName)
        );
        assert!(Profile::new("Claire", "infirmière", Some("10003456786"), None).is_ok());
    }

    proptest! {
        #[test]
        fn exactly_one_luhn_digit_completes_any_ten_digit_prefix(prefix in "[0-9]{10}") {
            let valid = (0..10).filter(|d| check_rpps(&format!("{prefix}{d}")).is_ok()).count();
            prop_assert_eq!(valid, 1);
        }

        #[test]
        fn the_number_checkers_never_panic(s in "\\PC{0,30}") {
            let _ = check_rpps(&s);
            let _ = check_adeli(&s);
        }
    }
}
