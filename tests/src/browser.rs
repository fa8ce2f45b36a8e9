//! A real headless Chromium driven through WebDriver (Debian's `chromium` and
//! `chromium-driver`, via `fantoccini`), and a plain HTTP session with a node's web UI
//! (its cookie), for what a browser would not show: status codes and refusals.
//!
//! Calls are blocking so a test reads top to bottom; each browser keeps its own runtime.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// A `chromedriver` process on a free loopback port; browsers are sessions of it.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver; fails with the command that installs it when it is missing.
    pub fn start() -> Driver {
        let exe = ["chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|e| Command::new(e).arg("--version").output().is_ok())
            .unwrap_or_else(|| {
                panic!(
                    "chromedriver is missing: run ./tests/run-all.sh, or apt-get install chromium chromium-driver"
                )
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
        let up = crate::wait_until(20, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "chromedriver did not listen on port {port}");
        Driver { child, port }
    }

    /// A new headless Chromium, its window `width` × `height`.
    pub fn browser(&self, width: u32, height: u32) -> Browser {
        let options = serde_json::json!({
            "args": Driver::args(&[format!("--window-size={width},{height}")]),
        });
        let browser = self.open(options);
        browser.resize(width, height);
        browser
    }

    /// A new headless Chromium as a phone (390 × 844, touch, a phone's user agent) that
    /// trusts the TLS certificate whose public key has the SHA-256 `spki_pin` (base64), as
    /// a member checks the fingerprint the computer shows.
    pub fn phone(&self, spki_pin: &str) -> Browser {
        let options = serde_json::json!({
            "args": Driver::args(&[format!("--ignore-certificate-errors-spki-list={spki_pin}")]),
            "mobileEmulation": {
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "touch": true },
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
            },
        });
        self.open(options)
    }

    fn args(more: &[String]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--lang=fr-FR",
            // A camera that shows a test pattern, granted without asking.
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.extend_from_slice(more);
        args
    }

    fn open(&self, options: serde_json::Value) -> Browser {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{}", self.port);
        let client = runtime.block_on(async {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&url)
                .await
                .unwrap_or_else(|e| panic!("chromium did not start through chromedriver: {e}"))
        });
        Browser { runtime, client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window.
#[derive(Debug)]
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Browser {
    fn run<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.runtime
            .block_on(f)
            .unwrap_or_else(|e| panic!("browser: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.run(self.client.goto(url));
    }

    pub fn url(&self) -> String {
        self.run(self.client.current_url()).to_string()
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.run(self.client.set_window_size(width, height));
    }

    /// The visible text of the first element matching `css`, or "" when there is none.
    pub fn text(&self, css: &str) -> String {
        self.runtime
            .block_on(async {
                let e = self.client.find(Locator::Css(css)).await?;
                e.text().await
            })
            .unwrap_or_default()
    }

    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.runtime
            .block_on(async {
                let e = self.client.find(Locator::Css(css)).await?;
                e.attr(name).await
            })
            .ok()
            .flatten()
    }

    /// Types `text` into the field matching `css` (focusing it first, as a user would).
    pub fn type_in(&self, css: &str, text: &str) {
        self.run(async {
            let e = self.client.find(Locator::Css(css)).await?;
            e.click().await?;
            e.send_keys(text).await
        });
    }

    /// Chooses `path` in the file field matching `css`.
    pub fn choose_file(&self, css: &str, path: &Path) {
        self.run(async {
            let e = self.client.find(Locator::Css(css)).await?;
            e.send_keys(&path.to_string_lossy()).await
        });
    }

    pub fn select(&self, css: &str, value: &str) {
        self.run(async {
            let e = self.client.find(Locator::Css(css)).await?;
            e.select_by_value(value).await
        });
    }

    pub fn click(&self, css: &str) {
        self.run(async {
            let e = self.client.find(Locator::Css(css)).await?;
            e.click().await
        });
    }

    /// Waits up to 5 s for the attribute `name` of `css` to be `value` (after a click that
    /// loads a page); returns whether it came.
    pub fn wait_for_attr(&self, css: &str, name: &str, value: &str) -> bool {
        crate::wait_until(5, || self.attr(css, name).as_deref() == Some(value))
    }

    /// Runs a script in the page and returns its JSON result.
    pub fn script(&self, js: &str) -> serde_json::Value {
        self.run(self.client.execute(js, Vec::new()))
    }

    /// Waits up to `within` for the text of `css` to contain `needle`; returns how long it
    /// took, or None.
    pub fn wait_for_text(&self, css: &str, needle: &str, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.text(css).contains(needle) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// Runs axe-core's WCAG 2.1 A and AA rules on the page as it is now; returns each
    /// serious or critical violation as "rule (impact): help — the elements' selectors".
    pub fn accessibility_faults(&self) -> Vec<String> {
        // Loaded through WebDriver, as the page's own policy forbids any other script.
        let loaded = self.script(&format!(
            "{}\nreturn typeof window.axe;",
            crate::checkers::axe_source()
        ));
        assert_eq!(loaded, "object", "axe-core did not load");
        let run = r#"
            const done = arguments[arguments.length - 1];
            window.axe
                .run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
                .then(r => done(r.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map(n => n.target.join(' ')).slice(0, 5).join(', ')}`)))
                .catch(e => done([`axe failed: ${e}`]));
        "#;
        let found = self.run(self.client.execute_async(run, Vec::new()));
        found
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Saves a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let png = self.run(self.client.screenshot());
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(client.close());
    }
}

/// Where the tests write screenshots: `target/screenshots/` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("screenshots")
}

/// An HTTP session with a node's web UI: the cookie its `?token=` link sets.
#[derive(Debug)]
pub struct WebSession {
    pub base: String,
    pub cookie: String,
}

impl WebSession {
    /// Follows a login link (`http://127.0.0.1:PORT/?token=…`) and keeps the cookie it sets;
    /// the link must answer with a redirect to `/`, so the token leaves the address bar.
    pub fn login(link: &str) -> WebSession {
        let (status, headers, body) = crate::http_request(reqwest::Method::GET, link, &[], None);
        assert_eq!(status, 303, "{link}: {body}");
        assert_eq!(headers.get("location").map(String::as_str), Some("/"));
        let cookie = headers
            .get("set-cookie")
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("{link} set no cookie"))
            .to_string();
        let base = link.split("/?").next().unwrap_or(link).to_string();
        WebSession { base, cookie }
    }

    /// `GET path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = crate::http_request(
            reqwest::Method::GET,
            &format!("{}{path}", self.base),
            &[("Cookie", &self.cookie)],
            None,
        );
        (status, body)
    }

    /// `GET path`: status, headers (lower-case names) and body.
    pub fn get_with_headers(
        &self,
        path: &str,
    ) -> (u16, std::collections::BTreeMap<String, String>, String) {
        crate::http_request(
            reqwest::Method::GET,
            &format!("{}{path}", self.base),
            &[("Cookie", &self.cookie)],
            None,
        )
    }

    /// The id of the first circle the home page links to.
    pub fn first_circle(&self) -> String {
        let (_, page) = self.get("/");
        page.split("href=\"/c/")
            .nth(1)
            .map(|rest| rest.chars().take_while(char::is_ascii_hexdigit).collect())
            .unwrap_or_else(|| panic!("no circle on the home page: {page}"))
    }

    /// `POST path` with a url-encoded form: status and body.
    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let (status, _, body) = crate::http_request(
            reqwest::Method::POST,
            &format!("{}{path}", self.base),
            &[
                ("Cookie", &self.cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            Some(body.into_bytes()),
        );
        (status, body)
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
