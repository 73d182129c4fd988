//! The clinic's vocabularies, stored as upper-case strings.

use super::DomainError;

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and published spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stored spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// Parses a stored value, treating an unknown one as corruption.
            pub fn from_db(text: &str) -> Result<Self, DomainError> {
                Self::parse(text).ok_or_else(|| {
                    DomainError::internal(anyhow::anyhow!(concat!("unknown ", stringify!($name), " {:?} in database"), text))
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// How the clinic and the patient were in touch.
    Channel {
        Phone => "PHONE",
        Sms => "SMS",
        Email => "EMAIL",
        InPerson => "IN_PERSON",
        Video => "VIDEO",
        Portal => "PORTAL",
        WebForm => "WEB_FORM",
        Social => "SOCIAL",
        Chat => "CHAT",
    }
);

vocabulary!(
    /// Who reached out.
    Direction {
        Inbound => "INBOUND",
        Outbound => "OUTBOUND",
    }
);

vocabulary!(
    /// The kind of feedback a patient gave.
    FeedbackKind {
        Nps => "NPS",
        Csat => "CSAT",
        Ces => "CES",
        Comment => "COMMENT",
    }
);

vocabulary!(
    /// Where a journey stands overall.
    JourneyStatus {
        Active => "ACTIVE",
        Completed => "COMPLETED",
        Dropped => "DROPPED",
    }
);

vocabulary!(
    /// The part of the care journey a stage belongs to.
    StageCategory {
        Inquiry => "INQUIRY",
        Intake => "INTAKE",
        Consultation => "CONSULTATION",
        Treatment => "TREATMENT",
        FollowUp => "FOLLOW_UP",
        OngoingCare => "ONGOING_CARE",
        Discharged => "DISCHARGED",
    }
);

vocabulary!(
    /// Where a follow-up stands.
    FollowUpStatus {
        /// Planned; may be sent from its `sendAt`.
        Open => "OPEN",
        /// Planned, but no channel is allowed (no consent, no address).
        Blocked => "BLOCKED",
        /// The contact happened.
        Done => "DONE",
        /// A coordinator decided not to make it.
        Skipped => "SKIPPED",
        /// No longer right (the journey moved on or ended, consent was revoked).
        Cancelled => "CANCELLED",
    }
);

vocabulary!(
    /// Why a follow-up exists.
    FollowUpKind {
        /// Scheduled by a rule of the stage the journey entered.
        StageRule => "STAGE_RULE",
        /// Scheduled because the patient gave detractor feedback.
        ServiceRecovery => "SERVICE_RECOVERY",
        /// The journey passed its stage's target time with no contact since it entered.
        StalledNudge => "STALLED_NUDGE",
        /// The stage's rebooking cadence came due.
        RebookingDue => "REBOOKING_DUE",
        /// A promoter, asked for a review.
        ReviewRequest => "REVIEW_REQUEST",
        /// No touchpoint in either direction for the stage's win-back days.
        WinBack => "WIN_BACK",
        /// Scheduled by a person.
        Manual => "MANUAL",
    }
);

vocabulary!(
    /// What an outreach contact is for: consent is given per purpose.
    ConsentPurpose {
        /// About the patient's own care.
        Care => "CARE",
        /// Offers, rebooking, reviews, win-back.
        Marketing => "MARKETING",
    }
);

vocabulary!(
    /// What a stage transition was.
    TransitionKind {
        Started => "STARTED",
        Forward => "FORWARD",
        Backward => "BACKWARD",
        Completed => "COMPLETED",
        Dropped => "DROPPED",
    }
);

impl FollowUpKind {
    /// The purpose of this kind of contact.
    pub fn purpose(self) -> ConsentPurpose {
        match self {
            FollowUpKind::RebookingDue | FollowUpKind::ReviewRequest | FollowUpKind::WinBack => {
                ConsentPurpose::Marketing
            }
            _ => ConsentPurpose::Care,
        }
    }

    /// 1 (most urgent) to 3: a recovery call first, then care, then marketing.
    pub fn priority(self) -> i16 {
        match self {
            FollowUpKind::ServiceRecovery => 1,
            kind if kind.purpose() == ConsentPurpose::Care => 2,
            _ => 3,
        }
    }
}

impl Channel {
    /// The channels consent is given for, and outreach is planned on.
    pub const CONTACT: [Channel; 3] = [Channel::Sms, Channel::Email, Channel::Phone];

    /// True for SMS, email and phone.
    pub fn needs_consent(self) -> bool {
        Self::CONTACT.contains(&self)
    }
}

impl FeedbackKind {
    /// A score that calls for service recovery: NPS detractors (0–6) and
    /// unsatisfied CSAT (1–2).
    pub fn is_detractor(self, score: i16) -> bool {
        match self {
            FeedbackKind::Nps => score <= 6,
            FeedbackKind::Csat => score <= 2,
            FeedbackKind::Ces | FeedbackKind::Comment => false,
        }
    }

    /// A score that makes a promoter: NPS 9–10, CSAT 5.
    pub fn is_promoter(self, score: i16) -> bool {
        match self {
            FeedbackKind::Nps => score >= 9,
            FeedbackKind::Csat => score >= 5,
            FeedbackKind::Ces | FeedbackKind::Comment => false,
        }
    }

    /// The accepted score range; `None` for comments, which carry no score.
    pub fn score_range(self) -> Option<std::ops::RangeInclusive<i16>> {
        match self {
            FeedbackKind::Nps => Some(0..=10),
            FeedbackKind::Csat => Some(1..=5),
            FeedbackKind::Ces => Some(1..=7),
            FeedbackKind::Comment => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(*channel));
        }
        assert_eq!(Channel::parse("FAX"), None);
        assert!(StageCategory::from_db("nope").is_err());
    }
}
