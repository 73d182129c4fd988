use async_graphql::{Context, Object, SimpleObject};

use crate::{
    domain,
    graphql::{
        context::ContextExt,
        inputs::{CreatePatientInput, UpdatePatientInput, UpsertPatientInput},
        types::Patient,
    },
};

/// The result of `createPatient`.
#[derive(SimpleObject)]
pub struct CreatePatientPayload {
    /// The new patient.
    pub patient: Patient,
}

/// The result of `updatePatient`.
#[derive(SimpleObject)]
pub struct UpdatePatientPayload {
    /// The patient as it is now.
    pub patient: Patient,
}

/// The result of `upsertPatientByExternalId`.
#[derive(SimpleObject)]
pub struct UpsertPatientPayload {
    /// The patient as it is now.
    pub patient: Patient,
    /// True when the patient was created, false when updated.
    pub created: bool,
}

#[derive(Default)]
pub struct PatientMutations;

#[Object]
impl PatientMutations {
    /// Registers a new patient. Emits `patient.created`.
    async fn create_patient(
        &self,
        ctx: &Context<'_>,
        input: CreatePatientInput,
    ) -> async_graphql::Result<CreatePatientPayload> {
        let patient = domain::patients::create(ctx.store(), ctx.principal()?, input.into())
            .await
            .map_err(|e| e.under("input"))?;
        Ok(CreatePatientPayload {
            patient: Patient(patient),
        })
    }

    /// Changes some of a patient's details. Emits `patient.updated` (with the
    /// names of the changed fields) when anything changed.
    async fn update_patient(
        &self,
        ctx: &Context<'_>,
        input: UpdatePatientInput,
    ) -> async_graphql::Result<UpdatePatientPayload> {
        let (id, fields) = input.into_domain().map_err(|e| e.under("input"))?;
        let patient = domain::patients::update(ctx.store(), ctx.principal()?, id, fields)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(UpdatePatientPayload {
            patient: Patient(patient),
        })
    }

    /// Creates or updates the patient with your CRM's `externalId`: the safe
    /// way to sync patients from a CRM.
    async fn upsert_patient_by_external_id(
        &self,
        ctx: &Context<'_>,
        input: UpsertPatientInput,
    ) -> async_graphql::Result<UpsertPatientPayload> {
        let (external_id, fields) = input.into_domain();
        let (patient, created) = domain::patients::upsert_by_external_id(
            ctx.store(),
            ctx.principal()?,
            external_id,
            fields,
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(UpsertPatientPayload {
            patient: Patient(patient),
            created,
        })
    }
}
