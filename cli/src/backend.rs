//! Where a command's request goes: to the running node over its local API when `cercle up`
//! runs on this home (the node holds the store's lock), or to a node core opened on the
//! store for this one command otherwise. Both carry out the same operations the same way,
//! and both answer typed: `backend.ask(NoteAdd { .. })?` is an `Added`.

use cercle_node::api::{ApiFile, token};
use cercle_node::node::offline::OfflineNode;
use cercle_node::ops::{Answer, ErrorKind, NodeError, Operation, Request, typed};

use crate::Context;
use crate::session::Session;

/// A running node's API, or the store opened here.
#[derive(Debug)]
pub(crate) enum Backend {
    Running(Client),
    Offline(Box<OfflineNode>),
}

/// How long a command waits for a node that holds the store but does not answer yet (it
/// opens its store, then its circles, then its API: seconds for a GP's thousand circles).
const NODE_START_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

impl Backend {
    /// The running node if there is one, else the store (asking for the passphrase). While
    /// a node holds the store without its API answering yet (it is starting), waits for
    /// it, up to [`NODE_START_PATIENCE`]; another command holding the store is said at once.
    pub(crate) fn open(ctx: &Context) -> anyhow::Result<Backend> {
        let mut waiting = None;
        let reached = Backend::reach(ctx, &mut waiting);
        // Cleared whatever the outcome, so an error is not printed beside a spinner.
        if let Some(spinner) = waiting {
            spinner.finish_and_clear();
        }
        reached
    }

    /// [`Backend::open`]'s work; `waiting` gets the spinner shown while it waits.
    fn reach(
        ctx: &Context,
        waiting: &mut Option<indicatif::ProgressBar>,
    ) -> anyhow::Result<Backend> {
        let deadline = std::time::Instant::now() + NODE_START_PATIENCE;
        let session = loop {
            if let Some(client) = Client::running(ctx)? {
                return Ok(Backend::Running(client));
            }
            let patience_left = std::time::Instant::now() < deadline;
            if !ctx.home.node_holds_store() || !patience_left {
                match Session::open(ctx) {
                    Ok(session) => break session,
                    // A node took the store in the meantime: wait for its API.
                    Err(e) if patience_left && store_locked(&e) && ctx.home.node_holds_store() => {}
                    Err(e) => return Err(e),
                }
            }
            waiting.get_or_insert_with(|| {
                tracing::info!("the store is in use and no node answers yet: waiting");
                crate::output::progress_spinner("waiting for the node starting on this home")
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        let peer_id = cercle_node::net::keypair(&session.me)?
            .public()
            .to_peer_id();
        let node = OfflineNode::open(session.store(), session.me, peer_id.to_string())?;
        Ok(Backend::Offline(Box::new(node)))
    }

    /// Carries out one operation; returns its answer once any write it made is durable.
    pub(crate) fn ask<O: Operation>(&mut self, op: O) -> Result<O::Answer, NodeError> {
        match self {
            Backend::Running(c) => c.ask(op),
            Backend::Offline(node) => node.ask(op),
        }
    }
}

/// The local API of the node running on this home.
#[derive(Debug)]
pub(crate) struct Client {
    api: ApiFile,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// The running node's API, if `api.json` names one that answers.
    pub(crate) fn running(ctx: &Context) -> anyhow::Result<Option<Client>> {
        let Some(api) = ApiFile::read(ctx.home.root())? else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // A node that accepts no connection is not running; one that accepted a request
        // answers it once its writes are durable, which never takes minutes.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(300))
            .build()?;
        let client = Client { api, http, runtime };
        // A node killed without a chance to clean up leaves a stale file behind, naming a
        // port that another program may hold now: the token goes only to a listener that
        // proves it knows it.
        match client.hello() {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    address = %client.api.address,
                    "api.json names an address where another program answers; the token was not sent and the store is opened here"
                );
                return Ok(None);
            }
            Err(_) => return Ok(None),
        }
        match client.send(&cercle_node::ops::status::Status {}.into()) {
            Ok(_) => Ok(Some(client)),
            Err(Failure::Unreachable(_)) => Ok(None),
            Err(Failure::Refused(e)) => Err(e.into()),
        }
    }

    /// Whether the listener at the recorded address knows the token: its proof for a fresh
    /// nonce must match ours. Sends nothing secret.
    fn hello(&self) -> Result<bool, reqwest::Error> {
        let Some(nonce) = token::new_nonce() else {
            return Ok(false);
        };
        let url = format!(
            "http://{}/api/v1/hello?nonce={}",
            self.api.address,
            hex::encode(nonce)
        );
        self.runtime.block_on(async {
            let response = self.http.get(&url).send().await?;
            if !response.status().is_success() {
                return Ok(false);
            }
            let body: serde_json::Value = match response.json().await {
                Ok(b) => b,
                Err(_) => return Ok(false),
            };
            let given = body.get("proof").and_then(|p| p.as_str()).unwrap_or("");
            Ok(token::same_secret(
                given,
                &token::proof(&self.api.token, &nonce),
            ))
        })
    }

    /// Has the running node replace its token (it writes the new one into the home).
    pub(crate) fn rotate_token(&self) -> Result<(), NodeError> {
        let url = format!("http://{}/api/v1/token/rotate", self.api.address);
        self.runtime.block_on(async {
            let response = self
                .http
                .post(&url)
                .bearer_auth(&self.api.token)
                .send()
                .await
                .map_err(|e| NodeError::unavailable(format!("the node does not answer ({e})")))?;
            if response.status().is_success() {
                return Ok(());
            }
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            Err(
                serde_json::from_value::<NodeError>(body).unwrap_or_else(|_| {
                    NodeError::new(
                        ErrorKind::from_status(status),
                        "the node refused to replace its token",
                    )
                }),
            )
        })
    }

    /// `GET` (no body) or `POST` (a JSON body) to one of the API's own routes, with the token.
    pub(crate) fn route<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, NodeError> {
        let url = format!("http://{}{path}", self.api.address);
        self.runtime.block_on(async {
            let request = match &body {
                Some(b) => self.http.post(&url).json(b),
                None => self.http.get(&url),
            };
            let response = request
                .bearer_auth(&self.api.token)
                .send()
                .await
                .map_err(|e| NodeError::unavailable(format!("the node does not answer ({e})")))?;
            let status = response.status();
            let value: serde_json::Value = response.json().await.unwrap_or_default();
            if !status.is_success() {
                return Err(
                    serde_json::from_value::<NodeError>(value).unwrap_or_else(|_| {
                        NodeError::new(ErrorKind::from_status(status.as_u16()), "the node refused")
                    }),
                );
            }
            serde_json::from_value(value)
                .map_err(|e| NodeError::internal(format!("unreadable answer: {e}")))
        })
    }

    /// Carries out one operation on the running node.
    pub(crate) fn ask<O: Operation>(&self, op: O) -> Result<O::Answer, NodeError> {
        typed::<O>(self.call(&op.into()))
    }

    pub(crate) fn call(&self, request: &Request) -> Result<Answer, NodeError> {
        self.send(request).map_err(|f| match f {
            Failure::Refused(e) => e,
            Failure::Unreachable(e) => NodeError::unavailable(format!(
                "the node running on this home does not answer ({e}); is it stopping?"
            )),
        })
    }

    fn send(&self, request: &Request) -> Result<Answer, Failure> {
        let url = format!("http://{}/api/v1/call", self.api.address);
        self.runtime.block_on(async {
            let response = self
                .http
                .post(&url)
                .bearer_auth(&self.api.token)
                .json(request)
                .send()
                .await
                .map_err(Failure::Unreachable)?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.map_err(Failure::Unreachable)?;
            if !status.is_success() {
                // A refusal says its kind and its sentence; anything else is told by status.
                let e = serde_json::from_value::<NodeError>(body.clone()).unwrap_or_else(|_| {
                    let message = body
                        .get("error")
                        .and_then(|e| e.as_str())
                        .unwrap_or("the node refused the request");
                    NodeError::new(ErrorKind::from_status(status.as_u16()), message)
                });
                return Err(Failure::Refused(e));
            }
            serde_json::from_value(body).map_err(|e| {
                Failure::Refused(NodeError::internal(format!("unreadable answer: {e}")))
            })
        })
    }
}

/// Why a call got no answer.
#[derive(Debug)]
enum Failure {
    /// Nothing answered at the address.
    Unreachable(reqwest::Error),
    /// The node answered with a refusal.
    Refused(NodeError),
}

/// Whether opening the store failed because another process holds it.
fn store_locked(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<cercle_node::store::StoreError>(),
        Some(cercle_node::store::StoreError::Locked { .. })
    )
}

/// Carries out one operation on the running node, or on the store opened for this command.
pub(crate) fn ask<O: Operation>(ctx: &Context, op: O) -> anyhow::Result<O::Answer> {
    Ok(Backend::open(ctx)?.ask(op)?)
}
