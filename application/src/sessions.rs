use crate::AuthService;
use chrono::{DateTime, Utc};
use latchkey_domain::{
    ports::StoreError, AccessClaims, AuthEvent, FamilyId, SessionEndCause, SessionOrigin,
};
use std::collections::HashMap;

/// One of a user's live sessions, as they see it in their list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    pub id: FamilyId,
    pub created_at: DateTime<Utc>,
    /// When the session last got tokens: at login, then at each refresh. Access tokens are
    /// used in between without a write, so this is at most one access-token lifetime behind.
    pub last_used_at: DateTime<Utc>,
    pub origin: SessionOrigin,
    /// Whether this is the session of the access token that asked.
    pub current: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EndSessionError {
    /// Unknown, purged after its end, or someone else's: the same answer for all three, so
    /// session ids of other accounts cannot be probed.
    #[error("no session of yours has this id")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthService {
    /// The caller's live sessions, newest first, the caller's own marked.
    #[tracing::instrument(name = "list_sessions", skip_all, fields(user_id = %caller.subject))]
    pub async fn list_sessions(
        &self,
        caller: &AccessClaims,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let now = self.ports.clock.now();
        let sessions = self.ports.sessions.list_active(caller.subject, now).await?;
        let mut last_issued: HashMap<FamilyId, DateTime<Utc>> = HashMap::new();
        for token in self
            .ports
            .refresh_tokens
            .unexchanged_of_user(caller.subject)
            .await?
            .into_iter()
            .filter(|token| !token.is_expired_at(now))
        {
            let latest = last_issued
                .entry(token.family_id)
                .or_insert(token.issued_at);
            *latest = (*latest).max(token.issued_at);
        }
        Ok(sessions
            .into_iter()
            // A session whose refresh token expired unused cannot go on: it is over, whatever
            // its absolute end says. The caller's own is live (its access token just worked).
            .filter(|session| session.id == caller.session || last_issued.contains_key(&session.id))
            .map(|session| SessionSummary {
                id: session.id,
                created_at: session.created_at,
                last_used_at: last_issued
                    .get(&session.id)
                    .copied()
                    .unwrap_or(session.created_at)
                    .max(session.created_at),
                origin: session.origin,
                current: session.id == caller.session,
            })
            .collect())
    }

    /// Ends one of the caller's sessions: its refresh and access tokens are refused from the
    /// next request on. Ending one that already ended succeeds (two tabs may both click "End").
    #[tracing::instrument(name = "end_session", skip_all, fields(user_id = %caller.subject, session = %id))]
    pub async fn end_session(
        &self,
        caller: &AccessClaims,
        id: FamilyId,
    ) -> Result<(), EndSessionError> {
        match self.ports.sessions.find(id).await? {
            Some(session) if session.user_id == caller.subject => {}
            _ => return Err(EndSessionError::NotFound),
        }
        if self
            .ports
            .sessions
            .revoke(id, self.ports.clock.now())
            .await?
        {
            self.record(AuthEvent::SessionsEnded {
                user: caller.subject,
                session: Some(id),
                cause: SessionEndCause::EndedByOwner,
            });
        }
        Ok(())
    }

    /// Ends every session of the caller, the calling one included.
    #[tracing::instrument(name = "logout_all", skip_all, fields(user_id = %caller.subject))]
    pub async fn logout_all(&self, caller: &AccessClaims) -> Result<(), StoreError> {
        let ended = self
            .ports
            .sessions
            .revoke_all_of_user(caller.subject, self.ports.clock.now(), None)
            .await?;
        tracing::debug!(ended, "sessions ended");
        self.record(AuthEvent::SessionsEnded {
            user: caller.subject,
            session: None,
            cause: SessionEndCause::LogoutEverywhere,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use chrono::Duration;

    fn caller_in(session: u8) -> AccessClaims {
        AccessClaims {
            subject: user(1).id,
            roles: user(1).roles,
            session: family(session),
            token_id: fixed_uuid(9),
            issued_at: t0(),
            expires_at: t0() + Duration::hours(1),
        }
    }

    #[tokio::test]
    async fn the_list_marks_the_callers_session_and_dates_each_by_its_newest_token() {
        let mut mocks = Mocks::new();
        let older = active_session(&user(1), 7);
        let mut newer = active_session(&user(1), 8);
        newer.created_at = t0() - Duration::hours(2);
        let sessions = vec![newer.clone(), older.clone()];
        mocks
            .sessions
            .expect_list_active()
            .withf(|u, now| *u == user(1).id && *now == t0())
            .returning(move |_, _| Ok(sessions.clone()));
        let token = |family_n: u8, minutes_ago: i64| {
            let secret = latchkey_domain::RefreshTokenSecret::from_random_bytes([family_n; 32]);
            let mut record = active_record(&secret, &user(1), family_n);
            record.issued_at = t0() - Duration::minutes(minutes_ago);
            record
        };
        // Two unexchanged tokens in session 7 (a rotation in flight): the newer one counts.
        let tokens = vec![token(7, 30), token(7, 10)];
        mocks
            .refresh_tokens
            .expect_unexchanged_of_user()
            .returning(move |_| Ok(tokens.clone()));

        let list = mocks.service().list_sessions(&caller_in(8)).await.unwrap();

        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, family(8));
        assert!(list[0].current);
        // No token found for it: its login is the last use known.
        assert_eq!(list[0].last_used_at, newer.created_at);
        assert_eq!(list[1].id, family(7));
        assert!(!list[1].current);
        assert_eq!(list[1].last_used_at, t0() - Duration::minutes(10));
    }

    #[tokio::test]
    async fn ending_a_session_revokes_it_when_it_is_the_callers() {
        let mut mocks = Mocks::new();
        mocks
            .sessions
            .expect_find()
            .returning(|_| Ok(Some(active_session(&user(1), 7))));
        mocks
            .sessions
            .expect_revoke()
            .withf(|id, at| *id == family(7) && *at == t0())
            .times(1)
            .returning(|_, _| Ok(true));
        mocks
            .service()
            .end_session(&caller_in(8), family(7))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn another_accounts_session_and_an_unknown_one_are_both_not_found() {
        for found in [Some(active_session(&user(2), 7)), None] {
            let mut mocks = Mocks::new();
            mocks
                .sessions
                .expect_find()
                .returning(move |_| Ok(found.clone()));
            mocks.sessions.expect_revoke().never();
            let err = mocks
                .service()
                .end_session(&caller_in(8), family(7))
                .await
                .unwrap_err();
            assert!(matches!(err, EndSessionError::NotFound));
        }
    }

    #[tokio::test]
    async fn signing_out_everywhere_revokes_every_session_of_the_caller() {
        let mut mocks = Mocks::new();
        mocks
            .sessions
            .expect_revoke_all_of_user()
            .withf(|u, at, keep| *u == user(1).id && *at == t0() && keep.is_none())
            .times(1)
            .returning(|_, _, _| Ok(3));
        mocks.service().logout_all(&caller_in(8)).await.unwrap();
    }
}
