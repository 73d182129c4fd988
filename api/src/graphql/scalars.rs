//! The API's time scalars. They validate while the document is validated, so
//! a bad value is refused before anything runs, with the argument path of the
//! value in `extensions.field` (`input.occurredAt`).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{NaiveDate, SecondsFormat, Utc};

/// An instant: RFC 3339 with a time zone, such as `2026-11-24T18:30:00Z` or
/// `2026-11-24T10:30:00-08:00`. Answers are in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime(pub chrono::DateTime<Utc>);

/// Instants are kept to the microsecond, as PostgreSQL keeps them: an
/// `occurredAt` sent with nanoseconds would otherwise be stored whole on
/// SQLite only, and read back from the API with digits that the events
/// (written to the microsecond) and PostgreSQL do not have.
fn parse_instant(text: &str) -> Option<chrono::DateTime<Utc>> {
    use chrono::SubsecRound;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
}

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => parse_instant(text).map(DateTime).ok_or_else(|| {
                InputValueError::custom(format!(
                    "{text:?} is not an RFC 3339 time such as 2026-11-24T18:30:00Z"
                ))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(text) if parse_instant(text).is_some())
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl From<chrono::DateTime<Utc>> for DateTime {
    fn from(value: chrono::DateTime<Utc>) -> Self {
        DateTime(value)
    }
}

/// A calendar date, `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub NaiveDate);

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => parse_date(text).map(Date).ok_or_else(|| {
                InputValueError::custom(format!("{text:?} is not a date such as 1990-02-28"))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(text) if parse_date(text).is_some())
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_while_parsing() {
        assert!(DateTime::is_valid(&Value::String(
            "2026-11-24T18:30:00Z".into()
        )));
        assert!(DateTime::is_valid(&Value::String(
            "2026-11-24T10:30:00.5-08:00".into()
        )));
        assert!(!DateTime::is_valid(&Value::String("yesterday".into())));
        assert!(!DateTime::is_valid(&Value::String("2026-11-24".into())));
        assert!(Date::is_valid(&Value::String("1990-02-28".into())));
        assert!(!Date::is_valid(&Value::String("1990-02-30".into())));
        assert_eq!(
            DateTime::parse(Value::String("2026-11-24T10:30:00-08:00".into()))
                .unwrap()
                .to_value(),
            Value::String("2026-11-24T18:30:00Z".into())
        );
        assert_eq!(
            DateTime::parse(Value::String("2026-11-24T18:30:00.123456789Z".into()))
                .unwrap()
                .to_value(),
            Value::String("2026-11-24T18:30:00.123456Z".into()),
            "kept to the microsecond"
        );
    }
}
