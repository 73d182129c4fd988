//! Global ids: opaque strings that name their type, such as
//! `pat_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b`. The same strings appear in GraphQL,
//! webhooks, subscriptions and the event log.

use uuid::Uuid;

/// The kinds of record that have a global id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Clinic,
    Staff,
    ApiToken,
    Patient,
    Pathway,
    Stage,
    FollowUpRule,
    Journey,
    StageTransition,
    Touchpoint,
    Feedback,
    FollowUp,
    Event,
    WebhookEndpoint,
    WebhookDelivery,
    BulkExport,
}

impl IdKind {
    const ALL: [IdKind; 16] = [
        IdKind::Clinic,
        IdKind::Staff,
        IdKind::ApiToken,
        IdKind::Patient,
        IdKind::Pathway,
        IdKind::Stage,
        IdKind::FollowUpRule,
        IdKind::Journey,
        IdKind::StageTransition,
        IdKind::Touchpoint,
        IdKind::Feedback,
        IdKind::FollowUp,
        IdKind::Event,
        IdKind::WebhookEndpoint,
        IdKind::WebhookDelivery,
        IdKind::BulkExport,
    ];

    /// The short prefix of the id string.
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Clinic => "cln",
            IdKind::Staff => "stf",
            IdKind::ApiToken => "tok",
            IdKind::Patient => "pat",
            IdKind::Pathway => "pwy",
            IdKind::Stage => "stg",
            IdKind::FollowUpRule => "fur",
            IdKind::Journey => "jny",
            IdKind::StageTransition => "trn",
            IdKind::Touchpoint => "tch",
            IdKind::Feedback => "fbk",
            IdKind::FollowUp => "fup",
            IdKind::Event => "evt",
            IdKind::WebhookEndpoint => "whe",
            IdKind::WebhookDelivery => "whd",
            IdKind::BulkExport => "exp",
        }
    }

    /// The GraphQL type the id belongs to.
    pub fn type_name(self) -> &'static str {
        match self {
            IdKind::Clinic => "Clinic",
            IdKind::Staff => "StaffMember",
            IdKind::ApiToken => "ApiToken",
            IdKind::Patient => "Patient",
            IdKind::Pathway => "Pathway",
            IdKind::Stage => "Stage",
            IdKind::FollowUpRule => "FollowUpRule",
            IdKind::Journey => "Journey",
            IdKind::StageTransition => "StageTransition",
            IdKind::Touchpoint => "Touchpoint",
            IdKind::Feedback => "Feedback",
            IdKind::FollowUp => "FollowUp",
            IdKind::Event => "JourneyEvent",
            IdKind::WebhookEndpoint => "WebhookEndpoint",
            IdKind::WebhookDelivery => "WebhookDelivery",
            IdKind::BulkExport => "BulkExport",
        }
    }

    /// The kind whose GraphQL type is `name`.
    pub fn from_type_name(name: &str) -> Option<IdKind> {
        Self::ALL.into_iter().find(|kind| kind.type_name() == name)
    }

    /// Encodes a record id as its global id.
    pub fn encode(self, id: Uuid) -> String {
        format!("{}_{}", self.prefix(), id.simple())
    }
}

/// Why a string is not a global id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is not a valid id")]
    Malformed,
    #[error("is a {found} id, expected a {expected} id")]
    WrongKind {
        expected: &'static str,
        found: &'static str,
    },
}

/// Decodes any global id into its kind and record id.
pub fn decode(id: &str) -> Result<(IdKind, Uuid), IdError> {
    let (prefix, hex) = id.split_once('_').ok_or(IdError::Malformed)?;
    let kind = IdKind::ALL
        .into_iter()
        .find(|kind| kind.prefix() == prefix)
        .ok_or(IdError::Malformed)?;
    if hex.len() != 32
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(IdError::Malformed);
    }
    let uuid = Uuid::try_parse(hex).map_err(|_| IdError::Malformed)?;
    Ok((kind, uuid))
}

/// Decodes a global id that must be of `expected` kind.
pub fn decode_as(expected: IdKind, id: &str) -> Result<Uuid, IdError> {
    let (kind, uuid) = decode(id)?;
    if kind != expected {
        return Err(IdError::WrongKind {
            expected: expected.type_name(),
            found: kind.type_name(),
        });
    }
    Ok(uuid)
}

/// A new time-ordered record id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Record ids that travel as their global id string (`pat_…`) wherever they
/// are serialized: event payloads, webhook bodies, the event log. A payload
/// field of type [`PatientId`] can only hold a patient's id, and reading it
/// back needs no decoding by hand.
macro_rules! global_ids {
    ($($(#[$meta:meta])* $name:ident => $kind:ident),+ $(,)?) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The kind of record this id names.
            pub const KIND: IdKind = IdKind::$kind;
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&IdKind::$kind.encode(self.0))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                decode_as(IdKind::$kind, &text)
                    .map($name)
                    .map_err(|error| serde::de::Error::custom(format!("{text:?} {error}")))
            }
        }
    )+};
}

global_ids!(
    /// A clinic's id (`cln_…`).
    ClinicId => Clinic,
    /// A staff member's id (`stf_…`).
    StaffId => Staff,
    /// A patient's id (`pat_…`).
    PatientId => Patient,
    /// A pathway's id (`pwy_…`).
    PathwayId => Pathway,
    /// A stage's id (`stg_…`).
    StageId => Stage,
    /// A journey's id (`jny_…`).
    JourneyId => Journey,
    /// A stage transition's id (`trn_…`).
    TransitionId => StageTransition,
    /// A touchpoint's id (`tch_…`).
    TouchpointId => Touchpoint,
    /// A feedback's id (`fbk_…`).
    FeedbackId => Feedback,
    /// A follow-up's id (`fup_…`).
    FollowUpId => FollowUp,
    /// A webhook endpoint's id (`whe_…`).
    WebhookEndpointId => WebhookEndpoint,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let id = new_id();
        for kind in IdKind::ALL {
            let encoded = kind.encode(id);
            assert_eq!(decode(&encoded), Ok((kind, id)));
            assert_eq!(decode_as(kind, &encoded), Ok(id));
        }
    }

    #[test]
    fn typed_ids_serialize_as_global_ids() {
        let id = new_id();
        let json = serde_json::to_value(PatientId(id)).unwrap();
        assert_eq!(json, serde_json::json!(IdKind::Patient.encode(id)));
        assert_eq!(
            serde_json::from_value::<PatientId>(json).unwrap(),
            PatientId(id)
        );
        let wrong = serde_json::json!(IdKind::Journey.encode(id));
        assert!(serde_json::from_value::<PatientId>(wrong).is_err());
    }

    #[test]
    fn refuses_malformed_and_wrong_kind() {
        let id = IdKind::Patient.encode(new_id());
        for bad in [
            "",
            "pat",
            "pat_",
            "xyz_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b",
            "pat_0193A4B2C3D47E8F9A0B1C2D3E4F5A6B",
            "pat_zz",
        ] {
            assert_eq!(decode(bad), Err(IdError::Malformed), "{bad}");
        }
        assert!(matches!(
            decode_as(IdKind::Journey, &id),
            Err(IdError::WrongKind { .. })
        ));
    }
}
