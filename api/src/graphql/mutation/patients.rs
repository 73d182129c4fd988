use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, SimpleObject};

use crate::{
    domain::{
        self, DomainResult,
        patients::{Change, PatientFields},
    },
    graphql::{
        context::{ContextExt, decode_id},
        scalars::Date,
        types::{Channel, Patient},
    },
    ids::IdKind,
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

/// Contact consent.
#[derive(InputObject, Clone, Copy)]
pub struct ConsentInput {
    /// Text messages about their care.
    #[graphql(default)]
    pub sms: bool,
    /// Emails about their care.
    #[graphql(default)]
    pub email: bool,
    /// Marketing messages.
    #[graphql(default)]
    pub marketing: bool,
}

impl From<ConsentInput> for domain::patients::Consent {
    fn from(c: ConsentInput) -> Self {
        Self {
            sms: c.sms,
            email: c.email,
            marketing: c.marketing,
        }
    }
}

/// A new patient.
#[derive(InputObject)]
pub struct CreatePatientInput {
    /// First name (1 to 100 characters).
    pub given_name: String,
    /// Last name (1 to 100 characters).
    pub family_name: String,
    /// Email address.
    pub email: Option<String>,
    /// Phone number in E.164 form (`+14155550123`); spaces and dashes are removed.
    pub phone: Option<String>,
    /// Date of birth.
    pub birth_date: Option<Date>,
    /// How the patient prefers to be reached.
    pub preferred_channel: Option<Channel>,
    /// Where the patient came from ("instagram", "referral", …).
    pub source: Option<String>,
    /// Labels: at most 20, each 1 to 40 characters of a-z, 0-9, '-', '_' and ':'.
    pub tags: Option<Vec<String>>,
    /// Contact consent; all false when absent.
    pub consent: Option<ConsentInput>,
    /// The patient's id in your CRM, unique within the clinic.
    pub external_id: Option<String>,
}

impl From<CreatePatientInput> for PatientFields {
    fn from(input: CreatePatientInput) -> Self {
        PatientFields {
            external_id: optional(input.external_id, |v| v),
            given_name: Some(input.given_name),
            family_name: Some(input.family_name),
            email: optional(input.email, |v| v),
            phone: optional(input.phone, |v| v),
            birth_date: optional(input.birth_date, |v| v.0),
            preferred_channel: optional(input.preferred_channel, domain::Channel::from),
            source: optional(input.source, |v| v),
            tags: input.tags,
            consent: input.consent.map(Into::into),
        }
    }
}

/// The changes an update or upsert input asks for: absent fields stay,
/// `null` clears (both inputs name their fields alike).
macro_rules! patient_changes {
    ($input:ident, $external_id:expr) => {
        PatientFields {
            external_id: $external_id,
            given_name: $input.given_name,
            family_name: $input.family_name,
            email: change($input.email, |v| v),
            phone: change($input.phone, |v| v),
            birth_date: change($input.birth_date, |v| v.0),
            preferred_channel: change($input.preferred_channel, domain::Channel::from),
            source: change($input.source, |v| v),
            tags: $input.tags,
            consent: $input.consent.map(Into::into),
        }
    };
}

/// Changes to a patient: absent fields stay as they are, `null` clears.
#[derive(InputObject)]
pub struct UpdatePatientInput {
    /// The patient to change.
    pub patient_id: ID,
    /// First name.
    pub given_name: Option<String>,
    /// Last name.
    pub family_name: Option<String>,
    /// Email address; `null` removes it.
    pub email: MaybeUndefined<String>,
    /// Phone number in E.164 form; `null` removes it.
    pub phone: MaybeUndefined<String>,
    /// Date of birth; `null` removes it.
    pub birth_date: MaybeUndefined<Date>,
    /// Preferred channel; `null` removes it.
    pub preferred_channel: MaybeUndefined<Channel>,
    /// Source; `null` removes it.
    pub source: MaybeUndefined<String>,
    /// Replaces all tags.
    pub tags: Option<Vec<String>>,
    /// Replaces the consent.
    pub consent: Option<ConsentInput>,
    /// The patient's id in your CRM; `null` unlinks it.
    pub external_id: MaybeUndefined<String>,
}

impl UpdatePatientInput {
    pub fn into_domain(self) -> DomainResult<(uuid::Uuid, PatientFields)> {
        let id = decode_id(IdKind::Patient, "patientId", &self.patient_id)?;
        Ok((id, patient_changes!(self, change(self.external_id, |v| v))))
    }
}

/// A patient identified by your CRM's id: created when unknown, updated otherwise.
#[derive(InputObject)]
pub struct UpsertPatientInput {
    /// The patient's id in your CRM.
    pub external_id: String,
    /// First name; required when the patient is created.
    pub given_name: Option<String>,
    /// Last name; required when the patient is created.
    pub family_name: Option<String>,
    /// Email address; `null` removes it.
    pub email: MaybeUndefined<String>,
    /// Phone number in E.164 form; `null` removes it.
    pub phone: MaybeUndefined<String>,
    /// Date of birth; `null` removes it.
    pub birth_date: MaybeUndefined<Date>,
    /// Preferred channel; `null` removes it.
    pub preferred_channel: MaybeUndefined<Channel>,
    /// Source; `null` removes it.
    pub source: MaybeUndefined<String>,
    /// Replaces all tags.
    pub tags: Option<Vec<String>>,
    /// Replaces the consent.
    pub consent: Option<ConsentInput>,
}

impl UpsertPatientInput {
    pub fn into_domain(self) -> (String, PatientFields) {
        (self.external_id, patient_changes!(self, Change::Keep))
    }
}

fn change<T, U>(value: MaybeUndefined<T>, map: impl FnOnce(T) -> U) -> Change<U> {
    match value {
        MaybeUndefined::Undefined => Change::Keep,
        MaybeUndefined::Null => Change::Clear,
        MaybeUndefined::Value(v) => Change::Set(map(v)),
    }
}

fn optional<T, U>(value: Option<T>, map: impl FnOnce(T) -> U) -> Change<U> {
    match value {
        None => Change::Keep,
        Some(v) => Change::Set(map(v)),
    }
}
