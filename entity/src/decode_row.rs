//! Decoding the rows of the hot reads (a page of patients, their journeys,
//! touchpoints and feedback) by position.
//!
//! SeaORM's derived decoder finds every column by name (a hash lookup a
//! column) and turns every NULL of an optional column into a formatted error
//! before it becomes `None`: on a page of 50 patients that is thousands of
//! small allocations, a tenth of the request's CPU. [`DecodeRow`] reads the
//! columns by position instead, straight from the driver's row, when the row
//! starts with the entity's columns in the entity's order (checked on every
//! row, a few string comparisons); any other row (prefixed or reordered
//! columns) is decoded by name as before, so the result is the same either way.

use sea_orm::{DbErr, FromQueryResult, QueryResult, RuntimeErr, sqlx};

/// A model decoded from a query row, by position where the row allows.
pub trait DecodeRow: FromQueryResult {
    /// The model of `row` (by name, unless the model's module reads by position).
    fn decode_row(row: &QueryResult) -> Result<Self, DbErr> {
        Self::from_query_result(row, "")
    }
}

/// Whether `columns` starts with `names`, in order.
pub fn lays_out<C: sqlx::Column>(columns: &[C], names: &[&str]) -> bool {
    columns.len() >= names.len() && names.iter().zip(columns).all(|(name, c)| c.name() == *name)
}

/// A driver error as SeaORM reports it.
pub fn query_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(error)))
}

/// Defines an entity's `Model` (as written inside it) and its [`DecodeRow`]
/// by position, on PostgreSQL and SQLite alike. Column names are the field
/// names, as SeaORM derives them.
macro_rules! model_decoded_by_position {
    (
        $(#[$($attr:tt)*])*
        pub struct Model {
            $( $(#[$($field_attr:tt)*])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$($attr)*])*
        pub struct Model {
            $( $(#[$($field_attr)*])* pub $field : $ty ),*
        }

        impl Model {
            /// The entity's columns in the model's field order: the layout a
            /// row must start with to be decoded by position.
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The model from a row whose first columns are the model's, in order.
            fn by_position<R>(row: &R) -> Result<Self, sea_orm::sqlx::Error>
            where
                R: sea_orm::sqlx::Row,
                usize: sea_orm::sqlx::ColumnIndex<R>,
                $( $ty: for<'r> sea_orm::sqlx::Decode<'r, R::Database> + sea_orm::sqlx::Type<R::Database>, )*
            {
                let mut at = 0usize;
                Ok(Self {
                    $( $field: {
                        at += 1;
                        row.try_get(at - 1)?
                    }, )*
                })
            }
        }

        impl $crate::DecodeRow for Model {
            fn decode_row(row: &sea_orm::QueryResult) -> Result<Self, sea_orm::DbErr> {
                use sea_orm::sqlx::Row as _;
                if let Some(row) = row.try_as_pg_row() {
                    if $crate::decode_row::lays_out(row.columns(), Self::COLUMNS) {
                        return Self::by_position(row).map_err($crate::decode_row::query_error);
                    }
                } else if let Some(row) = row.try_as_sqlite_row() {
                    if $crate::decode_row::lays_out(row.columns(), Self::COLUMNS) {
                        return Self::by_position(row).map_err($crate::decode_row::query_error);
                    }
                }
                <Self as sea_orm::FromQueryResult>::from_query_result(row, "")
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::{feedback, journeys, patients, touchpoints};
    use sea_orm::{EntityTrait, IdenStatic, Iterable};

    fn columns<E: EntityTrait>() -> Vec<&'static str> {
        E::Column::iter().map(|c| c.as_str()).collect()
    }

    /// The layout each model checks rows against is SeaORM's own column
    /// list (names and order); the e2e suite (`timeline::hot_rows_*`) checks
    /// the decoded models on both backends.
    #[test]
    fn positions_are_the_entity_columns_in_order() {
        assert_eq!(
            touchpoints::Model::COLUMNS,
            columns::<touchpoints::Entity>()
        );
        assert_eq!(feedback::Model::COLUMNS, columns::<feedback::Entity>());
        assert_eq!(patients::Model::COLUMNS, columns::<patients::Entity>());
        assert_eq!(journeys::Model::COLUMNS, columns::<journeys::Entity>());
    }
}
