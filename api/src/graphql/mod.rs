//! The GraphQL schema: roots, types, loaders and the one place where domain
//! errors become GraphQL error codes.
//!
//! Resolvers are thin: they read the caller from the context, turn arguments
//! into domain inputs, call `domain`, and wrap the result in a GraphQL type.

pub mod connection;
pub mod context;
pub mod documents;
pub mod error;
pub mod filters;
pub mod limits;
pub mod load_queue;
pub mod loaders;
pub mod mutation;
pub mod plain;
pub mod query;
pub mod scalars;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use async_graphql::{Schema, SchemaBuilder};

pub use context::RequestState;
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

use crate::{auth::jwt::JwtKeys, domain::Store};

/// The Journeymap schema.
pub type JourneymapSchema = Schema<Query, Mutation, Subscription>;

/// Limits applied to every operation before it runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

/// What resolvers reach through the schema's data.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub keys: Arc<JwtKeys>,
    pub logins: Arc<crate::domain::sessions::LoginThrottle>,
    pub webhooks: crate::config::WebhookPolicy,
}

/// The schema for signed-in callers and the one for everybody else, which
/// gives no field suggestions in its errors (they would map the schema out
/// for someone probing it), and the one that prices operations without
/// running them (`limits::price`).
#[derive(Clone)]
pub struct Schemas {
    pub authenticated: JourneymapSchema,
    pub anonymous: JourneymapSchema,
    pub pricing: JourneymapSchema,
    /// Documents seen before, parsed and priced.
    pub documents: Arc<documents::Documents>,
}

fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation::default(), Subscription)
}

/// Builds both schemas around the services.
pub fn build_schemas(services: Services, limits: Limits) -> Schemas {
    let build = |anonymous: bool| {
        let mut schema = builder()
            .data(services.store.clone())
            .data(services.keys.clone())
            .data(services.logins.clone())
            .data(services.webhooks)
            .limit_depth(limits.max_depth)
            .limit_complexity(limits.max_complexity);
        if anonymous {
            schema = schema.disable_suggestions();
        }
        schema.finish()
    };
    Schemas {
        authenticated: build(false),
        anonymous: build(true),
        pricing: builder()
            .extension(limits::Pricing)
            .limit_depth(limits.max_depth)
            .limit_complexity(limits.max_complexity)
            .disable_suggestions()
            .finish(),
        documents: Arc::default(),
    }
}

/// Executes a request with its loads driven on the same task (see
/// [`load_queue::LoadQueue`]).
pub async fn execute(
    schema: &JourneymapSchema,
    request: async_graphql::Request,
    state: RequestState,
    queue: load_queue::LoadQueue,
) -> async_graphql::Response {
    queue.run(schema.execute(request.data(state))).await
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
