//! The French health-professional directory (RPPS, and ADELI for the professions still
//! registered there), read from its public extract, and a member's signed profile checked
//! against it.
//!
//! The extract is the "PS_LibreAcces" personne-activité file: pipe-separated, a header line
//! naming the columns, one line per activity (a professional with two practices has two
//! lines). Only five columns matter here, found by their header: the kind of identifier
//! (`8` RPPS, `0` ADELI), the identifier, the name and first name of practice, and the
//! profession's code and label. The file is read as a stream (a whole extract holds
//! millions of lines) with the `csv` crate; a line that does not hold a valid professional
//! is skipped and counted, never the whole file refused for it.
//!
//! A member is **verified** when the RPPS (or ADELI) number of the profile their member key
//! signed is in the imported directory under the same name and profession; **declared**
//! when the profile names no number or one the directory does not hold; **contradicted**
//! when the directory gives that number to someone else, or another profession.

use std::collections::BTreeSet;
use std::io::Read;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

use crate::identity::{Profile, check_adeli, check_rpps};

/// The longest line of an extract taken, in bytes (real lines are under 1 KiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// The most professionals one import request carries (the CLI sends an extract in parts).
pub const MAX_PER_IMPORT: usize = 5_000;
/// The most professionals a search returns.
pub const MAX_FOUND: usize = 50;

/// Why an extract could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    #[error("cannot read the directory extract: {0}")]
    Read(String),
    #[error(
        "this is not a directory extract (PS_LibreAcces personne-activité): its first line has no column \"{0}\""
    )]
    NotAnExtract(&'static str),
}

/// The register a professional's number comes from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Register {
    /// The RPPS: 11 digits.
    Rpps,
    /// ADELI: 9 digits.
    Adeli,
}

/// One professional of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Professional {
    pub register: Register,
    /// The RPPS or ADELI number.
    pub number: String,
    /// Name of practice, as the directory writes it (capitals).
    pub last_name: String,
    pub first_name: String,
    /// The profession's code (`10` médecin, `60` infirmier…) and label.
    pub profession_code: String,
    pub profession: String,
}

impl Register {
    /// "RPPS" or "ADELI", as people write it.
    pub fn label(self) -> &'static str {
        match self {
            Register::Rpps => "RPPS",
            Register::Adeli => "ADELI",
        }
    }
}

impl Professional {
    /// Whether it is one the directory could hold: a valid number of its register (Luhn
    /// for RPPS), a last name and a profession. What an extract's line must give, and what
    /// an import request is refused without.
    pub fn is_valid(&self) -> bool {
        let number = match self.register {
            Register::Rpps => check_rpps(&self.number).is_ok(),
            Register::Adeli => check_adeli(&self.number).is_ok(),
        };
        number && !words(&self.last_name).is_empty() && !self.profession.is_empty()
    }

    /// The key it is stored under: the register and the number.
    pub fn key(register: Register, number: &str) -> Vec<u8> {
        let mut k = vec![
            b'i',
            match register {
                Register::Rpps => b'r',
                Register::Adeli => b'a',
            },
        ];
        k.extend_from_slice(number.as_bytes());
        k
    }

    /// The key of its entry in the index by name: the folded last name, then the number.
    pub fn name_key(&self) -> Vec<u8> {
        let mut k = name_prefix(&self.last_name);
        k.push(0);
        k.extend_from_slice(&Professional::key(self.register, &self.number));
        k
    }

    /// "Claire MARTIN, Médecin".
    pub fn display(&self) -> String {
        format!(
            "{} {}, {}",
            self.first_name, self.last_name, self.profession
        )
    }
}

/// The start of the name-index keys of every last name beginning with `text`.
pub fn name_prefix(text: &str) -> Vec<u8> {
    let mut k = b"n".to_vec();
    k.extend_from_slice(words(text).join(" ").as_bytes());
    k
}

/// The columns used, by position in the extract's header.
#[derive(Debug, Clone, Copy)]
struct Columns {
    register: usize,
    number: usize,
    last_name: usize,
    first_name: usize,
    profession_code: usize,
    profession: usize,
}

impl Columns {
    fn find(header: &csv::ByteRecord) -> Result<Columns, DirectoryError> {
        let names: Vec<String> = header.iter().map(field).collect();
        let at = |name: &'static str| {
            names
                .iter()
                .position(|n| n.trim() == name)
                .ok_or(DirectoryError::NotAnExtract(name))
        };
        Ok(Columns {
            register: at("Type d'identifiant PP")?,
            number: at("Identifiant PP")?,
            last_name: at("Nom d'exercice")?,
            first_name: at("Prénom d'exercice")?,
            profession_code: at("Code profession")?,
            profession: at("Libellé profession")?,
        })
    }
}

/// A field's text: UTF-8 as the current extracts are, Latin-1 as older ones were.
fn field(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// What reading an extract gave.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExtractCount {
    /// Lines read after the header.
    pub lines: u64,
    /// Lines that held no valid professional (a number that is not one, no name…).
    pub skipped: u64,
}

/// The professionals of an extract, read line by line: each distinct professional once
/// when the extract lists their activities one after the other, as it does.
pub struct Extract<R: Read> {
    records: csv::ByteRecordsIntoIter<R>,
    columns: Columns,
    last: Option<(Register, String)>,
    pub count: ExtractCount,
}

impl<R: Read> std::fmt::Debug for Extract<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extract")
            .field("count", &self.count)
            .finish()
    }
}

impl<R: Read> Extract<R> {
    /// Reads the header of an extract.
    pub fn open(input: R) -> Result<Extract<R>, DirectoryError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b'|')
            .quoting(false)
            .flexible(true)
            .has_headers(true)
            .from_reader(input);
        let header = reader
            .byte_headers()
            .map_err(|e| DirectoryError::Read(e.to_string()))?
            .clone();
        let columns = Columns::find(&header)?;
        Ok(Extract {
            records: reader.into_byte_records(),
            columns,
            last: None,
            count: ExtractCount::default(),
        })
    }

    /// The professional on a line, if it holds a valid one.
    fn professional(&self, record: &csv::ByteRecord) -> Option<Professional> {
        if record.as_slice().len() > MAX_LINE_BYTES {
            return None;
        }
        let c = &self.columns;
        let get = |i: usize| record.get(i).map(field).map(|s| s.trim().to_string());
        let register = match get(c.register)?.as_str() {
            "8" => Register::Rpps,
            "0" => Register::Adeli,
            _ => return None,
        };
        let p = Professional {
            register,
            number: get(c.number)?,
            last_name: get(c.last_name)?,
            first_name: get(c.first_name).unwrap_or_default(),
            profession_code: get(c.profession_code).unwrap_or_default(),
            profession: get(c.profession)?,
        };
        p.is_valid().then_some(p)
    }
}

impl<R: Read> Iterator for Extract<R> {
    type Item = Result<Professional, DirectoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let record = match self.records.next()? {
                Ok(r) => r,
                Err(e) => {
                    // A line the csv reader cannot take (not a read error): skipped.
                    if e.is_io_error() {
                        return Some(Err(DirectoryError::Read(e.to_string())));
                    }
                    self.count.lines += 1;
                    self.count.skipped += 1;
                    continue;
                }
            };
            self.count.lines += 1;
            let Some(p) = self.professional(&record) else {
                self.count.skipped += 1;
                continue;
            };
            let id = (p.register, p.number.clone());
            if self.last.as_ref() == Some(&id) {
                continue;
            }
            self.last = Some(id);
            return Some(Ok(p));
        }
    }
}

/// How a member's profile stands against the directory held here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Standing {
    /// The number is in the directory with the profile's name and profession.
    Verified,
    /// The profile names no number, or one the directory does not hold (or none is imported).
    #[default]
    Declared,
    /// The directory gives the profile's number to this professional, who is not the one
    /// the profile describes.
    Contradicted { directory: String },
}

/// The numbers a profile claims, RPPS first.
pub fn claimed(profile: &Profile) -> Vec<(Register, String)> {
    let rpps = profile.rpps.clone().map(|n| (Register::Rpps, n));
    let adeli = profile.adeli.clone().map(|n| (Register::Adeli, n));
    rpps.into_iter().chain(adeli).collect()
}

/// How `profile` stands, given what the directory holds under each number it claims
/// (`found`, in the order of [`claimed`]; `None` where the directory has no such number).
pub fn standing(profile: &Profile, found: &[Option<Professional>]) -> Standing {
    let mut standing = Standing::Declared;
    for p in found.iter().flatten() {
        if describes(p, profile) {
            return Standing::Verified;
        }
        standing = Standing::Contradicted {
            directory: p.display(),
        };
    }
    standing
}

/// Titles a name may carry that the directory does not write.
const TITLES: [&str; 10] = [
    "dr",
    "docteur",
    "pr",
    "professeur",
    "m",
    "mme",
    "mlle",
    "monsieur",
    "madame",
    "mr",
];

/// Whether the directory's `p` is the professional `profile` describes: the same words of
/// name (titles aside, accents and case folded, in any order) and a profession that
/// names the directory's (the label's words of five letters or more, by their first six
/// letters: "infirmière" for "Infirmier", "kinésithérapeute" for "Masseur-Kinésithérapeute").
pub fn describes(p: &Professional, profile: &Profile) -> bool {
    let theirs: BTreeSet<String> = words(&p.last_name)
        .into_iter()
        .chain(words(&p.first_name))
        .collect();
    let ours: BTreeSet<String> = words(&profile.name)
        .into_iter()
        .filter(|w| !TITLES.contains(&w.as_str()))
        .collect();
    if theirs.is_empty() || theirs != ours {
        return false;
    }
    let said = words(&profile.profession);
    words(&p.profession)
        .iter()
        .filter(|w| w.chars().count() >= 5)
        .map(|w| w.chars().take(6).collect::<String>())
        .any(|stem| said.iter().any(|s| s.starts_with(&stem)))
}

/// A text's words, folded: accents removed, lower case, split at anything not a letter or
/// a digit ("Marie-Hélène O'Neil" → marie, helene, o, neil).
pub fn words(text: &str) -> Vec<String> {
    let folded: String = text
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    folded.split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "Type d'identifiant PP|Identifiant PP|Identification nationale PP|Code civilité d'exercice|Libellé civilité d'exercice|Code civilité|Libellé civilité|Nom d'exercice|Prénom d'exercice|Code profession|Libellé profession|Code catégorie professionnelle|Libellé catégorie professionnelle|Code type savoir-faire|Libellé type savoir-faire|Code savoir-faire|Libellé savoir-faire|Code mode exercice|Libellé mode exercice|Numéro SIRET site|";

    fn line(
        register: &str,
        number: &str,
        last: &str,
        first: &str,
        code: &str,
        label: &str,
    ) -> String {
        let national = format!("{register}{number}");
        format!(
            "{register}|{number}|{national}|DR|Docteur|M|Monsieur|{last}|{first}|{code}|{label}|C|Civil|S|Spécialité ordinale|SM54|Médecine générale|L|Libéral||"
        )
    }

    fn read(text: &str) -> (Vec<Professional>, ExtractCount) {
        let mut extract = Extract::open(text.as_bytes()).unwrap();
        let found: Vec<Professional> = extract.by_ref().map(Result::unwrap).collect();
        (found, extract.count)
    }

    fn profile(name: &str, profession: &str, rpps: Option<&str>) -> Profile {
        Profile::new(name, profession, rpps, None).unwrap()
    }

    #[test]
    fn an_extract_in_the_real_format_gives_each_professional_once() {
        let text = [
            HEADER.to_string(),
            line("8", "10003456786", "MARTIN", "CLAIRE", "10", "Médecin"),
            line("8", "10003456786", "MARTIN", "CLAIRE", "10", "Médecin"),
            line(
                "0",
                "759124159",
                "DE RUIJTER",
                "ISABELLE",
                "91",
                "Orthophoniste",
            ),
            line("8", "12345", "BROKEN", "NUMBER", "60", "Infirmier"),
            line("8", "10001045367", "", "NO NAME", "60", "Infirmier"),
            "8|10001045367".to_string(),
        ]
        .join("\n");
        let (found, count) = read(&text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].number, "10003456786");
        assert_eq!(found[0].register, Register::Rpps);
        assert_eq!(found[0].profession, "Médecin");
        assert_eq!(found[1].register, Register::Adeli);
        assert_eq!(found[1].last_name, "DE RUIJTER");
        assert_eq!(count.lines, 6);
        assert_eq!(count.skipped, 3, "a bad number, no name, a short line");
    }

    #[test]
    fn a_file_that_is_not_an_extract_is_refused_with_the_column_it_lacks() {
        let err =
            Extract::open("nom;prenom;rpps\nMARTIN;CLAIRE;10003456786\n".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("Type d'identifiant PP"), "{err}");
    }

    #[test]
    fn latin1_extracts_are_read_too() {
        let text = format!(
            "{HEADER}\n{}",
            line("8", "10003456786", "MARTIN", "CLAIRE", "10", "Médecin")
        );
        let latin1: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
        let mut extract = Extract::open(&latin1[..]).unwrap();
        let p = extract.next().unwrap().unwrap();
        assert_eq!(p.profession, "Médecin");
    }

    #[test]
    fn a_profile_is_verified_declared_or_contradicted() {
        let claire = Professional {
            register: Register::Rpps,
            number: "10003456786".into(),
            last_name: "MARTIN".into(),
            first_name: "CLAIRE".into(),
            profession_code: "10".into(),
            profession: "Médecin".into(),
        };
        let nurse = Professional {
            last_name: "LEFÈVRE-DUPONT".into(),
            first_name: "MARIE-HÉLÈNE".into(),
            profession_code: "60".into(),
            profession: "Infirmier".into(),
            ..claire.clone()
        };
        let gp = profile(
            "Dr Claire Martin",
            "médecin généraliste",
            Some("10003456786"),
        );
        assert_eq!(standing(&gp, &[Some(claire.clone())]), Standing::Verified);
        assert_eq!(standing(&gp, &[None]), Standing::Declared);
        let usurper = profile("Dr Paul Martin", "médecin généraliste", Some("10003456786"));
        assert_eq!(
            standing(&usurper, &[Some(claire.clone())]),
            Standing::Contradicted {
                directory: "CLAIRE MARTIN, Médecin".into()
            }
        );
        let wrong_job = profile("Claire Martin", "kinésithérapeute", Some("10003456786"));
        assert!(!describes(&claire, &wrong_job));
        let her = profile(
            "Marie Hélène Lefevre Dupont",
            "infirmière",
            Some("10003456786"),
        );
        assert!(
            describes(&nurse, &her),
            "accents, hyphens, case and gender folded"
        );
        let carer = Profile::new("Jeanne Petit", "aidante", None, None).unwrap();
        assert!(claimed(&carer).is_empty());
        assert_eq!(standing(&carer, &[]), Standing::Declared);
    }

    #[test]
    fn names_are_indexed_folded() {
        assert_eq!(name_prefix("Lefèvre-Dupont"), b"nlefevre dupont".to_vec());
        assert_eq!(words("  Dr  O'Neil "), vec!["dr", "o", "neil"]);
    }

    proptest! {
        /// Whatever a file holds, reading it gives professionals with valid numbers or a
        /// clear error, never a panic.
        #[test]
        fn reading_any_bytes_after_a_header_never_panics(
            body in prop::collection::vec(any::<u8>(), 0..2000),
            lines in prop::collection::vec(("[08]", "[0-9]{9,11}", "[A-Z ]{0,12}", "[a-z|]{0,12}"), 0..8),
        ) {
            let mut text = format!("{HEADER}\n").into_bytes();
            for (r, n, last, first) in lines {
                text.extend(line(&r, &n, &last, &first, "60", "Infirmier").bytes());
                text.push(b'\n');
            }
            text.extend(body);
            let mut extract = Extract::open(&text[..]).unwrap();
            for p in extract.by_ref() {
                let p = p.unwrap();
                match p.register {
                    Register::Rpps => prop_assert!(check_rpps(&p.number).is_ok()),
                    Register::Adeli => prop_assert!(check_adeli(&p.number).is_ok()),
                }
                prop_assert!(!words(&p.last_name).is_empty());
            }
        }

        /// The standing only depends on the name's words, not their case, accents or order.
        #[test]
        fn a_name_matches_whatever_its_case_and_order(swap in any::<bool>(), upper in any::<bool>()) {
            let p = Professional {
                register: Register::Rpps,
                number: "10003456786".into(),
                last_name: "LEFÈVRE".into(),
                first_name: "HÉLÈNE".into(),
                profession_code: "60".into(),
                profession: "Infirmier".into(),
            };
            let mut name = if swap { "Lefèvre Hélène" } else { "Hélène Lefèvre" }.to_string();
            if upper {
                name = name.to_uppercase();
            }
            prop_assert!(describes(&p, &profile(&name, "infirmière", Some("10003456786"))));
        }
    }
}
