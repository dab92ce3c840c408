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
    /// A rotated token came back after the grace window, or within it from another client
    /// network than the one that rotated it: assume theft, end the session.
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
    ///
    /// The grace answer goes only to the client network that rotated the token (tabs and
    /// retries of one client share it). The same token from another network within the window
    /// is treated as reuse: the session ends, whoever presented first, so a thief who won the
    /// race loses the session as soon as the owner's replay arrives.
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
        let client = command.client;
        let session = self.live_session(&record, now).await?;
        if let Some(rotated_at) = record.rotated_at {
            let within_grace = self.within_grace(rotated_at, now);
            if !within_grace || !record.rotated_from(client) {
                return Err(self
                    .revoke_on_reuse(&record, now, client, within_grace)
                    .await);
            }
            let pair = self.issue_successor(&presented, &session).await?;
            self.record_refresh(&record, client, true);
            return Ok(pair);
        }
        let pair = self.issue_successor(&presented, &session).await?;
        // Only one caller rotates the token; a loser raced a concurrent refresh of the same
        // token a moment ago, which is what the grace window covers, for the winner's network.
        if self
            .ports
            .refresh_tokens
            .mark_rotated(&hash, now, client)
            .await?
        {
            self.record_refresh(&record, client, false);
            return Ok(pair);
        }
        // The winner's rotation decides, as it would for a replay arriving after it.
        let Some(rotated) = self.ports.refresh_tokens.find_by_hash(&hash).await? else {
            return Err(RefreshError::InvalidToken);
        };
        match rotated.rotated_at {
            Some(rotated_at) if self.within_grace(rotated_at, now) => {}
            _ => return Err(RefreshError::InvalidToken),
        }
        if !rotated.rotated_from(client) {
            // The pair minted above is dropped; the session it belongs to ends.
            return Err(self.revoke_on_reuse(&rotated, now, client, true).await);
        }
        self.record_refresh(&record, client, true);
        Ok(pair)
    }

    fn record_refresh(
        &self,
        record: &RefreshTokenRecord,
        client: ClientNetwork,
        within_grace: bool,
    ) {
        self.record(AuthEvent::Refreshed {
            user: record.user_id,
            session: record.family_id,
            client,
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

    /// Ends the session of `record`, a rotated token that came back after the grace window, or
    /// within it (`within_grace`) from another network than the one that rotated it.
    async fn revoke_on_reuse(
        &self,
        record: &RefreshTokenRecord,
        now: DateTime<Utc>,
        client: ClientNetwork,
        within_grace: bool,
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
                        rotated_by: record.rotated_by,
                        within_grace,
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
        let pair = self
            .issue_tokens(&user, session, successor)
            .await
            .map_err(|e| e.into_error(|| RefreshError::InvalidToken))?;
        // The session's last use: what keeps it live, and what ranks it when a login past
        // `MAX_SESSIONS_PER_USER` ends the least recently used. Noted before the client hears
        // of the pair; a failure fails the refresh, and a retry with the same token finishes.
        self.ports
            .sessions
            .note_use(session.id, self.ports.clock.now())
            .await?;
        Ok(pair)
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

    /// The network the owner's client refreshes from.
    fn home() -> ClientNetwork {
        ClientNetwork::of("192.0.2.1".parse().unwrap())
    }

    fn elsewhere() -> ClientNetwork {
        ClientNetwork::of("198.51.100.7".parse().unwrap())
    }

    fn command() -> RefreshCommand {
        command_from(home())
    }

    fn command_from(client: ClientNetwork) -> RefreshCommand {
        RefreshCommand {
            refresh_token: "presented-token".into(),
            client,
        }
    }

    /// The presented token, exchanged `ago` by a refresh from `by`.
    fn rotated(ago: Duration, by: Option<ClientNetwork>) -> RefreshTokenRecord {
        let mut record = active_record(&presented(), &user(1), 7);
        record.rotated_at = Some(t0() - ago);
        record.rotated_by = by;
        record
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
            .withf(|h, at, by| *h == presented().hash() && *at == t0() && *by == home())
            .times(1)
            .returning(|_, _, _| Ok(true));
        mocks.sessions.expect_revoke().never();
        let events = mocks.events.clone();

        let pair = mocks.service().refresh(command()).await.unwrap();

        assert_eq!(
            events.taken(),
            [AuthEvent::Refreshed {
                user: user(1).id,
                session: family(7),
                client: home(),
                within_grace: false
            }]
        );

        assert_eq!(pair.access_token, "new.jwt");
        assert_eq!(pair.refresh_token.hash(), successor().hash());
        assert_eq!(pair.refresh_expires_in_secs, 14 * 24 * 3600);
    }

    #[tokio::test]
    async fn a_refresh_notes_the_sessions_use_before_the_token_counts_as_exchanged() {
        let mut mocks = Mocks::sessions_strict();
        given(
            &mut mocks,
            active_record(&presented(), &user(1), 7),
            active_session(&user(1), 7),
        );
        expect_successor_stored(&mut mocks);
        let mut order = mockall::Sequence::new();
        mocks
            .sessions
            .expect_note_use()
            .withf(|id, at| *id == family(7) && *at == t0())
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(()));
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(true));
        assert!(mocks.service().refresh(command()).await.is_ok());
    }

    #[tokio::test]
    async fn a_use_that_cannot_be_noted_fails_the_refresh_and_leaves_the_token_unexchanged() {
        let mut mocks = Mocks::sessions_strict();
        given(
            &mut mocks,
            active_record(&presented(), &user(1), 7),
            active_session(&user(1), 7),
        );
        expect_successor_stored(&mut mocks);
        mocks
            .sessions
            .expect_note_use()
            .returning(|_, _| Err(StoreError("timed out".into())));
        mocks.refresh_tokens.expect_mark_rotated().never();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::Store(_)));
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
            .returning(|_, _, _| Ok(true));

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
        let record = rotated(Duration::seconds(10), Some(home()));
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
        assert_eq!(
            events.taken(),
            [AuthEvent::RefreshReuseDetected {
                user: user(1).id,
                session: family(7),
                client: home(),
                rotated_by: Some(home()),
                within_grace: false
            }]
        );
    }

    #[tokio::test]
    async fn a_replay_that_finds_its_session_ended_by_another_replay_is_refused_not_detected_again()
    {
        let mut mocks = Mocks::new();
        let record = rotated(Duration::seconds(10), Some(home()));
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
    async fn in_grace_reuse_from_the_rotating_network_gets_the_same_successor_in_the_session() {
        let mut mocks = Mocks::new();
        let record = rotated(Duration::seconds(9), Some(home()));
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
                client: home(),
                within_grace: true
            }]
        );
        assert_eq!(pair.access_token, "new.jwt");
        assert_eq!(pair.refresh_token.hash(), successor().hash());
    }

    /// Expects that nothing is minted and the session of the presented token ends once.
    fn expect_no_pair_and_the_session_ended(mocks: &mut Mocks) {
        mocks.access_tokens.checkpoint();
        mocks.access_tokens.expect_encode().never();
        mocks.refresh_tokens.expect_insert().never();
        mocks.refresh_tokens.expect_mark_rotated().never();
        mocks
            .sessions
            .expect_revoke()
            .withf(|f, at| *f == family(7) && *at == t0())
            .times(1)
            .returning(|_, _| Ok(true));
    }

    #[tokio::test]
    async fn in_grace_reuse_from_another_network_gets_no_pair_and_ends_the_session() {
        let mut mocks = Mocks::new();
        let record = rotated(Duration::seconds(1), Some(home()));
        given(&mut mocks, record, active_session(&user(1), 7));
        expect_no_pair_and_the_session_ended(&mut mocks);
        let events = mocks.events.clone();

        let err = mocks
            .service()
            .refresh(command_from(elsewhere()))
            .await
            .unwrap_err();

        assert!(matches!(err, RefreshError::ReuseDetected));
        // Both networks are named: where the token came back from, and who rotated it.
        assert_eq!(
            events.taken(),
            [AuthEvent::RefreshReuseDetected {
                user: user(1).id,
                session: family(7),
                client: elsewhere(),
                rotated_by: Some(home()),
                within_grace: true
            }]
        );
    }

    #[tokio::test]
    async fn another_ipv6_address_in_the_rotating_64_is_the_same_network() {
        let at_home = |ip: &str| ClientNetwork::of(ip.parse().unwrap());
        let mut mocks = Mocks::new();
        let record = rotated(Duration::seconds(1), Some(at_home("2001:db8:1:2::1")));
        given(&mut mocks, record, active_session(&user(1), 7));
        expect_successor_stored(&mut mocks);
        mocks.sessions.expect_revoke().never();
        let command = command_from(at_home("2001:db8:1:2:ffff::9"));
        assert!(mocks.service().refresh(command).await.is_ok());
    }

    #[tokio::test]
    async fn a_rotation_without_a_recorded_network_admits_in_grace_reuse_from_any_network() {
        // Rotated by a release that did not record the network: grace as it was then.
        let mut mocks = Mocks::new();
        given(
            &mut mocks,
            rotated(Duration::seconds(1), None),
            active_session(&user(1), 7),
        );
        expect_successor_stored(&mut mocks);
        mocks.sessions.expect_revoke().never();
        let pair = mocks
            .service()
            .refresh(command_from(elsewhere()))
            .await
            .unwrap();
        assert_eq!(pair.refresh_token.hash(), successor().hash());
    }

    /// This refresh reads the token unrotated, but a concurrent one from `winner` rotates it
    /// first.
    fn race_lost_to(mocks: &mut Mocks, winner: ClientNetwork) {
        let record = active_record(&presented(), &user(1), 7);
        given_reads(
            mocks,
            vec![record, rotated(Duration::zero(), Some(winner))],
            active_session(&user(1), 7),
        );
        expect_successor_stored(mocks);
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .times(1)
            .returning(|_, _, _| Ok(false));
    }

    #[tokio::test]
    async fn losing_the_rotation_race_within_the_grace_window_still_gets_a_pair() {
        let mut mocks = Mocks::new();
        race_lost_to(&mut mocks, home());
        mocks.sessions.expect_revoke().never();
        assert!(mocks.service().refresh(command()).await.is_ok());
    }

    #[tokio::test]
    async fn losing_the_rotation_race_to_another_network_in_grace_ends_the_session() {
        let mut mocks = Mocks::new();
        race_lost_to(&mut mocks, elsewhere());
        mocks
            .sessions
            .expect_revoke()
            .withf(|f, _| *f == family(7))
            .times(1)
            .returning(|_, _| Ok(true));
        let events = mocks.events.clone();
        let err = mocks.service().refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::ReuseDetected));
        assert_eq!(
            events.taken(),
            [AuthEvent::RefreshReuseDetected {
                user: user(1).id,
                session: family(7),
                client: home(),
                rotated_by: Some(elsewhere()),
                within_grace: true
            }]
        );
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
        rotated_later.rotated_by = Some(home());
        given_reads(
            &mut mocks,
            vec![record, rotated_later],
            active_session(&user(1), 7),
        );
        expect_successor_stored(&mut mocks);
        mocks
            .refresh_tokens
            .expect_mark_rotated()
            .returning(|_, _, _| Ok(false));
        let err = without_grace(mocks).refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn losing_the_rotation_race_without_a_grace_window_is_invalid() {
        let mut mocks = Mocks::new();
        race_lost_to(&mut mocks, home());
        mocks.sessions.expect_revoke().never();
        let err = without_grace(mocks).refresh(command()).await.unwrap_err();
        assert!(matches!(err, RefreshError::InvalidToken));
    }

    #[tokio::test]
    async fn in_grace_reuse_never_hands_out_a_successor_that_was_exchanged_since() {
        let mut mocks = Mocks::new();
        let record = rotated(Duration::seconds(5), Some(home()));
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
            .returning(|_, _, _| Ok(true));
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
