//! Keyset pagination: pages are cut by the sort key of the last row seen, so a
//! page stays stable while rows are added and every page costs the same.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use entity::DecodeRow;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, IdenStatic, Order,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
    sea_query::{Asterisk, Expr, ExprTrait, IntoCondition, Query, WindowStatement},
};
use uuid::Uuid;

use super::{DomainError, DomainResult};

/// The most rows one page may hold.
pub const MAX_PAGE_SIZE: u64 = 100;
/// Rows per page when the client does not say.
pub const DEFAULT_PAGE_SIZE: u64 = 20;

/// The sort key of a row: an optional rank, an optional timestamp, then the
/// id as tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keyset {
    pub rank: Option<i16>,
    pub at: Option<DateTime<Utc>>,
    pub id: Uuid,
}

impl Keyset {
    pub fn id(id: Uuid) -> Self {
        Self {
            rank: None,
            at: None,
            id,
        }
    }

    pub fn at(at: DateTime<Utc>, id: Uuid) -> Self {
        Self {
            rank: None,
            at: Some(at),
            id,
        }
    }

    /// A key ordered by `rank` first (a queue's priority).
    pub fn ranked(rank: i16, at: DateTime<Utc>, id: Uuid) -> Self {
        Self {
            rank: Some(rank),
            at: Some(at),
            id,
        }
    }

    /// The opaque cursor string handed to clients.
    pub fn encode(&self) -> String {
        let text = match (self.rank, self.at) {
            (Some(rank), Some(at)) => {
                format!("k2:{rank}:{}:{}", at.timestamp_micros(), self.id.simple())
            }
            (_, Some(at)) => format!("k1:{}:{}", at.timestamp_micros(), self.id.simple()),
            (_, None) => format!("k1::{}", self.id.simple()),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    /// Parses a cursor made by [`Keyset::encode`].
    pub fn decode(field: &str, cursor: &str) -> DomainResult<Self> {
        let invalid = || DomainError::invalid(field, "is not a cursor returned by this connection");
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        if let Some(ranked) = text.strip_prefix("k2:") {
            let mut parts = ranked.splitn(3, ':');
            let rank = parts
                .next()
                .and_then(|r| r.parse::<i16>().ok())
                .ok_or_else(invalid)?;
            let at = parts
                .next()
                .and_then(|m| m.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(invalid)?;
            let id = Uuid::try_parse(parts.next().ok_or_else(invalid)?).map_err(|_| invalid())?;
            return Ok(Self::ranked(rank, at, id));
        }
        let mut parts = text.splitn(3, ':');
        if parts.next() != Some("k1") {
            return Err(invalid());
        }
        let at = match parts.next().ok_or_else(invalid)? {
            "" => None,
            micros => Some(
                micros
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .ok_or_else(invalid)?,
            ),
        };
        let id = Uuid::try_parse(parts.next().ok_or_else(invalid)?).map_err(|_| invalid())?;
        Ok(Self { rank: None, at, id })
    }
}

/// Which end of the ordered rows a page starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `first` / `after`.
    Forward,
    /// `last` / `before`.
    Backward,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub size: u64,
    pub after: Option<Keyset>,
    pub before: Option<Keyset>,
    pub direction: Direction,
}

impl PageRequest {
    /// Validates Relay arguments. `first` and `last` are 0..=100; giving both
    /// is refused because the result would be ambiguous.
    pub fn new(
        first: Option<i32>,
        after: Option<&str>,
        last: Option<i32>,
        before: Option<&str>,
    ) -> DomainResult<Self> {
        let size = |field: &str, value: i32| -> DomainResult<u64> {
            if value < 0 || value as u64 > MAX_PAGE_SIZE {
                Err(DomainError::invalid(
                    field,
                    format!("must be between 0 and {MAX_PAGE_SIZE} (got {value})"),
                ))
            } else {
                Ok(value as u64)
            }
        };
        let (size, direction) = match (first, last) {
            (Some(_), Some(_)) => {
                return Err(DomainError::invalid(
                    "last",
                    "give either first or last, not both",
                ));
            }
            (Some(first), None) => (size("first", first)?, Direction::Forward),
            (None, Some(last)) => (size("last", last)?, Direction::Backward),
            (None, None) if before.is_some() && after.is_none() => {
                (DEFAULT_PAGE_SIZE, Direction::Backward)
            }
            (None, None) => (DEFAULT_PAGE_SIZE, Direction::Forward),
        };
        Ok(Self {
            size,
            after: after.map(|c| Keyset::decode("after", c)).transpose()?,
            before: before.map(|c| Keyset::decode("before", c)).transpose()?,
            direction,
        })
    }

    /// The first `size` rows, for nested lists that only page forward.
    pub fn first(size: u64) -> Self {
        Self {
            size,
            after: None,
            before: None,
            direction: Direction::Forward,
        }
    }
}

/// One page of rows and whether there are more on either side.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_previous_page: bool,
    pub has_next_page: bool,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_previous_page: self.has_previous_page,
            has_next_page: self.has_next_page,
        }
    }
}

/// The natural order of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Ascending,
    Descending,
}

/// How a connection of `E` is ordered: by `at` (if any), then by `id`.
pub struct SortKey<E: EntityTrait> {
    pub at: Option<E::Column>,
    pub id: E::Column,
    pub sort: Sort,
}

impl<E: EntityTrait> SortKey<E> {
    /// Rows strictly after `key` in the order `sort`.
    pub fn beyond(&self, key: &Keyset, sort: Sort) -> Condition {
        let id_beyond = match sort {
            Sort::Ascending => self.id.gt(key.id),
            Sort::Descending => self.id.lt(key.id),
        };
        match (self.at, key.at) {
            (Some(at_col), Some(at)) => {
                let at_beyond = match sort {
                    Sort::Ascending => at_col.gt(at),
                    Sort::Descending => at_col.lt(at),
                };
                Condition::any()
                    .add(at_beyond)
                    .add(Condition::all().add(at_col.eq(at)).add(id_beyond))
            }
            _ => id_beyond.into_condition(),
        }
    }

    /// Adds the cursor conditions, order and limit (one extra row, to learn
    /// whether another page follows) of `page` to `select`.
    pub fn apply(&self, mut select: Select<E>, page: &PageRequest) -> Select<E> {
        let reverse = |sort: Sort| match sort {
            Sort::Ascending => Sort::Descending,
            Sort::Descending => Sort::Ascending,
        };
        if let Some(after) = &page.after {
            select = select.filter(self.beyond(after, self.sort));
        }
        if let Some(before) = &page.before {
            select = select.filter(self.beyond(before, reverse(self.sort)));
        }
        let scan = match page.direction {
            Direction::Forward => self.sort,
            Direction::Backward => reverse(self.sort),
        };
        let order = match scan {
            Sort::Ascending => Order::Asc,
            Sort::Descending => Order::Desc,
        };
        if let Some(at) = self.at {
            select = select.order_by(at, order.clone());
        }
        select.order_by(self.id, order).limit(page.size + 1)
    }
}

/// Cuts the rows fetched by [`SortKey::apply`] into a page.
pub fn finish<T>(mut rows: Vec<T>, page: &PageRequest) -> Page<T> {
    let more = rows.len() as u64 > page.size;
    rows.truncate(page.size as usize);
    match page.direction {
        Direction::Forward => Page {
            items: rows,
            has_previous_page: page.after.is_some(),
            has_next_page: more,
        },
        Direction::Backward => {
            rows.reverse();
            Page {
                items: rows,
                has_previous_page: more,
                has_next_page: page.before.is_some(),
            }
        }
    }
}

/// The first page of rows for each of many parents (a patient's latest
/// touchpoints, say) in one statement whose cost does not grow with the
/// number of parents. `select` carries the caller's clinic filter; the
/// parents are added here.
///
/// On PostgreSQL each parent's page is an index scan of its own
/// (`unnest` of the parents `CROSS JOIN LATERAL` the page, `LIMIT` one more
/// than the page size), and the parents travel as one array parameter, so
/// the statement is the same text for any number of parents and its plan is
/// cached. SQLite, without `LATERAL`, ranks the parents' rows with
/// `ROW_NUMBER()` and cuts them at the page size. (On PostgreSQL the ranked
/// form cost 1.1 ms of execution and 0.3 ms of planning for 50 patients'
/// touchpoints; the lateral one 0.3 ms, plan cached.)
pub async fn first_pages<E, C>(
    conn: &C,
    select: Select<E>,
    parent: E::Column,
    parents: &[Uuid],
    parent_of: impl Fn(&E::Model) -> Option<Uuid>,
    key: &SortKey<E>,
    page: &PageRequest,
) -> Result<HashMap<Uuid, Page<E::Model>>, sea_orm::DbErr>
where
    E: EntityTrait,
    E::Model: DecodeRow,
    C: ConnectionTrait,
{
    let order = match key.sort {
        Sort::Ascending => Order::Asc,
        Sort::Descending => Order::Desc,
    };
    let statement = match conn.get_database_backend() {
        DbBackend::Postgres => {
            let mut one_parent = select
                .filter(Expr::col((E::default(), parent)).equals((PARENTS, PARENT)))
                .into_query();
            if let Some(after) = &page.after {
                one_parent.cond_where(key.beyond(after, key.sort));
            }
            if let Some(at) = key.at {
                one_parent.order_by(at, order.clone());
            }
            one_parent
                .order_by(key.id, order.clone())
                .limit(page.size + 1);
            let inner = DbBackend::Postgres.build(&one_parent);
            let mut values = inner.values.map(|v| v.0).unwrap_or_default();
            values.push(parent_array(parents).into());
            let direction = match key.sort {
                Sort::Ascending => "ASC",
                Sort::Descending => "DESC",
            };
            let mut sort = String::new();
            if let Some(at) = key.at {
                sort.push_str(&format!(", \"{PAGE}\".\"{}\" {direction}", at.as_str()));
            }
            sort.push_str(&format!(", \"{PAGE}\".\"{}\" {direction}", key.id.as_str()));
            let sql = format!(
                "SELECT \"{PAGE}\".* FROM unnest(CAST(${n} AS uuid[])) AS \"{PARENTS}\"(\"{PARENT}\") \
                 CROSS JOIN LATERAL ({inner}) AS \"{PAGE}\" \
                 ORDER BY \"{PAGE}\".\"{parent}\"{sort}",
                n = values.len(),
                inner = inner.sql,
                parent = parent.as_str(),
            );
            sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
        }
        backend => {
            let mut ranked = select
                .filter(parent.is_in(parents.iter().copied()))
                .into_query();
            if let Some(after) = &page.after {
                ranked.cond_where(key.beyond(after, key.sort));
            }
            let mut window = WindowStatement::partition_by(parent);
            if let Some(at) = key.at {
                window.order_by(at, order.clone());
            }
            window.order_by(key.id, order);
            ranked.expr_window_as(Expr::cust("ROW_NUMBER()"), window, RANK);
            backend.build(
                Query::select()
                    .column(Asterisk)
                    .from_subquery(ranked, "ranked")
                    .and_where(Expr::col(RANK).lte(page.size as i64 + 1))
                    .order_by(parent, Order::Asc)
                    .order_by(RANK, Order::Asc),
            )
        }
    };
    // The statement wraps `select`, which carries the caller's clinic filter.
    let rows = conn.query_all_raw(statement).await?;
    let mut grouped: HashMap<Uuid, Vec<E::Model>> = HashMap::new();
    for row in &rows {
        let row = E::Model::decode_row(row)?;
        if let Some(parent) = parent_of(&row) {
            grouped.entry(parent).or_default().push(row);
        }
    }
    Ok(grouped
        .into_iter()
        .map(|(parent, rows)| (parent, finish(rows, page)))
        .collect())
}

/// `parents` as a PostgreSQL array literal (`{…,…}`), one text parameter
/// cast to `uuid[]` by the statement.
fn parent_array(parents: &[Uuid]) -> String {
    let mut array = String::with_capacity(2 + parents.len() * 37);
    array.push('{');
    for (i, parent) in parents.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(parent.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    }
    array.push('}');
    array
}

/// The aliases of [`first_pages`]'s PostgreSQL statement: the parents, their
/// id column, and each parent's page.
const PARENTS: &str = "jm_parents";
const PARENT: &str = "id";
const PAGE: &str = "jm_page";

const RANK: &str = "jm_rank";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let id = Uuid::now_v7();
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        for key in [Keyset::id(id), Keyset::at(at, id)] {
            assert_eq!(Keyset::decode("after", &key.encode()).unwrap(), key);
        }
        assert!(Keyset::decode("after", "nope").is_err());
        assert!(Keyset::decode("after", &URL_SAFE_NO_PAD.encode("k1:x:y")).is_err());
    }

    #[test]
    fn page_sizes_are_capped() {
        assert!(PageRequest::new(Some(101), None, None, None).is_err());
        assert!(PageRequest::new(Some(-1), None, None, None).is_err());
        assert!(PageRequest::new(Some(1), None, Some(1), None).is_err());
        assert_eq!(
            PageRequest::new(None, None, None, None).unwrap().size,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            PageRequest::new(None, None, Some(5), None)
                .unwrap()
                .direction,
            Direction::Backward
        );
    }

    #[test]
    fn finish_reports_more_rows() {
        let page = PageRequest::new(Some(2), None, None, None).unwrap();
        let done = finish(vec![1, 2, 3], &page);
        assert_eq!(done.items, vec![1, 2]);
        assert!(done.has_next_page && !done.has_previous_page);
        let page = PageRequest::new(None, None, Some(2), None).unwrap();
        let done = finish(vec![3, 2, 1], &page);
        assert_eq!(done.items, vec![2, 3]);
        assert!(done.has_previous_page && !done.has_next_page);
    }
}
