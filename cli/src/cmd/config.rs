//! `cercle config get|set`: the settings `cercle up` reads (see [`crate::config`]); and
//! `cercle config rotate-token`: a new API token for this home.

use serde::Serialize;

use crate::Context;
use crate::config::{Config, KEYS, path};
use crate::output::answer;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Show one setting, or all of them and the file's path.
    Get {
        /// listen, peers, relays, mdns, api or notify.webhook.
        key: Option<String>,
    },
    /// Change a setting; lists are comma-separated, an empty value clears.
    Set { key: String, value: String },
    /// Replace this home's API token (if it leaked): the web UI's sessions end and the
    /// links printed before stop working; `cercle status` shows the new one.
    RotateToken,
}

#[derive(Debug, Serialize)]
struct Shown {
    path: String,
    settings: serde_json::Map<String, serde_json::Value>,
}

pub(crate) fn run(ctx: &Context, cmd: ConfigCommand) -> anyhow::Result<()> {
    let mut config = Config::load()?;
    match cmd {
        ConfigCommand::Get { key: Some(key) } => {
            let value = config.get(&key)?;
            answer(ctx.json, &value, || match &value {
                serde_json::Value::Null => String::new(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        }
        ConfigCommand::Get { key: None } => {
            let mut settings = serde_json::Map::new();
            for k in KEYS {
                settings.insert(k.to_string(), config.get(k)?);
            }
            let shown = Shown {
                path: path()?.display().to_string(),
                settings,
            };
            answer(ctx.json, &shown, || {
                let mut s = format!("# {}", shown.path);
                for (k, v) in &shown.settings {
                    s.push_str(&format!("\n{k} = {v}"));
                }
                s
            })
        }
        ConfigCommand::Set { key, value } => {
            config.set(&key, &value)?;
            let file = config.save()?;
            let shown = serde_json::json!({ "path": file.display().to_string(), "key": key, "value": config.get(&key)? });
            answer(ctx.json, &shown, || {
                format!("{key} set in {}", file.display())
            })
        }
        ConfigCommand::RotateToken => rotate_token(ctx),
    }
}

/// A new token: made by the running node (which takes it at once), or written into the
/// home for the next start.
fn rotate_token(ctx: &Context) -> anyhow::Result<()> {
    ctx.home.identity()?;
    let running = match crate::backend::Client::running(ctx)? {
        Some(client) => {
            client.rotate_token()?;
            true
        }
        None => {
            cercle_node::api::token::write_new_token(ctx.home.root())?;
            false
        }
    };
    let shown = serde_json::json!({ "rotated": true, "running": running });
    answer(ctx.json, &shown, || {
        if running {
            "the API token was replaced and every web session ended; `cercle status` shows the new sign-in link".to_string()
        } else {
            "the API token was replaced; `cercle up` will print the new sign-in link".to_string()
        }
    })
}
