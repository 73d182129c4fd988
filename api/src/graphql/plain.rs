//! Plain selections: the parts of a response that need no database and no
//! waiting, resolved in one pass instead of a future per field.
//!
//! async-graphql resolves every field of every object as its own boxed
//! future, polled through a `FuturesUnordered` made for that object. The
//! patient list front ends page through all day (W1 in `journeymap bench`:
//! 50 patients, their journeys, five touchpoints and three feedback each)
//! has about 2,600 fields, and that machinery was about a tenth of the
//! server's time under it (README, Performance), though the rows below a
//! nested page are in memory once the page is loaded.
//!
//! A type that implements [`Plain`] answers the fields it can answer at
//! once; [`PlainConn`] and [`PlainList`] wrap a connection and a list of
//! such values and, when their whole selection is plain, build the response
//! value directly. Anything else in the selection — a fragment, a custom
//! directive (`@skip` and `@include` are applied to the document before
//! execution), a field that loads, a field that fails (a refused right, a corrupt stored
//! value) — sends the whole value back to async-graphql's own resolver, so
//! the response is the same either way, errors and all; only the time
//! differs. Each plain field calls the resolver method the schema calls, so
//! there is one definition of what a field means.

use std::{
    borrow::Cow,
    sync::atomic::{AtomicU64, Ordering},
};

use async_graphql::{
    Context, ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
    connection::Edge,
    indexmap::IndexMap,
    parser::types::{Field, Selection},
    registry::Registry,
};
use futures::FutureExt;

use super::{
    RequestState,
    connection::{Conn, Cursor},
};

/// How many of a request's plain values were answered in one pass, and how
/// many went back to the resolvers (a selection that is not plain): a client
/// whose documents never take the fast path shows in the metrics.
#[derive(Debug, Default)]
pub struct PlainTally {
    one_pass: AtomicU64,
    resolvers: AtomicU64,
}

impl PlainTally {
    fn count(&self, answered: bool) {
        let counter = if answered {
            &self.one_pass
        } else {
            &self.resolvers
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (answered in one pass, answered by the resolvers).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.one_pass.load(Ordering::Relaxed),
            self.resolvers.load(Ordering::Relaxed),
        )
    }
}

/// `value`, counted in the request's [`PlainTally`].
fn tallied(ctx: &ContextSelectionSet<'_>, value: Option<Value>) -> Option<Value> {
    if let Some(state) = ctx.data_opt::<RequestState>() {
        state.plain.count(value.is_some());
    }
    value
}

/// An object whose fields can be answered without waiting.
pub trait Plain: Send + Sync {
    /// The object's type name, for `__typename`.
    fn type_name(&self) -> Cow<'static, str>;

    /// The value of the field `ctx` stands at, or `None` when it is not
    /// plain (it loads, fails, or is not one this type answers at once).
    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value>;

    /// Reads ahead, for all of `items` at once, the rows that the fields
    /// selected in `ctx` would each load, so that [`Plain::plain_field`]
    /// answers them without waiting (see [`ReadAhead`]). Reads nothing by
    /// default.
    ///
    /// [`ReadAhead`]: super::loaders::ReadAhead
    fn read_ahead<'a>(
        items: &'a [&'a Self],
        ctx: &'a ContextSelectionSet<'a>,
    ) -> impl Future<Output = ()> + Send + 'a
    where
        Self: Sized,
    {
        let _ = (items, ctx);
        async {}
    }

    /// Forgets what [`Plain::read_ahead`] read for `items`, once their list
    /// (whose selection set `ctx` stands at) is answered.
    fn forget_ahead(items: &[&Self], ctx: &ContextSelectionSet<'_>)
    where
        Self: Sized,
    {
        let _ = (items, ctx);
    }
}

impl<T: Plain + ?Sized> Plain for &T {
    fn type_name(&self) -> Cow<'static, str> {
        (**self).type_name()
    }

    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        (**self).plain_field(ctx)
    }
}

/// The value of `value` for the selection set of `ctx`, or `None` if any
/// part of it is not plain.
pub fn object<T: Plain + ?Sized>(value: &T, ctx: &ContextSelectionSet<'_>) -> Option<Value> {
    let items = &ctx.item.node.items;
    let mut fields: IndexMap<Name, Value> = IndexMap::with_capacity(items.len());
    for selection in items {
        let Selection::Field(field) = &selection.node else {
            return None;
        };
        if !field.node.directives.is_empty() {
            return None;
        }
        let key = field.node.response_key().node.clone();
        // A field selected twice has its selections merged: leave that to
        // async-graphql.
        if fields.contains_key(&key) {
            return None;
        }
        let value = if field.node.name.node == "__typename" {
            Value::String(value.type_name().into_owned())
        } else {
            value.plain_field(&ctx.with_field(field))?
        };
        fields.insert(key, value);
    }
    Some(Value::Object(fields))
}

/// The list of `items`, each for the selection set of `ctx`, or `None` if
/// any part of any of them is not plain.
fn objects<T: Plain>(
    items: impl IntoIterator<Item = T>,
    ctx: &ContextSelectionSet<'_>,
) -> Option<Value> {
    items
        .into_iter()
        .map(|item| object(&item, ctx))
        .collect::<Option<Vec<_>>>()
        .map(Value::List)
}

/// The value of the field `ctx` stands at, when it is an object.
pub fn nested<T: Plain + ?Sized>(value: &T, ctx: &Context<'_>) -> Option<Value> {
    object(value, &ctx.with_selection_set(&ctx.item.node.selection_set))
}

/// The value of the field `ctx` stands at, when it is a list of objects.
pub fn nested_list<T: Plain>(
    items: impl IntoIterator<Item = T>,
    ctx: &Context<'_>,
) -> Option<Value> {
    objects(items, &ctx.with_selection_set(&ctx.item.node.selection_set))
}

/// The value of an output value that is ready at once (a scalar, an enum, a
/// list or option of them), through its own `OutputType::resolve` so that it
/// is written exactly as the schema writes it.
pub fn ready<T: OutputType>(value: &T, ctx: &Context<'_>) -> Option<Value> {
    let selection = ctx.with_selection_set(&ctx.item.node.selection_set);
    value.resolve(&selection, ctx.item).now_or_never()?.ok()
}

/// The value of a resolver method's future, if it is ready at once and
/// succeeded.
pub fn answered<T: OutputType>(
    answer: impl Future<Output = async_graphql::Result<T>>,
    ctx: &Context<'_>,
) -> Option<Value> {
    ready(&answer.now_or_never()?.ok()?, ctx)
}

/// The value of an infallible resolver method's future, if it is ready at
/// once.
pub fn given<T: OutputType>(answer: impl Future<Output = T>, ctx: &Context<'_>) -> Option<Value> {
    ready(&answer.now_or_never()?, ctx)
}

/// A connection of plain nodes: the same schema type as [`Conn`], resolved
/// in one pass when its selection is plain. `totalCount`, which counts in
/// the database, is counted first when the connection itself is resolved,
/// and is not plain inside a value answered in one pass.
pub struct PlainConn<N: OutputType>(pub Conn<N>);

impl<N: OutputType + Plain> OutputType for PlainConn<N> {
    fn type_name() -> Cow<'static, str> {
        Conn::<N>::type_name()
    }

    fn qualified_type_name() -> String {
        Conn::<N>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Conn::<N>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let nodes: Vec<&N> = self.0.edges.iter().map(|edge| &edge.node).collect();
        let selections = node_selections(ctx);
        // `totalCount` counts in the database: counted beside the reads
        // ahead, it is then as plain as the rest (a failed count is left to
        // the resolvers, which report it).
        let count = async {
            if selects(ctx, "totalCount") {
                let _ = self.0.additional_fields.count().await;
            }
        };
        let reads = futures::future::join_all(
            selections
                .iter()
                .filter(|_| !nodes.is_empty())
                .map(|selection| N::read_ahead(&nodes, selection)),
        );
        futures::future::join(count, reads).await;
        let answer = match tallied(ctx, object(self, ctx)) {
            Some(value) => Ok(value),
            None => self.0.resolve(ctx, field).await,
        };
        N::forget_ahead(&nodes, ctx);
        answer
    }
}

/// Whether the selection set of `ctx` selects the field `name` (directly).
fn selects(ctx: &ContextSelectionSet<'_>, name: &str) -> bool {
    ctx.item.node.items.iter().any(|selection| {
        matches!(&selection.node, Selection::Field(field) if field.node.name.node == name)
    })
}

/// The selection sets a connection's nodes are answered for: under
/// `edges { node { … } }` and under `nodes { … }`.
fn node_selections<'a>(ctx: &ContextSelectionSet<'a>) -> Vec<ContextSelectionSet<'a>> {
    let fields =
        |set: &'a async_graphql::Positioned<async_graphql::parser::types::SelectionSet>| {
            set.node
                .items
                .iter()
                .filter_map(|selection| match &selection.node {
                    Selection::Field(field) => Some(field),
                    _ => None,
                })
        };
    let mut selections = Vec::new();
    for field in fields(ctx.item) {
        match field.node.name.node.as_str() {
            "nodes" => selections.push(ctx.with_selection_set(&field.node.selection_set)),
            "edges" => {
                for inner in fields(&field.node.selection_set) {
                    if inner.node.name.node == "node" {
                        selections.push(ctx.with_selection_set(&inner.node.selection_set));
                    }
                }
            }
            _ => {}
        }
    }
    selections
}

impl<N: OutputType + Plain> Plain for PlainConn<N> {
    fn type_name(&self) -> Cow<'static, str> {
        Conn::<N>::type_name()
    }

    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        let connection = &self.0;
        match ctx.item.node.name.node.as_str() {
            "edges" => nested_list(connection.edges.iter().map(PlainEdge), ctx),
            "nodes" => nested_list(connection.edges.iter().map(|edge| &edge.node), ctx),
            "totalCount" => Some(Value::from(connection.additional_fields.counted()? as i64)),
            "pageInfo" => ready(
                &async_graphql::connection::PageInfo {
                    has_previous_page: connection.has_previous_page,
                    has_next_page: connection.has_next_page,
                    start_cursor: connection.edges.first().map(|e| cursor_text(&e.cursor)),
                    end_cursor: connection.edges.last().map(|e| cursor_text(&e.cursor)),
                },
                ctx,
            ),
            _ => None,
        }
    }
}

fn cursor_text(cursor: &Cursor) -> String {
    async_graphql::connection::CursorType::encode_cursor(cursor)
}

/// One edge of a [`PlainConn`].
struct PlainEdge<'a, N: OutputType>(&'a Edge<Cursor, N, async_graphql::connection::EmptyFields>);

impl<N: OutputType + Plain> Plain for PlainEdge<'_, N> {
    fn type_name(&self) -> Cow<'static, str> {
        <Edge<Cursor, N, async_graphql::connection::EmptyFields> as OutputType>::type_name()
    }

    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        match ctx.item.node.name.node.as_str() {
            "node" => nested(&self.0.node, ctx),
            "cursor" => Some(Value::String(cursor_text(&self.0.cursor))),
            _ => None,
        }
    }
}

/// A list of plain objects: the same schema type as `Vec<T>`, resolved in
/// one pass when its selection is plain.
pub struct PlainList<T>(pub Vec<T>);

impl<T: OutputType + Plain> OutputType for PlainList<T> {
    fn type_name() -> Cow<'static, str> {
        Vec::<T>::type_name()
    }

    fn qualified_type_name() -> String {
        Vec::<T>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Vec::<T>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match tallied(ctx, objects(&self.0, ctx)) {
            Some(list) => Ok(list),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
    use serde_json::json;

    use super::*;
    use crate::{
        domain::page::Page,
        graphql::connection::{ConnectionTotals, connection},
    };

    /// How many plain fields were asked for.
    #[derive(Default)]
    struct Asked(AtomicUsize);

    struct Leaf {
        n: i32,
        refused: bool,
    }

    #[Object]
    impl Leaf {
        async fn n(&self) -> i32 {
            self.n
        }

        async fn label(&self) -> String {
            format!("leaf {}", self.n)
        }

        async fn maybe(&self) -> Option<bool> {
            (self.n % 2 == 0).then_some(true)
        }

        async fn checked(&self) -> async_graphql::Result<i32> {
            if self.refused {
                Err("refused".into())
            } else {
                Ok(self.n)
            }
        }

        async fn later(&self) -> i32 {
            tokio::task::yield_now().await;
            self.n
        }

        async fn child(&self) -> Leaf {
            Leaf {
                n: self.n + 100,
                refused: self.refused,
            }
        }
    }

    impl Plain for Leaf {
        fn type_name(&self) -> Cow<'static, str> {
            <Self as OutputType>::type_name()
        }

        fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
            ctx.data_unchecked::<Arc<Asked>>()
                .0
                .fetch_add(1, Ordering::Relaxed);
            match ctx.item.node.name.node.as_str() {
                "n" => given(self.n(ctx), ctx),
                "label" => given(self.label(ctx), ctx),
                "maybe" => given(self.maybe(ctx), ctx),
                "checked" => answered(self.checked(ctx), ctx),
                "later" => given(self.later(ctx), ctx),
                "child" => nested(
                    &Leaf {
                        n: self.n + 100,
                        refused: self.refused,
                    },
                    ctx,
                ),
                _ => None,
            }
        }
    }

    fn leaves() -> Vec<Leaf> {
        (0..4).map(|n| Leaf { n, refused: n == 2 }).collect()
    }

    fn page() -> Conn<Leaf> {
        connection(
            Page {
                items: leaves(),
                has_previous_page: true,
                has_next_page: false,
            },
            |leaf| Cursor::sequence(leaf.n.into()),
            |leaf| leaf,
            ConnectionTotals::new(|| async { Ok(4) }),
        )
    }

    struct Query;

    #[Object]
    impl Query {
        async fn via_plain(&self) -> PlainList<Leaf> {
            PlainList(leaves())
        }

        async fn resolved(&self) -> Vec<Leaf> {
            leaves()
        }

        async fn via_plain_page(&self) -> PlainConn<Leaf> {
            PlainConn(page())
        }

        async fn resolved_page(&self) -> Conn<Leaf> {
            page()
        }
    }

    /// The answer to `selection` under `list: viaPlain` and `list:
    /// resolved` (and the same for pages: names of one length, so that error
    /// locations match); returns how many plain fields were asked for.
    async fn same_either_way(selection: &str, page_selection: &str) -> usize {
        let asked = Arc::new(Asked::default());
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .data(asked.clone())
            .finish();
        let answer = |root: &str, selection: &str| {
            let document = format!("{{ list: {root} {selection} }}");
            let schema = schema.clone();
            async move { serde_json::to_value(schema.execute(document).await).unwrap() }
        };
        assert_eq!(
            answer("viaPlain", selection).await,
            answer("resolved", selection).await,
            "{selection}"
        );
        assert_eq!(
            answer("viaPlainPage", page_selection).await,
            answer("resolvedPage", page_selection).await,
            "{page_selection}"
        );
        asked.0.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn plain_answers_are_the_resolvers_answers() {
        let fields = same_either_way(
            "{ __typename n label maybe a: n child { n c: label child { n } } }",
            "{ __typename pageInfo { hasPreviousPage hasNextPage startCursor endCursor } \
             edges { __typename cursor node { n label } } nodes { n } }",
        )
        .await;
        // Four leaves of five fields, three of their children's and one of
        // their grandchildren's; then four nodes of two and four of one.
        assert_eq!(fields, 4 * 9 + 4 * 2 + 4, "the plain path was not taken");
    }

    #[tokio::test]
    async fn whatever_is_not_plain_is_resolved() {
        // A failing field: its error, at its path, and null.
        same_either_way("{ n checked }", "{ edges { node { n checked } } }").await;
        // A field that has to wait.
        same_either_way("{ n later }", "{ edges { node { later } } }").await;
        // Fragments, a field selected twice, totals. (`@skip` and `@include`
        // are gone before execution: async-graphql applies them to the
        // document.)
        assert_eq!(
            same_either_way(
                "{ ... on Leaf { n } }",
                "{ edges { ... on LeafEdge { cursor } } }"
            )
            .await,
            0
        );
        same_either_way(
            "{ n child { n } child { label } }",
            "{ totalCount edges { cursor } }",
        )
        .await;
        let refused = serde_json::to_value(
            Schema::build(Query, EmptyMutation, EmptySubscription)
                .data(Arc::new(Asked::default()))
                .finish()
                .execute("{ viaPlain { checked } }")
                .await,
        )
        .unwrap();
        assert_eq!(
            refused["errors"][0]["path"],
            json!(["viaPlain", 2, "checked"])
        );
    }
}
