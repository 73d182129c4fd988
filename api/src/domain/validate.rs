//! Text and time rules shared by the aggregates (values with a shape of their
//! own are types: [`super::values`]). Each check names the input field at
//! fault so the client can point at it.

use chrono::{DateTime, Duration, Utc};

use super::{DomainError, DomainResult};

/// Longest single-line text (names, kinds, sources).
pub const SHORT_TEXT: usize = 100;
/// Longest free text (summaries, comments, notes).
pub const LONG_TEXT: usize = 4000;
/// How far in the future a reported time may lie, for clock skew.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// A required single-line text: trimmed, not empty, at most `max` characters,
/// no control characters.
pub fn required_text(field: &str, value: &str, max: usize) -> DomainResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    checked_text(field, value, max, false)
}

/// An optional text; blank counts as absent.
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
    multiline: bool,
) -> DomainResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => checked_text(field, value, max, multiline).map(Some),
    }
}

/// Free text that may span lines (summaries, comments).
pub fn long_text(field: &str, value: Option<&str>) -> DomainResult<Option<String>> {
    optional_text(field, value, LONG_TEXT, true)
}

fn checked_text(field: &str, value: &str, max: usize, multiline: bool) -> DomainResult<String> {
    let length = value.chars().count();
    if length > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters (got {length})"),
        ));
    }
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t'));
    if !value.chars().all(allowed) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_string())
}

/// Patient tags: lower-cased, trimmed, de-duplicated; at most 20 of at most 40
/// characters each from `a-z 0-9 - _ :`.
pub fn tags(field: &str, values: &[String]) -> DomainResult<Vec<String>> {
    if values.len() > 20 {
        return Err(DomainError::invalid(field, "at most 20 tags"));
    }
    let mut tags: Vec<String> = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let tag = tag(&format!("{field}[{index}]"), value)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// One tag, normalised to lower case: 1 to 40 characters of `a-z 0-9 - _ :`.
pub fn tag(field: &str, value: &str) -> DomainResult<String> {
    let tag = value.trim().to_lowercase();
    let ok = !tag.is_empty()
        && tag.len() <= 40
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | ':'));
    if ok {
        Ok(tag)
    } else {
        Err(DomainError::invalid(
            field,
            "a tag is 1 to 40 characters of a-z, 0-9, '-', '_' and ':'",
        ))
    }
}

/// A reported time of something that already happened: not in the future.
pub fn past_time(
    field: &str,
    value: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DomainResult<DateTime<Utc>> {
    if value > now + CLOCK_SKEW {
        return Err(DomainError::invalid(field, "must not be in the future"));
    }
    Ok(value.min(now))
}

/// A whole number within `range`.
pub fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> DomainResult<T> {
    if range.contains(&value) {
        Ok(value)
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
    fn texts_and_tags() {
        assert!(required_text("n", "  ", 10).is_err());
        assert_eq!(required_text("n", " Ana ", 10).unwrap(), "Ana");
        assert!(required_text("n", &"x".repeat(11), 10).is_err());
        assert!(required_text("n", "a\u{0}b", 10).is_err());
        assert_eq!(
            long_text("s", Some("line\nline")).unwrap().as_deref(),
            Some("line\nline")
        );
        assert_eq!(
            tags("t", &["VIP".into(), "vip".into(), "lip-filler".into()]).unwrap(),
            vec!["vip", "lip-filler"]
        );
        assert_eq!(
            field_of(tags("input.tags", &["ok".into(), "not ok".into()]).unwrap_err()),
            "input.tags[1]"
        );
    }

    #[test]
    fn ranges_and_times() {
        assert!(in_range("s", 11, 0..=10).is_err());
        let now = Utc::now();
        assert!(past_time("t", now + Duration::hours(1), now).is_err());
        assert!(past_time("t", now - Duration::hours(1), now).is_ok());
    }
}
