use async_graphql::{Context, ErrorExtensions, ID, InputObject, Json, Object, SimpleObject};

use crate::{
    auth::{Permission, Role},
    domain::{self, DomainError},
    graphql::{
        context::{ContextExt, decode_id},
        limits::LoginThrottle,
        scalars::DateTime,
        types::{ApiToken, Patient, StaffMember, StaffRole},
    },
    ids::IdKind,
};

/// Sign in.
#[derive(InputObject)]
pub struct LoginInput {
    /// The clinic's slug (`glow`).
    pub clinic: String,
    /// Sign-in email.
    pub email: String,
    /// Password.
    #[graphql(secret)]
    pub password: String,
}

/// Exchange a refresh token.
#[derive(InputObject)]
pub struct RefreshSessionInput {
    /// The refresh token from `login` or the last `refreshSession` (each works once).
    #[graphql(secret)]
    pub refresh_token: String,
}

/// End a session.
#[derive(InputObject, Default)]
pub struct LogoutInput {
    /// The session's refresh token; the caller's current session when absent.
    #[graphql(secret)]
    pub refresh_token: Option<String>,
}

/// A signed-in session.
#[derive(SimpleObject)]
pub struct SessionPayload {
    /// Send as `Authorization: Bearer …`; short-lived (15 minutes by default).
    pub access_token: String,
    /// When the access token stops working.
    pub access_token_expires_at: DateTime,
    /// Use once with `refreshSession` for a new pair; using it twice ends the session.
    pub refresh_token: String,
    /// When the session ends, however often it is refreshed.
    pub refresh_token_expires_at: DateTime,
    /// Who signed in.
    pub staff: StaffMember,
}

impl From<domain::staff::Session> for SessionPayload {
    fn from(session: domain::staff::Session) -> Self {
        Self {
            access_token: session.access_token,
            access_token_expires_at: DateTime(session.access_token_expires_at),
            refresh_token: session.refresh_token,
            refresh_token_expires_at: DateTime(session.refresh_token_expires_at),
            staff: StaffMember(session.staff),
        }
    }
}

/// The result of `logout`.
#[derive(SimpleObject)]
pub struct LogoutPayload {
    /// True once the session is ended.
    pub ended: bool,
}

/// A new staff member.
#[derive(InputObject)]
pub struct CreateStaffInput {
    /// Sign-in email, unique within the clinic.
    pub email: String,
    /// Full name.
    pub name: String,
    /// The role; never more authority than the creator's own.
    pub role: StaffRole,
    /// Password (at least 12 characters); a temporary one is generated when absent.
    #[graphql(secret)]
    pub password: Option<String>,
}

/// The result of `createStaff`.
#[derive(SimpleObject)]
pub struct CreateStaffPayload {
    /// The new staff member.
    pub staff: StaffMember,
    /// The generated password, when none was given; shown only now.
    pub temporary_password: Option<String>,
}

/// Disable or re-enable a staff member.
#[derive(InputObject)]
pub struct SetStaffDisabledInput {
    /// The staff member.
    pub staff_id: ID,
    /// True to disable (ending their sessions), false to enable.
    pub disabled: bool,
}

/// The result of `setStaffDisabled`.
#[derive(SimpleObject)]
pub struct SetStaffDisabledPayload {
    /// The staff member as they are now.
    pub staff: StaffMember,
}

/// A new API token.
#[derive(InputObject)]
pub struct CreateApiTokenInput {
    /// What it is for ("HubSpot sync").
    pub name: String,
    /// What it may do: `patients:read`, `patients:write`, `journeys:read`,
    /// `journeys:write`, `feedback:write`, `analytics:read`, `events:read`,
    /// `webhooks:manage`, `pathways:manage`, `staff:manage`, `tokens:manage`,
    /// `audit:read`, `privacy:manage` — none beyond the creator's own.
    pub scopes: Vec<String>,
    /// When it stops working; never when absent.
    pub expires_at: Option<DateTime>,
}

/// The result of `createApiToken`.
#[derive(SimpleObject)]
pub struct CreateApiTokenPayload {
    /// The token.
    pub token: ApiToken,
    /// The secret (`jm_…`): shown only now, store it safely.
    pub secret: String,
}

/// Revoke an API token.
#[derive(InputObject)]
pub struct RevokeApiTokenInput {
    /// The token.
    pub token_id: ID,
}

/// The result of `revokeApiToken`.
#[derive(SimpleObject)]
pub struct RevokeApiTokenPayload {
    /// The token, now revoked.
    pub token: ApiToken,
}

/// Erase a patient.
#[derive(InputObject)]
pub struct ErasePatientInput {
    /// The patient.
    pub patient_id: ID,
    /// Why (an erasure request, …), for the record.
    pub reason: Option<String>,
}

/// The result of `erasePatient`.
#[derive(SimpleObject)]
pub struct ErasePatientPayload {
    /// The patient as kept: anonymised.
    pub patient: Patient,
}

/// Export a patient's data.
#[derive(InputObject)]
pub struct ExportPatientInput {
    /// The patient.
    pub patient_id: ID,
}

/// The result of `exportPatient`.
#[derive(SimpleObject)]
pub struct ExportPatientPayload {
    /// Everything held about the patient (format `journeymap.patient-export.v1`).
    pub data: Json<serde_json::Value>,
}

#[derive(Default)]
pub struct AccessMutations;

#[Object]
impl AccessMutations {
    /// Signs a staff member in: a short-lived access token and a refresh
    /// token. Wrong clinic, email or password all answer UNAUTHENTICATED;
    /// repeated attempts answer RATE_LIMITED.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<SessionPayload> {
        let address = ctx.request().and_then(|r| r.client_ip);
        ctx.data_unchecked::<std::sync::Arc<LoginThrottle>>()
            .attempt(
                &format!("{}/{}", input.clinic.trim(), input.email.trim()),
                address,
            )
            // `?` alone would keep only the message (async_graphql converts a
            // ServerError like any Display), and the refusal would be masked
            // as INTERNAL: keep its RATE_LIMITED code and retryAfterSeconds.
            .map_err(|refused| {
                let mut error = async_graphql::Error::new(refused.message);
                error.extensions = refused.extensions;
                error
            })?;
        let request_id = ctx.request().map(|r| r.request_id.clone());
        let session = domain::staff::login(
            ctx.store(),
            ctx.keys(),
            &input.clinic,
            &input.email,
            &input.password,
            request_id,
        )
        .await
        .map_err(|e| match e {
            DomainError::Unauthenticated => {
                async_graphql::Error::new("wrong clinic, email or password")
                    .extend_with(|_, ext| ext.set("code", "UNAUTHENTICATED"))
            }
            other => other.into(),
        })?;
        Ok(session.into())
    }

    /// Exchanges a refresh token for a new access token and refresh token.
    /// Each refresh token works once: presenting a used one again revokes
    /// the whole session (it was stolen).
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        input: RefreshSessionInput,
    ) -> async_graphql::Result<SessionPayload> {
        let request_id = ctx.request().map(|r| r.request_id.clone());
        Ok(domain::staff::refresh(
            ctx.store(),
            ctx.keys(),
            input.refresh_token.trim(),
            request_id,
        )
        .await?
        .into())
    }

    /// Ends a session: its refresh token and access tokens stop working at once.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        input: Option<LogoutInput>,
    ) -> async_graphql::Result<LogoutPayload> {
        let input = input.unwrap_or_default();
        domain::staff::logout(
            ctx.store(),
            ctx.principal()?,
            input.refresh_token.as_deref(),
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(LogoutPayload { ended: true })
    }

    /// Creates a staff member (admins and owners).
    async fn create_staff(
        &self,
        ctx: &Context<'_>,
        input: CreateStaffInput,
    ) -> async_graphql::Result<CreateStaffPayload> {
        let (staff, temporary_password) = domain::staff::create(
            ctx.store(),
            ctx.principal()?,
            domain::staff::NewStaff {
                email: input.email,
                name: input.name,
                role: Role::from(input.role),
                password: input.password,
            },
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(CreateStaffPayload {
            staff: StaffMember(staff),
            temporary_password,
        })
    }

    /// Disables or re-enables a staff member (admins and owners).
    async fn set_staff_disabled(
        &self,
        ctx: &Context<'_>,
        input: SetStaffDisabledInput,
    ) -> async_graphql::Result<SetStaffDisabledPayload> {
        let id = decode_id(IdKind::Staff, "input.staffId", &input.staff_id)?;
        let staff = domain::staff::set_disabled(ctx.store(), ctx.principal()?, id, input.disabled)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(SetStaffDisabledPayload {
            staff: StaffMember(staff),
        })
    }

    /// Creates an API token; the secret is returned once.
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        input: CreateApiTokenInput,
    ) -> async_graphql::Result<CreateApiTokenPayload> {
        let scopes = Permission::parse_scopes(&input.scopes)
            .map_err(|(i, message)| DomainError::invalid(format!("input.scopes[{i}]"), message))?;
        let (token, secret) = domain::api_tokens::create(
            ctx.store(),
            ctx.principal()?,
            &input.name,
            &scopes,
            input.expires_at.map(|t| t.0),
        )
        .await
        .map_err(|e| e.under("input"))?;
        Ok(CreateApiTokenPayload {
            token: ApiToken(token),
            secret,
        })
    }

    /// Revokes an API token; its next request is refused.
    async fn revoke_api_token(
        &self,
        ctx: &Context<'_>,
        input: RevokeApiTokenInput,
    ) -> async_graphql::Result<RevokeApiTokenPayload> {
        let id = decode_id(IdKind::ApiToken, "input.tokenId", &input.token_id)?;
        let token = domain::api_tokens::revoke(ctx.store(), ctx.principal()?, id)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(RevokeApiTokenPayload {
            token: ApiToken(token),
        })
    }

    /// Erases a patient's identity, contact details and free text, keeping
    /// anonymised journey facts. Emits `patient.erased`. Cannot be undone.
    async fn erase_patient(
        &self,
        ctx: &Context<'_>,
        input: ErasePatientInput,
    ) -> async_graphql::Result<ErasePatientPayload> {
        let id = decode_id(IdKind::Patient, "input.patientId", &input.patient_id)?;
        let patient = domain::patients::erase(ctx.store(), ctx.principal()?, id, input.reason)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(ErasePatientPayload {
            patient: Patient(patient),
        })
    }

    /// Everything held about one patient, as JSON: a data-access request.
    async fn export_patient(
        &self,
        ctx: &Context<'_>,
        input: ExportPatientInput,
    ) -> async_graphql::Result<ExportPatientPayload> {
        let id = decode_id(IdKind::Patient, "input.patientId", &input.patient_id)?;
        let data = domain::patients::export(ctx.store(), ctx.principal()?, id)
            .await
            .map_err(|e| e.under("input"))?;
        Ok(ExportPatientPayload { data: Json(data) })
    }
}
