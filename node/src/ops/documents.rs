//! Documents of the patient file (a prescription, a photo): added here and kept sealed in
//! the store, listed in the patient file, and fetched from connected members the first
//! time they are opened on another node (`node::core::blobs`).

use cercle_crdt::{ItemList, PatientFile};
use serde::{Deserialize, Serialize};

use super::{Added, NodeError, Operation, pick_id};
use crate::circle::Circle;
use crate::node::NodeCore;
use crate::store::{Batch, Store};

/// Largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;

/// Adds a document (a file) to the patient file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DocAdd {
    pub circle: String,
    pub name: String,
    pub media_type: String,
    /// The file's bytes, hex.
    pub content: String,
}

impl Operation for DocAdd {
    type Answer = Added;

    fn run(self, core: &mut NodeCore) -> Result<Added, NodeError> {
        let bytes = hex::decode(&self.content)
            .map_err(|_| NodeError::bad_input("the document's content is not hex"))?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(NodeError::bad_input(format!(
                "the document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted",
                bytes.len()
            )));
        }
        let circle = core.circles.find(&self.circle)?;
        let mut batch = Batch::new();
        let blob = hex::encode(batch.blob(&circle, &bytes));
        core.write_batch(batch, Default::default());
        let size = bytes.len().to_string();
        let fields = [
            ("name", self.name.as_str()),
            ("media_type", self.media_type.as_str()),
            ("size", size.as_str()),
            ("blob", blob.as_str()),
        ];
        let id = core.write::<PatientFile, _>(&self.circle, |pf, author, now| {
            pf.add_item(author, ItemList::Documents, &fields, now)
        })?;
        Ok(Added::one(core.circle(&self.circle)?, id))
    }
}

/// The patient file's documents.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DocList {
    pub circle: String,
}

/// Documents, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Documents {
    pub documents: Vec<DocumentRow>,
}

/// One document of the patient file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DocumentRow {
    pub id: String,
    pub name: String,
    pub media_type: String,
    pub size: u64,
    /// The content's BLAKE3 hash (hex).
    pub blob: String,
    /// Whether this node holds the content.
    pub here: bool,
    pub added_by: String,
    pub added_at: String,
}

impl Operation for DocList {
    type Answer = Documents;

    fn run(self, core: &mut NodeCore) -> Result<Documents, NodeError> {
        let store = core.circles.store.clone();
        Ok(Documents {
            documents: documents(core.circle(&self.circle)?, store.as_ref())?,
        })
    }
}

/// A document's bytes; fetched from connected members if not held here yet.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DocGet {
    pub circle: String,
    /// The document's id or a prefix of at least 4 characters.
    pub doc: String,
}

/// A document's bytes (hex), or `None` while it is being fetched.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Document {
    pub document: DocumentRow,
    pub content: Option<String>,
    /// Bytes received so far while fetching.
    pub received: u64,
}

impl Operation for DocGet {
    type Answer = Document;

    /// The document's row, and its content if this node holds it; otherwise its fetch from
    /// the connected members starts (or goes on), and the answer says how far it got.
    fn run(self, core: &mut NodeCore) -> Result<Document, NodeError> {
        let store = core.circles.store.clone();
        let c = core.circle(&self.circle)?;
        let circle = c.id();
        let rows = documents(c, store.as_ref())?;
        let picked = pick_id("document", &self.doc, rows.iter().map(|d| d.id.clone()))?;
        let Some(document) = rows.into_iter().find(|d| d.id == picked) else {
            return Err(NodeError::not_found(format!("no document {:?}", self.doc)));
        };
        let hash = blob_hash(&document.blob).ok_or_else(|| {
            NodeError::internal(format!("the document {:?} names no content", document.name))
        })?;
        if let Some(content) = store.blob(&circle, &hash)? {
            core.consulted(circle, "document");
            let received = content.len() as u64;
            return Ok(Document {
                document,
                content: Some(hex::encode(&content)),
                received,
            });
        }
        if !core.running {
            return Err(NodeError::unavailable(format!(
                "the content of {:?} is not on this node yet; start the node with `cercle up` to fetch it from the circle's members",
                document.name
            )));
        }
        let now = core.now().millis();
        let asks = core.fetch_blob(circle, hash, document.size, now);
        for e in asks {
            core.emit(e);
        }
        let received = core.fetch_progress(&hash).unwrap_or(0);
        Ok(Document {
            document,
            content: None,
            received,
        })
    }
}

/// The patient file's documents; `here` says whether this node holds each one's content.
pub(crate) fn documents(c: &Circle, store: &dyn Store) -> Result<Vec<DocumentRow>, NodeError> {
    Ok(c.patient_file()?
        .items(ItemList::Documents)
        .into_iter()
        .map(|d| {
            let blob = d.get("blob").unwrap_or_default().to_string();
            let here =
                blob_hash(&blob).is_some_and(|h| store.has_blob(&c.id(), &h).unwrap_or(false));
            DocumentRow {
                name: d.get("name").unwrap_or_default().to_string(),
                media_type: d.get("media_type").unwrap_or_default().to_string(),
                size: d.get("size").and_then(|s| s.parse().ok()).unwrap_or(0),
                here,
                blob,
                added_by: d.added_by.to_hex(),
                added_at: d.added_at.to_rfc3339(),
                id: d.id,
            }
        })
        .collect())
}

/// The content hashes of the patient file's documents (none for a circle at rest).
pub(crate) fn blob_hashes(c: &Circle) -> Vec<[u8; 32]> {
    c.patient_file()
        .map(|pf| {
            pf.items(ItemList::Documents)
                .iter()
                .filter_map(|d| blob_hash(d.get("blob")?))
                .collect()
        })
        .unwrap_or_default()
}

/// A content hash written as 64 hex digits.
pub(crate) fn blob_hash(hex_hash: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_hash).ok()?;
    bytes.try_into().ok()
}
