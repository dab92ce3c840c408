//! One contract for every store: the in-memory adapter and the MongoDB adapter (over the wire,
//! against a real server) must behave identically.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use latchkey_domain::{
    ports::{InsertUserError, RefreshTokenRepository, UserRepository},
    EmailAddress, FamilyId, PasswordHash, RefreshTokenRecord, RefreshTokenSecret, Role, User,
    UserId,
};
use latchkey_tests::mongo::TestDatabase;
use std::sync::Arc;
use uuid::Uuid;

/// The stores under test, plus the database that must outlive them.
struct Stores {
    users: Arc<dyn UserRepository>,
    tokens: Arc<dyn RefreshTokenRepository>,
    _database: Option<TestDatabase>,
}

async fn memory() -> Stores {
    Stores {
        users: Arc::new(latchkey_memory::InMemoryUsers::default()),
        tokens: Arc::new(latchkey_memory::InMemoryRefreshTokens::default()),
        _database: None,
    }
}

async fn mongo() -> Stores {
    let database = TestDatabase::create().await;
    Stores {
        users: Arc::new(database.store.users()),
        tokens: Arc::new(database.store.refresh_tokens()),
        _database: Some(database),
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
        roles: vec![Role::User],
        created_at: now(),
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
        revoked_at: None,
    };
    (secret, record)
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

async fn a_user_is_found_by_id_and_by_email_in_any_case(stores: Stores) {
    let user = new_user("Ann.Lee@Example.com");
    stores.users.insert(&user).await.unwrap();

    let by_id = stores.users.find_by_id(user.id).await.unwrap();
    let by_email = stores
        .users
        .find_by_email(&EmailAddress::parse("ann.lee@EXAMPLE.com").unwrap())
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
    assert_eq!(stores.users.find_by_email(&email).await.unwrap(), None);
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
        stores.users.find_by_email(&email).await.unwrap(),
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

async fn rotation_succeeds_once_and_records_when(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, record) = new_token(&owner, new_family());
    stores.tokens.insert(&record).await.unwrap();
    let at = now();

    assert!(stores
        .tokens
        .mark_rotated(&secret.hash(), at)
        .await
        .unwrap());
    assert!(!stores
        .tokens
        .mark_rotated(&secret.hash(), at)
        .await
        .unwrap());

    let stored = stored(&stores, &secret).await;
    assert_eq!(stored.rotated_at, Some(at));
    assert_eq!(stored.revoked_at, None);
}

async fn concurrent_rotations_of_one_token_have_exactly_one_winner(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (secret, record) = new_token(&owner, new_family());
    stores.tokens.insert(&record).await.unwrap();

    let hash = secret.hash();
    let attempts = (0..16).map(|_| {
        let tokens = stores.tokens.clone();
        tokio::spawn(async move { tokens.mark_rotated(&hash, now()).await.unwrap() })
    });
    let winners = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|won| *won.as_ref().unwrap())
        .count();

    assert_eq!(winners, 1);
}

async fn unknown_or_revoked_tokens_cannot_be_rotated(stores: Stores) {
    let owner = new_user("ann@example.com");
    let family = new_family();
    let (secret, record) = new_token(&owner, family);
    stores.tokens.insert(&record).await.unwrap();
    stores.tokens.revoke_family(family, now()).await.unwrap();

    assert!(!stores
        .tokens
        .mark_rotated(&secret.hash(), now())
        .await
        .unwrap());
    let (unknown, _) = new_token(&owner, family);
    assert!(!stores
        .tokens
        .mark_rotated(&unknown.hash(), now())
        .await
        .unwrap());
}

async fn revoking_a_family_revokes_all_of_it_and_nothing_else(stores: Stores) {
    let owner = new_user("ann@example.com");
    let (family, other_family) = (new_family(), new_family());
    let (first, first_record) = new_token(&owner, family);
    let (second, second_record) = new_token(&owner, family);
    let (bystander, bystander_record) = new_token(&owner, other_family);
    for record in [&first_record, &second_record, &bystander_record] {
        stores.tokens.insert(record).await.unwrap();
    }
    let at = now();

    assert_eq!(stores.tokens.revoke_family(family, at).await.unwrap(), 2);
    assert_eq!(stores.tokens.revoke_family(family, now()).await.unwrap(), 0);

    for secret in [&first, &second] {
        let stored = stored(&stores, secret).await;
        assert_eq!(
            stored.revoked_at,
            Some(at),
            "revocation time is kept, not overwritten"
        );
    }
    let untouched = stored(&stores, &bystander).await;
    assert_eq!(untouched.revoked_at, None);
}

macro_rules! contract {
    ($($case:ident),+ $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::memory().await).await;
                }
            )+
        }
        mod mongo_store {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::mongo().await).await;
                }
            )+
        }
    };
}

contract!(
    a_user_is_found_by_id_and_by_email_in_any_case,
    unknown_users_are_none,
    a_second_user_with_the_same_email_in_other_case_is_refused_and_the_first_kept,
    concurrent_registrations_of_one_email_let_exactly_one_through,
    the_store_answers_a_ping,
    a_refresh_token_round_trips_by_hash,
    rotation_succeeds_once_and_records_when,
    concurrent_rotations_of_one_token_have_exactly_one_winner,
    unknown_or_revoked_tokens_cannot_be_rotated,
    revoking_a_family_revokes_all_of_it_and_nothing_else,
);
