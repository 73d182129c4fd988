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
    /// The entity's columns in the model's field order.
    const COLUMNS: &'static [&'static str] = &[];

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
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

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
    use super::DecodeRow;
    use crate::{feedback, journeys, patients, touchpoints};
    use sea_orm::{
        ConnectionTrait, Database, EntityTrait, FromQueryResult, IdenStatic, IntoActiveModel,
        Iterable, QuerySelect, QueryTrait,
    };

    fn columns<E: EntityTrait>() -> Vec<&'static str> {
        E::Column::iter().map(|c| c.as_str()).collect()
    }

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

    /// By position and by name give the same model, NULLs included, and a
    /// row in another column order is still decoded (by name).
    #[tokio::test]
    async fn by_position_reads_what_by_name_reads() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        let schema = sea_orm::Schema::new(db.get_database_backend());
        db.execute(&schema.create_table_from_entity(touchpoints::Entity))
            .await
            .unwrap();
        let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let full = touchpoints::Model {
            id: uuid::Uuid::now_v7(),
            clinic_id: uuid::Uuid::now_v7(),
            patient_id: uuid::Uuid::now_v7(),
            journey_id: Some(uuid::Uuid::now_v7()),
            stage_id: Some(uuid::Uuid::now_v7()),
            channel: "SMS".into(),
            direction: "INBOUND".into(),
            kind: "booking".into(),
            summary: Some("asked about fillers".into()),
            occurred_at: at,
            staff_id: Some(uuid::Uuid::now_v7()),
            emotion: Some(-2),
            moment_of_truth: true,
            external_ref: Some("crm-1".into()),
            created_at: at,
        };
        let sparse = touchpoints::Model {
            id: uuid::Uuid::now_v7(),
            journey_id: None,
            stage_id: None,
            summary: None,
            staff_id: None,
            emotion: None,
            moment_of_truth: false,
            external_ref: None,
            ..full.clone()
        };
        touchpoints::Entity::insert_many([
            full.clone().into_active_model(),
            sparse.clone().into_active_model(),
        ])
        .exec(&db)
        .await
        .unwrap();

        let in_order = db
            .get_database_backend()
            .build(&touchpoints::Entity::find().into_query());
        let rows = db.query_all_raw(in_order).await.unwrap();
        let row = rows[0].try_as_sqlite_row().unwrap();
        assert!(super::lays_out(
            sea_orm::sqlx::Row::columns(row),
            touchpoints::Model::COLUMNS
        ));
        for row in &rows {
            assert_eq!(
                touchpoints::Model::decode_row(row).unwrap(),
                touchpoints::Model::from_query_result(row, "").unwrap()
            );
        }
        let decoded: Vec<_> = rows
            .iter()
            .map(|r| touchpoints::Model::decode_row(r).unwrap())
            .collect();
        assert!(decoded.contains(&full) && decoded.contains(&sparse));

        // The columns reversed: not the entity's layout, decoded by name.
        let mut reversed = touchpoints::Entity::find().select_only();
        for column in touchpoints::Column::iter()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            reversed = reversed.column(column);
        }
        let rows = db
            .query_all_raw(db.get_database_backend().build(&reversed.into_query()))
            .await
            .unwrap();
        let decoded: Vec<_> = rows
            .iter()
            .map(|r| touchpoints::Model::decode_row(r).unwrap())
            .collect();
        assert!(decoded.contains(&full) && decoded.contains(&sparse));
    }
}
