//! A webhook receiver on loopback, standing in for a phone's push service or an SMS
//! gateway: it keeps every request it gets (method, path, headers and body, as text) for
//! the test to read, and answers 200.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};

type Seen = Arc<Mutex<Vec<Request>>>;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Everything received, as text: method, path, query, headers and body.
    pub raw: String,
    pub body: String,
}

/// A receiver running on its own thread until dropped with the test.
#[derive(Debug)]
pub struct Receiver {
    address: SocketAddr,
    seen: Seen,
    _runtime: tokio::runtime::Runtime,
}

async fn keep(
    State(seen): State<Seen>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) {
    let mut raw = format!("{method} {uri}\n");
    for (name, value) in &headers {
        raw.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    raw.push('\n');
    raw.push_str(&body);
    if let Ok(mut s) = seen.lock() {
        s.push(Request { raw, body });
    }
}

impl Receiver {
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let seen: Seen = Arc::default();
        let app = Router::new().fallback(keep).with_state(seen.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("cannot listen on loopback: {e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            address,
            seen,
            _runtime: runtime,
        }
    }

    /// The URL to give as the webhook.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
