//! One pipeline for every GraphQL operation, whatever carried it (HTTP
//! POST, HTTP GET, a WebSocket `subscribe`): the document is parsed and its
//! aliases counted, GET is held to queries, the request state (caller,
//! loaders, read audit) is built, its cost is charged to the caller's budget,
//! the operation runs, its errors get their codes, and the patients it read
//! go to the audit log.

use std::{collections::BTreeSet, net::IpAddr, sync::Arc};

use async_graphql::{
    Request, Response, ServerError,
    parser::types::{DocumentOperations, OperationType, Selection},
};
use async_graphql_value::{ConstValue, Value as GqlValue};
use futures::{StreamExt, stream::BoxStream};

use super::AppState;
use crate::{
    auth::{Actor, Permission, Principal, Role},
    graphql::{
        RequestState,
        context::LogPosition,
        error::{self, code, code_of},
        limits,
        load_queue::LoadQueue,
    },
};

/// Why an operation was refused before it ran.
#[derive(Debug)]
pub enum Refusal {
    /// The document does not parse.
    Parse(ServerError),
    /// The document is over a limit checked before validation.
    Invalid(ServerError),
    /// Only queries may be sent this way (HTTP GET).
    NotAQuery(ServerError),
}

impl Refusal {
    /// The error to report.
    pub fn error(&self) -> &ServerError {
        match self {
            Refusal::Parse(e) | Refusal::Invalid(e) | Refusal::NotAQuery(e) => e,
        }
    }
}

/// An operation ready to run.
pub struct Operation {
    request: Request,
    state: RequestState,
    queue: LoadQueue,
    principal: Option<Principal>,
    /// The name it is logged and measured under.
    pub name: String,
}

/// Checks `request` and binds it to its caller. `queries_only` holds it to
/// queries (HTTP GET).
pub fn prepare(
    app: &AppState,
    principal: Option<Principal>,
    request_id: &str,
    client_ip: Option<IpAddr>,
    mut request: Request,
    queries_only: bool,
) -> Result<Operation, Refusal> {
    app.schemas.documents.recall(&mut request);
    let name = operation_name(&mut request);
    if let Err(mut parse_error) = request.parsed_query().map(|_| ()) {
        error::classify(&mut parse_error, request_id);
        let mut e = error::coded(
            parse_error.message.clone(),
            code::GRAPHQL_PARSE_FAILED,
            None,
        );
        e.locations = parse_error.locations;
        return Err(Refusal::Parse(e));
    }
    app.schemas.documents.remember(&mut request);
    limits::check_aliases(&mut request, app.config.max_aliases).map_err(Refusal::Invalid)?;
    if queries_only && operation_type(&mut request).is_some_and(|ty| ty != OperationType::Query) {
        return Err(Refusal::NotAQuery(error::coded(
            "only queries may be sent with GET; use POST",
            super::error::transport::METHOD_NOT_ALLOWED,
            None,
        )));
    }
    let (state, queue) = RequestState::new(
        &app.store,
        principal.clone(),
        request_id.to_string(),
        client_ip,
    );
    Ok(Operation {
        request,
        state,
        queue,
        principal,
        name,
    })
}

impl Operation {
    /// Prices the operation and charges the caller's budget: what it was
    /// charged, nothing when there is no budget to charge or the document
    /// does not validate (running it says why), or the refusal to answer.
    async fn charge(&mut self, app: &AppState) -> Result<Option<limits::Charge>, Response> {
        let Some(key) = self.state.rate_key() else {
            return Ok(None);
        };
        let documents = &app.schemas.documents;
        let cost = match documents.price(&self.request) {
            Some(cost) => cost,
            None => {
                let Some(cost) = limits::price(&app.schemas.pricing, &mut self.request).await
                else {
                    return Ok(None);
                };
                documents.priced(&self.request, cost);
                cost
            }
        };
        match app.budget.charge(&key, cost) {
            Ok(charge) => Ok(Some(charge)),
            Err(refused) => Err(Response::from_errors(vec![refused])),
        }
    }

    /// The operation's type, if its document names one that will run.
    pub fn kind(&mut self) -> Option<OperationType> {
        operation_type(&mut self.request)
    }

    /// Runs a query or mutation to its one response.
    pub async fn run(mut self, app: &AppState) -> Response {
        let charge = match self.charge(app).await {
            Ok(charge) => charge,
            Err(refused) => return refused,
        };
        let Operation {
            request,
            state,
            queue,
            principal,
            ..
        } = self;
        let request_id = state.request_id.clone();
        let reads = state.patients_read.clone();
        let plain = state.plain.clone();
        let schema = match principal {
            Some(_) => &app.schemas.authenticated,
            None => &app.schemas.anonymous,
        };
        let response = error::finalize(
            crate::graphql::execute(schema, request, state, queue).await,
            &request_id,
        );
        let (one_pass, resolvers) = plain.counts();
        app.metrics.record_plain_values(one_pass, resolvers);
        if let Some(principal) = &principal
            && let Err(failure) = app.audit.record_reads(principal, &reads).await
        {
            // What was read is not on record: it does not leave.
            let refused = crate::domain::DomainError::internal(failure);
            return Response::from_errors(vec![error::of_domain(&refused, &request_id)]);
        }
        match charge {
            Some(charge) => app.budget.report(response, charge),
            None => response,
        }
    }

    /// Runs any operation (a subscription too) as a stream of responses; the
    /// reads of each are audited as it is sent.
    pub async fn stream(mut self, app: &AppState) -> BoxStream<'static, Response> {
        if let Err(refused) = self.charge_only(app).await {
            return futures::stream::once(async { refused }).boxed();
        }
        self.stream_charged(app)
    }

    /// Charges the caller's budget for the operation, or the answer that
    /// refuses it.
    pub async fn charge_only(&mut self, app: &AppState) -> Result<(), Response> {
        self.charge(app).await.map(|_| ())
    }

    /// [`Operation::stream`] of an operation already charged (a subscriber
    /// that goes on alone after it fell behind a shared subscription).
    pub fn stream_charged(self, app: &AppState) -> BoxStream<'static, Response> {
        let principal = self.principal.clone();
        let audit = app.audit.clone();
        let (responses, state) = self.responses(app);
        let reads = state.patients_read.clone();
        responses
            .then(move |response| {
                let (audit, reads, principal) = (audit.clone(), reads.clone(), principal.clone());
                async move {
                    if let Some(principal) = &principal {
                        audit.flush_reads(principal, &reads).await;
                    }
                    response
                }
            })
            .boxed()
    }

    /// The operation's responses with their errors coded, and its request
    /// state (the patients each response read, which event it was made of);
    /// charging and auditing are the caller's.
    pub fn responses(self, app: &AppState) -> (BoxStream<'static, Response>, RequestState) {
        let Operation {
            request,
            state,
            queue,
            ..
        } = self;
        let request_id = state.request_id.clone();
        let responses = app
            .schemas
            .authenticated
            .execute_stream(request.data(state.clone()));
        let responses = queue
            .run_stream(responses)
            .map(move |response| error::finalize(response, &request_id))
            .boxed();
        (responses, state)
    }

    /// Where the operation stands in the event log, if it is a subscription.
    pub fn position(&self) -> &Arc<LogPosition> {
        &self.state.position
    }

    /// What subscribers must have in common to share this operation's
    /// execution: the same rights, document and variables. `None` unless it
    /// is a subscription that starts now (no cursor in its document or
    /// variables): one that resumes from a cursor runs on its own.
    pub fn share_key(&mut self) -> Option<ShareKey> {
        let who = self.principal.clone()?;
        let variables = serde_json::to_string(&self.request.variables).ok()?;
        if !starts_now(&mut self.request) {
            return None;
        }
        Some(ShareKey {
            clinic_id: who.clinic_id,
            actor: who.actor,
            role: who.role,
            permissions: who.permissions,
            query: self.request.query.clone(),
            operation_name: self.request.operation_name.clone(),
            variables,
        })
    }
}

/// What subscribers sharing one execution have in common (see
/// [`Operation::share_key`]). The actor is part of it: a few fields answer
/// differently for the person themself (a staff member's own email).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareKey {
    clinic_id: uuid::Uuid,
    actor: Actor,
    role: Option<Role>,
    permissions: BTreeSet<Permission>,
    query: String,
    operation_name: Option<String>,
    variables: String,
}

/// True for a subscription whose root fields are plain fields given no
/// cursor: `after` absent, null, or a variable that is null or unset with no
/// default.
fn starts_now(request: &mut Request) -> bool {
    let name = request.operation_name.clone();
    let variables = request.variables.clone();
    let Ok(doc) = request.parsed_query() else {
        return false;
    };
    let operation = match &doc.operations {
        DocumentOperations::Single(op) => op,
        DocumentOperations::Multiple(ops) => match name {
            Some(name) => match ops.get(name.as_str()) {
                Some(op) => op,
                None => return false,
            },
            None if ops.len() == 1 => ops.values().next().expect("one operation"),
            None => return false,
        },
    };
    if operation.node.ty != OperationType::Subscription {
        return false;
    }
    operation
        .node
        .selection_set
        .node
        .items
        .iter()
        .all(|selection| match &selection.node {
            Selection::Field(field) => field.node.arguments.iter().all(|(name, value)| {
                name.node.as_str() != "after"
                    || match &value.node {
                        GqlValue::Null => true,
                        GqlValue::Variable(variable) => {
                            let given = variables.get(variable.as_str());
                            let default = operation
                                .node
                                .variable_definitions
                                .iter()
                                .find(|d| d.node.name.node == *variable)
                                .and_then(|d| d.node.default_value.as_ref());
                            match given {
                                Some(value) => *value == ConstValue::Null,
                                None => default.is_none_or(|d| d.node == ConstValue::Null),
                            }
                        }
                        _ => false,
                    }
            }),
            _ => false,
        })
}

/// True when nothing ran: the operation failed validation, or was refused
/// before it started (over budget, bad arguments). Such an answer is a
/// request error: HTTP 400 under `application/graphql-response+json`, an
/// `error` message on a WebSocket.
pub fn is_request_error(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|e| e.path.is_empty() && e.source.is_none())
        && response.errors.iter().all(|e| {
            matches!(
                code_of(e),
                Some(code::GRAPHQL_VALIDATION_FAILED | code::BAD_USER_INPUT | code::RATE_LIMITED)
            )
        })
}

/// The name an operation is logged and measured under.
fn operation_name(request: &mut Request) -> String {
    if let Some(name) = &request.operation_name {
        return name.clone();
    }
    match request.parsed_query().map(|doc| &doc.operations) {
        Ok(DocumentOperations::Single(_)) | Err(_) => "anonymous".into(),
        Ok(DocumentOperations::Multiple(ops)) => ops
            .keys()
            .next()
            .map_or("anonymous".into(), |n| n.to_string()),
    }
}

/// The type of the operation that will run, if the document parsed.
fn operation_type(request: &mut Request) -> Option<OperationType> {
    let name = request.operation_name.clone();
    let doc = request.parsed_query().ok()?;
    match &doc.operations {
        DocumentOperations::Single(op) => Some(op.node.ty),
        DocumentOperations::Multiple(ops) => match name {
            Some(name) => ops.get(name.as_str()).map(|op| op.node.ty),
            None if ops.len() == 1 => ops.values().next().map(|op| op.node.ty),
            None => None,
        },
    }
}
