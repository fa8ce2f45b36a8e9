//! Text codes people copy, read out or scan: contact cards and invite codes. A code is a
//! prefix naming its kind, then the lowercase base32 of its payload followed by a 4-byte
//! BLAKE3 checksum, so a mistyped or truncated code is caught before its payload is read.
//! Case, spaces and line breaks do not matter when reading one back.

/// Why a text is not a code of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextCodeError {
    #[error("the text does not start with the code's prefix")]
    OtherKind,
    #[error("the code is longer than allowed")]
    TooLong,
    #[error("the code is damaged or incomplete")]
    Damaged,
}

/// The code of `payload` with `prefix`.
pub fn encode(prefix: &str, payload: &[u8]) -> String {
    let mut bytes = payload.to_vec();
    bytes.extend_from_slice(&blake3::hash(payload).as_bytes()[..4]);
    format!(
        "{prefix}{}",
        data_encoding::BASE32_NOPAD
            .encode(&bytes)
            .to_ascii_lowercase()
    )
}

/// The payload of a code with `prefix`, checksum checked; `max_chars` bounds the text
/// before anything is decoded.
pub fn decode(prefix: &str, text: &str, max_chars: usize) -> Result<Vec<u8>, TextCodeError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() > max_chars {
        return Err(TextCodeError::TooLong);
    }
    let lower = compact.to_ascii_lowercase();
    let body = lower.strip_prefix(prefix).ok_or(TextCodeError::OtherKind)?;
    let bytes = data_encoding::BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .map_err(|_| TextCodeError::Damaged)?;
    if bytes.len() < 4 {
        return Err(TextCodeError::Damaged);
    }
    let (payload, sum) = bytes.split_at(bytes.len() - 4);
    if &blake3::hash(payload).as_bytes()[..4] != sum {
        return Err(TextCodeError::Damaged);
    }
    Ok(payload.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_payload_comes_back_whatever_the_case_and_spacing(payload in prop::collection::vec(any::<u8>(), 0..200), every in 1usize..9) {
            let code = encode("test1", &payload);
            let spaced: String = code
                .to_ascii_uppercase()
                .chars()
                .enumerate()
                .flat_map(|(i, c)| if i % every == 0 { vec![' ', c] } else { vec![c] })
                .collect();
            prop_assert_eq!(decode("test1", &spaced, 10_000), Ok(payload));
        }

        #[test]
        fn one_changed_character_is_caught(payload in prop::collection::vec(any::<u8>(), 1..100), at in any::<prop::sample::Index>()) {
            let code = encode("test1", &payload);
            let mut chars: Vec<char> = code.chars().collect();
            let i = "test1".len() + at.index(chars.len() - "test1".len());
            chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
            let changed: String = chars.into_iter().collect();
            prop_assert!(decode("test1", &changed, 10_000).is_err());
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = decode("test1", &s, 1000);
            let _ = decode("test1", &format!("test1{s}"), 1000);
        }
    }
}
