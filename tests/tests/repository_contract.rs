//! One contract for every store: the in-memory adapter and the MongoDB adapter (over the wire,
//! against a real server) must behave identically.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use latchkey_domain::{
    ports::{
        InsertUserError, MailTokenRepository, RefreshTokenRepository, SessionRepository,
        ThrottleStore, UserRepository,
    },
    BucketState, EmailAddress, FamilyId, MailTokenPurpose, MailTokenRecord, MailTokenSecret,
    PasswordHash, RefreshTokenRecord, RefreshTokenSecret, Role, SessionLiveness, SessionOrigin,
    SessionPosition, SessionRecord, ThrottleKey, User, UserFilter, UserId,
};
use latchkey_tests::{for_each_backend, mongo::TestDatabase, Backend};
use std::sync::Arc;
use uuid::Uuid;

/// The stores under test, plus the database that must outlive them.
struct Stores {
    users: Arc<dyn UserRepository>,
    tokens: Arc<dyn RefreshTokenRepository>,
    sessions: Arc<dyn SessionRepository>,
    throttle: Arc<dyn ThrottleStore>,
    mail_tokens: Arc<dyn MailTokenRepository>,
    _database: Option<TestDatabase>,
}

/// The fixture: fresh, empty stores of `backend`.
async fn stores(backend: Backend) -> Stores {
    match backend {
        Backend::Memory => Stores {
            users: Arc::new(latchkey_memory::InMemoryUsers::default()),
            tokens: Arc::new(latchkey_memory::InMemoryRefreshTokens::default()),
            sessions: Arc::new(latchkey_memory::InMemorySessions::default()),
            throttle: Arc::new(latchkey_memory::InMemoryThrottle::default()),
            mail_tokens: Arc::new(latchkey_memory::InMemoryMailTokens::default()),
            _database: None,
        },
        Backend::Mongo => {
            let database = TestDatabase::create().await;
            Stores {
                users: Arc::new(database.store.users()),
                tokens: Arc::new(database.store.refresh_tokens()),
                sessions: Arc::new(database.store.sessions()),
                throttle: Arc::new(database.store.throttle()),
                mail_tokens: Arc::new(database.store.mail_tokens()),
                _database: Some(database),
            }
        }
    }
}

/// Stores keep milliseconds (BSON dates); the system clock adapter truncates the same way.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn new_user(email: &str) -> User {
    User {
        id: UserId::from_uuid(Uuid::new_v4()),
        email: EmailAddress::parse(email).unwrap(),
        password_hash: PasswordHash::new("$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA".into()),
        roles: vec![Role::user()],
        created_at: now(),
        email_verified_at: None,
        disabled_at: None,
        last_login_at: None,
        password_set_by_mailbox_owner_at: None,
    }
}

fn new_token(owner: &User, family: FamilyId) -> (RefreshTokenSecret, RefreshTokenRecord) {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    let secret = RefreshTokenSecret::from_random_bytes(bytes);
    let record = RefreshTokenRecord {
        token_hash: secret.hash(),
        user_id: owner.id,
        family_id: family,
        issued_at: now(),
        expires_at: now() + Duration::days(1),
        rotated_at: None,
        rotated_by: None,
    };
    (secret, record)
}

fn new_session(owner: &User) -> SessionRecord {
    SessionRecord {
        id: new_family(),
        user_id: owner.id,
        created_at: now(),
        expires_at: now() + Duration::days(30),
        revoked_at: None,
        last_used_at: now(),
        origin: SessionOrigin::new(Some("Mozilla/5.0 (X11)"), Some("203.0.113.7".into())),
    }
}

/// Live at `at`: neither ended nor past their end, and used within the last 14 days.
fn live_at(at: DateTime<Utc>) -> SessionLiveness {
    SessionLiveness {
        now: at,
        used_after: at - Duration::days(14),
    }
}

/// A session of `owner` that started `minutes` ago and was last used `used_minutes` ago.
fn session_started(owner: &User, minutes: i64, used_minutes: i64) -> SessionRecord {
    SessionRecord {
        created_at: now() - Duration::minutes(minutes),
        last_used_at: now() - Duration::minutes(used_minutes),
        ..new_session(owner)
    }
}

/// The record of a token that must exist.
async fn stored(stores: &Stores, secret: &RefreshTokenSecret) -> RefreshTokenRecord {
    stores
        .tokens
        .find_by_hash(&secret.hash())
        .await
        .unwrap()
        .expect("the token is stored")
}

fn new_family() -> FamilyId {
    FamilyId::from_uuid(Uuid::new_v4())
}

/// A client network as rotations record it: an IPv6 client's /64 (stored as its text).
fn network(address: &str) -> latchkey_domain::ClientNetwork {
    latchkey_domain::ClientNetwork::of(address.parse().unwrap())
}

async fn a_user_is_found_by_id_and_by_email_in_any_case(stores: Stores) {
    let user = new_user("Ann.Lee@Example.com");
    stores.users.insert(&user).await.unwrap();

    let by_id = stores.users.find_by_id(user.id).await.unwrap();
    let by_email = stores
        .users
        .find_by_email(&EmailAddress::parse("ann.lee@EXAMPLE.com").unwrap().key())
        .await
        .unwrap();

    assert_eq!(by_id.as_ref(), Some(&user));
    assert_eq!(by_email.as_ref(), Some(&user));
    assert_eq!(by_id.unwrap().email.as_str(), "Ann.Lee@Example.com");
}

async fn unknown_users_are_none(stores: Stores) {
    assert_eq!(
        stores
            .users
            .find_by_id(UserId::from_uuid(Uuid::new_v4()))
            .await
            .unwrap(),
        None
    );
    let email = EmailAddress::parse("nobody@example.com").unwrap();
    assert_eq!(
        stores.users.find_by_email(&email.key()).await.unwrap(),
        None
    );
}

async fn a_second_user_with_the_same_email_in_other_case_is_refused_and_the_first_kept(
    stores: Stores,
) {
    let first = new_user("ann@example.com");
    stores.users.insert(&first).await.unwrap();

    let err = stores
        .users
        .insert(&new_user("ANN@example.COM"))
        .await
        .unwrap_err();

    assert_eq!(err, InsertUserError::EmailTaken);
    let email = EmailAddress::parse("ann@example.com").unwrap();
    assert_eq!(
        stores.users.find_by_email(&email.key()).await.unwrap(),
        Some(first)
    );
}

async fn concurrent_registrations_of_one_email_let_exactly_one_through(stores: Stores) {
    let attempts = (0..8).map(|_| {
        let users = stores.users.clone();
        async move { users.insert(&new_user("race@example.com")).await }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| *e == InsertUserError::EmailTaken));
}

async fn the_store_answers_a_ping(stores: Stores) {
    stores.users.ping().await.unwrap();
}

async fn a_refresh_token_round_trips_by_hash(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, record) = new_token(&owner, new_family());
    stores.tokens.insert(&record).await.unwrap();

    let found = stores.tokens.find_by_hash(&secret.hash()).await.unwrap();

    assert_eq!(found, Some(record));
    let (other, _) = new_token(&owner, new_family());
    assert_eq!(
        stores.tokens.find_by_hash(&other.hash()).await.unwrap(),
        None
    );
}

async fn storing_a_token_again_keeps_the_first_record(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, record) = new_token(&owner, new_family());
    assert_eq!(stores.tokens.insert(&record).await.unwrap(), None);
    let at = now();
    let by = network("192.0.2.1");
    stores
        .tokens
        .mark_rotated(&secret.hash(), at, by)
        .await
        .unwrap();

    let mut again = record.clone();
    again.expires_at = record.expires_at + Duration::days(1);
    let existing = stores.tokens.insert(&again).await.unwrap();
    assert_eq!(
        existing,
        Some(RefreshTokenRecord {
            rotated_at: Some(at),
            rotated_by: Some(by),
            ..record.clone()
        }),
        "the stored record is reported, as stored"
    );

    let kept = stored(&stores, &secret).await;
    assert_eq!(kept.expires_at, record.expires_at);
    assert_eq!(
        kept.rotated_at,
        Some(at),
        "a retry never un-rotates a token"
    );
}

async fn rotation_succeeds_once_and_records_when_and_from_which_network(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, record) = new_token(&owner, new_family());
    stores.tokens.insert(&record).await.unwrap();
    assert_eq!(stored(&stores, &secret).await.rotated_by, None);
    let at = now();
    let here = network("2001:db8:1:2::7");

    assert!(stores
        .tokens
        .mark_rotated(&secret.hash(), at, here)
        .await
        .unwrap());
    assert!(!stores
        .tokens
        .mark_rotated(
            &secret.hash(),
            at + Duration::seconds(1),
            network("192.0.2.2")
        )
        .await
        .unwrap());

    let stored = stored(&stores, &secret).await;
    assert_eq!(stored.rotated_at, Some(at));
    assert_eq!(
        stored.rotated_by,
        Some(network("2001:db8:1:2:ffff::1")),
        "the winner's network, as its /64, and no loser's"
    );
}

/// Runs `attempts` calls released together on the multi-threaded runtime, so they really run at
/// once (the in-memory store never yields; on one thread they would simply take turns), and
/// counts those that report a win.
async fn winners_of_simultaneous<F, Fut>(attempts: usize, attempt: F) -> usize
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(attempts));
    let running = (0..attempts).map(|_| {
        let (start, call) = (start.clone(), attempt());
        tokio::spawn(async move {
            start.wait().await;
            call.await
        })
    });
    futures::future::join_all(running)
        .await
        .into_iter()
        .filter(|won| *won.as_ref().unwrap())
        .count()
}

async fn concurrent_rotations_of_one_token_have_exactly_one_winner(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, record) = new_token(&owner, new_family());
    stores.tokens.insert(&record).await.unwrap();

    let hash = secret.hash();
    let tokens = stores.tokens.clone();
    let winners = winners_of_simultaneous(16, move || {
        let tokens = tokens.clone();
        async move {
            tokens
                .mark_rotated(&hash, now(), network("192.0.2.1"))
                .await
                .unwrap()
        }
    })
    .await;

    assert_eq!(winners, 1);
}

async fn unknown_tokens_cannot_be_rotated(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (unknown, _) = new_token(&owner, new_family());
    assert!(!stores
        .tokens
        .mark_rotated(&unknown.hash(), now(), network("192.0.2.1"))
        .await
        .unwrap());
}

async fn a_session_round_trips_by_id(stores: Stores) {
    let owner = new_user("ann@example.com");
    let session = new_session(&owner);
    stores.sessions.insert(&session).await.unwrap();

    assert_eq!(
        stores.sessions.find(session.id).await.unwrap(),
        Some(session)
    );
    assert_eq!(stores.sessions.find(new_family()).await.unwrap(), None);
}

async fn revoking_a_session_succeeds_once_keeps_its_first_time_and_touches_no_other(
    stores: Stores,
) {
    let owner = new_user("ann@example.com");
    let (session, bystander) = (new_session(&owner), new_session(&owner));
    stores.sessions.insert(&session).await.unwrap();
    stores.sessions.insert(&bystander).await.unwrap();
    let at = now();

    assert!(stores.sessions.revoke(session.id, at).await.unwrap());
    assert!(!stores
        .sessions
        .revoke(session.id, at + Duration::seconds(5))
        .await
        .unwrap());
    assert!(!stores.sessions.revoke(new_family(), at).await.unwrap());

    let revoked = stores.sessions.find(session.id).await.unwrap().unwrap();
    assert_eq!(
        revoked.revoked_at,
        Some(at),
        "revocation is never moved or undone"
    );
    let untouched = stores.sessions.find(bystander.id).await.unwrap().unwrap();
    assert_eq!(untouched.revoked_at, None);
}

async fn concurrent_revocations_of_one_session_have_exactly_one_winner(stores: Stores) {
    let owner = new_user("ann@example.com");
    let session = new_session(&owner);
    stores.sessions.insert(&session).await.unwrap();
    let sessions = stores.sessions.clone();
    let winners = winners_of_simultaneous(8, move || {
        let sessions = sessions.clone();
        async move { sessions.revoke(session.id, now()).await.unwrap() }
    })
    .await;
    assert_eq!(winners, 1);
}

async fn a_users_live_sessions_are_listed_newest_first_without_others(stores: Stores) {
    let (ann, bob) = (new_user("ann@example.com"), new_user("bob@example.com"));
    let older = session_started(&ann, 120, 60);
    let newer = new_session(&ann);
    let mut revoked = new_session(&ann);
    revoked.revoked_at = Some(now());
    let mut ended = session_started(&ann, 31 * 24 * 60, 10);
    ended.expires_at = now() - Duration::seconds(1);
    // Its refresh token expired unused a day ago.
    let idle = session_started(&ann, 20 * 24 * 60, 15 * 24 * 60);
    let bobs = new_session(&bob);
    for session in [&older, &newer, &revoked, &ended, &idle, &bobs] {
        stores.sessions.insert(session).await.unwrap();
    }
    let at = now();

    let listed = stores
        .sessions
        .list_active(ann.id, live_at(at), None, 10)
        .await
        .unwrap();

    assert_eq!(
        listed,
        vec![newer.clone(), older],
        "origins and last use kept, newest first"
    );
    assert_eq!(
        stores
            .sessions
            .list_active(bob.id, live_at(at), None, 10)
            .await
            .unwrap(),
        vec![bobs]
    );
    assert_eq!(
        stores
            .sessions
            .list_active(ann.id, live_at(at), None, 1)
            .await
            .unwrap(),
        vec![newer],
        "at most `limit`"
    );
    assert!(stores
        .sessions
        .list_active(ann.id, live_at(at), None, 0)
        .await
        .unwrap()
        .is_empty());
}

async fn a_page_of_sessions_starts_after_its_cursor_with_ties_ordered_by_id(stores: Stores) {
    let ann = new_user("ann@example.com");
    let started = now() - Duration::minutes(5);
    // Three sessions started in the same millisecond, and one before them.
    let mut same: Vec<SessionRecord> = (0..3)
        .map(|_| SessionRecord {
            created_at: started,
            ..new_session(&ann)
        })
        .collect();
    same.sort_by_key(|s| std::cmp::Reverse(s.id));
    let earlier = session_started(&ann, 10, 1);
    for session in same.iter().chain([&earlier]) {
        stores.sessions.insert(session).await.unwrap();
    }
    let at = now();
    let page = |after: Option<SessionPosition>| {
        let sessions = stores.sessions.clone();
        async move {
            sessions
                .list_active(ann.id, live_at(at), after, 2)
                .await
                .unwrap()
        }
    };

    let first = page(None).await;
    assert_eq!(
        first,
        same[..2].to_vec(),
        "ids descending among equal starts"
    );
    let second = page(Some(SessionPosition::of(&first[1]))).await;
    assert_eq!(second, vec![same[2].clone(), earlier.clone()]);
    assert!(page(Some(SessionPosition::of(&earlier))).await.is_empty());
}

async fn paging_sessions_is_stable_while_sessions_start_and_end(stores: Stores) {
    let ann = new_user("ann@example.com");
    let present: Vec<SessionRecord> = (0..7).map(|n| session_started(&ann, 100 - n, 1)).collect();
    for session in &present {
        stores.sessions.insert(session).await.unwrap();
    }
    let at = now();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .sessions
            .list_active(ann.id, live_at(at), after, 2)
            .await
            .unwrap();
        let Some(last) = page.last() else {
            break;
        };
        after = Some(SessionPosition::of(last));
        seen.extend(page.iter().map(|session| session.id));
        // Between pages: a login (newer than every page), and one already listed ends.
        stores.sessions.insert(&new_session(&ann)).await.unwrap();
        stores.sessions.revoke(page[0].id, at).await.unwrap();
    }
    let expected: Vec<FamilyId> = present.iter().rev().map(|session| session.id).collect();
    assert_eq!(seen, expected, "each once, newest first");
}

async fn a_sessions_use_is_noted_and_never_moved_back(stores: Stores) {
    let ann = new_user("ann@example.com");
    let session = session_started(&ann, 60, 60);
    stores.sessions.insert(&session).await.unwrap();
    let used = now();

    stores.sessions.note_use(session.id, used).await.unwrap();
    stores
        .sessions
        .note_use(session.id, used - Duration::minutes(1))
        .await
        .unwrap();
    stores.sessions.note_use(new_family(), used).await.unwrap();

    let stored = stores.sessions.find(session.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, used);
    assert_eq!(
        stored,
        SessionRecord {
            last_used_at: used,
            ..session
        },
        "nothing else changed"
    );
}

async fn live_sessions_are_counted_without_others(stores: Stores) {
    let (ann, bob) = (new_user("ann@example.com"), new_user("bob@example.com"));
    let mut revoked = new_session(&ann);
    revoked.revoked_at = Some(now());
    let idle = session_started(&ann, 20 * 24 * 60, 15 * 24 * 60);
    for session in [
        &new_session(&ann),
        &session_started(&ann, 30, 30),
        &revoked,
        &idle,
        &new_session(&bob),
    ] {
        stores.sessions.insert(session).await.unwrap();
    }
    let at = now();
    assert_eq!(
        stores
            .sessions
            .count_active(ann.id, live_at(at))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        stores
            .sessions
            .count_active(bob.id, live_at(at))
            .await
            .unwrap(),
        1
    );
    let nobody = new_user("nobody@example.com");
    assert_eq!(
        stores
            .sessions
            .count_active(nobody.id, live_at(at))
            .await
            .unwrap(),
        0
    );
    // Used again, the idle one is live again.
    stores.sessions.note_use(idle.id, at).await.unwrap();
    assert_eq!(
        stores
            .sessions
            .count_active(ann.id, live_at(at))
            .await
            .unwrap(),
        3
    );
}

async fn sessions_past_the_most_recently_used_are_named_least_recent_last(stores: Stores) {
    let (ann, bob) = (new_user("ann@example.com"), new_user("bob@example.com"));
    // Started long ago but used a minute ago: the most recently used.
    let busy = session_started(&ann, 600, 1);
    let fresh = session_started(&ann, 5, 5);
    let quiet = session_started(&ann, 300, 200);
    let stale = session_started(&ann, 900, 800);
    let mut revoked = session_started(&ann, 1000, 900);
    revoked.revoked_at = Some(now());
    let idle = session_started(&ann, 20 * 24 * 60, 15 * 24 * 60);
    let bobs = session_started(&bob, 2000, 2000);
    for session in [&busy, &fresh, &quiet, &stale, &revoked, &idle, &bobs] {
        stores.sessions.insert(session).await.unwrap();
    }
    let at = now();
    let beyond = |keep: usize, limit: usize| {
        let sessions = stores.sessions.clone();
        async move {
            sessions
                .least_recently_used_beyond(ann.id, live_at(at), keep, limit)
                .await
                .unwrap()
        }
    };

    assert_eq!(beyond(2, 10).await, vec![quiet.id, stale.id]);
    assert_eq!(beyond(1, 10).await, vec![fresh.id, quiet.id, stale.id]);
    assert_eq!(
        beyond(1, 2).await,
        vec![fresh.id, quiet.id],
        "at most `limit`"
    );
    assert!(beyond(4, 10).await.is_empty(), "under the cap: none");
    assert!(beyond(2, 0).await.is_empty());
    // A refresh moves a session up.
    stores.sessions.note_use(stale.id, at).await.unwrap();
    assert_eq!(beyond(2, 10).await, vec![fresh.id, quiet.id]);
}

async fn revoking_all_of_a_users_sessions_keeps_the_one_asked_and_touches_no_other_user(
    stores: Stores,
) {
    let (ann, bob) = (new_user("ann@example.com"), new_user("bob@example.com"));
    let (kept, first, second) = (new_session(&ann), new_session(&ann), new_session(&ann));
    let mut earlier = new_session(&ann);
    let revoked_before = now() - Duration::minutes(5);
    earlier.revoked_at = Some(revoked_before);
    let bobs = new_session(&bob);
    for session in [&kept, &first, &second, &earlier, &bobs] {
        stores.sessions.insert(session).await.unwrap();
    }
    let at = now();

    let revoked = stores
        .sessions
        .revoke_all_of_user(ann.id, at, Some(kept.id))
        .await
        .unwrap();

    assert_eq!(revoked, 2);
    let revoked_at = |id| {
        let sessions = stores.sessions.clone();
        async move { sessions.find(id).await.unwrap().unwrap().revoked_at }
    };
    assert_eq!(revoked_at(first.id).await, Some(at));
    assert_eq!(revoked_at(second.id).await, Some(at));
    assert_eq!(revoked_at(kept.id).await, None);
    assert_eq!(revoked_at(earlier.id).await, Some(revoked_before));
    assert_eq!(revoked_at(bobs.id).await, None);

    assert_eq!(
        stores
            .sessions
            .revoke_all_of_user(ann.id, at, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(revoked_at(kept.id).await, Some(at));
}

async fn a_users_unexchanged_tokens_are_the_heads_of_their_chains(stores: Stores) {
    let (ann, bob) = (new_user("ann@example.com"), new_user("bob@example.com"));
    let (family, other_family) = (new_family(), new_family());
    let (rotated_secret, rotated) = new_token(&ann, family);
    let (_, head) = new_token(&ann, family);
    let (_, other_head) = new_token(&ann, other_family);
    let (_, bobs) = new_token(&bob, new_family());
    for record in [&rotated, &head, &other_head, &bobs] {
        stores.tokens.insert(record).await.unwrap();
    }
    stores
        .tokens
        .mark_rotated(&rotated_secret.hash(), now(), network("192.0.2.1"))
        .await
        .unwrap();

    let mut heads = stores.tokens.unexchanged_of_user(ann.id).await.unwrap();
    heads.sort_by_key(|t| t.token_hash.to_hex());
    let mut expected = vec![head, other_head];
    expected.sort_by_key(|t| t.token_hash.to_hex());

    assert_eq!(heads, expected);
}

async fn deleting_a_user_forgets_the_account_its_sessions_and_tokens_only(stores: Stores) {
    let (ann, bob) = (new_user("ann@example.com"), new_user("bob@example.com"));
    stores.users.insert(&ann).await.unwrap();
    stores.users.insert(&bob).await.unwrap();
    let (anns_session, bobs_session) = (new_session(&ann), new_session(&bob));
    stores.sessions.insert(&anns_session).await.unwrap();
    stores.sessions.insert(&bobs_session).await.unwrap();
    let (anns_secret, anns_token) = new_token(&ann, anns_session.id);
    let (bobs_secret, bobs_token) = new_token(&bob, bobs_session.id);
    stores.tokens.insert(&anns_token).await.unwrap();
    stores.tokens.insert(&bobs_token).await.unwrap();

    assert!(stores.users.delete(ann.id).await.unwrap());
    stores.sessions.delete_all_of_user(ann.id).await.unwrap();
    stores.tokens.delete_all_of_user(ann.id).await.unwrap();

    assert_eq!(stores.users.find_by_id(ann.id).await.unwrap(), None);
    assert!(!stores.users.delete(ann.id).await.unwrap(), "deleted once");
    assert_eq!(stores.sessions.find(anns_session.id).await.unwrap(), None);
    assert_eq!(
        stores
            .tokens
            .find_by_hash(&anns_secret.hash())
            .await
            .unwrap(),
        None
    );
    assert_eq!(stores.users.find_by_id(bob.id).await.unwrap(), Some(bob));
    assert!(stores
        .sessions
        .find(bobs_session.id)
        .await
        .unwrap()
        .is_some());
    assert!(stores
        .tokens
        .find_by_hash(&bobs_secret.hash())
        .await
        .unwrap()
        .is_some());
    // The address is free again.
    stores
        .users
        .insert(&new_user("ann@example.com"))
        .await
        .unwrap();
}

/// The live token of `purpose` with `secret`'s hash, as the store finds it now.
async fn stored_link(
    stores: &Stores,
    secret: &MailTokenSecret,
    purpose: MailTokenPurpose,
) -> Option<MailTokenRecord> {
    stores
        .mail_tokens
        .find(&secret.hash(), purpose, now())
        .await
        .unwrap()
}

fn new_link(owner: &User, purpose: MailTokenPurpose) -> (MailTokenSecret, MailTokenRecord) {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    let secret = MailTokenSecret::from_random_bytes(bytes);
    let record = MailTokenRecord {
        token_hash: secret.hash(),
        user_id: owner.id,
        purpose,
        email: owner.email.normalized().to_owned(),
        issued_at: now(),
        expires_at: now() + Duration::minutes(30),
    };
    (secret, record)
}

async fn a_mail_token_works_once_for_its_purpose_only(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, link) = new_link(&owner, MailTokenPurpose::ResetPassword);
    stores.mail_tokens.issue(&link).await.unwrap();
    let hash = secret.hash();
    let (reset, verify) = (
        MailTokenPurpose::ResetPassword,
        MailTokenPurpose::VerifyEmail,
    );

    assert_eq!(
        stores.mail_tokens.find(&hash, verify, now()).await.unwrap(),
        None,
        "another purpose"
    );
    assert_eq!(
        stores
            .mail_tokens
            .consume(&hash, verify, now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        stores.mail_tokens.find(&hash, reset, now()).await.unwrap(),
        Some(link.clone()),
        "finding leaves it in place"
    );
    assert_eq!(
        stores
            .mail_tokens
            .consume(&hash, reset, now())
            .await
            .unwrap(),
        Some(link)
    );
    assert_eq!(
        stores
            .mail_tokens
            .consume(&hash, reset, now())
            .await
            .unwrap(),
        None,
        "used up"
    );
    assert_eq!(
        stores.mail_tokens.find(&hash, reset, now()).await.unwrap(),
        None
    );
}

async fn a_newer_mail_token_replaces_the_last_of_its_purpose_only(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (first, first_link) = new_link(&owner, MailTokenPurpose::ResetPassword);
    let (verify, verify_link) = new_link(&owner, MailTokenPurpose::VerifyEmail);
    let (second, second_link) = new_link(&owner, MailTokenPurpose::ResetPassword);
    for link in [&first_link, &verify_link, &second_link] {
        stores.mail_tokens.issue(link).await.unwrap();
    }
    let reset = MailTokenPurpose::ResetPassword;

    assert_eq!(stored_link(&stores, &first, reset).await, None);
    assert_eq!(
        stored_link(&stores, &second, reset).await,
        Some(second_link)
    );
    assert_eq!(
        stored_link(&stores, &verify, MailTokenPurpose::VerifyEmail).await,
        Some(verify_link)
    );
}

async fn a_used_mail_token_is_restored_unless_a_newer_one_came(stores: Stores) {
    let owner = new_user("ann@example.com");
    let reset = MailTokenPurpose::ResetPassword;
    let (used, used_link) = new_link(&owner, reset);
    stores.mail_tokens.issue(&used_link).await.unwrap();
    stores
        .mail_tokens
        .consume(&used.hash(), reset, now())
        .await
        .unwrap();

    stores.mail_tokens.restore(&used_link).await.unwrap();
    assert_eq!(
        stored_link(&stores, &used, reset).await,
        Some(used_link.clone())
    );

    let (newer, newer_link) = new_link(&owner, reset);
    stores.mail_tokens.issue(&newer_link).await.unwrap();
    stores.mail_tokens.restore(&used_link).await.unwrap();
    assert_eq!(
        stored_link(&stores, &used, reset).await,
        None,
        "the newer link wins"
    );
    assert_eq!(stored_link(&stores, &newer, reset).await, Some(newer_link));
}

async fn an_expired_mail_token_is_neither_found_nor_used(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, mut link) = new_link(&owner, MailTokenPurpose::VerifyEmail);
    link.expires_at = now() + Duration::seconds(5);
    stores.mail_tokens.issue(&link).await.unwrap();
    let later = link.expires_at;
    let verify = MailTokenPurpose::VerifyEmail;

    assert_eq!(
        stores
            .mail_tokens
            .find(&secret.hash(), verify, later)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        stores
            .mail_tokens
            .consume(&secret.hash(), verify, later)
            .await
            .unwrap(),
        None
    );
    assert!(stores
        .mail_tokens
        .consume(&secret.hash(), verify, now())
        .await
        .unwrap()
        .is_some());
}

async fn concurrent_uses_of_one_mail_token_have_exactly_one_winner(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, link) = new_link(&owner, MailTokenPurpose::ResetPassword);
    stores.mail_tokens.issue(&link).await.unwrap();
    let tokens = stores.mail_tokens.clone();
    let hash = secret.hash();
    let winners = winners_of_simultaneous(8, move || {
        let tokens = tokens.clone();
        async move {
            tokens
                .consume(&hash, MailTokenPurpose::ResetPassword, now())
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    assert_eq!(winners, 1);
}

async fn discarding_a_users_mail_token_of_one_purpose_leaves_the_rest(stores: Stores) {
    let (ann, bob) = (new_user("ann@example.com"), new_user("bob@example.com"));
    let (anns, anns_link) = new_link(&ann, MailTokenPurpose::ResetPassword);
    let (anns_verify, anns_verify_link) = new_link(&ann, MailTokenPurpose::VerifyEmail);
    let (bobs, bobs_link) = new_link(&bob, MailTokenPurpose::ResetPassword);
    for link in [&anns_link, &anns_verify_link, &bobs_link] {
        stores.mail_tokens.issue(link).await.unwrap();
    }
    let reset = MailTokenPurpose::ResetPassword;

    stores.mail_tokens.discard(ann.id, reset).await.unwrap();
    stores.mail_tokens.discard(ann.id, reset).await.unwrap();

    assert_eq!(stored_link(&stores, &anns, reset).await, None);
    assert_eq!(
        stored_link(&stores, &anns_verify, MailTokenPurpose::VerifyEmail).await,
        Some(anns_verify_link)
    );
    assert_eq!(stored_link(&stores, &bobs, reset).await, Some(bobs_link));
}

async fn an_address_is_verified_once_and_only_while_the_account_has_it(stores: Stores) {
    let user = new_user("Ann@Example.com");
    stores.users.insert(&user).await.unwrap();
    let first = now();

    assert!(!stores
        .users
        .mark_email_verified(user.id, "someone@else.com", first)
        .await
        .unwrap());
    assert_eq!(
        stores
            .users
            .find_by_id(user.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified_at,
        None
    );
    assert!(stores
        .users
        .mark_email_verified(user.id, "ann@example.com", first)
        .await
        .unwrap());
    assert!(stores
        .users
        .mark_email_verified(user.id, "ann@example.com", first + Duration::hours(1))
        .await
        .unwrap());
    assert_eq!(
        stores
            .users
            .find_by_id(user.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified_at,
        Some(first),
        "the first verification's time is kept"
    );
    assert!(!stores
        .users
        .mark_email_verified(UserId::from_uuid(Uuid::new_v4()), "ann@example.com", first)
        .await
        .unwrap());
}

async fn a_password_set_by_mail_is_noted_only_while_it_is_in_force(stores: Stores) {
    let user = new_user("owner@example.com");
    stores.users.insert(&user).await.unwrap();
    let at = now();
    let stale = PasswordHash::new("$argon2id$stale".into());
    let noted_at = |users: Arc<dyn UserRepository>| async move {
        users
            .find_by_id(user.id)
            .await
            .unwrap()
            .unwrap()
            .password_set_by_mailbox_owner_at
    };

    assert!(!stores
        .users
        .mark_password_set_by_mailbox_owner(user.id, &stale, at)
        .await
        .unwrap());
    assert_eq!(noted_at(stores.users.clone()).await, None);
    assert!(stores
        .users
        .mark_password_set_by_mailbox_owner(user.id, &user.password_hash, at)
        .await
        .unwrap());
    assert_eq!(noted_at(stores.users.clone()).await, Some(at));
    assert!(!stores
        .users
        .mark_password_set_by_mailbox_owner(UserId::from_uuid(Uuid::new_v4()), &stale, at)
        .await
        .unwrap());
}

async fn a_password_hash_is_replaced_only_while_it_is_the_expected_one(stores: Stores) {
    let user = new_user("rehash@example.com");
    stores.users.insert(&user).await.unwrap();
    let upgraded = PasswordHash::new("$argon2id$v=19$m=512,t=1,p=1$c2FsdA$aGFzaA".into());
    let stale = PasswordHash::new("$argon2id$stale".into());
    assert!(!stores
        .users
        .replace_password_hash(user.id, &stale, &upgraded)
        .await
        .unwrap());
    assert!(stores
        .users
        .replace_password_hash(user.id, &user.password_hash, &upgraded)
        .await
        .unwrap());
    // The same upgrade again finds the hash changed: no second write.
    assert!(!stores
        .users
        .replace_password_hash(user.id, &user.password_hash, &upgraded)
        .await
        .unwrap());
    let found = stores.users.find_by_id(user.id).await.unwrap().unwrap();
    assert_eq!(found.password_hash, upgraded);
}

fn key(name: &str) -> ThrottleKey {
    let email = latchkey_domain::EmailKey::for_login(&format!("{name}@example.com")).unwrap();
    ThrottleKey::login_account(&email, &latchkey_domain::KeyPepper::new([1; 32]))
}

async fn failures_count_up_and_are_forgotten_when_cleared_or_expired(stores: Stores) {
    let throttle = &stores.throttle;
    let t = now();
    let k = key("counted");
    assert_eq!(throttle.failures(&k, t).await.unwrap(), None);
    let first = throttle
        .record_failure(&k, t, t + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!((first.count, first.last_failure_at), (1, t));
    let later = t + Duration::seconds(5);
    let second = throttle
        .record_failure(&k, later, later + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!((second.count, second.last_failure_at), (2, later));
    assert_eq!(throttle.failures(&k, later).await.unwrap(), Some(second));
    // Another key is untouched.
    assert_eq!(throttle.failures(&key("other"), later).await.unwrap(), None);
    throttle.clear_failures(&k).await.unwrap();
    assert_eq!(throttle.failures(&k, later).await.unwrap(), None);

    // Expired records read as absent and start again from one, before any purge ran.
    let brief = throttle
        .record_failure(&k, t, t + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(brief.count, 1);
    let after = t + Duration::seconds(2);
    assert_eq!(throttle.failures(&k, after).await.unwrap(), None);
    let fresh = throttle
        .record_failure(&k, after, after + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(fresh.count, 1);
}

async fn concurrent_failures_all_count(stores: Stores) {
    let k = key("racing");
    let t = now();
    let attempts = (0..20).map(|_| {
        let throttle = stores.throttle.clone();
        let k = k.clone();
        async move {
            throttle
                .record_failure(&k, t, t + Duration::minutes(10))
                .await
                .unwrap()
                .count
        }
    });
    let mut counts = futures::future::join_all(attempts).await;
    counts.sort();
    assert_eq!(counts, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        stores
            .throttle
            .failures(&k, t)
            .await
            .unwrap()
            .unwrap()
            .count,
        20
    );
}

async fn a_noted_key_is_remembered_until_its_time(stores: Stores) {
    let throttle = &stores.throttle;
    let k = key("noted");
    let t = now();
    assert!(!throttle.remembers(&k, t).await.unwrap());
    throttle
        .remember(&k, t, t + Duration::minutes(1))
        .await
        .unwrap();
    assert!(throttle.remembers(&k, t).await.unwrap());
    assert!(!throttle.remembers(&key("other-noted"), t).await.unwrap());
    let later = t + Duration::minutes(2);
    assert!(!throttle.remembers(&k, later).await.unwrap());
    // Noting it again moves its time, also after it was forgotten (before any purge).
    throttle
        .remember(&k, later, later + Duration::minutes(1))
        .await
        .unwrap();
    assert!(throttle.remembers(&k, later).await.unwrap());
}

/// An account's failure counts, from anywhere and from `network`.
fn counts_of(
    email: &latchkey_domain::EmailKey,
    network: latchkey_domain::ClientNetwork,
    pepper: &latchkey_domain::KeyPepper,
) -> [ThrottleKey; 2] {
    [
        ThrottleKey::login_account(email, pepper),
        ThrottleKey::login_from(email, network, pepper),
    ]
}

async fn forgetting_an_accounts_prefixes_forgets_its_counts_and_known_networks_only(
    stores: Stores,
) {
    let throttle = &stores.throttle;
    let pepper = latchkey_domain::KeyPepper::new([1; 32]);
    let ann = latchkey_domain::EmailKey::for_login("forgotten@example.com").unwrap();
    let bob = latchkey_domain::EmailKey::for_login("kept@example.com").unwrap();
    let here = latchkey_domain::ClientNetwork::of("192.0.2.3".parse().unwrap());
    let t = now();
    let forget = t + Duration::minutes(10);
    for email in [&ann, &bob] {
        for k in counts_of(email, here, &pepper) {
            throttle.record_failure(&k, t, forget).await.unwrap();
        }
        let known = ThrottleKey::login_succeeded_from(email, here, &pepper);
        throttle.remember(&known, t, forget).await.unwrap();
    }
    let mails = ThrottleKey::mail_to(&ann, &pepper);
    assert!(throttle
        .replace_bucket(&mails, None, BucketState(5), t, forget)
        .await
        .unwrap());

    for prefix in ThrottleKey::account_prefixes(&ann, &pepper) {
        throttle.forget_with_prefix(&prefix).await.unwrap();
    }
    for k in counts_of(&ann, here, &pepper) {
        assert_eq!(
            throttle.failures(&k, t).await.unwrap(),
            None,
            "{}",
            k.as_str()
        );
    }
    assert!(!throttle
        .remembers(&ThrottleKey::login_succeeded_from(&ann, here, &pepper), t)
        .await
        .unwrap());
    // Another account's records, and the address's mail budget, are kept.
    for k in counts_of(&bob, here, &pepper) {
        let kept = throttle.failures(&k, t).await.unwrap();
        assert_eq!(kept.map(|r| r.count), Some(1), "{}", k.as_str());
    }
    assert!(throttle
        .remembers(&ThrottleKey::login_succeeded_from(&bob, here, &pepper), t)
        .await
        .unwrap());
    assert_eq!(
        throttle.bucket(&mails, t).await.unwrap(),
        Some(BucketState(5))
    );
    // Nothing left to forget is no error.
    for prefix in ThrottleKey::account_prefixes(&ann, &pepper) {
        throttle.forget_with_prefix(&prefix).await.unwrap();
    }
}

async fn a_bucket_is_swapped_only_from_the_state_it_was_read_in(stores: Stores) {
    let throttle = &stores.throttle;
    let k = ThrottleKey::budget(
        latchkey_domain::BudgetAction::Register,
        latchkey_domain::ClientNetwork::of("192.0.2.1".parse().unwrap()),
    );
    let t = now();
    let forget = t + Duration::minutes(1);
    assert_eq!(throttle.bucket(&k, t).await.unwrap(), None);
    assert!(throttle
        .replace_bucket(&k, None, BucketState(10), t, forget)
        .await
        .unwrap());
    // A second "first" writer lost the race.
    assert!(!throttle
        .replace_bucket(&k, None, BucketState(11), t, forget)
        .await
        .unwrap());
    assert_eq!(throttle.bucket(&k, t).await.unwrap(), Some(BucketState(10)));
    assert!(!throttle
        .replace_bucket(&k, Some(BucketState(9)), BucketState(12), t, forget)
        .await
        .unwrap());
    assert!(throttle
        .replace_bucket(&k, Some(BucketState(10)), BucketState(20), t, forget)
        .await
        .unwrap());
    assert_eq!(throttle.bucket(&k, t).await.unwrap(), Some(BucketState(20)));
    // Once forgotten, the state reads as absent and "absent" may be replaced again.
    let later = forget + Duration::seconds(1);
    assert_eq!(throttle.bucket(&k, later).await.unwrap(), None);
    assert!(throttle
        .replace_bucket(
            &k,
            None,
            BucketState(30),
            later,
            later + Duration::minutes(1)
        )
        .await
        .unwrap());
    assert_eq!(
        throttle.bucket(&k, later).await.unwrap(),
        Some(BucketState(30))
    );
}

async fn concurrent_swaps_from_one_state_have_exactly_one_winner(stores: Stores) {
    let k = ThrottleKey::budget(
        latchkey_domain::BudgetAction::Login,
        latchkey_domain::ClientNetwork::of("192.0.2.2".parse().unwrap()),
    );
    let t = now();
    let forget = t + Duration::minutes(1);
    let mut expected = None;
    for base in [100, 200] {
        let swaps = (0..10u64).map(|n| {
            let throttle = stores.throttle.clone();
            let k = k.clone();
            async move {
                throttle
                    .replace_bucket(&k, expected, BucketState(base + n), t, forget)
                    .await
                    .unwrap()
            }
        });
        let winners = futures::future::join_all(swaps)
            .await
            .into_iter()
            .filter(|won| *won)
            .count();
        assert_eq!(winners, 1, "expected {expected:?}");
        expected = stores.throttle.bucket(&k, t).await.unwrap();
        assert!(expected.is_some_and(|state| (base..base + 10).contains(&state.0)));
    }
}

async fn roles_disabling_and_logins_are_stored_and_read_back(stores: Stores) {
    let user = new_user("roles@example.com");
    let other = new_user("other@example.com");
    stores.users.insert(&user).await.unwrap();
    stores.users.insert(&other).await.unwrap();
    let roles = vec![Role::user(), Role::parse("billing").unwrap(), Role::admin()];

    let changed = stores.users.set_roles(user.id, &roles).await.unwrap();
    assert_eq!(changed.map(|u| u.roles), Some(roles.clone()));
    let first = now();
    let disabled = stores
        .users
        .set_disabled(user.id, Some(first))
        .await
        .unwrap();
    assert_eq!(disabled.unwrap().disabled_at, Some(first));
    // Disabling again keeps the first time.
    let again = stores
        .users
        .set_disabled(user.id, Some(first + Duration::seconds(5)))
        .await
        .unwrap();
    assert_eq!(again.unwrap().disabled_at, Some(first));
    let login = now() + Duration::seconds(1);
    let noted = stores
        .users
        .note_login(user.id, login)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(noted.last_login_at, Some(login));
    assert_eq!(noted.disabled_at, Some(first));

    let stored = stores.users.find_by_id(user.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.roles, stored.disabled_at, stored.last_login_at),
        (roles, Some(first), Some(login))
    );
    let enabled = stores.users.set_disabled(user.id, None).await.unwrap();
    assert_eq!(enabled.unwrap().disabled_at, None);
    assert_eq!(
        stores.users.find_by_id(other.id).await.unwrap(),
        Some(other),
        "another account changed"
    );
    let unknown = UserId::from_uuid(Uuid::new_v4());
    assert_eq!(stores.users.set_roles(unknown, &[]).await.unwrap(), None);
    assert_eq!(
        stores
            .users
            .set_disabled(unknown, Some(first))
            .await
            .unwrap(),
        None
    );
    assert_eq!(stores.users.note_login(unknown, first).await.unwrap(), None);
}

async fn emails(
    stores: &Stores,
    filter: &UserFilter,
    after: Option<&str>,
    limit: usize,
) -> Vec<String> {
    stores
        .users
        .list(filter, after.map(str::to_owned), limit)
        .await
        .unwrap()
        .into_iter()
        .map(|user| user.email.as_str().to_owned())
        .collect()
}

async fn accounts_are_listed_by_email_and_filtered(stores: Stores) {
    for email in [
        "Carol@example.com",
        "ann@example.com",
        "bob@example.org",
        "anna@Example.com",
    ] {
        stores.users.insert(&new_user(email)).await.unwrap();
    }
    let bob = stores
        .users
        .find_by_email(&EmailAddress::parse("bob@example.org").unwrap().key())
        .await
        .unwrap()
        .unwrap();
    stores
        .users
        .set_roles(bob.id, &[Role::user(), Role::admin()])
        .await
        .unwrap();
    stores
        .users
        .set_disabled(bob.id, Some(now()))
        .await
        .unwrap();
    let all = UserFilter::default();

    assert_eq!(
        emails(&stores, &all, None, 10).await,
        [
            "ann@example.com",
            "anna@Example.com",
            "bob@example.org",
            "Carol@example.com"
        ]
    );
    assert_eq!(
        emails(&stores, &all, None, 2).await,
        ["ann@example.com", "anna@Example.com"]
    );
    assert_eq!(
        emails(&stores, &all, Some("anna@example.com"), 10).await,
        ["bob@example.org", "Carol@example.com"]
    );
    let prefix = |prefix: &str| UserFilter {
        email_prefix: Some(prefix.into()),
        ..UserFilter::default()
    };
    assert_eq!(
        emails(&stores, &prefix("ANN"), None, 10).await,
        ["ann@example.com", "anna@Example.com"]
    );
    assert_eq!(
        emails(&stores, &prefix("ann"), Some("ann@example.com"), 10).await,
        ["anna@Example.com"]
    );
    assert!(emails(&stores, &prefix("zed"), None, 10).await.is_empty());
    let admins = UserFilter {
        role: Some(Role::admin()),
        ..UserFilter::default()
    };
    assert_eq!(
        emails(&stores, &admins, None, 10).await,
        ["bob@example.org"]
    );
    let disabled = |disabled| UserFilter {
        disabled: Some(disabled),
        ..UserFilter::default()
    };
    assert_eq!(
        emails(&stores, &disabled(true), None, 10).await,
        ["bob@example.org"]
    );
    assert_eq!(
        emails(&stores, &disabled(false), None, 10).await,
        ["ann@example.com", "anna@Example.com", "Carol@example.com"]
    );
}

/// Paging by the last email seen: accounts added or removed between pages never make one
/// that was there throughout disappear or come twice.
async fn paging_is_stable_while_accounts_come_and_go(stores: Stores) {
    let mut present: Vec<String> = (0..9).map(|n| format!("user{n}@example.com")).collect();
    for email in &present {
        stores.users.insert(&new_user(email)).await.unwrap();
    }
    let all = UserFilter::default();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut round = 0;
    loop {
        let page = stores.users.list(&all, after.clone(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|user| user.email.normalized().to_owned());
        seen.extend(page.iter().map(|user| user.email.as_str().to_owned()));
        // Between pages: one account before the cursor, one after it, and one deleted that
        // was already seen.
        stores
            .users
            .insert(&new_user(&format!("aaa{round}@example.com")))
            .await
            .unwrap();
        stores
            .users
            .insert(&new_user(&format!("user{round}x@example.com")))
            .await
            .unwrap();
        stores.users.delete(page[0].id).await.unwrap();
        round += 1;
    }
    present.sort();
    let listed_once = present
        .iter()
        .all(|email| seen.iter().filter(|s| *s == email).count() == 1);
    assert!(listed_once, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "an account came twice: {seen:?}");
}

for_each_backend!(
    fixture = super::stores;
    roles_disabling_and_logins_are_stored_and_read_back,
    accounts_are_listed_by_email_and_filtered,
    paging_is_stable_while_accounts_come_and_go,
    a_user_is_found_by_id_and_by_email_in_any_case,
    unknown_users_are_none,
    a_second_user_with_the_same_email_in_other_case_is_refused_and_the_first_kept,
    concurrent_registrations_of_one_email_let_exactly_one_through,
    the_store_answers_a_ping,
    a_refresh_token_round_trips_by_hash,
    storing_a_token_again_keeps_the_first_record,
    rotation_succeeds_once_and_records_when_and_from_which_network,
    concurrent_rotations_of_one_token_have_exactly_one_winner,
    unknown_tokens_cannot_be_rotated,
    a_session_round_trips_by_id,
    revoking_a_session_succeeds_once_keeps_its_first_time_and_touches_no_other,
    concurrent_revocations_of_one_session_have_exactly_one_winner,
    a_users_live_sessions_are_listed_newest_first_without_others,
    a_page_of_sessions_starts_after_its_cursor_with_ties_ordered_by_id,
    paging_sessions_is_stable_while_sessions_start_and_end,
    a_sessions_use_is_noted_and_never_moved_back,
    live_sessions_are_counted_without_others,
    sessions_past_the_most_recently_used_are_named_least_recent_last,
    revoking_all_of_a_users_sessions_keeps_the_one_asked_and_touches_no_other_user,
    a_users_unexchanged_tokens_are_the_heads_of_their_chains,
    deleting_a_user_forgets_the_account_its_sessions_and_tokens_only,
    a_mail_token_works_once_for_its_purpose_only,
    a_newer_mail_token_replaces_the_last_of_its_purpose_only,
    an_expired_mail_token_is_neither_found_nor_used,
    a_used_mail_token_is_restored_unless_a_newer_one_came,
    concurrent_uses_of_one_mail_token_have_exactly_one_winner,
    discarding_a_users_mail_token_of_one_purpose_leaves_the_rest,
    an_address_is_verified_once_and_only_while_the_account_has_it,
    a_password_set_by_mail_is_noted_only_while_it_is_in_force,
    a_password_hash_is_replaced_only_while_it_is_the_expected_one,
    failures_count_up_and_are_forgotten_when_cleared_or_expired,
    concurrent_failures_all_count,
    a_noted_key_is_remembered_until_its_time,
    forgetting_an_accounts_prefixes_forgets_its_counts_and_known_networks_only,
    a_bucket_is_swapped_only_from_the_state_it_was_read_in,
    concurrent_swaps_from_one_state_have_exactly_one_winner,
);
