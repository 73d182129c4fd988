use crate::graphql::scalars::{Date, DateTime};
use std::{borrow::Cow, collections::HashSet, sync::Arc};

use async_graphql::{
    Context, ContextSelectionSet, ID, Object, OutputType, SimpleObject, Value, dataloader::Loader,
    parser::types::Selection,
};
use entity::{feedback, journeys, patients, touchpoints};
use futures::{FutureExt, future::BoxFuture};
use uuid::Uuid;

use super::{
    AuditEntry, Channel, ConsentRecord, ContactPreferences, Feedback, FollowUp, FollowUpStatus,
    Journey, JourneyStatus, TimelineEntry, Touchpoint, stored,
};
use crate::{
    domain::{
        self, DomainError,
        page::{Page, PageRequest},
    },
    graphql::{
        connection::{Conn, Cursor, Nested},
        context::ContextExt,
        loaders::{CountByParent, Loaders, PagesAhead, PagesByParent},
        plain::{Plain, PlainConn, PlainList, answered, given, nested, nested_list},
    },
    ids::IdKind,
};

/// A patient of the clinic.
pub struct Patient(pub patients::Model);

/// What the patient agreed to be contacted by.
#[derive(SimpleObject, Clone, Copy)]
pub struct Consent {
    /// Text messages about their care.
    pub sms: bool,
    /// Emails about their care.
    pub email: bool,
    /// Marketing messages.
    pub marketing: bool,
}

impl Patient {
    /// The caller may see who the patient is; the read goes on record.
    fn identity(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        domain::access::patient_identity(ctx.principal()?)?;
        ctx.patient_read(self.0.id);
        Ok(())
    }

    /// The caller may see the patient's contact details (CRM id, tags,
    /// consent and source included); the read goes on record.
    fn contact_details(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        domain::access::contact_details(ctx.principal()?)?;
        ctx.patient_read(self.0.id);
        Ok(())
    }
}

/// A patient's pages of one kind of child (touchpoints, feedback): loaded in
/// batch, or read ahead for a whole page of patients.
struct ChildPages<P: 'static, C: 'static, M: 'static, N> {
    nested: Nested<P, C>,
    ahead: fn(&Loaders) -> &PagesAhead<M>,
    cursor: fn(&M) -> Cursor,
    node: fn(M) -> N,
}

impl<P, C, M, N> ChildPages<P, C, M, N>
where
    P: Loader<(Uuid, PageRequest), Value = Page<M>, Error = DomainError>,
    C: Loader<Uuid, Value = u64, Error = DomainError>,
    M: Send + Sync + Clone + 'static,
    N: OutputType,
{
    /// `patient`'s page for `first`/`after` if it was read ahead.
    fn read(
        &self,
        loaders: &Arc<Loaders>,
        patient: Uuid,
        first: Option<i32>,
        after: Option<&str>,
    ) -> async_graphql::Result<Option<PlainConn<N>>> {
        Ok(self
            .nested
            .ahead(
                (self.ahead)(loaders),
                loaders,
                patient,
                first,
                after,
                self.cursor,
                self.node,
            )?
            .map(PlainConn))
    }

    /// `patient`'s page for `first`/`after`: read ahead, or loaded.
    async fn load(
        &self,
        loaders: &Arc<Loaders>,
        patient: Uuid,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<PlainConn<N>> {
        if let Some(read) = self.read(loaders, patient, first, after.as_deref())? {
            return Ok(read);
        }
        self.nested
            .load(loaders, patient, first, after, self.cursor, self.node)
            .await
            .map(PlainConn)
    }

    /// Reads ahead the page that `asked` (a field of this kind) asks for, for
    /// each of `patients`; nothing when its arguments are invalid (its
    /// resolver reports them).
    fn read_ahead<'a>(
        &self,
        loaders: &'a Loaders,
        patients: impl Iterator<Item = Uuid> + Send + 'a,
        asked: &Context<'_>,
    ) -> Option<BoxFuture<'a, ()>> {
        let page = page_asked(asked)?;
        let pages = (self.nested.pages)(loaders);
        Some(
            (self.ahead)(loaders)
                .read(pages, patients.map(move |id| (id, page)))
                .boxed(),
        )
    }
}

/// A patient's touchpoints, a page at a time.
const TOUCHPOINTS: ChildPages<
    PagesByParent<touchpoints::Entity>,
    CountByParent<touchpoints::Entity>,
    touchpoints::Model,
    Touchpoint,
> = ChildPages {
    nested: Nested {
        pages: |l| &l.touchpoints_of_patient,
        counts: |l| &l.touchpoint_count_of_patient,
    },
    ahead: |l| &l.touchpoints_ahead,
    cursor: |t| domain::touchpoints::keyset(t).into(),
    node: Touchpoint,
};

/// A patient's feedback, a page at a time.
const FEEDBACK: ChildPages<
    PagesByParent<feedback::Entity>,
    CountByParent<feedback::Entity>,
    feedback::Model,
    Feedback,
> = ChildPages {
    nested: Nested {
        pages: |l| &l.feedback_of_patient,
        counts: |l| &l.feedback_count_of_patient,
    },
    ahead: |l| &l.feedback_ahead,
    cursor: |f| domain::feedback::keyset(f).into(),
    node: Feedback,
};

/// `journeys`, only those with `status` when it is given.
fn with_status(
    journeys: Vec<journeys::Model>,
    status: Option<JourneyStatus>,
) -> PlainList<Journey> {
    let status = status.map(|s| domain::JourneyStatus::from(s).as_str());
    PlainList(
        journeys
            .into_iter()
            .filter(|j| status.is_none_or(|s| j.status == s))
            .map(Journey)
            .collect(),
    )
}

/// The `first` and `after` arguments of the connection field `ctx` stands at.
fn page_arguments(ctx: &Context<'_>) -> Option<(Option<i32>, Option<String>)> {
    let first = ctx.param_value::<Option<i32>>("first", None).ok()?.1;
    let after = ctx.param_value::<Option<String>>("after", None).ok()?.1;
    Some((first, after))
}

/// The page the connection field `ctx` stands at asks for, if its arguments
/// are valid (if not, its resolver reports them).
fn page_asked(ctx: &Context<'_>) -> Option<PageRequest> {
    let (first, after) = page_arguments(ctx)?;
    PageRequest::new(first, after.as_deref(), None, None).ok()
}

impl Plain for Patient {
    fn type_name(&self) -> Cow<'static, str> {
        <Self as OutputType>::type_name()
    }

    fn plain_field(&self, ctx: &Context<'_>) -> Option<Value> {
        match ctx.item.node.name.node.as_str() {
            "id" => given(self.id(ctx), ctx),
            "externalId" => answered(self.external_id(ctx), ctx),
            "givenName" => answered(self.given_name(ctx), ctx),
            "familyName" => answered(self.family_name(ctx), ctx),
            "email" => answered(self.email(ctx), ctx),
            "phone" => answered(self.phone(ctx), ctx),
            "birthDate" => answered(self.birth_date(ctx), ctx),
            "preferredChannel" => answered(self.preferred_channel(ctx), ctx),
            "source" => answered(self.source(ctx), ctx),
            "tags" => answered(self.tags(ctx), ctx),
            "erased" => given(self.erased(ctx), ctx),
            "archived" => given(self.archived(ctx), ctx),
            "createdAt" => given(self.created_at(ctx), ctx),
            "updatedAt" => given(self.updated_at(ctx), ctx),
            // Plain once read ahead for the page (see `read_ahead`).
            "journeys" => {
                let status = ctx
                    .param_value::<Option<JourneyStatus>>("status", None)
                    .ok()?
                    .1;
                let journeys = ctx.loaders().ok()?.journeys_ahead.get(&self.0.id)?;
                nested_list(&with_status(journeys, status).0, ctx)
            }
            "touchpoints" => {
                let (first, after) = page_arguments(ctx)?;
                let read = TOUCHPOINTS
                    .read(ctx.loaders().ok()?, self.0.id, first, after.as_deref())
                    .ok()??;
                nested(&read, ctx)
            }
            "feedback" => {
                let (first, after) = page_arguments(ctx)?;
                let read = FEEDBACK
                    .read(ctx.loaders().ok()?, self.0.id, first, after.as_deref())
                    .ok()??;
                nested(&read, ctx)
            }
            _ => None,
        }
    }

    /// A page's journeys, touchpoints and feedback, one statement each for
    /// the whole page (the same statements the loaders batch them into). None
    /// of these fields asks for a right before it loads; their fields check
    /// their own.
    async fn read_ahead<'a>(patients: &'a [&'a Self], ctx: &'a ContextSelectionSet<'a>) {
        let Ok(loaders) = ctx.loaders() else {
            return;
        };
        let ids = || patients.iter().map(|p| p.0.id);
        let mut reads: Vec<BoxFuture<'a, ()>> = Vec::new();
        for selection in &ctx.item.node.items {
            let Selection::Field(field) = &selection.node else {
                continue;
            };
            let asked = ctx.with_field(field);
            match field.node.name.node.as_str() {
                "journeys" => reads.push(
                    loaders
                        .journeys_ahead
                        .read(&loaders.journeys_of_patient, ids())
                        .boxed(),
                ),
                "touchpoints" => reads.extend(TOUCHPOINTS.read_ahead(loaders, ids(), &asked)),
                "feedback" => reads.extend(FEEDBACK.read_ahead(loaders, ids(), &asked)),
                _ => {}
            }
        }
        futures::future::join_all(reads).await;
    }

    fn forget_ahead(patients: &[&Self], ctx: &ContextSelectionSet<'_>) {
        let Ok(loaders) = ctx.loaders() else {
            return;
        };
        let ids: HashSet<Uuid> = patients.iter().map(|p| p.0.id).collect();
        loaders.journeys_ahead.forget(|id| ids.contains(id));
        loaders.touchpoints_ahead.forget(|(id, _)| ids.contains(id));
        loaders.feedback_ahead.forget(|(id, _)| ids.contains(id));
    }
}

#[Object]
impl Patient {
    /// The patient's global id.
    pub async fn id(&self) -> ID {
        IdKind::Patient.encode(self.0.id).into()
    }

    /// The patient's id in the clinic's CRM, unique within the clinic.
    async fn external_id(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        self.contact_details(ctx)?;
        Ok(self.0.external_id.as_deref())
    }

    /// First name.
    async fn given_name(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        self.identity(ctx)?;
        Ok(&self.0.given_name)
    }

    /// Last name.
    async fn family_name(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        self.identity(ctx)?;
        Ok(&self.0.family_name)
    }

    /// Email address, lower-cased.
    async fn email(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        self.contact_details(ctx)?;
        Ok(self.0.email.as_deref())
    }

    /// Phone number in E.164 form (`+14155550123`).
    async fn phone(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        self.contact_details(ctx)?;
        Ok(self.0.phone.as_deref())
    }

    /// Date of birth.
    async fn birth_date(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Date>> {
        self.contact_details(ctx)?;
        Ok(self.0.birth_date.map(Date))
    }

    /// How the patient prefers to be reached.
    async fn preferred_channel(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Channel>> {
        self.contact_details(ctx)?;
        self.0
            .preferred_channel
            .as_deref()
            .map(|c| stored(c, domain::Channel::parse))
            .transpose()
    }

    /// Where the patient came from ("instagram", "referral", …).
    async fn source(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&str>> {
        self.contact_details(ctx)?;
        Ok(self.0.source.as_deref())
    }

    /// The clinic's labels for the patient, lower-case.
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        self.contact_details(ctx)?;
        Ok(domain::patients::tags_of(&self.0))
    }

    /// Contact consent.
    async fn consent(&self, ctx: &Context<'_>) -> async_graphql::Result<Consent> {
        self.contact_details(ctx)?;
        Ok(Consent {
            sms: self.0.consent_sms,
            email: self.0.consent_email,
            marketing: self.0.consent_marketing,
        })
    }

    /// How and when the patient may be contacted: time zone, preferred
    /// channel, quiet hours and the consent for each channel and purpose.
    async fn contact(&self, ctx: &Context<'_>) -> async_graphql::Result<ContactPreferences> {
        self.contact_details(ctx)?;
        let loaders = ctx.loaders()?;
        let clinic = loaders.clinic().await?;
        let history = loaders
            .consents_of_patient
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        let (clinic_quiet, ..) = domain::outreach::facts::policy_of(clinic);
        let own_quiet = match (&self.0.quiet_start, &self.0.quiet_end) {
            (Some(start), Some(end)) => Some(domain::values::QuietHours {
                start: domain::values::LocalTime::stored(start),
                end: domain::values::LocalTime::stored(end),
            }),
            _ => None,
        };
        Ok(ContactPreferences {
            timezone: self
                .0
                .timezone
                .clone()
                .unwrap_or_else(|| clinic.timezone.clone()),
            own_timezone: self.0.timezone.is_some(),
            preferred_channel: self
                .0
                .preferred_channel
                .as_deref()
                .and_then(domain::Channel::parse)
                .map(Into::into),
            quiet_hours: own_quiet.unwrap_or(clinic_quiet).into(),
            own_quiet_hours: own_quiet.is_some(),
            consents: domain::outreach::settings::consents_now(&self.0, &history)
                .into_iter()
                .map(Into::into)
                .collect(),
        })
    }

    /// Every consent given or withdrawn, oldest first (append-only).
    async fn consent_history(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<ConsentRecord>> {
        self.contact_details(ctx)?;
        Ok(ctx
            .loaders()?
            .consents_of_patient
            .load_one(self.0.id)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(ConsentRecord)
            .collect())
    }

    /// The one thing to do next for this patient: the most urgent open
    /// follow-up (a blocked one when nothing else is planned).
    async fn next_follow_up(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<FollowUp>> {
        domain::access::require(
            ctx.principal()?,
            crate::auth::Permission::JourneysRead,
            "reading follow-ups",
        )?;
        let follow_ups = ctx
            .loaders()?
            .follow_ups_of_patient
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        Ok(domain::follow_ups::next_of(follow_ups).map(FollowUp))
    }

    /// True once the patient's identity and contact data were erased (only
    /// anonymised journey facts remain).
    async fn erased(&self) -> bool {
        self.0.erased_at.is_some()
    }

    /// Who read or changed this patient's data, newest first (admins and owners).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn access_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last entry seen.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<AuditEntry>> {
        let who = ctx.principal()?.clone();
        domain::access::require(&who, crate::auth::Permission::AuditRead, "the access log")?;
        Nested {
            pages: |l| &l.access_log_of_patient,
            counts: |l| &l.access_log_count_of_patient,
        }
        .load(
            ctx.loaders()?,
            self.0.id,
            first,
            after,
            |entry| domain::audit_log::keyset(entry).into(),
            AuditEntry,
        )
        .await
    }

    /// True once the patient was archived; archived patients are left out of lists by default.
    async fn archived(&self) -> bool {
        self.0.archived_at.is_some()
    }

    /// When the patient was registered.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }

    /// When the patient's details last changed.
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }

    /// The patient's journeys, oldest first, optionally only those with `status`.
    #[graphql(complexity = "3 * child_complexity + 1")]
    async fn journeys(
        &self,
        ctx: &Context<'_>,
        status: Option<JourneyStatus>,
    ) -> async_graphql::Result<PlainList<Journey>> {
        let loaders = ctx.loaders()?;
        let journeys = match loaders.journeys_ahead.get(&self.0.id) {
            Some(journeys) => journeys,
            None => loaders
                .journeys_of_patient
                .load_one(self.0.id)
                .await?
                .unwrap_or_default(),
        };
        Ok(with_status(journeys, status))
    }

    /// Every touchpoint with the patient, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn touchpoints(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last touchpoint seen.")] after: Option<String>,
    ) -> async_graphql::Result<PlainConn<Touchpoint>> {
        TOUCHPOINTS
            .load(ctx.loaders()?, self.0.id, first, after)
            .await
    }

    /// Feedback the patient gave, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn feedback(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last feedback seen.")] after: Option<String>,
    ) -> async_graphql::Result<PlainConn<Feedback>> {
        FEEDBACK.load(ctx.loaders()?, self.0.id, first, after).await
    }

    /// Everything that happened with the patient — stage transitions,
    /// touchpoints, feedback and follow-ups — newest first. Follow-ups appear
    /// at their due time, so upcoming ones come first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + 1")]
    async fn timeline(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last entry seen.")] after: Option<String>,
    ) -> async_graphql::Result<Conn<TimelineEntry>> {
        Nested {
            pages: |l| &l.timeline_of_patient,
            counts: |l| &l.timeline_count_of_patient,
        }
        .load(
            ctx.loaders()?,
            self.0.id,
            first,
            after,
            |entry| entry.keyset().into(),
            TimelineEntry,
        )
        .await
    }

    /// The patient's follow-ups, soonest due first, optionally only those with `status`.
    #[graphql(complexity = "5 * child_complexity + 1")]
    async fn follow_ups(
        &self,
        ctx: &Context<'_>,
        status: Option<FollowUpStatus>,
    ) -> async_graphql::Result<Vec<FollowUp>> {
        let follow_ups = ctx
            .loaders()?
            .follow_ups_of_patient
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        let status = status.map(|s| domain::FollowUpStatus::from(s).as_str());
        Ok(follow_ups
            .into_iter()
            .filter(|f| status.is_none_or(|s| f.status == s))
            .map(FollowUp)
            .collect())
    }
}
