//! `cercle --json demo` as a test fixture: a relay and a care team of separate processes,
//! one JSON line per member (name, role, profession, logged-in URL).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running demo team.
#[derive(Debug)]
pub struct Demo {
    child: Child,
    /// One object per member, as printed.
    pub members: Vec<serde_json::Value>,
    /// From the start of the command to the last member printed.
    pub up_in: Duration,
}

impl Demo {
    /// Starts `cercle --json demo` with its temporary directory under `tmp` and waits for
    /// its 4 members; if it stops first, panics with its own error output.
    pub fn start(tmp: &Path) -> Demo {
        let bin = crate::cercle_bin();
        let started = Instant::now();
        let errors = tmp.join("demo.err");
        let mut child = Command::new(bin)
            .args(["--json", "demo"])
            .env("TMPDIR", tmp)
            .env("CERCLE_CONFIG", tmp.join("config.toml"))
            .env("CERCLE_LOG", "info")
            .env_remove("CERCLE_HOME")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&errors).unwrap_or_else(|e| panic!("{e}")))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the demo: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut members = Vec::new();
        while members.len() < 4 {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!(
                    "the demo printed {} member(s) and stopped after {:?}: {}",
                    members.len(),
                    started.elapsed(),
                    std::fs::read_to_string(&errors).unwrap_or_default()
                );
            };
            let m: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            members.push(m);
        }
        Demo {
            child,
            members,
            up_in: started.elapsed(),
        }
    }

    /// The logged-in URL of member `i` (0 is the GP, the circle's coordinator).
    pub fn url(&self, i: usize) -> String {
        self.members[i]["url"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Sends SIGTERM and waits up to 20 s; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let stopped = crate::wait_until(20, || matches!(self.child.try_wait(), Ok(Some(_))));
        assert!(stopped, "the demo did not stop on SIGTERM");
        self.child.try_wait().ok().flatten().and_then(|s| s.code())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            crate::wait_until(20, || matches!(self.child.try_wait(), Ok(Some(_))));
            let _ = self.child.kill();
        }
    }
}
