use crate::{AuthService, Throttled, TokenPair};
use chrono::{DateTime, Utc};
use latchkey_domain::{
    ports::{StoreError, TokenSigningError},
    AuthEvent, BudgetAction, ClientNetwork, RefreshTokenRecord, RefreshTokenSecret, SessionRecord,
};

#[derive(Debug)]
pub struct RefreshCommand {
    pub refresh_token: String,
    pub client: ClientNetwork,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown or expired token, or its session has ended (logout, revocation, absolute
    /// lifetime), or it lost a rotation race with no grace window configured.
    #[error("refresh token is invalid, expired or already used; log in again")]
    InvalidToken,
    /// A rotated token came back after the grace window: assume theft, end the session.
    #[error("refresh token was already used; the session has been revoked, log in again")]
    ReuseDetected,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] TokenSigningError),
    #[error(transparent)]
    Throttled(#[from] Throttled),
}

impl AuthService {
    /// Exchanges a refresh token for a new pair in the same session (rotation).
    ///
    /// Linearizable against revocation because the session record decides: a pair minted
    /// while a logout lands is refused on its first use, and nothing ever clears `revoked_at`.
    ///
    /// The successor is derived from the presented token, so exchanging one token always
    /// yields the same successor, and it is stored *before* the presented token is marked
    /// rotated. A failure or a lost response at any step therefore leaves a retry with the same
    /// token able to finish the job: either nothing was rotated yet, or it was rotated moments
    /// ago and the grace window hands out that same successor again. Racing tabs share one
    /// chain instead of each growing their own.
    #[tracing::instrument(name = "refresh", skip_all, fields(session = tracing::field::Empty))]
    pub async fn refresh(&self, command: RefreshCommand) -> Result<TokenPair, RefreshError> {
        let client = command.client;
        let refreshed = self.exchange(command).await;
        if let Err(error @ (RefreshError::InvalidToken | RefreshError::Throttled(_))) = &refreshed {
            self.record(AuthEvent::RefreshRefused {
                client,
                throttled: matches!(error, RefreshError::Throttled(_)),
            });
        }
        refreshed
    }

    async fn exchange(&self, command: RefreshCommand) -> Result<TokenPair, RefreshError> {
        self.spend::<RefreshError>(BudgetAction::Refresh, command.client)
            .await?;
        let presented = RefreshTokenSecret::from_presented(command.refresh_token);
        let hash = presented.hash();
        let Some(record) = self.ports.refresh_tokens.find_by_hash(&hash).await? else {
            return Err(RefreshError::InvalidToken);
        };
        tracing::Span::current().record("session", tracing::field::display(record.family_id));
        let now = self.ports.clock.now();
        if record.is_expired_at(now) {
            return Err(RefreshError::InvalidToken);
        }
        let session = self.live_session(&record, now).await?;
        if let Some(rotated_at) = record.rotated_at {
            if !self.within_grace(rotated_at, now) {
                return Err(self.revoke_on_reuse(&record, now, command.client).await);
            }
            let pair = self.issue_successor(&presented, &session).await?;
            self.record_refresh(&record, true);
            return Ok(pair);
        }
        let pair = self.issue_successor(&presented, &session).await?;
        // Only one caller rotates the token; a loser raced a concurrent refresh of the same
        // token a moment ago, which is what the grace window covers.
        if self.ports.refresh_tokens.mark_rotated(&hash, now).await? {
            self.record_refresh(&record, false);
            return Ok(pair);
        }
        match self.ports.refresh_tokens.find_by_hash(&hash).await? {
            Some(RefreshTokenRecord {
                rotated_at: Some(rotated_at),
                ..
            }) if self.within_grace(rotated_at, now) => {
                self.record_refresh(&record, true);
                Ok(pair)
            }
            _ => Err(RefreshError::InvalidToken),
        }
    }

    fn record_refresh(&self, record: &RefreshTokenRecord, within_grace: bool) {
        self.record(AuthEvent::Refreshed {
            user: record.user_id,
            session: record.family_id,
            within_grace,
        });
    }

    fn within_grace(&self, rotated_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        // A concurrent winner may have stamped the rotation a moment *after* this request
        // read the clock; that is no time elapsed, never negative time (a zero grace means none).
        (now - rotated_at).max(chrono::Duration::zero()) < self.policy.reuse_grace
    }

    /// The token's session, if it may still be refreshed.
    async fn live_session(
        &self,
        record: &RefreshTokenRecord,
        now: DateTime<Utc>,
    ) -> Result<SessionRecord, RefreshError> {
        match self.ports.sessions.find(record.family_id).await? {
            Some(session) if session.user_id == record.user_id && session.is_active_at(now) => {
                Ok(session)
            }
            _ => Err(RefreshError::InvalidToken),
        }
    }

    async fn revoke_on_reuse(
        &self,
        record: &RefreshTokenRecord,
        now: DateTime<Utc>,
        client: ClientNetwork,
    ) -> RefreshError {
        match self.ports.sessions.revoke(record.family_id, now).await {
            Ok(ended) => {
                // Replays racing one another end the session once, and are recorded once as
                // a detection; the others were refused.
                self.record(if ended {
                    AuthEvent::RefreshReuseDetected {
                        user: record.user_id,
                        session: record.family_id,
                        client,
                    }
                } else {
                    AuthEvent::RefreshRefused {
                        client,
                        throttled: false,
                    }
                });
                RefreshError::ReuseDetected
            }
            Err(e) => RefreshError::Store(e),
        }
    }

    async fn issue_successor(
        &self,
        presented: &RefreshTokenSecret,
        session: &SessionRecord,
    ) -> Result<TokenPair, RefreshError> {
        // A disabled account's sessions were ended; one that raced the disabling ends here.
        let Some(user) = self
            .ports
            .users
            .find_by_id(session.user_id)
            .await?
            .filter(|user| user.disabled_at.is_none())
        else {
            self.ports
                .sessions
                .revoke(session.id, self.ports.clock.now())
                .await?;
            return Err(RefreshError::InvalidToken);
        };
        let successor = self.ports.successors.successor(presented);
        self.issue_tokens(&user, session, successor)
            .await
            .map_err(|e| e.into_error(|| RefreshError::InvalidToken))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::SessionPolicy;
    use chrono::Duration;

    fn presented() -> RefreshTokenSecret {
        RefreshTokenSecret::from_presented("presented-token".into())
    }

    fn command() -> RefreshCommand {
        RefreshCommand {
            refresh_token: "presented-token".into(),
            client: ClientNetwork::Unknown,
        }
    }

    /// The presented token is `record`, its session is `session`, and its owner exists.
    fn given(mocks: &mut Mocks, record: RefreshTokenRecord, session: SessionRecord) {
        given_reads(mocks, vec![record], session);
    }

    /// Like `given`, but successive reads of the token return `reads` in turn (the last one
    /// repeating), as when a concurrent refresh rotates it in between.
    fn given_reads(mocks: &mut Mocks, reads: Vec<RefreshTokenRecord>, session: SessionRecord) {
        let mut count = 0;
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .withf(|h| *h == presented().hash())
            .returning(move |_| {
                count += 1;
                Ok(Some(reads[(count - 1).min(reads.len() - 1)].clone()))
            });
        mocks
            .sessions
            .expect_find()
            .withf(|id| *id == family(7))
            .returning(move |_| Ok(Some(session.clone())));
        mocks
            .users
            .expect_find_by_id()
            .returning(|_| Ok(Some(user(1))));
        mocks
            .successors
            .expect_successor()
            .withf(|p| p.hash() == presented().hash())
            .returning(|_| successor());
        mocks.random.expect_uuid().return_const(fixed_uuid(50));
        mocks
            .access_tokens
            .expect_encode()
            .withf(|c| c.session == family(7))
            .returning(|_| Ok("new.jwt".into()));
    }

    fn successor() -> RefreshTokenSecret {
        RefreshTokenSecret::from_random_bytes([3u8; 32])
    }

    fn expect_successor_stored(mocks: &mut Mocks) {
        mocks
            .refresh_tokens
            .expect_insert()
            .withf(|r| {
                r.family_id == family(7)
                    && r.rotated_at.is_none()
                    && r.token_hash == successor().hash()
            })
            .times(1)
            .returning(|_| Ok(None));
    }

    #[tokio::test]
    async fn refresh_rotates_an_active_token_and_issues_a_pair_in_the_same_session() {
        let mut mocks = Mocks::new();
        given(
            &mut mocks,
            active_record(&presented(), &user(1), 7),
            active_session(&user(1), 7),
        );
        expect_successor_stored(&mut mocks);
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .withf(|h, at| *h == presented().hash() && *at == t0())
            .times(1)
            .returning(|_, _| Ok(true));
        mocks.sessions.expect_revoke().never();

        let pair = mocks.service().refresh(command()).await.unwrap();

        assert_eq!(pair.access_token, "new.jwt");
        assert_eq!(pair.refresh_token.hash(), successor().hash());
        assert_eq!(pair.refresh_expires_in_secs, 14 * 24 * 3600);
    }

    #[tokio::test]
    async fn the_successor_never_outlives_the_sessions_absolute_end() {
        let mut mocks = Mocks::new();
        let mut session = active_session(&user(1), 7);
        session.expires_at = t0() + Duration::minutes(30);
        given(
            &mut mocks,
            active_record(&presented(), &user(1), 7),
            session,
        );
        mocks
            .refresh_tokens
            .expect_insert()
            .withf(|r| r.expires_at == t0() + Duration::minutes(30))
            .times(1)
            .returning(|_| Ok(None));
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .returning(|_, _| Ok(true));

        let pair = mocks.service().refresh(command()).await.unwrap();

        assert_eq!(pair.refresh_expires_in_secs, 30 * 60);
        assert_eq!(pair.access_expires_in_secs, 30 * 60);
    }

    #[tokio::test]
    async fn refresh_with_an_unknown_token_is_invalid() {
        let mut mocks = Mocks::new();
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(|_| Ok(None));
        mocks.sessions.expect_find().never();
        mocks.refresh_tokens.expect_mark_rotated().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn refresh_with_an_expired_token_is_invalid() {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.expires_at = t0() - Duration::seconds(1);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks.refresh_tokens.expect_mark_rotated().never();
        mocks.refresh_tokens.expect_insert().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    async fn refused_for_session(session: SessionRecord) -> RefreshError {
        let mut mocks = Mocks::new();
        let record = active_record(&presented(), &user(1), 7);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        mocks
            .sessions
            .expect_find()
            .returning(move |_| Ok(Some(session.clone())));
        mocks.sessions.expect_revoke().never();
        mocks.refresh_tokens.expect_insert().never();
        mocks.refresh_tokens.expect_mark_rotated().never();
        mocks.access_tokens.expect_encode().never();
        let events = mocks.events.clone();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert_one_refusal(&events);
        err
    }

    #[tokio::test]
    async fn refresh_in_a_revoked_session_is_invalid_and_mints_nothing() {
        let mut session = active_session(&user(1), 7);
        session.revoked_at = Some(t0() - Duration::minutes(1));
        assert!(matches!(
            refused_for_session(session).await,
            RefreshError::InvalidToken
        ));
    }

    #[tokio::test]
    async fn refresh_past_the_sessions_absolute_lifetime_is_invalid() {
        let mut session = active_session(&user(1), 7);
        session.expires_at = t0();
        assert!(matches!(
            refused_for_session(session).await,
            RefreshError::InvalidToken
        ));
    }

    #[tokio::test]
    async fn refresh_in_a_session_of_another_user_is_invalid() {
        assert!(matches!(
            refused_for_session(active_session(&user(2), 7)).await,
            RefreshError::InvalidToken
        ));
    }

    #[tokio::test]
    async fn reuse_of_a_rotated_token_after_the_grace_window_revokes_its_session() {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.rotated_at = Some(t0() - Duration::seconds(10));
        given(&mut mocks, record, active_session(&user(1), 7));
        mocks
            .sessions
            .expect_revoke()
            .withf(|f, at| *f == family(7) && *at == t0())
            .times(1)
            .returning(|_, _| Ok(true));
        mocks.refresh_tokens.expect_insert().never();
        mocks.refresh_tokens.expect_mark_rotated().never();
        let events = mocks.events.clone();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::ReuseDetected));
        assert!(
            matches!(events.taken()[..], [AuthEvent::RefreshReuseDetected { session, .. }] if session == family(7))
        );
    }

    #[tokio::test]
    async fn a_replay_that_finds_its_session_ended_by_another_replay_is_refused_not_detected_again()
    {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.rotated_at = Some(t0() - Duration::seconds(10));
        given(&mut mocks, record, active_session(&user(1), 7));
        // A concurrent replay revoked it a moment ago.
        mocks.sessions.expect_revoke().returning(|_, _| Ok(false));
        let events = mocks.events.clone();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::ReuseDetected));
        // One detection per ended session: this replay lost to the one that ended it.
        assert_one_refusal(&events);
    }

    fn assert_one_refusal(events: &RecordedEvents) {
        let recorded = events.taken();
        assert!(
            matches!(
                recorded[..],
                [AuthEvent::RefreshRefused {
                    throttled: false,
                    ..
                }]
            ),
            "{recorded:?}"
        );
    }

    #[tokio::test]
    async fn reuse_within_the_grace_window_issues_the_same_successor_in_the_same_session() {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.rotated_at = Some(t0() - Duration::seconds(9));
        given(&mut mocks, record, active_session(&user(1), 7));
        expect_successor_stored(&mut mocks);
        mocks.sessions.expect_revoke().never();
        mocks.refresh_tokens.expect_mark_rotated().never();
        let events = mocks.events.clone();
        let pair = mocks.service().refresh(command()).await.unwrap();
        assert_eq!(
            events.taken(),
            [AuthEvent::Refreshed {
                user: user(1).id,
                session: family(7),
                within_grace: true
            }]
        );
        assert_eq!(pair.access_token, "new.jwt");
        assert_eq!(pair.refresh_token.hash(), successor().hash());
    }

    fn race_lost_to(mocks: &mut Mocks) {
        let record = active_record(&presented(), &user(1), 7);
        let mut rotated_by_winner = record.clone();
        rotated_by_winner.rotated_at = Some(t0());
        given_reads(
            mocks,
            vec![record, rotated_by_winner],
            active_session(&user(1), 7),
        );
        expect_successor_stored(mocks);
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .times(1)
            .returning(|_, _| Ok(false));
        mocks.sessions.expect_revoke().never();
    }

    #[tokio::test]
    async fn losing_the_rotation_race_within_the_grace_window_still_gets_a_pair() {
        let mut mocks = Mocks::new();
        race_lost_to(&mut mocks);
        assert!(mocks.service().refresh(command()).await.is_ok());
    }

    fn without_grace(mocks: Mocks) -> AuthService {
        mocks.service_with(SessionPolicy {
            reuse_grace: Duration::zero(),
            ..policy()
        })
    }

    #[tokio::test]
    async fn a_rotation_stamped_after_this_requests_clock_is_no_grace_when_there_is_none() {
        let mut mocks = Mocks::new();
        let record = active_record(&presented(), &user(1), 7);
        let mut rotated_later = record.clone();
        rotated_later.rotated_at = Some(t0() + Duration::milliseconds(5));
        given_reads(
            &mut mocks,
            vec![record, rotated_later],
            active_session(&user(1), 7),
        );
        expect_successor_stored(&mut mocks);
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .returning(|_, _| Ok(false));
        let err = without_grace(mocks).refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn losing_the_rotation_race_without_a_grace_window_is_invalid() {
        let mut mocks = Mocks::new();
        race_lost_to(&mut mocks);
        let err = without_grace(mocks).refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn in_grace_reuse_never_hands_out_a_successor_that_was_exchanged_since() {
        let mut mocks = Mocks::new();
        let mut record = active_record(&presented(), &user(1), 7);
        record.rotated_at = Some(t0() - Duration::seconds(5));
        given(&mut mocks, record, active_session(&user(1), 7));
        let mut spent = active_record(&successor(), &user(1), 7);
        spent.rotated_at = Some(t0() - Duration::seconds(2));
        mocks
            .refresh_tokens
            .expect_insert()
            .returning(move |_| Ok(Some(spent.clone())));
        mocks.access_tokens.checkpoint();
        mocks.access_tokens.expect_encode().never();
        mocks.sessions.expect_revoke().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn a_retry_reports_the_lifetime_of_the_successor_stored_first() {
        let mut mocks = Mocks::new();
        given(
            &mut mocks,
            active_record(&presented(), &user(1), 7),
            active_session(&user(1), 7),
        );
        let mut stored_earlier = active_record(&successor(), &user(1), 7);
        stored_earlier.expires_at = t0() + Duration::days(3);
        mocks
            .refresh_tokens
            .expect_insert()
            .returning(move |_| Ok(Some(stored_earlier.clone())));
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .returning(|_, _| Ok(true));
        let pair = mocks.service().refresh(command()).await.unwrap();
        assert_eq!(pair.refresh_token.hash(), successor().hash());
        assert_eq!(pair.refresh_expires_in_secs, 3 * 24 * 3600);
    }

    #[tokio::test]
    async fn a_store_failure_while_storing_the_successor_leaves_the_token_unrotated() {
        let mut mocks = Mocks::new();
        given(
            &mut mocks,
            active_record(&presented(), &user(1), 7),
            active_session(&user(1), 7),
        );
        mocks
            .refresh_tokens
            .expect_insert()
            .returning(|_| Err(StoreError("timeout".into())));
        mocks.refresh_tokens.expect_mark_rotated().never();
        mocks.sessions.expect_revoke().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::Store(_)));
    }

    #[tokio::test]
    async fn refresh_for_a_deleted_user_revokes_the_session() {
        let mut mocks = Mocks::new();
        let record = active_record(&presented(), &user(1), 7);
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(move |_| Ok(Some(record.clone())));
        let session = active_session(&user(1), 7);
        mocks
            .sessions
            .expect_find()
            .returning(move |_| Ok(Some(session.clone())));
        mocks.users.expect_find_by_id().returning(|_| Ok(None));
        mocks
            .sessions
            .expect_revoke()
            .times(1)
            .returning(|_, _| Ok(true));
        mocks.refresh_tokens.expect_insert().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn refresh_passes_store_outages_through() {
        let mut mocks = Mocks::new();
        mocks
            .refresh_tokens
            .expect_find_by_hash()
            .returning(|_| Err(StoreError("timeout".into())));
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::Store(_)));
    }
}
