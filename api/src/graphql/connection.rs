//! Relay cursor connections (`edges`, `nodes`, `pageInfo`, `totalCount`).
//!
//! `totalCount` costs a COUNT query, so it is computed only when a client
//! selects it.

use std::{future::Future, pin::Pin, sync::Arc};

use async_graphql::{
    Object, OutputType,
    connection::{Connection, CursorType, Edge},
};

use crate::domain::{DomainResult, page::Page};

/// An opaque cursor string.
pub struct Cursor(pub String);

impl CursorType for Cursor {
    type Error = std::convert::Infallible;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        Ok(Cursor(s.to_string()))
    }

    fn encode_cursor(&self) -> String {
        self.0.clone()
    }
}

type CountFuture = Pin<Box<dyn Future<Output = DomainResult<u64>> + Send>>;

/// The connection fields beyond edges and page info, computed on demand.
pub struct ConnectionTotals {
    count: Arc<dyn Fn() -> CountFuture + Send + Sync>,
}

impl ConnectionTotals {
    /// Totals computed by `count` when (and only when) a client asks.
    pub fn new<F, Fut>(count: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = DomainResult<u64>> + Send + 'static,
    {
        Self {
            count: Arc::new(move || Box::pin(count())),
        }
    }
}

#[Object]
impl ConnectionTotals {
    /// How many items match, across all pages.
    async fn total_count(&self) -> async_graphql::Result<i64> {
        Ok((self.count)().await? as i64)
    }
}

/// A connection of `N` nodes.
pub type Conn<N> = Connection<Cursor, N, ConnectionTotals>;

/// Wraps a domain page as a connection.
pub fn connection<M, N: OutputType>(
    page: Page<M>,
    cursor: impl Fn(&M) -> String,
    node: impl Fn(M) -> N,
    totals: ConnectionTotals,
) -> Conn<N> {
    let mut connection =
        Connection::with_additional_fields(page.has_previous_page, page.has_next_page, totals);
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|item| Edge::new(Cursor(cursor(&item)), node(item))),
    );
    connection
}
