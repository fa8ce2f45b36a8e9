//! What another program or another user of the same machine can get from a node: its
//! home's files at rest, a web session cookie (browsers send cookies to every port of
//! 127.0.0.1), and the API token through a stale `api.json` naming a port that another
//! program now holds.

// A test that unwraps fails with the error in its message.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use cercle_tests::browser::WebSession;
use cercle_tests::{Daemon, TestHome, http, http_get};

const LOOPBACK: [&str; 3] = ["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default()
}

fn api_file(home: &TestHome) -> (String, String) {
    let api: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("api.json")).unwrap()).unwrap();
    (
        api["address"].as_str().unwrap().to_string(),
        api["token"].as_str().unwrap().to_string(),
    )
}

fn csrf(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no form token in {page}"))
        .to_string()
}

#[test]
fn the_home_and_who_its_owner_is_are_readable_by_the_owner_only() {
    let home = TestHome::new();
    // A passphrase a script gives must be as long as one typed on a terminal.
    let run = home
        .command(&[
            "init",
            "--name",
            "Dr Claire Martin",
            "--profession",
            "médecin",
        ])
        .env("CERCLE_PASSPHRASE", "short")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("shorter than 8 characters"),
        "{err}"
    );
    home.init("Dr Claire Martin", "médecin généraliste");
    assert_eq!(mode(home.path()), 0o700, "the home");
    for file in ["identity.json", "keys.json"] {
        assert_eq!(mode(&home.path().join(file)), 0o600, "{file}");
    }
}

#[test]
fn a_web_session_is_not_the_api_token_and_ends_with_logout_or_a_rotation() {
    let a = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    a.create_circle("Jeanne Durand");
    let _d = Daemon::start(&a, &[], &LOOPBACK);
    let (address, token) = api_file(&a);
    let call = format!("http://{address}/api/v1/call");
    let status = serde_json::json!({ "request": "status" });

    let web = WebSession::login(&format!("http://{address}/?token={token}"));
    let id = web
        .cookie
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or_default();
    assert!(
        !id.is_empty() && !id.contains(&token),
        "the cookie holds the token"
    );
    // The cookie, sent by a browser to another service of this machine, opens no API.
    let bearer = format!("Bearer {id}");
    let (code, _) = http(
        reqwest::Method::POST,
        &call,
        &[("Authorization", &bearer)],
        Some(&status),
    );
    assert_eq!(code, 401, "a session id is not the token");
    let (code, page) = web.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("Jeanne Durand"));

    // Logout ends the session on the node, not only in the browser.
    let (code, _) = web.post("/logout", &[("csrf", &csrf(&page))]);
    assert_eq!(code, 303);
    let (code, page) = web.get("/");
    assert_eq!(code, 401, "an ended session still opens pages");
    assert!(!page.contains("Durand"));

    // Two browsers have their own form tokens.
    let one = WebSession::login(&format!("http://{address}/?token={token}"));
    let two = WebSession::login(&format!("http://{address}/?token={token}"));
    let (_, page_one) = one.get("/");
    let (_, page_two) = two.get("/");
    assert_ne!(csrf(&page_one), csrf(&page_two));
    let (code, _) = two.post("/logout", &[("csrf", &csrf(&page_one))]);
    assert_eq!(code, 403, "another session's form token was taken");

    // A rotation: the old token and every session stop working; the command goes on.
    let rotated = a.json(&["config", "rotate-token"]);
    assert_eq!(rotated["running"], true, "{rotated}");
    let (_, new_token) = api_file(&a);
    assert_ne!(new_token, token);
    assert_eq!(
        std::fs::read_to_string(a.path().join("api-token"))
            .unwrap()
            .trim(),
        new_token
    );
    let old = format!("Bearer {token}");
    let (code, _) = http(
        reqwest::Method::POST,
        &call,
        &[("Authorization", &old)],
        Some(&status),
    );
    assert_eq!(code, 401, "the old token still opens the API");
    let (code, _) = one.get("/");
    assert_eq!(code, 401, "a session outlived the rotation");
    let (code, _) = http_get(&format!("http://{address}/?token={token}"), &[]);
    assert_eq!(code, 401, "the old sign-in link still works");
    assert_eq!(a.json(&["status"])["running"], true);
    let fresh = WebSession::login(&format!("http://{address}/?token={new_token}"));
    assert_eq!(fresh.get("/").0, 200);
}

#[test]
fn a_rotation_while_stopped_is_taken_at_the_next_start() {
    let a = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    let mut d = Daemon::start(&a, &[], &LOOPBACK);
    let (_, before) = api_file(&a);
    d.stop();
    assert_eq!(a.json(&["config", "rotate-token"])["running"], false);
    let _d = Daemon::start(&a, &[], &LOOPBACK);
    let (_, after) = api_file(&a);
    assert_ne!(before, after);
}

/// A program holding the port a stale `api.json` names: it records every byte it is sent
/// and answers every request with a made-up proof.
fn squatter() -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            record.lock().unwrap().extend_from_slice(&buf[..n]);
            let body = format!("{{\"proof\":\"{}\"}}", "0".repeat(64));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (address, seen)
}

#[test]
fn a_stale_api_file_never_hands_the_token_to_another_program() {
    let a = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    let circle = a.create_circle("Jeanne Durand");
    let mut d = Daemon::start(&a, &[], &LOOPBACK);
    let stale = std::fs::read(a.path().join("api.json")).unwrap();
    let (_, token) = api_file(&a);
    d.stop();
    // The node was killed before it could remove its file; another program took the port.
    let (address, seen) = squatter();
    let mut api: serde_json::Value = serde_json::from_slice(&stale).unwrap();
    api["address"] = serde_json::Value::String(address);
    std::fs::write(a.path().join("api.json"), api.to_string()).unwrap();
    std::fs::set_permissions(
        a.path().join("api.json"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let run = a.cercle(&["note", "add", &circle, "Passage infirmier, RAS."]);
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(
        !seen.contains(&token),
        "the token was sent to another program"
    );
    assert!(
        !seen.contains("Passage infirmier"),
        "the note was sent to it"
    );
    assert!(seen.contains("/api/v1/hello"), "never asked: {seen}");
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stderr.contains("another program"), "{}", run.stderr);
    // The note went into the store, opened by the command itself.
    assert!(a.note_texts(&circle).iter().any(|t| t.contains("RAS")));
}

#[test]
fn a_call_without_the_token_is_refused_before_its_body_is_sent() {
    let a = TestHome::new();
    a.init("Dr Claire Martin", "médecin généraliste");
    let _d = Daemon::start(&a, &[], &LOOPBACK);
    let (address, _) = api_file(&a);
    // Sixteen callers announce 16 MiB each and send a little: each is answered at once,
    // without the node waiting for, or holding, the rest.
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&address).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            write!(
                s,
                "POST /api/v1/call HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                16 * 1024 * 1024
            )
            .unwrap();
            s.write_all(&[b' '; 64 * 1024]).unwrap();
            s
        })
        .collect();
    for mut s in callers {
        let mut answer = [0u8; 64];
        let n = s.read(&mut answer).unwrap_or(0);
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 401"), "answered {answer:?}");
    }
}
