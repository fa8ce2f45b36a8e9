//! The health-professional directory held by this node: importing professionals from its
//! public extract (the CLI reads the file and sends it in parts), searching it by name or
//! number to invite a colleague, and how each member's signed profile stands against it.

use serde::{Deserialize, Serialize};

use super::{NodeError, Operation};
use crate::directory::{self, MAX_FOUND, MAX_PER_IMPORT, Professional, Register, Standing, words};
use crate::identity::Profile;
use crate::node::NodeCore;
use crate::store::{Batch, Store};

/// Adds professionals to the directory (a part of an extract: at most
/// [`MAX_PER_IMPORT`]); one already held is replaced.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DirectoryImport {
    pub professionals: Vec<Professional>,
}

/// How many professionals an import added or replaced.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Imported {
    pub professionals: usize,
}

impl Operation for DirectoryImport {
    type Answer = Imported;

    fn run(self, core: &mut NodeCore) -> Result<Imported, NodeError> {
        if self.professionals.len() > MAX_PER_IMPORT {
            return Err(NodeError::bad_input(format!(
                "send the directory in parts of at most {MAX_PER_IMPORT} professionals"
            )));
        }
        let mut batch = Batch::new();
        for p in &self.professionals {
            if !p.is_valid() {
                return Err(NodeError::bad_input(format!(
                    "\"{}\" is not a professional of the directory (a number, a name and a profession)",
                    p.number.chars().take(20).collect::<String>()
                )));
            }
            batch.professional(p);
        }
        if !batch.is_empty() {
            core.write_batch(batch, Default::default());
        }
        Ok(Imported {
            professionals: self.professionals.len(),
        })
    }
}

/// Finds professionals of the directory by RPPS or ADELI number, or by name (the last
/// name's start, then first names), to invite one.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DirectorySearch {
    pub query: String,
}

/// Professionals found, at most [`MAX_FOUND`].
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Found {
    pub professionals: Vec<Professional>,
}

impl Operation for DirectorySearch {
    type Answer = Found;

    fn run(self, core: &mut NodeCore) -> Result<Found, NodeError> {
        let professionals = search(core.circles.store.as_ref(), &self.query)?;
        Ok(Found { professionals })
    }
}

/// The search of [`DirectorySearch`].
pub(crate) fn search(store: &dyn Store, query: &str) -> Result<Vec<Professional>, NodeError> {
    let query = query.trim();
    let asked = words(query);
    if asked.is_empty() {
        return Err(NodeError::bad_input(
            "give a name or an RPPS or ADELI number to search the directory for",
        ));
    }
    if query.bytes().all(|b| b.is_ascii_digit()) {
        let mut found = Vec::new();
        for register in [Register::Rpps, Register::Adeli] {
            found.extend(store.professional(register, query)?);
        }
        return Ok(found);
    }
    // The whole text as the start of a last name ("de ruij"), else each word as a last
    // name with the others among the first names ("claire martin").
    let mut found = store.professionals_named(query, MAX_FOUND)?;
    if found.is_empty() && asked.len() > 1 {
        for word in &asked {
            for p in store.professionals_named(word, MAX_FOUND * 20)? {
                let theirs: Vec<String> = words(&p.last_name)
                    .into_iter()
                    .chain(words(&p.first_name))
                    .collect();
                let all = asked
                    .iter()
                    .all(|a| theirs.iter().any(|t| t.starts_with(a.as_str())));
                if all && !found.contains(&p) {
                    found.push(p);
                }
            }
            if found.len() >= MAX_FOUND {
                break;
            }
        }
        found.truncate(MAX_FOUND);
    }
    Ok(found)
}

/// How `profile` stands against the directory held in `store` (declared if it cannot be
/// read: the directory only ever adds a mark).
pub(crate) fn standing(store: &dyn Store, profile: &Profile) -> Standing {
    let found: Vec<Option<Professional>> = directory::claimed(profile)
        .into_iter()
        .map(|(register, number)| {
            store.professional(register, &number).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading the directory");
                None
            })
        })
        .collect();
    directory::standing(profile, &found)
}
