//! The `cercle` processes the benchmarks run: a home made with `cercle init`, a node started
//! with `cercle up` on loopback, and the node's local API called as the CLI calls it.

// Each benchmark uses its part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cercle_node::api::ApiFile;
use cercle_node::ops::{Answer, Operation, Request, typed};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_cercle");

/// One member's home, and its node when running.
pub(crate) struct Node {
    pub(crate) home: PathBuf,
    pub(crate) child: Option<Child>,
    pub(crate) api: Option<ApiFile>,
    /// The key file's passphrase (`CERCLE_PASSPHRASE`); none for a home made without one.
    pub(crate) passphrase: Option<String>,
}

impl Node {
    /// A home made without a passphrase.
    pub(crate) fn init(root: &Path, name: &str) -> Node {
        let home = root.join(name);
        cercle(
            &home,
            &[
                "init",
                "--name",
                name,
                "--profession",
                "infirmière",
                "--insecure-no-passphrase",
            ],
        );
        Node {
            home,
            child: None,
            api: None,
            passphrase: None,
        }
    }

    /// A home whose keys are sealed with `passphrase`, as a professional's are.
    pub(crate) fn init_sealed(root: &Path, name: &str, profession: &str, passphrase: &str) -> Node {
        let home = root.join(name);
        let out = Command::new(BIN)
            .arg("--home")
            .arg(&home)
            .args(["--json", "init", "--name", name, "--profession", profession])
            .env("CERCLE_PASSPHRASE", passphrase)
            .output()
            .expect("cercle init");
        assert!(
            out.status.success(),
            "cercle init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Node {
            home,
            child: None,
            api: None,
            passphrase: Some(passphrase.to_string()),
        }
    }

    /// A home paired (`init --pair code`) with a running first device, sealed with
    /// `passphrase`.
    pub(crate) fn pair_sealed(root: &Path, name: &str, code: &str, passphrase: &str) -> Node {
        let home = root.join(name);
        let out = Command::new(BIN)
            .arg("--home")
            .arg(&home)
            .args(["--json", "init", "--pair", code])
            .env("CERCLE_PASSPHRASE", passphrase)
            .output()
            .expect("cercle init --pair");
        assert!(
            out.status.success(),
            "cercle init --pair: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Node::sealed(root, name, passphrase)
    }

    /// A home made earlier with `init_sealed`.
    pub(crate) fn sealed(root: &Path, name: &str, passphrase: &str) -> Node {
        Node {
            home: root.join(name),
            child: None,
            api: None,
            passphrase: Some(passphrase.to_string()),
        }
    }

    /// Starts `cercle up` (without waiting for it).
    pub(crate) fn spawn(&mut self, peers: &[String]) {
        self.spawn_with(peers, &[]);
    }

    /// Starts `cercle up` with more arguments (without waiting for it).
    pub(crate) fn spawn_with(&mut self, peers: &[String], more: &[&str]) {
        let mut cmd = Command::new(BIN);
        cmd.arg("--home")
            .arg(&self.home)
            .args(["up", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // `CERCLE_BENCH_LOGS=DIR` (with `CERCLE_LOG`) keeps each node's log in DIR, to see
        // where a measured path spends its time.
        if let Some(dir) = std::env::var_os("CERCLE_BENCH_LOGS") {
            let name = self.home.file_name().unwrap_or_default().to_string_lossy();
            let path = Path::new(&dir).join(format!("{name}.log"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            if let Ok(file) = file {
                cmd.stderr(file);
            }
        }
        if let Some(p) = &self.passphrase {
            cmd.env("CERCLE_PASSPHRASE", p);
        }
        for p in peers {
            cmd.args(["--peer", p]);
        }
        cmd.args(more);
        self.child = Some(cmd.spawn().expect("cercle up"));
    }

    /// Starts `cercle up` and waits for its API file.
    pub(crate) fn up(&mut self, peers: &[String]) {
        self.up_with(peers, &[]);
    }

    /// Starts `cercle up` with more arguments and waits for its API file.
    pub(crate) fn up_with(&mut self, peers: &[String], more: &[&str]) {
        self.spawn_with(peers, more);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(api)) = ApiFile::read(&self.home) {
                self.api = Some(api);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("cercle up did not start");
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        self.api = None;
    }

    pub(crate) fn api(&self) -> &ApiFile {
        self.api.as_ref().expect("node not running")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a `cercle` command on `home` (no passphrase), its JSON answer.
pub(crate) fn cercle(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("--home")
        .arg(home)
        .arg("--json")
        .args(args)
        .output()
        .expect("cercle");
    assert!(
        out.status.success(),
        "cercle {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Sends one request to the node's local API, as the CLI does.
async fn post(
    http: &reqwest::Client,
    api: &ApiFile,
    request: &Request,
) -> reqwest::Result<reqwest::Response> {
    http.post(format!("http://{}/api/v1/call", api.address))
        .bearer_auth(&api.token)
        .json(request)
        .send()
        .await
}

/// One call to the API; `None` when it does not answer (yet) or refuses.
pub(crate) async fn call(
    http: &reqwest::Client,
    api: &ApiFile,
    request: Request,
) -> Option<Answer> {
    let r = post(http, api, &request).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Carries out one operation through the node's local API (as the CLI does), typed.
pub(crate) async fn ask<O: Operation>(http: &reqwest::Client, node: &Node, op: O) -> O::Answer {
    let request: Request = op.into();
    let r = post(http, node.api(), &request).await.expect("api call");
    let ok = r.status().is_success();
    let body: serde_json::Value = r.json().await.expect("api answer");
    assert!(ok, "{body}");
    let answer: Answer = serde_json::from_value(body).expect("answer");
    typed::<O>(Ok(answer)).expect("the answer of this operation")
}

/// A relay on loopback: its peer id, first address and metrics address.
pub(crate) struct RelayProcess {
    pub(crate) child: Child,
    pub(crate) address: String,
    pub(crate) metrics: String,
}

impl RelayProcess {
    pub(crate) fn start(home: &Path) -> RelayProcess {
        let mut child = Command::new(BIN)
            .arg("--home")
            .arg(home)
            .args(["--json", "relay", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--metrics", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cercle relay");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).expect("line");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("relay json");
        RelayProcess {
            child,
            address: ready["addresses"][0].as_str().expect("address").into(),
            metrics: ready["metrics"].as_str().expect("metrics").into(),
        }
    }

    /// Envelopes the mailbox holds.
    pub(crate) async fn envelopes(&self, http: &reqwest::Client) -> f64 {
        self.metric(http, "cercle_relay_mailbox_envelopes").await
    }

    /// One sample of the relay's metrics without labels (0 when absent).
    pub(crate) async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        let text = http
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("prometheus text");
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name || s.metric.strip_suffix("_total") == Some(name))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .unwrap_or(0.0)
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
