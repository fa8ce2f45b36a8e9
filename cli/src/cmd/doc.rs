//! `cercle doc`: documents of the patient file (prescriptions, reports, photos).

use std::io::Write;
use std::path::PathBuf;

use cercle_node::ops::documents::{DocAdd, DocGet, DocList, DocumentRow, MAX_DOCUMENT_BYTES};
use serde::Serialize;

use crate::Context;
use crate::backend::ask;
use crate::output::{added, answer, progress_bytes};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DocCommand {
    /// Add a file to the patient file's documents.
    Add {
        /// The circle: its id or an unambiguous prefix.
        circle: String,
        /// The file.
        path: PathBuf,
        /// The document's name (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Its media type (default: from the file's extension).
        #[arg(long, value_name = "TYPE")]
        media_type: Option<String>,
    },
    /// List the documents.
    List { circle: String },
    /// Write a document's content to a file.
    Get {
        circle: String,
        /// The document's id or a prefix of at least 4 characters.
        doc: String,
        /// Where to write it (default: its name, in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the file if it exists (never done otherwise).
        #[arg(long)]
        force: bool,
        /// Give up after this many seconds if no connected member sends it.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        timeout: u64,
    },
}

/// The document's row and content: at once if this node holds it, otherwise as the
/// connected members send it, part by part.
fn fetch(
    ctx: &Context,
    circle: String,
    doc: String,
    timeout: u64,
) -> anyhow::Result<(DocumentRow, String)> {
    let mut backend = crate::backend::Backend::open(ctx)?;
    let get = DocGet { circle, doc };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    let mut bar: Option<indicatif::ProgressBar> = None;
    loop {
        let got = backend.ask(get.clone())?;
        if let Some(content) = got.content {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            return Ok((got.document, content));
        }
        let b = bar.get_or_insert_with(|| progress_bytes(got.document.size, "fetching"));
        b.set_position(got.received);
        if std::time::Instant::now() > deadline {
            b.finish_and_clear();
            anyhow::bail!(
                "no connected member sent {:?} within {timeout} s; try again when one of them is online",
                got.document.name
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[derive(Debug, Serialize)]
struct Written {
    path: String,
    bytes: u64,
    document: DocumentRow,
}

/// The media type named by a file's extension (the common ones in care).
fn media_type_of(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("txt") => "text/plain",
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

pub(crate) fn run(ctx: &Context, cmd: DocCommand) -> anyhow::Result<()> {
    match cmd {
        DocCommand::Add {
            circle,
            path,
            name,
            media_type,
        } => {
            let size = std::fs::metadata(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
                .len();
            if size > MAX_DOCUMENT_BYTES as u64 {
                anyhow::bail!(
                    "{} is {size} bytes; documents of at most {} MiB are accepted",
                    path.display(),
                    MAX_DOCUMENT_BYTES / (1024 * 1024)
                );
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let name = name.unwrap_or_else(|| {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "document".into())
            });
            let add = DocAdd {
                circle,
                name,
                media_type: media_type.unwrap_or_else(|| media_type_of(&path).into()),
                content: hex::encode(&bytes),
            };
            let bar = progress_bytes(size, "sending");
            let result = ask(ctx, add);
            bar.finish_and_clear();
            let done = result?;
            added(ctx.json, done.circle, done.ids, ("Document", "added"))
        }
        DocCommand::List { circle } => {
            let documents = ask(ctx, DocList { circle })?.documents;
            answer(ctx.json, &documents, || {
                crate::output::rows(&documents, "no documents yet", |d| {
                    format!(
                        "{}  {:<30}  {:<24}  {} B{}",
                        crate::output::short(&d.id),
                        d.name,
                        d.media_type,
                        d.size,
                        if d.here {
                            ""
                        } else {
                            "  (not on this node yet)"
                        }
                    )
                })
            })
        }
        DocCommand::Get {
            circle,
            doc,
            out,
            force,
            timeout,
        } => {
            let (document, content) = fetch(ctx, circle, doc, timeout)?;
            let bytes = hex::decode(content)
                .map_err(|_| anyhow::anyhow!("the node sent a damaged document"))?;
            // Only the name's last part, never a hidden file: a document named "../x" or
            // ".bashrc" cannot write elsewhere nor pass for one of this user's files.
            let path = out.unwrap_or_else(|| {
                let name = std::path::Path::new(&document.name)
                    .file_name()
                    .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("{}.bin", crate::output::short(&document.id)));
                PathBuf::from(name)
            });
            let bar = progress_bytes(bytes.len() as u64, "writing");
            let mut file = crate::output::create_private(&path, force)?;
            for chunk in bytes.chunks(64 * 1024) {
                file.write_all(chunk)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            let written = Written {
                path: path.display().to_string(),
                bytes: bytes.len() as u64,
                document,
            };
            answer(ctx.json, &written, || {
                format!("wrote {} ({} bytes)", written.path, written.bytes)
            })
        }
    }
}
