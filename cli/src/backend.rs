//! Where a command's request goes: to the running node over its local API when `cercle up`
//! runs on this home (the node holds the store's lock), or to a node core opened on the
//! store for this one command otherwise. Both answer the same [`Request`]s the same way.

use cercle_node::api::{Answer, ApiFile, Request};
use cercle_node::node::NodeCore;

use crate::Context;
use crate::session::Session;

/// A running node's API, or the store opened here.
#[derive(Debug)]
pub(crate) enum Backend {
    Running(Client),
    Offline(Box<NodeCore>),
}

impl Backend {
    /// The running node if there is one, else the store (asking for the passphrase).
    pub(crate) fn open(ctx: &Context) -> anyhow::Result<Backend> {
        if let Some(client) = Client::running(ctx)? {
            return Ok(Backend::Running(client));
        }
        let s = Session::open(ctx)?;
        let peer_id = cercle_node::net::keypair(&s.me)?.public().to_peer_id();
        let core = NodeCore::open(s.store(), s.me, peer_id.to_string())?;
        Ok(Backend::Offline(Box::new(core)))
    }

    /// Sends one request and returns the answer once any write it made is durable.
    pub(crate) fn call(&mut self, request: Request) -> anyhow::Result<Answer> {
        match self {
            Backend::Running(c) => c.call(&request),
            Backend::Offline(core) => Ok(core.handle(request, crate::output::now())?.wait()?),
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
        // A node killed without a chance to clean up leaves a stale file behind.
        match client.call(&Request::Status) {
            Ok(_) => Ok(Some(client)),
            Err(e) if e.downcast_ref::<reqwest::Error>().is_some() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn call(&self, request: &Request) -> anyhow::Result<Answer> {
        let url = format!("http://{}/api/v1/call", self.api.address);
        self.runtime.block_on(async {
            let response = self
                .http
                .post(&url)
                .bearer_auth(&self.api.token)
                .json(request)
                .send()
                .await?;
            let ok = response.status().is_success();
            let body: serde_json::Value = response.json().await?;
            if !ok {
                let message = body
                    .get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("the node refused the request");
                anyhow::bail!("{message}");
            }
            Ok(serde_json::from_value(body)?)
        })
    }
}

/// Sends one request to the running node, or to the store opened for this command.
pub(crate) fn ask(ctx: &Context, request: Request) -> anyhow::Result<Answer> {
    Backend::open(ctx)?.call(request)
}

/// The error for an answer of the wrong kind (a node of another version).
pub(crate) fn unexpected(answer: &Answer) -> anyhow::Error {
    anyhow::anyhow!(
        "the node gave an unexpected answer ({answer:?}); is it the same version as this command?"
    )
}
