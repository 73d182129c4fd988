//! Relay cursor connections (`edges`, `nodes`, `pageInfo`, `totalCount`).
//!
//! `totalCount` costs a COUNT query, so it is computed only when a client
//! selects it.

use std::{future::Future, pin::Pin, sync::Arc};

use async_graphql::{
    Object, OutputType,
    connection::{Connection, CursorType, Edge},
    dataloader::{DataLoader, Loader},
};
use uuid::Uuid;

use super::loaders::{Loaders, PagesAhead};
use crate::{
    domain::{
        DomainError, DomainResult,
        page::{Keyset, Page, PageRequest},
    },
    events::log,
};

/// An edge's opaque cursor, encoded only when a client selects `cursor`
/// (most reads of nested pages never do, and a page of 50 patients has
/// hundreds of edges).
pub struct Cursor(CursorKey);

enum CursorKey {
    /// A position in a keyset-ordered list ([`Keyset::encode`]).
    Keyset(Keyset),
    /// A position in the clinic's event log ([`log::cursor`]).
    Sequence(i64),
    /// A cursor as a client sent it.
    Text(String),
}

impl Cursor {
    /// The cursor of the event numbered `sequence`.
    pub fn sequence(sequence: i64) -> Self {
        Self(CursorKey::Sequence(sequence))
    }
}

impl From<Keyset> for Cursor {
    fn from(keyset: Keyset) -> Self {
        Self(CursorKey::Keyset(keyset))
    }
}

impl CursorType for Cursor {
    type Error = std::convert::Infallible;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        Ok(Cursor(CursorKey::Text(s.to_string())))
    }

    fn encode_cursor(&self) -> String {
        match &self.0 {
            CursorKey::Keyset(keyset) => keyset.encode(),
            CursorKey::Sequence(sequence) => log::cursor(*sequence),
            CursorKey::Text(text) => text.clone(),
        }
    }
}

type CountFuture = Pin<Box<dyn Future<Output = DomainResult<u64>> + Send>>;

/// The connection fields beyond edges and page info, computed on demand.
pub struct ConnectionTotals {
    count: Arc<dyn Fn() -> CountFuture + Send + Sync>,
    /// The count once made: a page answered in one pass counts before it is
    /// answered, and the resolvers, if they answer it after all, reuse it.
    counted: std::sync::OnceLock<u64>,
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
            counted: std::sync::OnceLock::new(),
        }
    }

    /// How many items match, across all pages (counted once).
    pub async fn count(&self) -> DomainResult<u64> {
        if let Some(counted) = self.counted.get() {
            return Ok(*counted);
        }
        let counted = (self.count)().await?;
        Ok(*self.counted.get_or_init(|| counted))
    }

    /// The count, if it was made.
    pub fn counted(&self) -> Option<u64> {
        self.counted.get().copied()
    }
}

#[Object]
impl ConnectionTotals {
    /// How many items match, across all pages.
    async fn total_count(&self) -> async_graphql::Result<i64> {
        Ok(self.count().await? as i64)
    }
}

/// A connection of `N` nodes.
pub type Conn<N> = Connection<Cursor, N, ConnectionTotals>;

/// Wraps a domain page as a connection.
pub fn connection<M, N: OutputType>(
    page: Page<M>,
    cursor: impl Fn(&M) -> Cursor,
    node: impl Fn(M) -> N,
    totals: ConnectionTotals,
) -> Conn<N> {
    let mut connection =
        Connection::with_additional_fields(page.has_previous_page, page.has_next_page, totals);
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|item| Edge::new(cursor(&item), node(item))),
    );
    connection
}

/// A page of one record's children, loaded in batch with the same page of
/// every other record in the response (`pages`), and their total counted
/// the same way (`counts`) only when a client asks for `totalCount`.
pub struct Nested<P: 'static, C: 'static> {
    /// The loader of pages of children.
    pub pages: fn(&Loaders) -> &DataLoader<P>,
    /// The loader of the children's counts.
    pub counts: fn(&Loaders) -> &DataLoader<C>,
}

impl<P, C> Clone for Nested<P, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P, C> Copy for Nested<P, C> {}

impl<P, C> Nested<P, C> {
    /// The connection of `parent`'s children for `first`/`after`.
    pub async fn load<M, N>(
        self,
        loaders: &Arc<Loaders>,
        parent: Uuid,
        first: Option<i32>,
        after: Option<String>,
        cursor: impl Fn(&M) -> Cursor,
        node: impl Fn(M) -> N,
    ) -> async_graphql::Result<Conn<N>>
    where
        P: Loader<(Uuid, PageRequest), Value = Page<M>, Error = DomainError>,
        C: Loader<Uuid, Value = u64, Error = DomainError>,
        M: Send + Sync + Clone + 'static,
        N: OutputType,
    {
        let page = PageRequest::new(first, after.as_deref(), None, None)?;
        let found = (self.pages)(loaders).load_one((parent, page)).await?;
        Ok(self.connection(loaders, parent, page, found, cursor, node))
    }

    /// The connection of `parent`'s children for `first`/`after` when its
    /// page was read ahead into `ahead`, without waiting; `None` when it has
    /// to be loaded.
    #[allow(clippy::too_many_arguments)]
    pub fn ahead<M, N>(
        self,
        ahead: &PagesAhead<M>,
        loaders: &Arc<Loaders>,
        parent: Uuid,
        first: Option<i32>,
        after: Option<&str>,
        cursor: impl Fn(&M) -> Cursor,
        node: impl Fn(M) -> N,
    ) -> async_graphql::Result<Option<Conn<N>>>
    where
        C: Loader<Uuid, Value = u64, Error = DomainError>,
        M: Clone,
        N: OutputType,
    {
        let page = PageRequest::new(first, after, None, None)?;
        Ok(ahead
            .get(&(parent, page))
            .map(|found| self.connection(loaders, parent, page, Some(found), cursor, node)))
    }

    fn connection<M, N>(
        self,
        loaders: &Arc<Loaders>,
        parent: Uuid,
        page: PageRequest,
        found: Option<Page<M>>,
        cursor: impl Fn(&M) -> Cursor,
        node: impl Fn(M) -> N,
    ) -> Conn<N>
    where
        C: Loader<Uuid, Value = u64, Error = DomainError>,
        N: OutputType,
    {
        let found = found.unwrap_or_else(|| Page {
            items: Vec::new(),
            has_previous_page: page.after.is_some(),
            has_next_page: false,
        });
        let (loaders, counts) = (loaders.clone(), self.counts);
        connection(
            found,
            cursor,
            node,
            ConnectionTotals::new(move || {
                let loaders = loaders.clone();
                async move { Ok(counts(&loaders).load_one(parent).await?.unwrap_or(0)) }
            }),
        )
    }
}
