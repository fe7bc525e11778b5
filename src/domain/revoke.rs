//! Listing and ending sessions: the user's own (through their access token or, as RFC 7009
//! token revocation, through any token of the session) and anyone's (operators).

use super::audit::{AuditEntry, AuditKind, Caller, Role};
use super::error::DomainError;
use super::page_token;
use super::refresh::RefreshToken;
use super::sessions::Sessions;
use super::validate::{Ended, standing};
use super::view::Session;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::limits::{MAX_REASON_BYTES, check_text, page_size, session_page_size};
use crate::model::records::{AuditRecord, SessionRecord};
use crate::model::time::Timestamp;
use crate::store::{Revocation, SessionFilter, SessionScope};

/// A page of an admin listing.
#[derive(Debug)]
pub struct Listing<T> {
    /// The items.
    pub items: Vec<T>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
}

/// The reason recorded when a user ends their own session.
const USER_REASON: &str = "user_revoked";

/// The reason recorded when a session ends by RFC 7009 token revocation.
pub const OAUTH2_REVOKE_REASON: &str = "oauth2_revoke";

/// Which kind of token a client says it presents (RFC 7009 `token_type_hint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `access_token`.
    Access,
    /// `refresh_token`.
    Refresh,
}

impl TokenKind {
    /// The kind a `token_type_hint` value names; `None` for a value this service does not
    /// know, which RFC 7009 §2.1 lets it ignore.
    pub fn from_hint(hint: &str) -> Option<Self> {
        match hint {
            "access_token" => Some(TokenKind::Access),
            "refresh_token" => Some(TokenKind::Refresh),
            _ => None,
        }
    }

    fn other(self) -> Self {
        match self {
            TokenKind::Access => TokenKind::Refresh,
            TokenKind::Refresh => TokenKind::Access,
        }
    }
}

/// The session an authentic token speaks for.
struct Presented {
    session_id: SessionId,
    /// The user an access token names; a refresh token names none.
    user: Option<(UserId, TenantId)>,
}

fn check_reason(reason: &str) -> Result<(), DomainError> {
    Ok(check_text("reason", reason, MAX_REASON_BYTES)?)
}

impl Sessions {
    /// The active sessions of the token's user in the token's tenant, newest first, and the id
    /// of the token's own session.
    pub async fn list(&self, token: &str) -> Result<(SessionId, Vec<Session>), DomainError> {
        let (claims, _) = self.authenticate(token).await?;
        let sessions = self
            .store
            .list_user_sessions(&claims.user_id, Some(&claims.tenant_id))
            .await?;
        let now = self.clock.now();
        let fresh = self.caches.is_fresh(now, self.policy.max_feed_lag());
        let global = self.global_not_before(fresh).await?;
        let marks = self.user_marks(&claims.user_id, fresh).await?;
        let active = sessions
            .into_iter()
            .filter(|s| standing(s, global, &marks.marks, now).is_ok())
            .map(Session::from)
            .collect();
        Ok((claims.session_id, active))
    }

    /// Ends one of the token user's own sessions. Someone else's session is `SessionNotFound`,
    /// exactly like an unknown id; an already revoked own session is fine. Returns whether it
    /// was the token's own session.
    pub async fn revoke(
        &self,
        caller: &Caller,
        token: &str,
        target: SessionId,
    ) -> Result<bool, DomainError> {
        let (claims, current) = self.authenticate(token).await?;
        let read = self.store.get_session(target).await;
        if read.is_err() {
            let owner = (&claims.user_id, &claims.tenant_id);
            self.forget_own_cached(target, Some(owner)).await;
        }
        let Some(record) = read? else {
            return Err(DomainError::SessionNotFound);
        };
        if record.user_id != claims.user_id || record.tenant_id != claims.tenant_id {
            return Err(DomainError::SessionNotFound);
        }
        if !record.is_revoked() {
            let audit = AuditEntry::new(AuditKind::SessionRevoked, caller, Role::User)
                .session(record.user_id.as_str(), Some(target))
                .client(&current.record.ip, &current.record.user_agent)
                .reason(USER_REASON)
                .finish(self.clock.now());
            self.revoke_ids(&[target], USER_REASON, vec![audit]).await?;
        }
        Ok(target == claims.session_id)
    }

    /// RFC 7009 token revocation: ends the session behind `token`, an access or a refresh
    /// token of this service, on behalf of whoever holds it. `hint` says which kind to try
    /// first; the other is tried too (RFC 7009 §2.1). Returns whether this call ended a
    /// session.
    ///
    /// Only an authentic token ends anything: an access token must verify (signature, `typ`,
    /// issuer, audience) and not have expired, a refresh token must carry a valid tag, of any
    /// generation (a rotated-away one would end the session through reuse detection anyway).
    /// Anything else, and a session that is unknown or already over, is `Ok(false)`, and a
    /// forged or expired token is turned away without touching the store. An expired access
    /// token ends nothing on purpose: its authority ended at `exp`, and a token that leaked
    /// after it (logs, caches, history) must not remain a lever over the session for the rest
    /// of its life; a client that signs out late presents its refresh token instead.
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        token: &str,
        hint: Option<TokenKind>,
    ) -> Result<bool, DomainError> {
        let first = hint.unwrap_or(TokenKind::Access);
        let Some(presented) = self
            .authentic(token, first)
            .or_else(|| self.authentic(token, first.other()))
        else {
            return Ok(false);
        };
        let ended = self.revoke_presented(caller, &presented).await;
        if ended.is_err() {
            let owner = presented.user.as_ref().map(|(user, tenant)| (user, tenant));
            self.forget_own_cached(presented.session_id, owner).await;
        }
        ended
    }

    /// `revoke_token` once the token is known to be authentic.
    async fn revoke_presented(
        &self,
        caller: &Caller,
        presented: &Presented,
    ) -> Result<bool, DomainError> {
        let Some(record) = self.store.get_session(presented.session_id).await? else {
            return Ok(false);
        };
        if let Some((user, tenant)) = &presented.user
            && (record.user_id != *user || record.tenant_id != *tenant)
        {
            // A token signed by us never names someone else's session; treat it as foreign.
            return Ok(false);
        }
        if self.still_stands(&record).await?.is_err() {
            return Ok(false);
        }
        let audit = AuditEntry::new(AuditKind::SessionRevoked, caller, Role::User)
            .session(record.user_id.as_str(), Some(record.id))
            .client(&record.ip, &record.user_agent)
            .reason(OAUTH2_REVOKE_REASON)
            .finish(self.clock.now());
        self.revoke_ids(&[record.id], OAUTH2_REVOKE_REASON, vec![audit])
            .await?;
        Ok(true)
    }

    /// The session `token` speaks for, if it is an authentic, usable token of `kind`. No I/O.
    fn authentic(&self, token: &str, kind: TokenKind) -> Option<Presented> {
        match kind {
            TokenKind::Access => {
                let entry = self.verified(token).ok()?;
                let claims = &entry.claims;
                if claims.expires_at <= self.clock.now() {
                    return None;
                }
                Some(Presented {
                    session_id: claims.session_id,
                    user: Some((claims.user_id.clone(), claims.tenant_id.clone())),
                })
            }
            TokenKind::Refresh => {
                let refresh = RefreshToken::parse(&self.keys, token).ok()?;
                Some(Presented {
                    session_id: refresh.session_id,
                    user: None,
                })
            }
        }
    }

    /// Signs the token's user out everywhere (in the token's tenant), keeping the token's own
    /// session unless `include_current`. Returns how many sessions were ended.
    pub async fn revoke_all(
        &self,
        caller: &Caller,
        token: &str,
        include_current: bool,
    ) -> Result<u32, DomainError> {
        let (claims, current) = self.authenticate(token).await?;
        let listed = self
            .store
            .list_user_sessions(&claims.user_id, Some(&claims.tenant_id))
            .await;
        if listed.is_err() {
            // Not recorded, but honoured here: the user's cached marks go, so none of their
            // tokens is answered from the cache (see `forget_own_cached`).
            self.caches.user_marks_moved(&claims.user_id).await;
        }
        let sessions = listed?;
        let ids: Vec<SessionId> = sessions
            .iter()
            .filter(|s| !s.is_revoked())
            .filter(|s| include_current || s.id != claims.session_id)
            .map(|s| s.id)
            .collect();
        let audit = AuditEntry::new(AuditKind::SessionsRevokedAll, caller, Role::User)
            .session(claims.user_id.as_str(), Some(claims.session_id))
            .client(&current.record.ip, &current.record.user_agent)
            .reason(if include_current {
                "include_current"
            } else {
                "keep_current"
            })
            .finish(self.clock.now());
        let revoked = self
            .revoke_ids(&ids, "sessions_revoked_all", vec![audit])
            .await?;
        Ok(u32::try_from(revoked.len()).unwrap_or(u32::MAX))
    }

    /// A page of sessions of one user (optionally one tenant) or of everyone.
    pub async fn admin_list(
        &self,
        scope: SessionScope,
        include_revoked: bool,
        requested_page_size: u32,
        page_token: &str,
    ) -> Result<Listing<Session>, DomainError> {
        let bound = format!(
            "sessions\0{}\0{}\0{include_revoked}",
            scope.user().map(UserId::as_str).unwrap_or_default(),
            scope.tenant().map(TenantId::as_str).unwrap_or_default()
        );
        let cursor = page_token::decode(&self.keys, &bound, page_token)?;
        let filter = SessionFilter {
            scope,
            include_revoked,
        };
        let user = filter.scope.user().cloned();
        let page = self
            .store
            .list_sessions(
                &filter,
                cursor.as_deref(),
                session_page_size(requested_page_size),
            )
            .await
            .map_err(bad_cursor_is_invalid)?;
        let items = self
            .as_they_stand(page.items, user.as_ref(), include_revoked)
            .await?;
        Ok(Listing {
            items,
            next_page_token: page_token::encode(&self.keys, &bound, page.next.as_deref()),
        })
    }

    /// Applies the validity rule to a page of stored sessions: one ended by the global or
    /// its user's "not before" instant is shown revoked at that instant (and left out when
    /// revoked sessions are not wanted), exactly as every other surface treats it. Per-user
    /// marks are read for a one-user listing; a listing of everyone applies the global instant
    /// (a user's sign-out revokes every listed session of theirs by name anyway).
    async fn as_they_stand(
        &self,
        records: Vec<SessionRecord>,
        user: Option<&UserId>,
        include_revoked: bool,
    ) -> Result<Vec<Session>, DomainError> {
        let now = self.clock.now();
        let fresh = self.caches.is_fresh(now, self.policy.max_feed_lag());
        let global = self.global_not_before(fresh).await?;
        let marks = match user {
            Some(user) => self.user_marks(user, fresh).await?.marks.clone(),
            None => Default::default(),
        };
        let mut shown = Vec::with_capacity(records.len());
        for mut record in records {
            match standing(&record, global, &marks, now) {
                Err(Ended::GlobalNotBefore(at)) => {
                    record.revoked_at = Some(at);
                    record.revoke_reason = "global_revoke".to_owned();
                }
                Err(Ended::UserNotBefore(at)) => {
                    record.revoked_at = Some(at);
                    record.revoke_reason = "user_revoked".to_owned();
                }
                // Over, like a revoked session: only a listing that asks for ended ones
                // shows it.
                Err(Ended::Idle) if !include_revoked => continue,
                Ok(()) | Err(Ended::Revoked) | Err(Ended::Expired) | Err(Ended::Idle) => {}
            }
            if include_revoked || !record.is_revoked() {
                shown.push(Session::from(record));
            }
        }
        Ok(shown)
    }

    /// Ends every session of a user (in one tenant, or all when empty) and rejects every access
    /// token of theirs issued before now, even on replicas whose caches lag.
    pub async fn admin_revoke_user(
        &self,
        caller: &Caller,
        user: UserId,
        tenant: TenantId,
        reason: &str,
    ) -> Result<u32, DomainError> {
        check_reason(reason)?;
        let now = self.clock.now();
        // The mark first: from here on no older token of the user is accepted anywhere.
        let keep_until = now.plus(self.policy.max_session_ttl);
        let marked = self
            .store
            .set_user_not_before(&user, &tenant, now, keep_until)
            .await;
        // Even on an error: honoured here at once, however long `--store-outage-grace` lets
        // the caches answer while the store is down.
        self.caches.user_marks_moved(&user).await;
        marked?;
        let tenant_filter = (!tenant.is_empty()).then_some(&tenant);
        let sessions = self.store.list_user_sessions(&user, tenant_filter).await?;
        let ids: Vec<SessionId> = sessions
            .iter()
            .filter(|s| !s.is_revoked())
            .map(|s| s.id)
            .collect();
        let audit = AuditEntry::new(AuditKind::UserRevoked, caller, Role::Admin)
            .session(user.as_str(), None)
            .reason(reason)
            .finish(self.clock.now());
        let revoked = self
            .revoke_ids(&ids, reason_or(reason, "admin_revoked"), vec![audit])
            .await?;
        Ok(u32::try_from(revoked.len()).unwrap_or(u32::MAX))
    }

    /// Ends one session of anyone. Returns false when it was already revoked.
    pub async fn admin_revoke_session(
        &self,
        caller: &Caller,
        id: SessionId,
        reason: &str,
    ) -> Result<bool, DomainError> {
        check_reason(reason)?;
        let reason = reason_or(reason, "admin_revoked");
        let outcome = self
            .store
            .revoke_session(id, self.clock.now(), reason)
            .await;
        // Even on an error: the write may have landed with only its answer lost.
        self.caches.session_revoked(&id).await;
        let outcome = outcome?;
        match outcome {
            Revocation::Revoked(record) => {
                let audit = AuditEntry::new(AuditKind::SessionRevoked, caller, Role::Admin)
                    .session(record.user_id.as_str(), Some(id))
                    .reason(reason)
                    .finish(self.clock.now());
                self.store.append_audit(&[audit]).await?;
                Ok(true)
            }
            Revocation::AlreadyRevoked(_) => Ok(false),
            Revocation::NotFound => Err(DomainError::SessionNotFound),
        }
    }

    /// The emergency switch: every token issued before now is rejected, on every replica.
    pub async fn admin_revoke_all_sessions(
        &self,
        caller: &Caller,
        reason: &str,
        confirm: bool,
    ) -> Result<Timestamp, DomainError> {
        if !confirm {
            return Err(DomainError::invalid(
                "confirm",
                "must be true to revoke every session",
            ));
        }
        check_reason(reason)?;
        let at = match self.store.set_global_not_before(self.clock.now()).await {
            Ok(at) => at,
            Err(error) => {
                // Not recorded (or its answer lost), but honoured here: nothing is answered
                // from this replica's caches any more, however long `--store-outage-grace`
                // lets them answer while the store is down. The store's word stands again
                // once it answers.
                self.caches.drop_state();
                return Err(error.into());
            }
        };
        self.caches.raise_global_not_before(at);
        let audit = AuditEntry::new(AuditKind::GlobalRevoke, caller, Role::Admin)
            .reason(reason)
            .finish(self.clock.now());
        self.store.append_audit(&[audit]).await?;
        tracing::warn!(
            not_before = at.as_micros(),
            "every session issued before now is revoked"
        );
        Ok(at)
    }

    /// A page of audit events, newest first, of one user or of all.
    pub async fn admin_list_audit(
        &self,
        user: Option<UserId>,
        requested_page_size: u32,
        page_token: &str,
    ) -> Result<Listing<AuditRecord>, DomainError> {
        let scope = format!(
            "audit\0{}",
            user.as_ref().map(UserId::as_str).unwrap_or_default()
        );
        let cursor = page_token::decode(&self.keys, &scope, page_token)?;
        let page = self
            .store
            .list_audit(
                user.as_ref(),
                cursor.as_deref(),
                page_size(requested_page_size),
            )
            .await
            .map_err(bad_cursor_is_invalid)?;
        Ok(Listing {
            items: page.items,
            next_page_token: page_token::encode(&self.keys, &scope, page.next.as_deref()),
        })
    }
}

impl Sessions {
    /// A revocation the store could not take (not even the read before it) is still honoured
    /// by this replica: the target's cached state goes, so that `--store-outage-grace` never
    /// answers `valid=true` from the cache for a session whose holder tried to end it here. Its
    /// next check needs the store. With an `owner` (the user of an access token), only if the
    /// cache shows the session to be theirs; without one (a refresh token, whose tag only the
    /// session's holder can present), at once.
    async fn forget_own_cached(&self, target: SessionId, owner: Option<(&UserId, &TenantId)>) {
        if let Some((user, tenant)) = owner {
            let Some(Some(cached)) = self.caches.sessions.get(&target).await else {
                return;
            };
            if cached.record.user_id != *user || cached.record.tenant_id != *tenant {
                return;
            }
        }
        self.caches.session_revoked(&target).await;
    }
}

fn reason_or<'a>(given: &'a str, default: &'a str) -> &'a str {
    if given.is_empty() { default } else { given }
}

fn bad_cursor_is_invalid(e: crate::store::StoreError) -> DomainError {
    match e {
        crate::store::StoreError::BadCursor => {
            DomainError::invalid("page_token", "is not a page token of this listing")
        }
        other => DomainError::Store(other),
    }
}
