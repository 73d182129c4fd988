//! Finding the records a rule is about, in the caller's clinic: a record that
//! is not there (or is another clinic's) is `NOT_FOUND`, and a patient who was
//! erased cannot gain new records.

use entity::{ClinicOwned, patients};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{DomainError, DomainResult};
use crate::auth::Principal;

impl Principal {
    /// The row `id` of `E` in the caller's clinic, or `NOT_FOUND` named
    /// `entity` (also when the row belongs to another clinic).
    pub async fn get<E: ClinicOwned, C: ConnectionTrait>(
        &self,
        conn: &C,
        id: Uuid,
        entity: &'static str,
    ) -> DomainResult<<E as EntityTrait>::Model> {
        self.find_row::<E, C>(conn, id)
            .await?
            .ok_or(DomainError::not_found(entity))
    }
}

/// The patient `id` named by input `field`, who must not be erased: the
/// first step of every record written about a patient.
pub async fn living_patient<C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    id: Uuid,
    field: &str,
) -> DomainResult<patients::Model> {
    let patient = who
        .get::<patients::Entity, _>(conn, id, "patient")
        .await
        .map_err(|e| e.referenced_by(field))?;
    if patient.erased_at.is_some() {
        return Err(DomainError::conflict_on(field, "the patient was erased"));
    }
    Ok(patient)
}

/// A record that is about one patient.
pub trait OfPatient: Sized {
    /// What it is called in messages ("journey").
    const NAME: &'static str;
    /// Said when it is another patient's ("the journey is another patient's").
    const ANOTHER_PATIENTS: &'static str;
    /// The patient it is about.
    fn patient_id(&self) -> Uuid;
}

impl OfPatient for entity::journeys::Model {
    const NAME: &'static str = "journey";
    const ANOTHER_PATIENTS: &'static str = "the journey is another patient's";
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
}

impl OfPatient for entity::touchpoints::Model {
    const NAME: &'static str = "touchpoint";
    const ANOTHER_PATIENTS: &'static str = "the touchpoint is with another patient";
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
}

impl OfPatient for entity::follow_ups::Model {
    const NAME: &'static str = "follow-up";
    const ANOTHER_PATIENTS: &'static str = "the follow-up is for another patient";
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
}

/// The record `id` of `E` named by input `field`, which must be about
/// `patient`: `NOT_FOUND` when it is not the clinic's, `BAD_USER_INPUT` when
/// it is another patient's.
pub async fn of_patient<E, C>(
    conn: &C,
    who: &Principal,
    id: Uuid,
    field: &str,
    patient: Uuid,
) -> DomainResult<<E as EntityTrait>::Model>
where
    E: ClinicOwned,
    <E as EntityTrait>::Model: OfPatient,
    C: ConnectionTrait,
{
    let record = who
        .get::<E, C>(conn, id, <<E as EntityTrait>::Model as OfPatient>::NAME)
        .await
        .map_err(|e| e.referenced_by(field))?;
    if record.patient_id() != patient {
        return Err(DomainError::invalid(
            field,
            <<E as EntityTrait>::Model as OfPatient>::ANOTHER_PATIENTS,
        ));
    }
    Ok(record)
}

/// The rows of `E` whose `column` names patient `id`, ordered by `order`.
pub(super) async fn rows_of_patient<E: ClinicOwned, C: ConnectionTrait>(
    conn: &C,
    who: &Principal,
    column: E::Column,
    id: Uuid,
    order: E::Column,
) -> DomainResult<Vec<E::Model>> {
    Ok(who
        .select::<E>()
        .filter(column.eq(id))
        .order_by_asc(order)
        .all(conn)
        .await?)
}
