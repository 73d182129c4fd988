//! Tenant-scoped data access. Every query of a clinic's rows starts here, from
//! the caller's [`Principal`], so the clinic filter cannot be forgotten: the
//! unscoped SeaORM entry points (`find`, `update_many`, `delete_many`) are
//! refused by clippy everywhere else (see `clippy.toml`).

use entity::ClinicOwned;
use sea_orm::{ColumnTrait, ConnectionTrait, DeleteMany, QueryFilter, Select, UpdateMany};
use uuid::Uuid;

use super::{DomainError, DomainResult};
use crate::auth::Principal;

impl Principal {
    /// All rows of `E` that belong to the caller's clinic.
    #[allow(clippy::disallowed_methods)]
    pub fn select<E: ClinicOwned>(&self) -> Select<E> {
        E::find().filter(E::clinic_column().eq(self.clinic_id))
    }

    /// The row `id` of `E` in the caller's clinic, or `NOT_FOUND` (also when
    /// the row belongs to another clinic).
    pub async fn get<E: ClinicOwned, C: ConnectionTrait>(
        &self,
        conn: &C,
        id: Uuid,
        entity: &'static str,
    ) -> DomainResult<E::Model> {
        self.select::<E>()
            .filter(E::id_column().eq(id))
            .one(conn)
            .await?
            .ok_or(DomainError::not_found(entity))
    }

    /// The rows of `E` with the given ids (those of other clinics are skipped).
    pub async fn by_ids<E: ClinicOwned, C: ConnectionTrait>(
        &self,
        conn: &C,
        ids: &[Uuid],
    ) -> DomainResult<Vec<E::Model>> {
        Ok(self
            .select::<E>()
            .filter(E::id_column().is_in(ids.iter().copied()))
            .all(conn)
            .await?)
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
