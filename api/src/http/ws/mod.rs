//! GraphQL over WebSocket at `/graphql/ws`, per the `graphql-transport-ws`
//! protocol (the one the `graphql-ws` client speaks), with every close code
//! the protocol requires:
//!
//! | code | when |
//! | --- | --- |
//! | 1001 | the server is shutting down: reconnect (to another replica) and resume from the cursor |
//! | 4400 | an invalid message |
//! | 4401 | `subscribe` before `connection_ack` |
//! | 4403 | missing, invalid, revoked or expired credentials (checked at `connection_init` and every `--ws-recheck-secs`, a minute by default, after) |
//! | 4406 | the client did not ask for the `graphql-transport-ws` subprotocol |
//! | 4408 | no `connection_init` within the initialisation timeout |
//! | 4409 | a second operation with an id that is still running |
//! | 4429 | a second `connection_init` |
//!
//! Credentials travel in the `connection_init` payload:
//! `{"authorization": "Bearer …"}`. Queries and mutations work over the
//! socket too (one `next`, then `complete`).

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use async_graphql::Request as GraphqlRequest;
use axum::{
    extract::{
        ConnectInfo, State,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    },
    response::Response,
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{sync::mpsc, task::AbortHandle};

mod outgoing;
mod shared;

pub use shared::SharedSubscriptions;

use self::{
    outgoing::Outgoing,
    shared::{Ending, NewMember},
};
use super::{
    AppState,
    caller::{self, Caller},
    operation,
};
use crate::auth::Principal;

/// The one subprotocol spoken here.
pub const PROTOCOL: &str = "graphql-transport-ws";
/// Most messages written to a socket in one write.
const WRITE_BATCH: usize = 64;
/// Bytes read from a socket at a time.
const READ_BUFFER: usize = 4 * 1024;
/// The largest message a client may send (a `subscribe` with its document).
const MAX_CLIENT_MESSAGE: usize = 1024 * 1024;

/// Upgrades `/graphql/ws`.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    // Client messages are small: a 128 KiB read buffer per socket (the
    // default) was most of a connection's memory with thousands open.
    let ws = ws
        .protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    let spoken = ws.selected_protocol().is_some();
    // Shutdown waits for open sockets to send their close frame.
    let open = state.lifecycle.sockets().token();
    ws.on_upgrade(move |socket| async move {
        let _open = open;
        if spoken {
            Connection::new(state, peer).run(socket).await;
        } else {
            let (mut sink, _) = socket.split();
            let _ = sink.send(close(4406, "Subprotocol not acceptable")).await;
        }
    })
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

fn text(value: Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

/// A `next` message.
#[derive(serde::Serialize)]
struct Next<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    payload: &'a async_graphql::Response,
}

/// Why the server closes the socket.
struct Closing(u16, String);

struct Connection {
    state: AppState,
    peer: SocketAddr,
    request_id: String,
    initialised: bool,
    principal: Option<Principal>,
    authorization: Option<String>,
    operations: HashMap<String, AbortHandle>,
}

impl Connection {
    fn new(state: AppState, peer: SocketAddr) -> Self {
        Self {
            state,
            peer,
            request_id: uuid::Uuid::new_v4().to_string(),
            initialised: false,
            principal: None,
            authorization: None,
            operations: HashMap::new(),
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = Outgoing::new(self.state.config.ws_shared_backlog as usize);
        let writer = tokio::spawn(async move {
            // The messages already waiting go out in one write: a socket
            // that fell behind catches up in fewer system calls, one that
            // keeps up is written at once.
            let mut batch = Vec::with_capacity(WRITE_BATCH);
            'writing: while queue.recv_many(&mut batch, WRITE_BATCH).await > 0 {
                for queued in batch.drain(..) {
                    let closing = matches!(queued.message, Message::Close(_));
                    if sink.feed(queued.message).await.is_err() {
                        break 'writing;
                    }
                    if closing {
                        let _ = sink.flush().await;
                        break 'writing;
                    }
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let (done_sender, mut done) = mpsc::unbounded_channel::<String>();
        let init_deadline =
            tokio::time::sleep(Duration::from_secs(self.state.config.ws_init_timeout_secs));
        tokio::pin!(init_deadline);
        // How often the credential is checked again (`--ws-recheck-secs`).
        let mut recheck = tokio::time::interval(Duration::from_secs(
            self.state.config.ws_recheck_secs.max(1),
        ));
        recheck.tick().await;
        let going_away = self.state.lifecycle.going_away().clone();
        let closing: Option<Closing> = loop {
            tokio::select! {
                _ = going_away.cancelled() => {
                    break Some(Closing(1001, "Server shutting down".into()));
                }
                _ = &mut init_deadline, if !self.initialised => {
                    break Some(Closing(4408, "Connection initialisation timeout".into()));
                }
                _ = recheck.tick(), if self.principal.is_some() => {
                    if !self.still_authorised().await {
                        break Some(Closing(4403, "Forbidden".into()));
                    }
                }
                Some(id) = done.recv() => {
                    self.operations.remove(&id);
                }
                incoming = stream.next() => {
                    let message = match incoming {
                        Some(Ok(message)) => message,
                        _ => break None,
                    };
                    match message {
                        Message::Text(body) => {
                            if let Err(closing) = self.handle(body.as_str(), &outgoing, &done_sender).await {
                                break Some(closing);
                            }
                        }
                        Message::Binary(_) => break Some(Closing(4400, "Binary messages are not supported".into())),
                        Message::Close(_) => break None,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
            }
        };
        for (_, operation) in self.operations.drain() {
            operation.abort();
        }
        if let Some(Closing(code, reason)) = closing {
            let _ = outgoing.send(close(code, &reason)).await;
        }
        drop(outgoing);
        let _ = writer.await;
    }

    async fn still_authorised(&self) -> bool {
        match &self.authorization {
            Some(value) => matches!(
                caller::from_authorization(&self.state, value).await,
                Ok(Caller::Known(_))
            ),
            None => false,
        }
    }

    async fn handle(
        &mut self,
        body: &str,
        outgoing: &Outgoing,
        done: &mpsc::UnboundedSender<String>,
    ) -> Result<(), Closing> {
        let invalid = |why: &str| Closing(4400, why.to_string());
        let message: Value =
            serde_json::from_str(body).map_err(|_| invalid("Invalid message received"))?;
        let kind = message["type"]
            .as_str()
            .ok_or_else(|| invalid("Invalid message received"))?;
        match kind {
            "connection_init" => {
                if self.initialised {
                    return Err(Closing(4429, "Too many initialisation requests".into()));
                }
                self.initialised = true;
                let payload = &message["payload"];
                if !(payload.is_null() || payload.is_object()) {
                    return Err(invalid("Invalid message received"));
                }
                let authorization = payload["authorization"]
                    .as_str()
                    .or_else(|| payload["Authorization"].as_str())
                    .map(str::to_string);
                let Some(value) = authorization else {
                    return Err(Closing(4403, "Forbidden".into()));
                };
                match caller::from_authorization(&self.state, &value).await {
                    Ok(Caller::Known(principal)) => {
                        self.principal = Some(principal.in_request(self.request_id.clone()));
                        self.authorization = Some(value);
                        let _ = outgoing
                            .send(text(json!({ "type": "connection_ack" })))
                            .await;
                        Ok(())
                    }
                    _ => Err(Closing(4403, "Forbidden".into())),
                }
            }
            "ping" => {
                let mut pong = json!({ "type": "pong" });
                if message.get("payload").is_some_and(|p| !p.is_null()) {
                    pong["payload"] = message["payload"].clone();
                }
                let _ = outgoing.send(text(pong)).await;
                Ok(())
            }
            "pong" => Ok(()),
            "subscribe" => {
                let id = message["id"]
                    .as_str()
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| invalid("Invalid message received"))?
                    .to_string();
                let payload = &message["payload"];
                if !payload["query"].is_string() {
                    return Err(invalid("Invalid message received"));
                }
                let Some(principal) = self.principal.clone() else {
                    return Err(Closing(4401, "Unauthorized".into()));
                };
                if self.operations.contains_key(&id) {
                    return Err(Closing(4409, format!("Subscriber for {id} already exists")));
                }
                let request = serde_json::from_value::<GraphqlRequest>(payload.clone())
                    .map_err(|_| invalid("Invalid message received"))?;
                let handle = tokio::spawn(operate(
                    self.state.clone(),
                    principal,
                    self.request_id.clone(),
                    self.peer,
                    id.clone(),
                    (request, payload.clone()),
                    outgoing.clone(),
                    done.clone(),
                ));
                self.operations.insert(id, handle.abort_handle());
                Ok(())
            }
            "complete" => {
                let id = message["id"]
                    .as_str()
                    .ok_or_else(|| invalid("Invalid message received"))?;
                if let Some(operation) = self.operations.remove(id) {
                    operation.abort();
                }
                Ok(())
            }
            _ => Err(invalid("Invalid message received")),
        }
    }
}

/// Runs one operation and streams its results. A subscription that starts
/// now joins the shared execution of its rights, document and variables
/// (see `shared`); it goes on alone if it falls behind it.
#[allow(clippy::too_many_arguments)]
async fn operate(
    state: AppState,
    principal: Principal,
    request_id: String,
    peer: SocketAddr,
    id: String,
    (request, payload): (GraphqlRequest, Value),
    outgoing: Outgoing,
    done: mpsc::UnboundedSender<String>,
) {
    let prepare = |request| {
        operation::prepare(
            &state,
            Some(principal.clone()),
            &request_id,
            Some(peer.ip()),
            request,
            false,
        )
    };
    // The same operation again, to run on its own (a request is not `Clone`;
    // its payload parsed once already).
    let again = || {
        serde_json::from_value(payload.clone())
            .ok()
            .and_then(|request| prepare(request).ok())
    };
    let mut prepared = match prepare(request) {
        Ok(prepared) => prepared,
        Err(refusal) => return fail(&id, json!([refusal.error()]), &outgoing, &done).await,
    };
    let _open = OpenOperation::new(&state.metrics.subscriptions_open);
    let stream = match prepared.share_key() {
        None => prepared.stream(&state).await,
        Some(key) => {
            if let Err(refused) = prepared.charge_only(&state).await {
                return fail(&id, json!(refused.errors), &outgoing, &done).await;
            }
            let subscriptions = state.subscriptions.clone();
            let member = NewMember {
                id: &id,
                principal: &principal,
                socket: &outgoing,
            };
            let alone = match subscriptions.join(&state, key, prepared, member).await {
                None => again(),
                // The shared frames go straight to the socket; this waits for their end.
                Some(mut membership) => match membership.ended().await {
                    Ending::Complete => None,
                    Ending::Refused(errors) => {
                        return fail(&id, errors, &outgoing, &done).await;
                    }
                    Ending::Detached { after } => {
                        drop(membership);
                        again().inspect(|alone| alone.position().start_after(after))
                    }
                },
            };
            match alone {
                Some(alone) => alone.stream_charged(&state),
                None => return finish(&id, &outgoing, &done).await,
            }
        }
    };
    if forward(stream, &id, &outgoing).await {
        finish(&id, &outgoing, &done).await;
    } else {
        let _ = done.send(id);
    }
}

/// Sends each response of `stream` as a `next` message; a request error (nothing
/// ran) as an `error` message that ends the operation. True when the stream
/// ended and earns a `complete`.
async fn forward(
    mut stream: futures::stream::BoxStream<'static, async_graphql::Response>,
    id: &str,
    outgoing: &Outgoing,
) -> bool {
    let mut first = true;
    while let Some(response) = stream.next().await {
        if first && operation::is_request_error(&response) {
            let _ = outgoing
                .send(error_message(id, json!(response.errors)))
                .await;
            return false;
        }
        first = false;
        // Serialized once, straight to text: this runs per subscriber per event.
        let next = serde_json::to_string(&Next {
            kind: "next",
            id,
            payload: &response,
        })
        .unwrap_or_else(|_| json!({ "type": "next", "id": id, "payload": null }).to_string());
        if outgoing
            .send_own(Message::Text(Utf8Bytes::from(next)))
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// Sends `complete` and lets the connection forget the operation.
async fn finish(id: &str, outgoing: &Outgoing, done: &mpsc::UnboundedSender<String>) {
    let _ = outgoing
        .send(text(json!({ "type": "complete", "id": id })))
        .await;
    let _ = done.send(id.to_string());
}

/// Sends an `error` message, which ends the operation without `complete`.
async fn fail(id: &str, errors: Value, outgoing: &Outgoing, done: &mpsc::UnboundedSender<String>) {
    let _ = outgoing.send(error_message(id, errors)).await;
    let _ = done.send(id.to_string());
}

fn error_message(id: &str, errors: Value) -> Message {
    text(json!({ "type": "error", "id": id, "payload": errors }))
}

/// Counts an operation in the open-subscriptions gauge while it runs (also
/// when it is aborted).
struct OpenOperation(prometheus_client::metrics::gauge::Gauge);

impl OpenOperation {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenOperation {
    fn drop(&mut self) {
        self.0.dec();
    }
}
