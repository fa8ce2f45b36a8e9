//! The configuration file: `config.toml` in the platform's configuration directory (on
//! Linux `~/.config/cercle/`), or the file named by `CERCLE_CONFIG`. It holds what
//! `cercle up` would otherwise take as flags; flags given on the command line win.
//!
//! ```toml
//! listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//! peers = []
//! relays = ["/dns4/relais.example.fr/tcp/4001/p2p/12D3KooW..."]
//! mdns = true
//! api = "127.0.0.1:7070"
//!
//! [ui]
//! listen = "192.168.1.20:8443"
//!
//! [notify]
//! webhook = "https://sms.example.fr/hook?key=..."
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The environment variable naming another configuration file.
pub(crate) const ENV: &str = "CERCLE_CONFIG";

/// The settings, as written in the file. Absent keys take the defaults of `cercle up`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) listen: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) peers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) relays: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mdns: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) api: Option<std::net::SocketAddr>,
    #[serde(default, skip_serializing_if = "Ui::is_empty")]
    pub(crate) ui: Ui,
    #[serde(default, skip_serializing_if = "Notify::is_empty")]
    pub(crate) notify: Notify,
}

/// The web UI beyond this machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ui {
    /// Where the web UI is also served, over TLS, to the member's paired phones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<std::net::SocketAddr>,
}

impl Ui {
    fn is_empty(&self) -> bool {
        self.listen.is_none()
    }
}

/// Checks an address for the phones' web UI: a concrete address of this machine, which the
/// pairing QR names.
pub(crate) fn check_ui_listen(value: &str) -> anyhow::Result<std::net::SocketAddr> {
    let a: std::net::SocketAddr = value.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "ui.listen {value:?} is not an address; write this computer's LAN address and a port, like 192.168.1.20:8443"
        )
    })?;
    anyhow::ensure!(
        !a.ip().is_unspecified(),
        "ui.listen {a}: give this computer's address on the practice's network (like 192.168.1.20:8443), which the phone's pairing QR names"
    );
    Ok(a)
}

/// Where alerts are announced beyond the open web page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Notify {
    /// Receives `{"event":"alert","circle":"<opaque handle>","count":N}`
    /// ([`cercle_node::notify`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) webhook: Option<String>,
}

impl Notify {
    fn is_empty(&self) -> bool {
        self.webhook.is_none()
    }
}

/// The keys `config get` and `config set` know.
pub(crate) const KEYS: [&str; 7] = [
    "listen",
    "peers",
    "relays",
    "mdns",
    "api",
    "ui.listen",
    "notify.webhook",
];

/// Where the configuration file is.
pub(crate) fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV) {
        return Ok(PathBuf::from(p));
    }
    directories::ProjectDirs::from("fr", "Cercle", "cercle")
        .map(|d| d.config_dir().join("config.toml"))
        .ok_or_else(|| {
            anyhow::anyhow!("no configuration directory could be found; set {ENV} to a file path")
        })
}

impl Config {
    /// Reads the file; a missing file is an empty configuration.
    pub(crate) fn load() -> anyhow::Result<Config> {
        let path = path()?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid configuration ({}); fix it or remove it",
                path.display(),
                e.message()
            )
        })
    }

    /// Writes the file (creating its directory).
    pub(crate) fn save(&self) -> anyhow::Result<PathBuf> {
        let path = path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let text = toml::to_string_pretty(self)?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// One key's value as JSON (`null` when unset).
    pub(crate) fn get(&self, key: &str) -> anyhow::Result<serde_json::Value> {
        Ok(match key {
            "listen" => serde_json::json!(self.listen),
            "peers" => serde_json::json!(self.peers),
            "relays" => serde_json::json!(self.relays),
            "mdns" => serde_json::json!(self.mdns),
            "api" => serde_json::json!(self.api.map(|a| a.to_string())),
            "ui.listen" => serde_json::json!(self.ui.listen.map(|a| a.to_string())),
            "notify.webhook" => serde_json::json!(self.notify.webhook),
            _ => return Err(unknown(key)),
        })
    }

    /// Sets one key from its text form: lists are comma-separated (empty clears them).
    /// The value is checked as `cercle up` would check it.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let list = || -> Vec<String> {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        match key {
            "listen" => {
                let l = list();
                crate::cmd::up::parse_addresses("listen", &l)?;
                self.listen = l;
            }
            "peers" => {
                let l = list();
                crate::cmd::up::parse_addresses("peers", &l)?;
                self.peers = l;
            }
            "relays" => {
                let l = list();
                for r in &l {
                    cercle_node::net::relay_device(r).map_err(|e| {
                        anyhow::anyhow!("relays: {e}; give the address as `cercle relay` prints it")
                    })?;
                }
                self.relays = l;
            }
            "mdns" => {
                self.mdns = Some(match value.trim() {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => anyhow::bail!("mdns is true or false, not {value:?}"),
                });
            }
            "api" => {
                if value.trim().is_empty() {
                    self.api = None;
                } else {
                    let a: std::net::SocketAddr = value.trim().parse().map_err(|_| {
                        anyhow::anyhow!(
                            "api {value:?} is not an address; write it like 127.0.0.1:7070"
                        )
                    })?;
                    anyhow::ensure!(
                        a.ip().is_loopback(),
                        "api {a} is not a loopback address: the local API listens on 127.0.0.1 only"
                    );
                    self.api = Some(a);
                }
            }
            "ui.listen" => {
                self.ui.listen = if value.trim().is_empty() {
                    None
                } else {
                    Some(check_ui_listen(value)?)
                };
            }
            "notify.webhook" => {
                let url = value.trim();
                if url.is_empty() {
                    self.notify.webhook = None;
                } else {
                    cercle_node::notify::check_url(url)
                        .map_err(|e| anyhow::anyhow!("notify.webhook: {e}"))?;
                    self.notify.webhook = Some(url.to_string());
                }
            }
            _ => return Err(unknown(key)),
        }
        Ok(())
    }
}

fn unknown(key: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "unknown setting {key:?}; the settings are {}",
        KEYS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_toml() {
        let mut c = Config::default();
        c.set(
            "listen",
            "/ip4/0.0.0.0/tcp/4001, /ip4/0.0.0.0/udp/4001/quic-v1",
        )
        .unwrap();
        c.set("mdns", "false").unwrap();
        c.set("api", "127.0.0.1:7070").unwrap();
        let text = toml::to_string_pretty(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.listen.len(), 2);
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        let mut c = Config::default();
        let e = c.set("api", "0.0.0.0:80").err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("loopback")));
        assert!(c.set("mdns", "maybe").is_err());
        assert!(c.set("listen", "not an address").is_err());
        assert!(c.set("relays", "/ip4/127.0.0.1/tcp/4001").is_err());
        assert!(c.set("colour", "blue").is_err());
        assert_eq!(c, Config::default());
    }
}
