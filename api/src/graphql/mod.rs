//! The GraphQL schema: roots, types, loaders and the one place where domain
//! errors become GraphQL error codes.
//!
//! Resolvers are thin: they read the caller from the context, turn arguments
//! into domain inputs, call `domain`, and wrap the result in a GraphQL type.

pub mod connection;
pub mod context;
pub mod error;
pub mod inputs;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod scalars;
pub mod types;

use async_graphql::{EmptySubscription, Schema};

pub use context::RequestState;
pub use mutation::Mutation;
pub use query::Query;

use crate::domain::Store;

/// The Journeymap schema.
pub type JourneymapSchema = Schema<Query, Mutation, EmptySubscription>;

/// Limits applied to every operation before it runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 20_000,
        }
    }
}

/// Builds the schema around a store.
pub fn build_schema(store: Store, limits: Limits) -> JourneymapSchema {
    Schema::build(Query, Mutation::default(), EmptySubscription)
        .data(store)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .finish()
}

/// Executes a request with its loads driven on the same task (see
/// [`loaders::LoadQueue`]).
pub async fn execute(
    schema: &JourneymapSchema,
    request: async_graphql::Request,
    state: RequestState,
    queue: loaders::LoadQueue,
) -> async_graphql::Response {
    queue.run(schema.execute(request.data(state))).await
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    let schema = Schema::build(Query, Mutation::default(), EmptySubscription).finish();
    schema.sdl()
}
