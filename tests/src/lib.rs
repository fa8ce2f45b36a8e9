//! The harness of the end-to-end tests: builds the real `cercle` binary once, and runs it
//! against temporary homes the way a user would, capturing exit code, stdout and stderr.
//!
//! Tests live in `tests/tests/`; each starts from empty homes and talks to `cercle` only
//! through its command line.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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
            .env("CERCLE_PASSPHRASE", PASSPHRASE);
        cmd
    }

    /// Runs `cercle --home HOME ARGS...` and waits for it.
    pub fn cercle(&self, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cercle: {e}"));
        Run::from(out)
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
