//! The harness of the end-to-end tests: builds the real `cercle` binary once, and runs it
//! against temporary homes the way a user would, capturing exit code, stdout and stderr.
//!
//! Tests live in `tests/tests/`; each starts from empty homes and talks to `cercle` only
//! through its command line.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

pub mod browser;
pub mod checkers;
pub mod demo;
pub mod link;
pub mod webhook;

/// The path of a freshly built `cercle` binary of the same profile as the running tests.
///
/// `CERCLE_BIN` overrides it (to test an installed binary).
pub fn cercle_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CERCLE_BIN") {
            return PathBuf::from(bin);
        }
        // The test executable is target/<profile>/deps/<name>; the binary sits in
        // target/<profile>/.
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()));
        let release = profile_dir.ends_with("release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "cercle", "--bin", "cercle"]);
        if release {
            build.arg("--release");
        }
        let status = build
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build cercle: {e}"));
        assert!(status.success(), "building cercle failed");
        profile_dir.join("cercle")
    })
}

/// The passphrase every test home's keys are sealed with.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// What one `cercle` run returned.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the full output unless the run succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "cercle failed:\n{self:#?}");
        self
    }

    /// Parses stdout as JSON, panicking with the output if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// The texts of the notes a `--json note list` printed; none if it failed (a circle
    /// not held yet has no notes: tests wait for them to arrive).
    pub fn note_texts(&self) -> Vec<String> {
        if self.code != Some(0) {
            return Vec::new();
        }
        self.json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["text"].as_str().map(str::to_string))
            .collect()
    }
}

/// A command-line run never takes longer than this in a test: one that does is killed and
/// the test fails saying so, instead of the whole suite waiting.
pub const COMMAND_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs `cmd` to its end, capturing its output; kills it and panics past [`COMMAND_LIMIT`].
pub fn finish(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    finish_child(child, &format!("{cmd:?}"))
}

/// Waits for a child spawned with piped output (its stdin the caller's to feed), capturing
/// that output; kills it and panics past [`COMMAND_LIMIT`], naming it `what`.
pub fn finish_child(mut child: Child, what: &str) -> Output {
    use std::io::Read as _;
    let pipe = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = pipe(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = pipe(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = std::time::Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            // What it had said: whether it hung before its answer or after it, and its log.
            let out = stdout.join().unwrap_or_default();
            let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            let tail: String = err
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "{what} did not finish within {COMMAND_LIMIT:?} ({} bytes on its standard output); its standard error ends with:\n{tail}",
                out.len()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A temporary home directory for one node.
#[derive(Debug)]
pub struct TestHome {
    dir: tempfile::TempDir,
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHome {
    /// A new, empty home.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}")),
        }
    }

    /// The home's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The command `cercle --home HOME ARGS...`, ready to spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cercle_bin());
        cmd.arg("--home")
            .arg(self.path())
            .args(args)
            .env_remove("CERCLE_HOME")
            .env("CERCLE_CONFIG", self.config_file())
            .env("CERCLE_PASSPHRASE", PASSPHRASE);
        cmd
    }

    /// The configuration file of this home's commands (never the user's own).
    pub fn config_file(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    /// Runs `cercle --home HOME ARGS...` and waits for it.
    pub fn cercle(&self, args: &[&str]) -> Run {
        Run::from(finish(self.command(args)))
    }

    /// Every file under the home, recursively.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), &mut out);
        out
    }

    /// A home at `path` (kept after the test only if `path` is outside temp dirs).
    pub fn in_dir(dir: tempfile::TempDir) -> Self {
        Self { dir }
    }

    /// Runs `cercle --home HOME --json ARGS...`, requires success and parses the answer.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        self.cercle(&full).ok().json()
    }

    /// `init` with a name and profession.
    pub fn init(&self, name: &str, profession: &str) -> serde_json::Value {
        self.json(&["init", "--name", name, "--profession", profession])
    }
}

/// Waits until the invitation to `circle` shows in `circle list`, then accepts it, running
/// `cercle` through `run` (a home's own command, or one in a network namespace).
pub fn accept_with(run: impl Fn(&[&str]) -> Run, circle: &str) {
    let invited = wait_until(30, || {
        let list = run(&["--json", "circle", "list"]);
        list.code == Some(0)
            && list.json().as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["id"] == circle && r["state"] == "invited")
            })
    });
    assert!(
        invited,
        "no invitation to {circle} arrived: {}",
        run(&["--json", "circle", "list"]).stdout
    );
    run(&["--json", "circle", "accept", circle]).ok();
}

/// Polls `check` every 100 ms until it returns true or `secs` seconds pass.
pub fn wait_until(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    check()
}

/// `home`'s node listening on loopback only (no mDNS), dialing each of `peers`.
pub fn up_on_loopback(home: &TestHome, peers: &[&Daemon]) -> Daemon {
    let args = loopback_args(peers);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(home, &[], &args)
}

/// `a`'s and `b`'s nodes on loopback, `b` dialing `a`, and `b`'s user accepting `circle`
/// (which `a` added `b` to).
pub fn pair_on_loopback(a: &TestHome, b: &TestHome, circle: &str) -> (Daemon, Daemon) {
    let node_a = up_on_loopback(a, &[]);
    let node_b = up_on_loopback(b, &[&node_a]);
    b.accept(circle);
    (node_a, node_b)
}

/// `home`'s node on loopback only (no mDNS), using `relay` and dialing each of `peers`.
pub fn up_with_relay(home: &TestHome, relay: &Relay, peers: &[&Daemon]) -> Daemon {
    let mut args = loopback_args(peers);
    args.push("--relay".into());
    args.push(relay.address_on("127.0.0.1"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(home, &[], &args)
}

/// The arguments of `cercle up` for [`up_on_loopback`].
pub fn loopback_args(peers: &[&Daemon]) -> Vec<String> {
    let mut args: Vec<String> = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for p in peers {
        args.push("--peer".into());
        args.push(p.tcp_address());
    }
    args
}

/// A `cercle up` process of a home; stopped with SIGTERM (and waited for) when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<std::process::Child>,
    /// Its listen addresses, each ending in `/p2p/<peer id>`.
    pub addresses: Vec<String>,
    /// Its peer id.
    pub peer_id: String,
}

impl Daemon {
    /// Runs `cercle up ARGS...` through `prefix` (e.g. `ip netns exec NS`; empty for none)
    /// and waits until its API answers with at least one listen address.
    pub fn start(home: &TestHome, prefix: &[&str], args: &[&str]) -> Daemon {
        Daemon::start_logging(home, prefix, args, std::process::Stdio::inherit())
    }

    /// As [`Daemon::start`], with the node's log (its standard error) going to `log`.
    pub fn start_logging(
        home: &TestHome,
        prefix: &[&str],
        args: &[&str],
        log: impl Into<std::process::Stdio>,
    ) -> Daemon {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest)
                    .arg(cercle_bin())
                    .arg("--home")
                    .arg(home.path());
                c
            }
            None => {
                let mut c = Command::new(cercle_bin());
                c.arg("--home").arg(home.path());
                c
            }
        };
        cmd.arg("up")
            .args(args)
            .env_remove("CERCLE_HOME")
            .env("CERCLE_CONFIG", home.config_file())
            .env("CERCLE_PASSPHRASE", PASSPHRASE)
            .stdout(std::process::Stdio::null())
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cercle up: {e}"));
        let mut daemon = Daemon {
            child: Some(child),
            addresses: Vec::new(),
            peer_id: String::new(),
        };
        let mut status = serde_json::Value::Null;
        let up = wait_until(30, || {
            if let Some(child) = daemon.child.as_mut()
                && let Ok(Some(exit)) = child.try_wait()
            {
                panic!("cercle up exited at start: {exit}");
            }
            let run = home.through(prefix, &["--json", "status"]);
            if run.code != Some(0) {
                return false;
            }
            status = run.json();
            status["running"] == true
                && status["addresses"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        });
        assert!(up, "cercle up did not start: {status}");
        daemon.peer_id = status["peer_id"].as_str().unwrap_or_default().to_string();
        daemon.addresses = status["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        daemon
    }

    /// The process id of the running node.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(std::process::Child::id)
            .unwrap_or_else(|| panic!("the node was stopped"))
    }

    /// The resident memory of the running node, in bytes (from `/proc`).
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("cannot read the node's /proc status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no VmRSS in the node's /proc status"))
    }

    /// The first TCP address.
    pub fn tcp_address(&self) -> String {
        self.addresses
            .iter()
            .find(|a| a.contains("/tcp/"))
            .cloned()
            .unwrap_or_else(|| panic!("no TCP address in {:?}", self.addresses))
    }

    /// Stops the node with SIGTERM and waits for it to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cercle up did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl TestHome {
    /// Runs `PREFIX... cercle --home HOME ARGS...` (a prefix such as `ip netns exec NS`).
    pub fn through(&self, prefix: &[&str], args: &[&str]) -> Run {
        let Some((first, rest)) = prefix.split_first() else {
            return self.cercle(args);
        };
        let mut cmd = Command::new(first);
        cmd.args(rest)
            .arg(cercle_bin())
            .arg("--home")
            .arg(self.path())
            .args(args)
            .env_remove("CERCLE_HOME")
            .env("CERCLE_CONFIG", self.config_file())
            .env("CERCLE_PASSPHRASE", PASSPHRASE);
        Run::from(finish(cmd))
    }

    /// Creates a circle around `patient`; returns its id.
    pub fn create_circle(&self, patient: &str) -> String {
        self.json(&["circle", "create", "--patient", patient])["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// This member's contact card (with the node's addresses while it runs).
    pub fn card(&self) -> String {
        self.json(&["whoami"])["card"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Adds the member of `card` to `circle` with `role`; returns the circle as shown.
    pub fn add_member(&self, circle: &str, card: &str, role: &str) -> serde_json::Value {
        self.json(&["circle", "add", circle, "--card", card, "--role", role])
    }

    /// Waits until a member's adding this node to `circle` reached it as an invitation
    /// (its node must be running and connected), then accepts it as its user would.
    pub fn accept(&self, circle: &str) {
        accept_with(|args| self.cercle(args), circle);
    }

    /// The web UI's login link of this home's running node (from `HOME/api.json`).
    pub fn ui_link(&self) -> String {
        let api: serde_json::Value = std::fs::read(self.path().join("api.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no api.json in {}: is the node running?",
                    self.path().display()
                )
            });
        format!(
            "http://{}/?token={}",
            api["address"].as_str().unwrap_or_default(),
            api["token"].as_str().unwrap_or_default()
        )
    }

    /// `cercle export CIRCLE --format fhir` into the home, parsed (a file that does not
    /// parse fails the test).
    pub fn fhir_export(&self, circle: &str) -> serde_json::Value {
        let file = self.path().join("c.fhir.json");
        self.json(&[
            "export",
            circle,
            "--format",
            "fhir",
            "--out",
            &file.display().to_string(),
        ]);
        serde_json::from_slice(&std::fs::read(&file).unwrap_or_default())
            .unwrap_or_else(|e| panic!("the FHIR export does not parse: {e}"))
    }

    /// The texts of a circle's notes, oldest first.
    pub fn note_texts(&self, circle: &str) -> Vec<String> {
        self.cercle(&["--json", "note", "list", circle])
            .note_texts()
    }
}

/// A `cercle relay` process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Relay {
    child: Child,
    /// The JSON object it printed when ready: `peer_id`, `addresses`, `metrics`.
    pub ready: serde_json::Value,
}

impl Relay {
    /// Runs `PREFIX... cercle --home HOME --json relay ARGS...` and waits for its first line.
    pub fn start(home: &TestHome, prefix: &[&str], args: &[&str]) -> Relay {
        Relay::start_logging(home, prefix, args, Stdio::inherit())
    }

    /// As [`Relay::start`], with the relay's log (its standard error) going to `log`.
    pub fn start_logging(
        home: &TestHome,
        prefix: &[&str],
        args: &[&str],
        log: impl Into<Stdio>,
    ) -> Relay {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(cercle_bin());
                c
            }
            None => Command::new(cercle_bin()),
        };
        let mut child = cmd
            .arg("--home")
            .arg(home.path())
            .args(["--json", "relay"])
            .args(args)
            .env_remove("CERCLE_HOME")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cercle relay: {e}"));
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let ready = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the relay's first line is not JSON ({e}): {line:?}"));
        Relay { child, ready }
    }

    /// Its peer id.
    pub fn peer_id(&self) -> String {
        self.ready["peer_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Its listen addresses, each ending in `/p2p/<peer id>`.
    pub fn addresses(&self) -> Vec<String> {
        self.ready["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    }

    /// The listen address on `ip` (e.g. the relay's side of a namespace link).
    pub fn address_on(&self, ip: &str) -> String {
        self.addresses()
            .into_iter()
            .find(|a| a.starts_with(&format!("/ip4/{ip}/tcp/")))
            .unwrap_or_else(|| {
                panic!(
                    "the relay listens on no TCP address of {ip}: {}",
                    self.ready
                )
            })
    }

    /// `GET path` on its metrics server: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!(
            "http://{}{path}",
            self.ready["metrics"].as_str().unwrap_or_default()
        );
        http_get(&url, &[])
    }

    /// `/metrics`, parsed by an independent Prometheus text parser (a failure to parse fails
    /// the test).
    pub fn metrics(&self) -> Metrics {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200, "{text}");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("/metrics is not Prometheus text ({e}): {text}"));
        Metrics { scrape, text }
    }

    /// Kills the relay with SIGKILL, without warning, and waits for it to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed `/metrics` page.
#[derive(Debug)]
pub struct Metrics {
    scrape: prometheus_parse::Scrape,
    /// The page as served.
    pub text: String,
}

impl Metrics {
    /// The value of the sample `name` whose labels include `labels` (0 if there is none:
    /// a labelled counter appears at its first increment).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }
}

/// Whether the tests run as root (needed to create network namespaces).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Network namespaces joined by veth pairs: private machines and links that reach nothing
/// else. Removed (with their links) on drop.
#[derive(Debug)]
pub struct Netns {
    names: Vec<String>,
    tag: u32,
    links: usize,
}

impl Netns {
    /// Creates one namespace per name (made unique to this process), loopback up.
    pub fn create(names: &[&str]) -> Result<Netns, String> {
        // Unique to this process and to this set (tests in one process run side by side).
        static SETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let set = SETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let tag = (std::process::id() % 100_000) * 10 + set;
        let mut netns = Netns {
            names: Vec::new(),
            tag,
            links: 0,
        };
        for name in names {
            let full = format!("cercle-{name}{tag}");
            ip(&["netns", "add", &full])?;
            netns.names.push(full.clone());
            ip(&["-n", &full, "link", "set", "lo", "up"])?;
        }
        Ok(netns)
    }

    /// Links namespace `a` (address `a_ip`) to namespace `b`, or to the test's own namespace
    /// if `b` is `None`, with /24 addresses.
    pub fn link(
        &mut self,
        a: usize,
        a_ip: &str,
        b: Option<usize>,
        b_ip: &str,
    ) -> Result<(), String> {
        self.links += 1;
        let (va, vb) = (
            format!("v{}a{}", self.tag, self.links),
            format!("v{}b{}", self.tag, self.links),
        );
        let ns_a = self.names[a].clone();
        match b {
            Some(b) => {
                let ns_b = self.names[b].clone();
                ip(&[
                    "link", "add", &va, "netns", &ns_a, "type", "veth", "peer", "name", &vb,
                    "netns", &ns_b,
                ])?;
                ip(&[
                    "-n",
                    &ns_b,
                    "addr",
                    "add",
                    &format!("{b_ip}/24"),
                    "dev",
                    &vb,
                ])?;
                ip(&["-n", &ns_b, "link", "set", &vb, "up", "multicast", "on"])?;
            }
            None => {
                ip(&[
                    "link", "add", &vb, "type", "veth", "peer", "name", &va, "netns", &ns_a,
                ])?;
                ip(&["addr", "add", &format!("{b_ip}/24"), "dev", &vb])?;
                ip(&["link", "set", &vb, "up"])?;
            }
        }
        ip(&[
            "-n",
            &ns_a,
            "addr",
            "add",
            &format!("{a_ip}/24"),
            "dev",
            &va,
        ])?;
        ip(&["-n", &ns_a, "link", "set", &va, "up", "multicast", "on"])?;
        Ok(())
    }

    /// The prefix that runs a command inside namespace `i`.
    pub fn exec(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.names[i]]
    }

    /// Runs `ip ARGS...` inside namespace `i`; its output, or why it failed.
    pub fn ip(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["-n", &self.names[i]];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `COMMAND ARGS...` inside namespace `i`; its output, or why it failed.
    pub fn run(&self, i: usize, command: &[&str]) -> Result<String, String> {
        let mut full = vec!["netns", "exec", &self.names[i]];
        full.extend_from_slice(command);
        ip(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "delete", n]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `GET url` with extra headers: status and body. Redirects are not followed.
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    http(reqwest::Method::GET, url, headers, None)
}

/// One HTTP request with extra headers and an optional JSON body: status and body.
pub fn http(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> (u16, String) {
    let mut headers = headers.to_vec();
    let body = body.map(|b| {
        headers.push(("Content-Type", "application/json"));
        b.to_string().into_bytes()
    });
    let (status, _, text) = http_request(method, url, &headers, body);
    (status, text)
}

/// One request to the home's running node, through its API (no process per call).
pub fn api_call(home: &TestHome, request: &serde_json::Value) -> (u16, String) {
    let api: serde_json::Value = std::fs::read(home.path().join("api.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no running node on {}", home.path().display()));
    let bearer = format!("Bearer {}", api["token"].as_str().unwrap_or_default());
    http(
        reqwest::Method::POST,
        &format!(
            "http://{}/api/v1/call",
            api["address"].as_str().unwrap_or_default()
        ),
        &[("Authorization", &bearer)],
        Some(request),
    )
}

/// One HTTP request, redirects not followed: status, response headers (lower-case names)
/// and body.
pub fn http_request(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, std::collections::BTreeMap<String, String>, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut r = client.request(method, url);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let response = r.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        (status, headers, response.text().await.unwrap_or_default())
    })
}

/// The resources of type `kind` in a FHIR bundle, in its order.
pub fn fhir_resources(bundle: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| &e["resource"])
                .filter(|r| r["resourceType"] == kind)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}
