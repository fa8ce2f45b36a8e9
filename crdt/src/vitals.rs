//! Vital signs as people type them (a form's fields, a command's flags): each sign with its
//! field name, unit and example, parsed into [`Vitals`] with a comma or a point as the
//! decimal mark, and checked against the notebook schema's ranges so a typing mistake gets
//! its own answer before anything is written. The same ranges are checked again on the
//! writer and on receipt.

use crate::notebook::{Vitals, vital_range};

/// One sign a vitals note may measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sign {
    BloodPressure,
    HeartRate,
    Temperature,
    Spo2,
    RespiratoryRate,
    Weight,
    Glucose,
    Pain,
}

impl Sign {
    /// In the order a nurse reads them out.
    pub const ALL: [Sign; 8] = [
        Sign::BloodPressure,
        Sign::HeartRate,
        Sign::Temperature,
        Sign::Spo2,
        Sign::RespiratoryRate,
        Sign::Weight,
        Sign::Glucose,
        Sign::Pain,
    ];

    /// The form field's name and the command-line flag (`--bp`).
    pub fn key(self) -> &'static str {
        match self {
            Sign::BloodPressure => "bp",
            Sign::HeartRate => "hr",
            Sign::Temperature => "temp",
            Sign::Spo2 => "spo2",
            Sign::RespiratoryRate => "rr",
            Sign::Weight => "weight",
            Sign::Glucose => "glucose",
            Sign::Pain => "pain",
        }
    }

    /// The unit values are typed and shown in.
    pub fn unit(self) -> &'static str {
        match self {
            Sign::BloodPressure => "mmHg",
            Sign::HeartRate | Sign::RespiratoryRate => "/min",
            Sign::Temperature => "°C",
            Sign::Spo2 => "%",
            Sign::Weight => "kg",
            Sign::Glucose => "g/L",
            Sign::Pain => "/10",
        }
    }

    /// A value as it would be typed.
    pub fn example(self) -> &'static str {
        match self {
            Sign::BloodPressure => "132/78",
            Sign::HeartRate => "84",
            Sign::Temperature => "37,2",
            Sign::Spo2 => "96",
            Sign::RespiratoryRate => "16",
            Sign::Weight => "61,4",
            Sign::Glucose => "1,05",
            Sign::Pain => "3",
        }
    }

    /// Decimal places the sign is written with.
    pub fn places(self) -> usize {
        match self {
            Sign::Temperature | Sign::Weight => 1,
            Sign::Glucose => 2,
            _ => 0,
        }
    }

    /// The schema fields the sign is stored in (blood pressure: two).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Sign::BloodPressure => &["systolic", "diastolic"],
            Sign::HeartRate => &["heart_rate"],
            Sign::Temperature => &["temperature_c"],
            Sign::Spo2 => &["spo2"],
            Sign::RespiratoryRate => &["respiratory_rate"],
            Sign::Weight => &["weight_kg"],
            Sign::Glucose => &["glycaemia_g_l"],
            Sign::Pain => &["pain"],
        }
    }

    /// What a note measured of this sign (blood pressure: systolic then diastolic).
    pub fn values(self, v: &Vitals) -> Vec<f64> {
        let int = |x: Option<i64>| x.map(|x| x as f64);
        let values = match self {
            Sign::BloodPressure => vec![int(v.systolic), int(v.diastolic)],
            Sign::HeartRate => vec![int(v.heart_rate)],
            Sign::Temperature => vec![v.temperature_c],
            Sign::Spo2 => vec![int(v.spo2)],
            Sign::RespiratoryRate => vec![int(v.respiratory_rate)],
            Sign::Weight => vec![v.weight_kg],
            Sign::Glucose => vec![v.glycaemia_g_l],
            Sign::Pain => vec![int(v.pain)],
        };
        values.into_iter().flatten().collect()
    }
}

/// Why typed values were not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TypedVitalsError {
    #[error("{sign:?}: {got:?} is not a number of the form {}", sign.example())]
    NotANumber { sign: Sign, got: String },
    #[error("{sign:?}: {got} is outside {min}–{max} {}", sign.unit())]
    OutOfRange {
        sign: Sign,
        got: String,
        min: f64,
        max: f64,
    },
}

impl TypedVitalsError {
    pub fn sign(&self) -> Sign {
        match self {
            TypedVitalsError::NotANumber { sign, .. }
            | TypedVitalsError::OutOfRange { sign, .. } => *sign,
        }
    }
}

/// The values typed for each sign (`typed(sign)`, blank or missing for none) as
/// [`Vitals`], or `None` when no sign was typed.
pub fn parse_typed<'a>(
    typed: impl Fn(Sign) -> Option<&'a str>,
) -> Result<Option<Vitals>, TypedVitalsError> {
    let mut v = Vitals::default();
    for sign in Sign::ALL {
        let Some(text) = typed(sign).map(str::trim).filter(|t| !t.is_empty()) else {
            continue;
        };
        let not_a_number = || TypedVitalsError::NotANumber {
            sign,
            got: text.to_string(),
        };
        let parts: Vec<&str> = match sign {
            Sign::BloodPressure => {
                let (s, d) = text.split_once('/').ok_or_else(not_a_number)?;
                vec![s.trim(), d.trim()]
            }
            _ => vec![text],
        };
        let mut numbers = Vec::new();
        for (part, field) in parts.into_iter().zip(sign.fields()) {
            let x: f64 = part.replace(',', ".").parse().map_err(|_| not_a_number())?;
            let integer = sign.places() == 0;
            if !x.is_finite() || (integer && x.fract() != 0.0) {
                return Err(not_a_number());
            }
            if let Some((min, max)) = vital_range(field)
                && !(min..=max).contains(&x)
            {
                return Err(TypedVitalsError::OutOfRange {
                    sign,
                    got: part.to_string(),
                    min,
                    max,
                });
            }
            numbers.push(x);
        }
        let int = |i: usize| numbers.get(i).map(|x| *x as i64);
        let real = numbers.first().copied();
        match sign {
            Sign::BloodPressure => (v.systolic, v.diastolic) = (int(0), int(1)),
            Sign::HeartRate => v.heart_rate = int(0),
            Sign::Temperature => v.temperature_c = real,
            Sign::Spo2 => v.spo2 = int(0),
            Sign::RespiratoryRate => v.respiratory_rate = int(0),
            Sign::Weight => v.weight_kg = real,
            Sign::Glucose => v.glycaemia_g_l = real,
            Sign::Pain => v.pain = int(0),
        }
    }
    Ok((!v.is_empty()).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(pairs: &[(Sign, &str)]) -> Result<Option<Vitals>, TypedVitalsError> {
        parse_typed(|s| pairs.iter().find(|(k, _)| *k == s).map(|(_, v)| *v))
    }

    #[test]
    fn every_example_parses_and_a_comma_is_a_decimal_mark() {
        let typed: Vec<(Sign, &str)> = Sign::ALL.iter().map(|s| (*s, s.example())).collect();
        let v = parse(&typed).ok().flatten().unwrap_or_default();
        assert_eq!((v.systolic, v.diastolic), (Some(132), Some(78)));
        assert_eq!(v.temperature_c, Some(37.2));
        assert_eq!(v.glycaemia_g_l, Some(1.05));
        for sign in Sign::ALL {
            assert!(!sign.values(&v).is_empty(), "{sign:?}");
        }
    }

    #[test]
    fn blanks_are_no_value_and_mistakes_name_their_sign() {
        assert_eq!(parse(&[(Sign::HeartRate, "  ")]), Ok(None));
        let e = parse(&[(Sign::BloodPressure, "132-78")]).err();
        assert_eq!(e.map(|e| e.sign()), Some(Sign::BloodPressure));
        let e = parse(&[(Sign::HeartRate, "84.5")]).err();
        assert!(
            matches!(e, Some(TypedVitalsError::NotANumber { .. })),
            "{e:?}"
        );
        let e = parse(&[(Sign::HeartRate, "400")]).err();
        assert!(
            matches!(
                e,
                Some(TypedVitalsError::OutOfRange {
                    min: 10.0,
                    max: 300.0,
                    ..
                })
            ),
            "{e:?}"
        );
        let e = parse(&[(Sign::Temperature, "NaN")]).err();
        assert!(e.is_some());
    }

    proptest! {
        /// Whatever is typed, parsing answers (no panic), and what it takes the notebook
        /// takes: a value parsed is within the schema's range.
        #[test]
        fn whatever_is_typed_is_refused_or_in_range(typed in proptest::collection::vec("\\PC{0,12}", 8)) {
            let result = parse_typed(|s| {
                Sign::ALL.iter().position(|k| *k == s).and_then(|i| typed.get(i)).map(String::as_str)
            });
            if let Ok(Some(v)) = result {
                prop_assert!(crate::notebook::check_vitals(&v).is_ok(), "{v:?}");
            }
        }
    }
}
