//! Values parsed once, where they enter, into types that can only hold valid
//! values: an [`Email`] is an email address, an [`E164Phone`] a phone number
//! in E.164, a [`Score`] a score that fits its kind. Each parser names the
//! input field at fault.

use super::{DomainError, DomainResult, FeedbackKind};

/// An email address, lower-cased. Deliberately practical rather than RFC 5322
/// complete: one `@`, a dotted domain, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Reads an email address given in `field`.
    pub fn parse(field: &str, value: &str) -> DomainResult<Self> {
        let value = value.trim().to_lowercase();
        let invalid =
            || DomainError::invalid(field, format!("{value:?} is not a valid email address"));
        if value.len() > 254 {
            return Err(DomainError::invalid(
                field,
                "must be at most 254 characters",
            ));
        }
        let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
        if local_ok && domain_ok {
            Ok(Email(value))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Email> for String {
    fn from(email: Email) -> String {
        email.0
    }
}

/// A phone number in E.164: `+`, a country code not starting with 0, at most
/// 15 digits in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164Phone(String);

impl E164Phone {
    /// Reads a phone number given in `field`; spaces, dashes, dots and
    /// parentheses are removed first.
    pub fn parse(field: &str, value: &str) -> DomainResult<Self> {
        let compact: String = value
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+');
        let ok = digits.is_some_and(|d| {
            (8..=15).contains(&d.len())
                && d.chars().all(|c| c.is_ascii_digit())
                && !d.starts_with('0')
        });
        if ok {
            Ok(E164Phone(compact))
        } else {
            Err(DomainError::invalid(
                field,
                format!("{value:?} is not an E.164 phone number (like +14155550123)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<E164Phone> for String {
    fn from(phone: E164Phone) -> String {
        phone.0
    }
}

/// The key a client makes a retry safe with (`Idempotency-Key`): 1 to 255
/// visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The header's name, which errors about it name.
    pub const FIELD: &'static str = "Idempotency-Key";

    /// Reads the header's value.
    pub fn parse(value: &str) -> DomainResult<Self> {
        if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::invalid(
                Self::FIELD,
                "must be 1 to 255 visible ASCII characters (a UUID is a good choice)",
            ));
        }
        Ok(IdempotencyKey(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A feedback score that fits its kind: NPS 0–10, CSAT 1–5, CES 1–7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    kind: FeedbackKind,
    value: i16,
}

impl Score {
    /// Reads a score of `kind` given in `field`; a COMMENT has none.
    pub fn parse(field: &str, kind: FeedbackKind, value: i32) -> DomainResult<Self> {
        let Some(range) = kind.score_range() else {
            return Err(DomainError::invalid(
                field,
                "a COMMENT carries no score; use comment",
            ));
        };
        if (i32::from(*range.start())..=i32::from(*range.end())).contains(&value) {
            Ok(Score {
                kind,
                value: value as i16,
            })
        } else {
            Err(DomainError::invalid(
                field,
                format!(
                    "must be between {} and {} (got {value})",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    pub fn kind(self) -> FeedbackKind {
        self.kind
    }

    pub fn value(self) -> i16 {
        self.value
    }

    /// NPS 0–6 or CSAT 1–2: someone to call back.
    pub fn is_detractor(self) -> bool {
        self.kind.is_detractor(self.value)
    }

    /// NPS 9–10 or CSAT 5: someone who may leave a review.
    pub fn is_promoter(self) -> bool {
        self.kind.is_promoter(self.value)
    }
}

/// A short machine name (a clinic's slug, a stage's key): 1 to 64 characters
/// of `a-z 0-9 _ -`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    /// Reads a slug given in `field`.
    pub fn parse(field: &str, value: &str) -> DomainResult<Self> {
        let value = value.trim();
        let ok = (1..=64).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Slug(value.to_string()))
        } else {
            Err(DomainError::invalid(
                field,
                "must be 1 to 64 characters of a-z, 0-9, '_' and '-', starting with a letter",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Slug> for String {
    fn from(slug: Slug) -> String {
        slug.0
    }
}

/// An IANA time zone, such as `America/New_York`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl TimeZone {
    /// Reads a zone name given in `field`.
    pub fn parse(field: &str, value: &str) -> DomainResult<Self> {
        value
            .trim()
            .parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| {
                DomainError::invalid(
                    field,
                    format!("{value:?} is not an IANA time zone such as America/New_York"),
                )
            })
    }

    /// A stored zone name; an unknown one (it was validated when stored)
    /// falls back to UTC rather than failing a read.
    pub fn stored(value: &str) -> Self {
        value
            .parse()
            .map(TimeZone)
            .unwrap_or(TimeZone(chrono_tz::UTC))
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

/// A local time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime(pub chrono::NaiveTime);

impl LocalTime {
    /// Reads `HH:MM` (00:00 to 23:59) given in `field`.
    pub fn parse(field: &str, value: &str) -> DomainResult<Self> {
        let value = value.trim();
        let ok = value.len() == 5 && value.as_bytes()[2] == b':';
        chrono::NaiveTime::parse_from_str(value, "%H:%M")
            .ok()
            .filter(|_| ok)
            .map(LocalTime)
            .ok_or_else(|| {
                DomainError::invalid(field, format!("{value:?} is not a time of day as HH:MM"))
            })
    }

    /// A stored `HH:MM`; an unreadable one reads as midnight.
    pub fn stored(value: &str) -> Self {
        chrono::NaiveTime::parse_from_str(value, "%H:%M")
            .map(LocalTime)
            .unwrap_or(LocalTime(chrono::NaiveTime::MIN))
    }

    /// The `HH:MM` form.
    pub fn text(self) -> String {
        self.0.format("%H:%M").to_string()
    }
}

/// Quiet hours: the local hours in which nobody is contacted, from `start`
/// until `end` (an `end` before `start` spans midnight, as 21:00–08:00 does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: LocalTime,
    pub end: LocalTime,
}

impl QuietHours {
    /// Reads a start and an end given under `field` (`field.start`, `field.end`).
    pub fn parse(field: &str, start: &str, end: &str) -> DomainResult<Self> {
        let hours = QuietHours {
            start: LocalTime::parse(&format!("{field}.start"), start)?,
            end: LocalTime::parse(&format!("{field}.end"), end)?,
        };
        if hours.start == hours.end {
            return Err(DomainError::invalid(
                format!("{field}.end"),
                "must differ from start",
            ));
        }
        Ok(hours)
    }

    /// True when the local time `at` is inside the quiet hours.
    pub fn contains(self, at: chrono::NaiveTime) -> bool {
        if self.start < self.end {
            self.start.0 <= at && at < self.end.0
        } else {
            at >= self.start.0 || at < self.end.0
        }
    }

    /// TCPA-style defaults: nobody is contacted from 21:00 until 08:00.
    pub fn standard() -> Self {
        QuietHours {
            start: LocalTime::stored("21:00"),
            end: LocalTime::stored("08:00"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: DomainError) -> String {
        match error {
            DomainError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("e", " Ana.Lopez+spa@Example.COM ")
                .unwrap()
                .as_str(),
            "ana.lopez+spa@example.com"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "ana@@example.com",
            "a na@example.com",
            "ana@exa_mple.com",
            "ana..b@example.com",
            "ana@example.c0m",
        ] {
            assert_eq!(
                field_of(Email::parse("input.email", bad).unwrap_err()),
                "input.email",
                "{bad}"
            );
        }
    }

    #[test]
    fn phones() {
        assert_eq!(
            E164Phone::parse("p", "+1 (415) 555-0123").unwrap().as_str(),
            "+14155550123"
        );
        assert!(E164Phone::parse("p", "+442071838750").is_ok());
        for bad in [
            "4155550123",
            "+0123456789",
            "+1",
            "+1415555012345678",
            "+1415abc0123",
            "",
        ] {
            assert!(E164Phone::parse("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scores_fit_their_kind() {
        assert!(Score::parse("score", FeedbackKind::Nps, 10).is_ok());
        assert!(Score::parse("score", FeedbackKind::Nps, 11).is_err());
        assert!(Score::parse("score", FeedbackKind::Csat, 0).is_err());
        assert!(Score::parse("score", FeedbackKind::Comment, 3).is_err());
        assert!(
            Score::parse("score", FeedbackKind::Nps, 6)
                .unwrap()
                .is_detractor()
        );
        assert!(
            !Score::parse("score", FeedbackKind::Ces, 1)
                .unwrap()
                .is_detractor()
        );
    }

    #[test]
    fn zones_and_hours() {
        assert!(TimeZone::parse("tz", "America/New_York").is_ok());
        assert_eq!(
            field_of(TimeZone::parse("input.timezone", "Mars/Olympus").unwrap_err()),
            "input.timezone"
        );
        assert!(LocalTime::parse("t", "08:00").is_ok());
        for bad in ["8:00", "24:00", "08:60", "0800", "noon", "08:00:00"] {
            assert!(LocalTime::parse("t", bad).is_err(), "{bad}");
        }
        let quiet = QuietHours::standard();
        let at = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(!quiet.contains(at(8, 0)) && !quiet.contains(at(20, 59)));
        assert!(
            quiet.contains(at(21, 0)) && quiet.contains(at(7, 59)) && quiet.contains(at(23, 0))
        );
        let lunch = QuietHours::parse("q", "12:00", "13:00").unwrap();
        assert!(lunch.contains(at(12, 30)) && !lunch.contains(at(13, 0)));
        assert_eq!(
            field_of(QuietHours::parse("input.quietHours", "08:00", "08:00").unwrap_err()),
            "input.quietHours.end"
        );
    }

    #[test]
    fn keys_and_slugs() {
        assert!(Slug::parse("k", "consultation").is_ok());
        assert!(Slug::parse("k", "Consultation").is_err());
        assert!(Slug::parse("k", "1st").is_err());
        assert!(IdempotencyKey::parse("a-uuid").is_ok());
        assert!(IdempotencyKey::parse("with space").is_err());
        assert!(IdempotencyKey::parse("").is_err());
    }
}
