//! `sessiond.v1.SessionService`: decode, call the domain, encode. No decisions are made here.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, caller};
use crate::domain::validate::StepUpDemand;
use crate::domain::{Sessions, Verdict};
use crate::model::ids::{TenantId, UserId};
use crate::pb;
use crate::pb::session_service_server::SessionService;
use crate::store::SessionScope;

/// The gRPC face of the session authority.
pub struct SessionApi {
    sessions: Arc<Sessions>,
}

impl SessionApi {
    /// Serves `sessions` over gRPC.
    pub fn new(sessions: Arc<Sessions>) -> Self {
        Self { sessions }
    }
}

#[tonic::async_trait]
impl SessionService for SessionApi {
    async fn issue(
        &self,
        req: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let caller = caller(&req);
        let input = convert::issue_request(req.into_inner())?;
        let issued = self.sessions.issue(&caller, input).await?;
        Ok(Response::new(pb::IssueResponse {
            session: Some(convert::session(issued.session, true)),
            tokens: Some(convert::tokens(issued.tokens)),
        }))
    }

    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        let client = convert::given_client(r.client)?;
        let issued = self
            .sessions
            .refresh(&caller, &r.refresh_token, client.as_ref())
            .await?;
        Ok(Response::new(pb::RefreshResponse {
            session: Some(convert::session(issued.session, true)),
            tokens: Some(convert::tokens(issued.tokens)),
        }))
    }

    async fn step_up(
        &self,
        req: Request<pb::StepUpRequest>,
    ) -> Result<Response<pb::StepUpResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        let client = convert::given_client(r.client)?;
        let sign_in = convert::sign_in_request(r.auth_time, r.acr, r.amr)?;
        let issued = self
            .sessions
            .step_up(&caller, &r.access_token, sign_in, client.as_ref())
            .await?;
        Ok(Response::new(pb::StepUpResponse {
            session: Some(convert::session(issued.session, true)),
            tokens: Some(convert::tokens(issued.tokens)),
        }))
    }

    async fn validate(
        &self,
        req: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        let r = req.into_inner();
        let demand = StepUpDemand {
            max_age: r
                .max_age
                .map(|d| convert::non_negative("max_age", d))
                .transpose()?,
            acr_values: r.acr_values,
        };
        let view = convert::session_view(r.view)?;
        let reply = match self.sessions.validate_for(&r.access_token, &demand).await? {
            Verdict::Valid(valid) => pb::ValidateResponse {
                valid: true,
                reason: pb::InvalidReason::Unspecified as i32,
                session: Some(match view {
                    pb::SessionView::Basic => convert::basic_session(valid.record()),
                    pb::SessionView::Unspecified | pb::SessionView::Full => {
                        convert::session(valid.session(), true)
                    }
                }),
            },
            Verdict::Invalid(problem) => pb::ValidateResponse {
                valid: false,
                reason: convert::invalid_reason(problem) as i32,
                session: None,
            },
        };
        Ok(Response::new(reply))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let token = req.into_inner().access_token;
        let (current, sessions) = self.sessions.list(&token).await?;
        let sessions = sessions
            .into_iter()
            .map(|s| {
                let is_current = s.id == current;
                convert::session(s, is_current)
            })
            .collect();
        Ok(Response::new(pb::ListResponse { sessions }))
    }

    async fn revoke(
        &self,
        req: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        let target = convert::session_id(&r.session_id)?;
        let was_current = self
            .sessions
            .revoke(&caller, &r.access_token, target)
            .await?;
        Ok(Response::new(pb::RevokeResponse { was_current }))
    }

    async fn revoke_all(
        &self,
        req: Request<pb::RevokeAllRequest>,
    ) -> Result<Response<pb::RevokeAllResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        let revoked_count = self
            .sessions
            .revoke_all(&caller, &r.access_token, r.include_current)
            .await?;
        Ok(Response::new(pb::RevokeAllResponse { revoked_count }))
    }

    async fn admin_list(
        &self,
        req: Request<pb::AdminListRequest>,
    ) -> Result<Response<pb::AdminListResponse>, Status> {
        let r = req.into_inner();
        let user = convert::optional_user("user_id", &r.user_id)?;
        let tenant = convert::optional_tenant(&r.tenant_id)?;
        let scope = SessionScope::of(user, tenant)?;
        let page = self
            .sessions
            .admin_list(scope, r.include_revoked, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::AdminListResponse {
            sessions: page
                .items
                .into_iter()
                .map(|s| convert::session(s, false))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn admin_revoke_user(
        &self,
        req: Request<pb::AdminRevokeUserRequest>,
    ) -> Result<Response<pb::AdminRevokeUserResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        let user = UserId::parse("user_id", &r.user_id)?;
        let tenant = TenantId::parse("tenant_id", &r.tenant_id)?;
        let revoked_count = self
            .sessions
            .admin_revoke_user(&caller, user, tenant, &r.reason)
            .await?;
        Ok(Response::new(pb::AdminRevokeUserResponse { revoked_count }))
    }

    async fn admin_revoke_session(
        &self,
        req: Request<pb::AdminRevokeSessionRequest>,
    ) -> Result<Response<pb::AdminRevokeSessionResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        let id = convert::session_id(&r.session_id)?;
        let revoked = self
            .sessions
            .admin_revoke_session(&caller, id, &r.reason)
            .await?;
        Ok(Response::new(pb::AdminRevokeSessionResponse { revoked }))
    }

    async fn admin_revoke_all_sessions(
        &self,
        req: Request<pb::AdminRevokeAllSessionsRequest>,
    ) -> Result<Response<pb::AdminRevokeAllSessionsResponse>, Status> {
        let caller = caller(&req);
        let r = req.into_inner();
        let at = self
            .sessions
            .admin_revoke_all_sessions(&caller, &r.reason, r.confirm)
            .await?;
        Ok(Response::new(pb::AdminRevokeAllSessionsResponse {
            not_before: Some(convert::timestamp(at)),
        }))
    }

    async fn admin_list_audit_events(
        &self,
        req: Request<pb::AdminListAuditEventsRequest>,
    ) -> Result<Response<pb::AdminListAuditEventsResponse>, Status> {
        let r = req.into_inner();
        let user = convert::optional_user("user_id", &r.user_id)?;
        let page = self
            .sessions
            .admin_list_audit(user, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::AdminListAuditEventsResponse {
            events: page.items.into_iter().map(convert::audit_event).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
