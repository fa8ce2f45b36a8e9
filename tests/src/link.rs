//! A network link between two test nodes that the test can cut and heal: a TCP proxy on
//! loopback in front of one node, which the other dials instead of the node itself. Cutting
//! it closes every connection through it and refuses new ones, as a partition would;
//! healing lets the next dial through. Its target can change (the node restarted on another
//! port). Everything stays on 127.0.0.1.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One directed link: whoever dials [`Link::address`] reaches the target, while the
/// link is up.
#[derive(Debug)]
pub struct Link {
    port: u16,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    up: AtomicBool,
    stop: AtomicBool,
    target: Mutex<Option<SocketAddr>>,
    open: Mutex<Vec<TcpStream>>,
}

impl Link {
    /// A link (up) to `target`.
    pub fn new(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot listen on loopback: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"))
            .port();
        let state = Arc::new(State {
            up: AtomicBool::new(true),
            target: Mutex::new(Some(target)),
            ..State::default()
        });
        let accepting = state.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inbound) = inbound else { continue };
                accepting.forward(inbound);
            }
        });
        Link { port, state }
    }

    /// The port to dial instead of the target's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The target moved (its node restarted on another port).
    pub fn retarget(&self, target: SocketAddr) {
        *lock(&self.state.target) = Some(target);
    }

    /// Cuts the link: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        for s in lock(&self.state.open).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Heals the link: the next dial goes through.
    pub fn heal(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accepting thread so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl State {
    fn forward(self: &Arc<Self>, inbound: TcpStream) {
        let target = *lock(&self.target);
        let outbound = match (self.up.load(Ordering::SeqCst), target) {
            (true, Some(t)) => TcpStream::connect_timeout(&t, Duration::from_secs(2)).ok(),
            _ => None,
        };
        let Some(outbound) = outbound else {
            let _ = inbound.shutdown(Shutdown::Both);
            return;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else {
            return;
        };
        {
            let mut open = lock(&self.open);
            open.retain(|s| s.peer_addr().is_ok());
            for s in [&inbound, &outbound] {
                if let Ok(c) = s.try_clone() {
                    open.push(c);
                }
            }
        }
        std::thread::spawn(move || pipe(inbound, out2));
        std::thread::spawn(move || pipe(outbound, in2));
    }
}

/// Copies `from` to `to` until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
