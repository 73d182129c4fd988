//! A clinic's patients: identity, contact, consent and CRM link.
use sea_orm::entity::prelude::*;

model_decoded_by_position! {
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "patients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub clinic_id: Uuid,
        /// The patient's id in the clinic's CRM; unique per clinic.
        pub external_id: Option<String>,
        pub given_name: String,
        pub family_name: String,
        pub email: Option<String>,
        /// E.164, e.g. `+14155550123`.
        pub phone: Option<String>,
        pub birth_date: Option<Date>,
        /// A channel name (SMS, EMAIL, ...).
        pub preferred_channel: Option<String>,
        /// Where the patient came from: "instagram", "referral", ...
        pub source: Option<String>,
        /// JSON array of lower-case tag strings.
        pub tags: Json,
        pub consent_sms: bool,
        pub consent_email: bool,
        pub consent_marketing: bool,
        /// IANA time zone; the clinic's when unset.
        pub timezone: Option<String>,
        /// Local `HH:MM` from which the patient is not contacted; the clinic's
        /// quiet hours when unset.
        pub quiet_start: Option<String>,
        /// Local `HH:MM` until which the patient is not contacted.
        pub quiet_end: Option<String>,
        /// Lower-cased name, email and phone, maintained by the domain for search.
        pub search_text: String,
        pub archived_at: Option<DateTimeUtc>,
        pub erased_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
