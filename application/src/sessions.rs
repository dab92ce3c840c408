use crate::{AuthService, MAX_PAGE_SIZE};
use chrono::{DateTime, Utc};
use latchkey_domain::{
    ports::StoreError, AccessClaims, AuthEvent, FamilyId, SessionEndCause, SessionLiveness,
    SessionOrigin, SessionPosition, SessionRecord, UserId,
};
use uuid::Uuid;

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

/// One page of the caller's sessions, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    /// The [`SessionPage::next`] of the previous page; `None` for the first page.
    pub cursor: Option<String>,
    /// 1 to [`MAX_PAGE_SIZE`].
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    /// Newest first.
    pub sessions: Vec<SessionSummary>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListSessionsError {
    #[error("the cursor is not one a listing handed out")]
    InvalidCursor,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page ends at a session's start and id: `<seconds>.<nanoseconds>.<id in hex>`, which
/// travels in a URL as it is. Clients treat it as opaque.
fn encode_cursor(position: SessionPosition) -> String {
    format!(
        "{}.{}.{}",
        position.created_at.timestamp(),
        position.created_at.timestamp_subsec_nanos(),
        position.id.as_uuid().simple()
    )
}

fn decode_cursor(cursor: &str) -> Option<SessionPosition> {
    let mut parts = cursor.splitn(3, '.');
    let seconds = parts.next()?.parse::<i64>().ok()?;
    let nanos = parts.next()?.parse::<u32>().ok()?;
    let id = parts.next()?;
    if id.len() != 32 {
        return None;
    }
    Some(SessionPosition {
        created_at: DateTime::<Utc>::from_timestamp(seconds, nanos)?,
        id: FamilyId::from_uuid(Uuid::try_parse(id).ok()?),
    })
}

/// The most sessions one login ends for being past the cap; more (the cap was lowered, or
/// sessions date from before there was one) end at the next logins.
const MAX_ENDED_PER_LOGIN: usize = MAX_PAGE_SIZE;

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
    /// Which sessions count as live now: a session unused for a refresh token's lifetime
    /// holds only a refresh token that expired unused, and cannot go on.
    pub(crate) fn liveness(&self, now: DateTime<Utc>) -> SessionLiveness {
        SessionLiveness {
            now,
            used_after: now - self.policy.refresh_token_ttl,
        }
    }

    /// One page of the caller's live sessions, newest first, the caller's own marked. Pages
    /// are read from the store as they are asked for, never the whole list.
    #[tracing::instrument(name = "list_sessions", skip_all, fields(user_id = %caller.subject))]
    pub async fn list_sessions(
        &self,
        caller: &AccessClaims,
        query: SessionQuery,
    ) -> Result<SessionPage, ListSessionsError> {
        let after = query
            .cursor
            .as_deref()
            .map(|cursor| decode_cursor(cursor).ok_or(ListSessionsError::InvalidCursor))
            .transpose()?;
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
        let live = self.liveness(self.ports.clock.now());
        // One more than asked tells whether a next page exists.
        let mut sessions = self
            .ports
            .sessions
            .list_active(caller.subject, live, after, limit + 1)
            .await?;
        let next = if sessions.len() > limit {
            sessions.truncate(limit);
            sessions
                .last()
                .map(|session| encode_cursor(SessionPosition::of(session)))
        } else {
            None
        };
        Ok(SessionPage {
            sessions: sessions
                .into_iter()
                .map(|session| SessionSummary {
                    id: session.id,
                    created_at: session.created_at,
                    last_used_at: session.last_used_at.max(session.created_at),
                    current: session.id == caller.session,
                    origin: session.origin,
                })
                .collect(),
            next,
        })
    }

    /// After a login stored `own`, ends the account's least recently used live sessions past
    /// `MAX_SESSIONS_PER_USER`, never `own` itself, and logs each.
    ///
    /// Best effort: the login has succeeded whatever happens here; a store failure is logged
    /// and the next login ends what this one could not. Logins racing one another each keep
    /// the most recently used sessions they can see plus their own, so for a moment the
    /// account may hold a few more than the cap (one per racing login whose own session
    /// ranked past it); the account's next login brings it back to the cap.
    pub(crate) async fn end_sessions_past_the_cap(&self, own: &SessionRecord) {
        let user = own.user_id;
        let now = self.ports.clock.now();
        let surplus = match self
            .ports
            .sessions
            .least_recently_used_beyond(
                user,
                self.liveness(now),
                self.policy.max_sessions_per_user,
                MAX_ENDED_PER_LOGIN,
            )
            .await
        {
            Ok(surplus) => surplus,
            Err(error) => {
                Self::cap_not_kept(user, &error);
                return;
            }
        };
        for id in surplus.into_iter().filter(|id| *id != own.id) {
            match self.ports.sessions.revoke(id, now).await {
                Ok(true) => self.record(AuthEvent::SessionsEnded {
                    user,
                    session: Some(id),
                    cause: SessionEndCause::SessionLimit,
                }),
                // Ended meanwhile: by its owner, or by a login racing this one.
                Ok(false) => {}
                Err(error) => {
                    Self::cap_not_kept(user, &error);
                    return;
                }
            }
        }
    }

    fn cap_not_kept(user: UserId, error: &StoreError) {
        tracing::warn!(
            user_id = %user, %error,
            "sessions past MAX_SESSIONS_PER_USER not ended; the account's next login ends them"
        );
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

    /// Live at `t0`: used within the 14 days of a refresh token's life.
    fn live_at_t0(live: &SessionLiveness) -> bool {
        live.now == t0() && live.used_after == t0() - Duration::days(14)
    }

    fn first_page(limit: usize) -> SessionQuery {
        SessionQuery {
            cursor: None,
            limit,
        }
    }

    #[tokio::test]
    async fn the_list_marks_the_callers_session_and_dates_each_by_its_last_use() {
        let mut mocks = Mocks::sessions_strict();
        let mut older = active_session(&user(1), 7);
        older.last_used_at = t0() - Duration::minutes(10);
        let mut newer = active_session(&user(1), 8);
        newer.created_at = t0() - Duration::hours(2);
        newer.last_used_at = newer.created_at;
        let sessions = vec![newer.clone(), older.clone()];
        mocks
            .sessions
            .expect_list_active()
            .withf(|u, live, after, limit| {
                *u == user(1).id && live_at_t0(live) && after.is_none() && *limit == 21
            })
            .times(1)
            .returning(move |_, _, _, _| Ok(sessions.clone()));
        mocks.refresh_tokens.expect_unexchanged_of_user().never();

        let page = mocks
            .service()
            .list_sessions(&caller_in(8), first_page(20))
            .await
            .unwrap();

        let list = page.sessions;
        assert_eq!(list.len(), 2);
        assert_eq!(page.next, None, "fewer than asked: the last page");
        assert_eq!(list[0].id, family(8));
        assert!(list[0].current);
        assert_eq!(list[0].last_used_at, newer.created_at);
        assert_eq!(list[1].id, family(7));
        assert!(!list[1].current);
        assert_eq!(list[1].last_used_at, t0() - Duration::minutes(10));
    }

    #[tokio::test]
    async fn a_page_asks_for_one_more_and_its_cursor_continues_after_its_last_session() {
        let stored: Vec<SessionRecord> = [9, 8, 7]
            .into_iter()
            .enumerate()
            .map(|(age, n)| SessionRecord {
                created_at: t0() - Duration::minutes(age as i64),
                ..active_session(&user(1), n)
            })
            .collect();
        let mut mocks = Mocks::sessions_strict();
        let first = stored.clone();
        mocks
            .sessions
            .expect_list_active()
            .withf(|_, _, after, limit| after.is_none() && *limit == 3)
            .times(1)
            .returning(move |_, _, _, _| Ok(first.clone()));
        let service = mocks.service();
        let page = service
            .list_sessions(&caller_in(9), first_page(2))
            .await
            .unwrap();
        assert_eq!(page.sessions.len(), 2);
        let next = page.next.expect("a third session: a next page");

        let mut mocks = Mocks::sessions_strict();
        let expected = SessionPosition::of(&stored[1]);
        let rest = vec![stored[2].clone()];
        mocks
            .sessions
            .expect_list_active()
            .withf(move |_, _, after, limit| *after == Some(expected) && *limit == 3)
            .times(1)
            .returning(move |_, _, _, _| Ok(rest.clone()));
        let page = mocks
            .service()
            .list_sessions(
                &caller_in(9),
                SessionQuery {
                    cursor: Some(next),
                    limit: 2,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.sessions.len(), 1);
        assert_eq!(page.sessions[0].id, family(7));
        assert_eq!(page.next, None);
    }

    #[tokio::test]
    async fn a_page_holds_at_most_a_hundred_sessions() {
        let mut mocks = Mocks::sessions_strict();
        mocks
            .sessions
            .expect_list_active()
            .withf(|_, _, _, limit| *limit == MAX_PAGE_SIZE + 1)
            .times(1)
            .returning(|_, _, _, _| Ok(Vec::new()));
        mocks
            .service()
            .list_sessions(&caller_in(8), first_page(5000))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_cursor_no_listing_handed_out_is_refused_without_a_store_call() {
        let mut mocks = Mocks::sessions_strict();
        mocks.sessions.expect_list_active().never();
        let service = mocks.service();
        let uuid = "0".repeat(32);
        for cursor in [
            String::new(),
            "x".into(),
            format!("1.2.{}", "g".repeat(32)),
            format!("1.2000000000.{uuid}"),
            format!("1.2.{uuid}.3"),
            format!("1.-2.{uuid}"),
            format!("{}.0.{uuid}", i64::MAX),
        ] {
            let query = SessionQuery {
                cursor: Some(cursor.clone()),
                limit: 20,
            };
            assert!(
                matches!(
                    service.list_sessions(&caller_in(8), query).await,
                    Err(ListSessionsError::InvalidCursor)
                ),
                "{cursor}"
            );
        }
        let position = SessionPosition {
            created_at: t0() + Duration::nanoseconds(123_456_789),
            id: family(7),
        };
        assert_eq!(decode_cursor(&encode_cursor(position)), Some(position));
    }

    /// The login that stored session 42 of user 1.
    fn new_login() -> SessionRecord {
        SessionRecord {
            created_at: t0(),
            last_used_at: t0(),
            ..active_session(&user(1), 42)
        }
    }

    fn policy_with_cap(cap: usize) -> crate::SessionPolicy {
        crate::SessionPolicy {
            max_sessions_per_user: cap,
            ..policy()
        }
    }

    #[tokio::test]
    async fn past_the_cap_a_login_ends_the_least_recently_used_sessions_and_logs_each() {
        let mut mocks = Mocks::sessions_strict();
        mocks
            .sessions
            .expect_least_recently_used_beyond()
            .withf(|u, live, keep, limit| {
                *u == user(1).id && live_at_t0(live) && *keep == 3 && *limit == 100
            })
            .times(1)
            .returning(|_, _, _, _| Ok(vec![family(5), family(4)]));
        for ended in [5, 4] {
            mocks
                .sessions
                .expect_revoke()
                .withf(move |id, at| *id == family(ended) && *at == t0())
                .times(1)
                .returning(|_, _| Ok(true));
        }
        let events = mocks.events.clone();

        mocks
            .service_with(policy_with_cap(3))
            .end_sessions_past_the_cap(&new_login())
            .await;

        let ended = |n| AuthEvent::SessionsEnded {
            user: user(1).id,
            session: Some(family(n)),
            cause: SessionEndCause::SessionLimit,
        };
        assert_eq!(events.taken(), [ended(5), ended(4)]);
    }

    /// Racing logins may rank the newest session (of another) above this login's own.
    #[tokio::test]
    async fn a_login_never_ends_its_own_session_nor_logs_one_ended_meanwhile() {
        let mut mocks = Mocks::sessions_strict();
        mocks
            .sessions
            .expect_least_recently_used_beyond()
            .returning(|_, _, _, _| Ok(vec![family(42), family(5)]));
        mocks
            .sessions
            .expect_revoke()
            .withf(|id, _| *id == family(5))
            .times(1)
            .returning(|_, _| Ok(false));
        let events = mocks.events.clone();

        mocks
            .service_with(policy_with_cap(1))
            .end_sessions_past_the_cap(&new_login())
            .await;

        assert!(events.taken().is_empty());
    }

    #[tokio::test]
    async fn a_store_failure_while_ending_sessions_past_the_cap_stops_quietly() {
        let mut mocks = Mocks::sessions_strict();
        mocks
            .sessions
            .expect_least_recently_used_beyond()
            .returning(|_, _, _, _| Ok(vec![family(5), family(4)]));
        mocks
            .sessions
            .expect_revoke()
            .times(1)
            .returning(|_, _| Err(StoreError("timed out".into())));
        let events = mocks.events.clone();
        let service = mocks.service();
        service.end_sessions_past_the_cap(&new_login()).await;
        assert!(events.taken().is_empty());

        let mut mocks = Mocks::sessions_strict();
        mocks
            .sessions
            .expect_least_recently_used_beyond()
            .returning(|_, _, _, _| Err(StoreError("timed out".into())));
        mocks.sessions.expect_revoke().never();
        mocks
            .service()
            .end_sessions_past_the_cap(&new_login())
            .await;
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
