//! Draft messages in the clinic's voice: a template per (follow-up kind,
//! channel), with defaults for every pair, rendered with the patient's and
//! the journey's facts.
//!
//! Variables: `{{givenName}}`, `{{clinicName}}`, `{{stageName}}`,
//! `{{pathwayName}}`, `{{dueDate}}` (in the patient's time zone). SMS drafts
//! stay within 320 characters; marketing SMS drafts end with the opt-out.

use crate::domain::{Channel, ConsentPurpose, DomainError, DomainResult, FollowUpKind};

/// The variables a template may use.
pub const VARIABLES: [&str; 5] = [
    "givenName",
    "clinicName",
    "stageName",
    "pathwayName",
    "dueDate",
];

/// Longest template body.
pub const MAX_BODY: usize = 2_000;
/// Longest SMS draft (two segments).
pub const MAX_SMS: usize = 320;
/// How every marketing text ends.
pub const OPT_OUT: &str = "Reply STOP to opt out";

/// The values of a template's variables.
#[derive(Debug, Clone, Copy)]
pub struct Variables<'a> {
    pub given_name: &'a str,
    pub clinic_name: &'a str,
    pub stage_name: &'a str,
    pub pathway_name: &'a str,
    pub due_date: &'a str,
}

/// Checks a template body given in `field`: only known variables, within
/// the size limit (320 characters for SMS).
pub fn validate(field: &str, channel: Channel, body: &str) -> DomainResult<String> {
    let body = body.trim();
    if body.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    let limit = if channel == Channel::Sms {
        MAX_SMS
    } else {
        MAX_BODY
    };
    let length = body.chars().count();
    if length > limit {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {limit} characters for {channel} (got {length})"),
        ));
    }
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(DomainError::invalid(field, "has a {{ without its }}"));
        };
        let name = after[..close].trim();
        if !VARIABLES.contains(&name) {
            return Err(DomainError::invalid(
                field,
                format!(
                    "uses the unknown variable {{{{{name}}}}}; known: {}",
                    VARIABLES.map(|v| format!("{{{{{v}}}}}")).join(", ")
                ),
            ));
        }
        rest = &after[close + 2..];
    }
    Ok(body.to_string())
}

/// The draft for `channel` and `purpose` from `body`.
pub fn render(
    body: &str,
    values: &Variables<'_>,
    channel: Channel,
    purpose: ConsentPurpose,
) -> String {
    let mut text = String::with_capacity(body.len() + 32);
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        text.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            text.push_str(&rest[open..]);
            rest = "";
            break;
        };
        text.push_str(match after[..close].trim() {
            "givenName" => values.given_name,
            "clinicName" => values.clinic_name,
            "stageName" => values.stage_name,
            "pathwayName" => values.pathway_name,
            "dueDate" => values.due_date,
            _ => "",
        });
        rest = &after[close + 2..];
    }
    text.push_str(rest);
    let text = text.trim().to_string();
    if channel != Channel::Sms {
        return text;
    }
    let marketing = purpose == ConsentPurpose::Marketing;
    let body = if marketing {
        text.trim_end_matches(OPT_OUT).trim_end().to_string()
    } else {
        text
    };
    let suffix = if marketing {
        format!(" {OPT_OUT}")
    } else {
        String::new()
    };
    let room = MAX_SMS - suffix.chars().count();
    let body = if body.chars().count() > room {
        let cut: String = body.chars().take(room - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        body
    };
    format!("{body}{suffix}")
}

/// The default body for every (kind, channel).
pub fn default_body(kind: FollowUpKind, channel: Channel) -> &'static str {
    use Channel::*;
    use FollowUpKind::*;
    match (kind, channel) {
        (StageRule, Sms) => {
            "Hi {{givenName}}, it's {{clinicName}}. Checking in about your {{stageName}} — any questions? Just reply here."
        }
        (StageRule, Email) => {
            "Hi {{givenName}},\n\nWe wanted to check in about your {{stageName}} with us. If anything is on your mind, or you would like to plan the next step of your {{pathwayName}}, just reply to this email.\n\nWarmly,\n{{clinicName}}"
        }
        (StageRule, _) => {
            "Call {{givenName}} about their {{stageName}}: ask how they are, answer questions, offer the next step of {{pathwayName}}."
        }
        (ServiceRecovery, Sms) => {
            "Hi {{givenName}}, it's {{clinicName}}. We're sorry your visit wasn't what you hoped. May we call you to make it right?"
        }
        (ServiceRecovery, Email) => {
            "Hi {{givenName}},\n\nThank you for your honest feedback. We're sorry your experience fell short, and we would like to make it right. Could we find a moment to talk this week?\n\nWith care,\n{{clinicName}}"
        }
        (ServiceRecovery, _) => {
            "Call {{givenName}}: thank them for the feedback, listen, apologise, and agree on how {{clinicName}} will make it right."
        }
        (StalledNudge, Sms) => {
            "Hi {{givenName}}, it's {{clinicName}}. Just making sure you have everything you need for your {{stageName}}. Happy to help — reply anytime."
        }
        (StalledNudge, Email) => {
            "Hi {{givenName}},\n\nWe noticed we haven't spoken since your {{stageName}}. If you have questions about your {{pathwayName}}, or would like to pick a time, we're here to help.\n\nWarmly,\n{{clinicName}}"
        }
        (StalledNudge, _) => {
            "Call {{givenName}}: they have waited a while at {{stageName}}. Ask what is holding them back and offer the next step."
        }
        (RebookingDue, Sms) => {
            "Hi {{givenName}}, it's {{clinicName}}. It's time for your next {{pathwayName}} appointment. Reply to book a time that suits you."
        }
        (RebookingDue, Email) => {
            "Hi {{givenName}},\n\nIt's been a while since your {{stageName}}, and your next {{pathwayName}} appointment is due. Reply to this email and we'll find a time that suits you.\n\nSee you soon,\n{{clinicName}}"
        }
        (RebookingDue, _) => "Call {{givenName}} to book their next {{pathwayName}} appointment.",
        (ReviewRequest, Sms) => {
            "Hi {{givenName}}, thank you for the kind words! Would you share them in a quick review of {{clinicName}}? It helps others find us."
        }
        (ReviewRequest, Email) => {
            "Hi {{givenName}},\n\nThank you for your wonderful feedback. If you have a minute, a short review of {{clinicName}} would mean a lot to us and helps others find the care you received.\n\nWith gratitude,\n{{clinicName}}"
        }
        (ReviewRequest, _) => {
            "Call {{givenName}} to thank them for their feedback and ask whether they would leave a review."
        }
        (WinBack, Sms) => {
            "Hi {{givenName}}, we've missed you at {{clinicName}}! Ready to pick up your {{pathwayName}}? Reply and we'll find a time."
        }
        (WinBack, Email) => {
            "Hi {{givenName}},\n\nIt's been a while, and we'd love to see you again. Whenever you're ready to continue your {{pathwayName}}, reply to this email and we'll find a time together.\n\nWarmly,\n{{clinicName}}"
        }
        (WinBack, _) => {
            "Call {{givenName}}: it has been a while. Ask how they are and whether they would like to continue their {{pathwayName}}."
        }
        (Manual, Sms) => {
            "Hi {{givenName}}, it's {{clinicName}}. Do you have a moment to talk about your {{pathwayName}}? Just reply here."
        }
        (Manual, Email) => {
            "Hi {{givenName}},\n\nWe'd like to follow up with you about your {{pathwayName}}. Reply to this email whenever suits you.\n\nWarmly,\n{{clinicName}}"
        }
        (Manual, _) => "Contact {{givenName}} about their {{pathwayName}}.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: Variables<'static> = Variables {
        given_name: "Ana",
        clinic_name: "Glow Aesthetics & Wellness",
        stage_name: "Treatment",
        pathway_name: "Injectables",
        due_date: "Tue 24 Nov",
    };

    #[test]
    fn every_default_renders_and_sms_stays_short() {
        use FollowUpKind::*;
        for kind in [
            StageRule,
            ServiceRecovery,
            StalledNudge,
            RebookingDue,
            ReviewRequest,
            WinBack,
            Manual,
        ] {
            for channel in [Channel::Sms, Channel::Email, Channel::Phone] {
                let body = default_body(kind, channel);
                assert!(validate("body", channel, body).is_ok(), "{kind} {channel}");
                let text = render(body, &VALUES, channel, kind.purpose());
                assert!(!text.contains("{{"), "{text}");
                if channel == Channel::Sms {
                    assert!(text.chars().count() <= MAX_SMS, "{text}");
                    assert_eq!(
                        text.ends_with(OPT_OUT),
                        kind.purpose() == ConsentPurpose::Marketing,
                        "{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_variables_and_long_bodies_are_refused() {
        assert!(validate("input.body", Channel::Sms, "Hi {{firstName}}").is_err());
        assert!(validate("input.body", Channel::Sms, "Hi {{givenName").is_err());
        assert!(validate("input.body", Channel::Sms, &"x".repeat(321)).is_err());
        assert!(validate("input.body", Channel::Email, &"x".repeat(321)).is_ok());
        let long = render(
            &"word ".repeat(100),
            &VALUES,
            Channel::Sms,
            ConsentPurpose::Marketing,
        );
        assert!(long.chars().count() <= MAX_SMS && long.ends_with(OPT_OUT));
    }
}
