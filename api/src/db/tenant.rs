//! Tenant-scoped data access. Every query of a clinic's rows starts here, from
//! the caller's [`Principal`], so the clinic filter cannot be forgotten: the
//! unscoped SeaORM entry points (`find`, `update_many`, `delete_many`) are
//! refused by clippy everywhere else (see `clippy.toml`).

use entity::ClinicOwned;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, DeleteMany, EntityTrait, QueryFilter, Select, UpdateMany,
};
use uuid::Uuid;

use crate::auth::Principal;

impl Principal {
    /// All rows of `E` that belong to the caller's clinic.
    #[allow(clippy::disallowed_methods)]
    pub fn select<E: ClinicOwned>(&self) -> Select<E> {
        E::find().filter(E::clinic_column().eq(self.clinic_id))
    }

    /// The row `id` of `E` in the caller's clinic, if there is one (a row of
    /// another clinic is not there).
    pub async fn find_row<E: ClinicOwned, C: ConnectionTrait>(
        &self,
        conn: &C,
        id: Uuid,
    ) -> Result<Option<E::Model>, DbErr> {
        self.select::<E>()
            .filter(E::id_column().eq(id))
            .one(conn)
            .await
    }

    /// The rows of `E` with the given ids (those of other clinics are
    /// skipped), read [`super::ID_CHUNK`] ids a statement.
    pub async fn by_ids<E: ClinicOwned, C: ConnectionTrait>(
        &self,
        conn: &C,
        ids: &[Uuid],
    ) -> Result<Vec<<E as EntityTrait>::Model>, DbErr> {
        let mut rows = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::ID_CHUNK) {
            rows.extend(
                self.select::<E>()
                    .filter(E::id_column().is_in(chunk.iter().copied()))
                    .all(conn)
                    .await?,
            );
        }
        Ok(rows)
    }

    /// An update of `E` rows limited to the caller's clinic.
    #[allow(clippy::disallowed_methods)]
    pub fn update_rows<E: ClinicOwned>(&self) -> UpdateMany<E> {
        E::update_many().filter(E::clinic_column().eq(self.clinic_id))
    }

    /// A delete of `E` rows limited to the caller's clinic.
    #[allow(clippy::disallowed_methods)]
    pub fn delete_rows<E: ClinicOwned>(&self) -> DeleteMany<E> {
        E::delete_many().filter(E::clinic_column().eq(self.clinic_id))
    }
}
