//! The schema of the care documents, written as data.
//!
//! Each document kind declares its root fields, the records and collections below them and
//! what every scalar may hold. The typed APIs write only what is declared here, and
//! [`crate::validation`] checks every operation of a received change against the same
//! declaration, so "outside the schema" has one definition.

use automerge::ScalarValue;

use crate::member::{MemberId, Role};

/// The largest text a single field may hold, in bytes (a long handover note fits easily).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// The largest short label (a name, a title, a dose), in bytes.
pub const MAX_LABEL_BYTES: usize = 512;

/// The shape of one object or value in a document.
#[derive(Debug)]
pub(crate) enum Shape {
    /// A map with a fixed set of named fields.
    Record(&'static [Field]),
    /// A map from item ids to items of this shape (a `Record`).
    Collection(&'static Shape),
    /// A list of scalars.
    List(Scalar),
    /// One scalar value.
    Scalar(Scalar),
}

/// A named field of a record.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) shape: Shape,
    /// Must be present in a new record, and may never be deleted.
    pub(crate) required: bool,
}

impl Field {
    pub(crate) const fn required(name: &'static str, shape: Shape) -> Self {
        Self {
            name,
            shape,
            required: true,
        }
    }

    pub(crate) const fn optional(name: &'static str, shape: Shape) -> Self {
        Self {
            name,
            shape,
            required: false,
        }
    }
}

/// Which roles may write below a root field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writers {
    /// Coordinators and professionals.
    Clinical,
    /// Every role that writes at all (not observers).
    Members,
}

impl Writers {
    pub(crate) fn admit(self, role: Role) -> bool {
        match self {
            Writers::Clinical => role.writes_clinical(),
            Writers::Members => role.writes_anything(),
        }
    }
}

/// A field directly under the document root, created by the genesis change.
#[derive(Debug)]
pub(crate) struct Root {
    pub(crate) name: &'static str,
    pub(crate) shape: Shape,
    pub(crate) writers: Writers,
}

/// The whole schema of one document kind.
#[derive(Debug)]
pub(crate) struct DocSchema {
    pub(crate) roots: &'static [Root],
    /// Append-only documents never overwrite or delete anything: only new items are added.
    pub(crate) append_only: bool,
}

impl DocSchema {
    pub(crate) fn root(&self, name: &str) -> Option<&'static Root> {
        self.roots.iter().find(|r| r.name == name)
    }
}

/// What a scalar value may be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar {
    /// A UTF-8 string of at most `max` bytes; `non_empty` forbids blank strings.
    Text { max: usize, non_empty: bool },
    /// An Automerge timestamp (milliseconds since the Unix epoch).
    Timestamp,
    /// A calendar date `YYYY-MM-DD`.
    Date,
    /// An integer in a range.
    Int { min: i64, max: i64 },
    /// A number (integer or float) in a range.
    Real { min: f64, max: f64 },
    /// One of a fixed set of strings.
    OneOf(&'static [&'static str]),
    /// Any member id.
    Member,
    /// A member id that must be the author of the change writing it: a note's author, an
    /// acknowledgement's acknowledger. This is how "only by its author" is enforced.
    Author,
    /// The id of an item in the named collection of the same document.
    Ref(&'static str),
    /// A BLAKE3 content hash, 64 hex digits.
    Hash,
    /// A French national health identifier (INS/NIR): 13 characters and a 2-digit key.
    Ins,
}

/// Why a value is refused, in terms each language words its own way (the web UI in the
/// page's language, the CLI and logs through `Display`, in English).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    thiserror::Error,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    #[error("must not be empty")]
    Empty,
    #[error("{len} bytes, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("is required")]
    Required,
    #[error("is in the future")]
    InFuture,
    #[error("nothing to change")]
    NothingToChange,
    #[error("{name:?} is not a field of {list}")]
    UnknownField { name: String, list: String },
    #[error("{value:?} is not a number")]
    NotANumber { value: String },
    #[error("not a number in {min}..={max}")]
    OutOfRange { min: String, max: String },
    #[error("not one of {}", allowed.join(", "))]
    NotOneOf { allowed: Vec<String> },
    #[error("{why}")]
    BadDate { why: String },
    #[error("{why}")]
    BadIns { why: String },
    #[error("names {claimed}, not the author")]
    NotTheAuthor { claimed: String },
    /// Anything else, in English.
    #[error("{why}")]
    Other { why: String },
}

/// Why a scalar does not fit its declaration. The field name is added by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScalarFault {
    /// An author field names someone else than the change's author.
    NotTheAuthor { claimed: String },
    /// Any other misfit.
    Invalid(Fault),
}

pub(crate) fn check_scalar(
    scalar: Scalar,
    value: &ScalarValue,
    author: &MemberId,
) -> Result<(), ScalarFault> {
    let res: Result<(), Fault> = match (scalar, value) {
        (Scalar::Text { max, non_empty }, ScalarValue::Str(s)) => {
            if s.len() > max {
                Err(Fault::TooLong { len: s.len(), max })
            } else if non_empty && s.trim().is_empty() {
                Err(Fault::Empty)
            } else {
                Ok(())
            }
        }
        (Scalar::Timestamp, ScalarValue::Timestamp(_)) => Ok(()),
        (Scalar::Date, ScalarValue::Str(s)) => parse_date(s)
            .map(|_| ())
            .map_err(|why| Fault::BadDate { why }),
        (Scalar::Int { min, max }, ScalarValue::Int(i)) if (min..=max).contains(i) => Ok(()),
        (Scalar::Int { min, max }, ScalarValue::Uint(u))
            if i64::try_from(*u).is_ok_and(|i| (min..=max).contains(&i)) =>
        {
            Ok(())
        }
        (Scalar::Int { min, max }, _) => Err(Fault::OutOfRange {
            min: min.to_string(),
            max: max.to_string(),
        }),
        (Scalar::Real { min, max }, ScalarValue::F64(f))
            if f.is_finite() && *f >= min && *f <= max =>
        {
            Ok(())
        }
        (Scalar::Real { min, max }, ScalarValue::Int(i))
            if (*i as f64) >= min && (*i as f64) <= max =>
        {
            Ok(())
        }
        (Scalar::Real { min, max }, _) => Err(Fault::OutOfRange {
            min: min.to_string(),
            max: max.to_string(),
        }),
        (Scalar::OneOf(allowed), ScalarValue::Str(s)) if allowed.contains(&s.as_str()) => Ok(()),
        (Scalar::OneOf(allowed), _) => Err(Fault::NotOneOf {
            allowed: allowed.iter().map(|a| a.to_string()).collect(),
        }),
        (Scalar::Member, ScalarValue::Str(s)) => s
            .parse::<MemberId>()
            .map(|_| ())
            .map_err(|e| Fault::Other { why: e.to_string() }),
        (Scalar::Author, ScalarValue::Str(s)) => match s.parse::<MemberId>() {
            Ok(m) if m == *author => Ok(()),
            Ok(m) => {
                return Err(ScalarFault::NotTheAuthor {
                    claimed: m.to_hex(),
                });
            }
            Err(e) => Err(Fault::Other { why: e.to_string() }),
        },
        (Scalar::Ref(_), ScalarValue::Str(s)) if is_item_id(s) => Ok(()),
        (Scalar::Hash, ScalarValue::Str(s))
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(())
        }
        (Scalar::Ins, ScalarValue::Str(s)) => check_ins(s).map_err(|why| Fault::BadIns { why }),
        (expected, got) => Err(Fault::Other {
            why: format!("expected {}, got {}", describe(expected), kind_of(got)),
        }),
    };
    res.map_err(ScalarFault::Invalid)
}

/// The rule a value of `s` must follow, in words, with no value in it.
pub(crate) fn rule_of(s: Scalar) -> String {
    match s {
        Scalar::Text {
            max,
            non_empty: true,
        } => format!("a non-empty text of at most {max} bytes"),
        Scalar::Text { max, .. } => format!("a text of at most {max} bytes"),
        Scalar::Int { min, max } => format!("an integer in {min}..={max}"),
        Scalar::Real { min, max } => format!("a number in {min}..={max}"),
        Scalar::OneOf(allowed) => format!("one of {}", allowed.join(", ")),
        Scalar::Date => "a date YYYY-MM-DD between 1900 and 2200".into(),
        Scalar::Ins => "a valid INS number (15 digits and key)".into(),
        other => describe(other).into(),
    }
}

fn describe(s: Scalar) -> &'static str {
    match s {
        Scalar::Text { .. } => "a string",
        Scalar::Timestamp => "a timestamp",
        Scalar::Date => "a date YYYY-MM-DD",
        Scalar::Int { .. } => "an integer",
        Scalar::Real { .. } => "a number",
        Scalar::OneOf(_) => "a known value",
        Scalar::Member | Scalar::Author => "a member id",
        Scalar::Ref(_) => "an item id",
        Scalar::Hash => "a content hash",
        Scalar::Ins => "an INS number",
    }
}

fn kind_of(v: &ScalarValue) -> &'static str {
    match v {
        ScalarValue::Bytes(_) => "bytes",
        ScalarValue::Str(_) => "a string",
        ScalarValue::Int(_) | ScalarValue::Uint(_) => "an integer",
        ScalarValue::F64(_) => "a float",
        ScalarValue::Counter(_) => "a counter",
        ScalarValue::Timestamp(_) => "a timestamp",
        ScalarValue::Boolean(_) => "a boolean",
        ScalarValue::Unknown { .. } => "an unknown value type",
        ScalarValue::Null => "null",
    }
}

/// Item ids are 24 lowercase hex digits (see [`crate::document::item_id`]).
pub(crate) fn is_item_id(s: &str) -> bool {
    s.len() == crate::document::ITEM_ID_HEX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a calendar date `YYYY-MM-DD` between 1900-01-01 and 2200-12-31.
pub fn parse_date(s: &str) -> Result<jiff::civil::Date, String> {
    // jiff accepts a few other ISO 8601 forms; the documents keep exactly one.
    let shape_ok = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shape_ok {
        return Err(format!("{s:?} is not a date of the form YYYY-MM-DD"));
    }
    let date: jiff::civil::Date = s
        .parse()
        .map_err(|_| format!("{s:?} is not a valid calendar date"))?;
    if date.year() < 1900 || date.year() > 2200 {
        return Err(format!("{s:?} is outside 1900..2200"));
    }
    Ok(date)
}

/// Checks a French INS (NIR) number: 13 characters (digits, or 2A/2B for Corsica in the
/// department position) followed by a 2-digit key equal to 97 - (number mod 97).
pub fn check_ins(s: &str) -> Result<(), String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() != 15 || !compact.is_ascii() {
        return Err("an INS number has 13 characters and a 2-digit key".into());
    }
    let (body, key) = compact.split_at(13);
    let dept = &body[5..7];
    let numeric_body = match dept {
        "2A" | "2a" => format!("{}19{}", &body[..5], &body[7..]),
        "2B" | "2b" => format!("{}18{}", &body[..5], &body[7..]),
        _ => body.to_string(),
    };
    if !numeric_body.bytes().all(|b| b.is_ascii_digit()) || !key.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("an INS number holds only digits (and 2A/2B for Corsica)".into());
    }
    if !matches!(&body[..1], "1" | "2" | "3" | "4" | "7" | "8") {
        return Err("an INS number starts with 1, 2, 3, 4, 7 or 8".into());
    }
    let n: u64 = numeric_body
        .parse()
        .map_err(|_| "an INS number holds only digits".to_string())?;
    let k: u64 = key
        .parse()
        .map_err(|_| "the INS key is two digits".to_string())?;
    if 97 - (n % 97) != k {
        return Err("the INS key does not match the number (check for a typo)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ins_check_key_is_verified() {
        // 1 84 12 76 451 089, key 97 - (1841276451089 mod 97) = 46.
        assert_eq!(check_ins("184127645108946"), Ok(()));
        assert!(check_ins("184127645108947").is_err());
        assert!(check_ins("18412764510894").is_err());
        // Corsica: 2A counts as 19 for the key.
        let n: u64 = "2690319123456".parse().unwrap_or_default();
        let key = 97 - n % 97;
        assert_eq!(check_ins(&format!("26903{}123456{key:02}", "2A")), Ok(()));
    }

    #[test]
    fn dates_are_strict_iso_calendar_dates() {
        assert!(parse_date("1948-02-29").is_ok());
        assert!(parse_date("1947-02-29").is_err());
        assert!(parse_date("12/03/1950").is_err());
        assert!(parse_date("1850-01-01").is_err());
        assert!(parse_date("19480229").is_err());
    }

    #[test]
    fn author_fields_must_name_the_changes_author() {
        let me = MemberId::from_bytes([1; 32]);
        let other = MemberId::from_bytes([2; 32]);
        let v = ScalarValue::Str(me.to_hex().into());
        assert!(check_scalar(Scalar::Author, &v, &me).is_ok());
        assert!(check_scalar(Scalar::Author, &v, &other).is_err());
        assert!(check_scalar(Scalar::Member, &v, &other).is_ok());
    }
}
