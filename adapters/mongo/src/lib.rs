//! MongoDB repositories on the official driver.
//!
//! Uniqueness of emails and single-winner token rotation are enforced by the server (a unique
//! index and a conditional update), never by read-then-write in this process. No multi-document
//! transaction is used, so a standalone `mongod` works as well as a replica set.
//!
//! Users, sessions and refresh tokens are written with write concern `majority` and read from
//! the primary, set here in code rather than left to the connection string: a failover must
//! never undo a revocation or resurrect a rotated token. Every call is bounded by an operation
//! timeout so a hung server becomes a 503, never a hung request.

mod documents;

use async_trait::async_trait;
use bson::doc;
use chrono::{DateTime, Utc};
use documents::{MailTokenDocument, RefreshTokenDocument, SessionDocument, UserDocument};
use futures::TryStreamExt;
use latchkey_domain::{
    ports::{
        InsertUserError, MailTokenRepository, RefreshTokenRepository, SessionRepository,
        StoreError, ThrottleStore, UserRepository,
    },
    BucketState, EmailKey, FailureRecord, FamilyId, MailTokenHash, MailTokenPurpose,
    MailTokenRecord, PasswordHash, RefreshTokenHash, RefreshTokenRecord, Role, SessionLiveness,
    SessionPosition, SessionRecord, ThrottleKey, ThrottlePrefix, User, UserFilter, UserId,
};
use mongodb::{
    error::{ErrorKind, WriteFailure},
    event::{command::CommandEvent, EventHandler},
    options::{
        ClientOptions, CollectionOptions, IndexOptions, ReadPreference, SelectionCriteria,
        WriteConcern,
    },
    Client, Collection, Database, IndexModel,
};
use std::{future::IntoFuture, time::Duration};

const USERS: &str = "users";
const REFRESH_TOKENS: &str = "refresh_tokens";
const SESSIONS: &str = "sessions";
const THROTTLE: &str = "throttle";
const MAIL_TOKENS: &str = "mail_tokens";
const DUPLICATE_KEY: i32 = 11000;

/// Every store command's latency, by the driver's command name (`find`, `update`,
/// `findAndModify`, ...: a fixed set, never anything a client chose).
fn record_command(event: CommandEvent) {
    let (name, duration) = match event {
        CommandEvent::Succeeded(done) => (done.command_name, done.duration),
        CommandEvent::Failed(failed) => (failed.command_name, failed.duration),
        _ => return,
    };
    metrics::histogram!("latchkey_store_operation_duration_seconds", "operation" => name)
        .record(duration.as_secs_f64());
}

#[derive(Debug, thiserror::Error)]
pub enum MongoSetupError {
    #[error("DB_URI is not a valid MongoDB connection string: {0}")]
    InvalidUri(String),
    #[error("could not create MongoDB indexes: {0}")]
    Indexes(String),
}

/// A connection to one database, handing out the repositories that live in it.
#[derive(Clone)]
pub struct MongoStore {
    database: Database,
    operation_timeout: Duration,
}

impl MongoStore {
    /// Connects lazily (the driver dials on first use). `database` overrides the one named in
    /// the URI; with neither, `latchkey` is used. Every repository call, and finding and dialling
    /// a server, fails as unavailable after `operation_timeout` (`STORE_TIMEOUT`) unless the URI
    /// sets its own driver timeouts.
    pub async fn connect(
        uri: &str,
        database: Option<&str>,
        operation_timeout: Duration,
    ) -> Result<Self, MongoSetupError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| MongoSetupError::InvalidUri(e.to_string()))?;
        options.app_name.get_or_insert_with(|| "latchkey".into());
        // Fail a request with 503 in seconds instead of the driver's 30 s default.
        options
            .server_selection_timeout
            .get_or_insert(operation_timeout);
        options.connect_timeout.get_or_insert(operation_timeout);
        options.command_event_handler = Some(EventHandler::callback(record_command));
        let name = database
            .map(str::to_owned)
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| "latchkey".into());
        let client = Client::with_options(options)
            .map_err(|e| MongoSetupError::InvalidUri(e.to_string()))?;
        Ok(Self {
            database: client.database(&name),
            operation_timeout,
        })
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Creates every index the repositories rely on. Idempotent: safe on every start.
    pub async fn ensure_indexes(&self) -> Result<(), MongoSetupError> {
        let fail = |e: mongodb::error::Error| MongoSetupError::Indexes(e.to_string());
        let unique_email = IndexOptions::builder()
            .name("email_normalized_unique".to_owned())
            .unique(true)
            .build();
        self.users_collection()
            .create_index(index("email_normalized", unique_email))
            .await
            .map_err(fail)?;
        self.tokens_collection()
            .create_indexes([
                expiry_ttl(),
                index("family_id", named("family_id")),
                index("user_id", named("user_id")),
            ])
            .await
            .map_err(fail)?;
        // An account's unrevoked sessions newest first, as they are listed and paged, and by
        // last use, as the cap ends them: revoked ones (kept until they expire) are never
        // scanned, however many an account piles up.
        let user_sessions_newest_first = IndexModel::builder()
            .keys(doc! { "user_id": 1, "revoked_at": 1, "created_at": -1, "_id": -1 })
            .options(named("user_id_revoked_at_created_at"))
            .build();
        let user_sessions_by_last_use = IndexModel::builder()
            .keys(doc! { "user_id": 1, "revoked_at": 1, "last_used_at": -1, "created_at": -1, "_id": -1 })
            .options(named("user_id_revoked_at_last_used_at"))
            .build();
        self.sessions_collection()
            .create_indexes([
                expiry_ttl(),
                index("user_id", named("user_id")),
                user_sessions_newest_first,
                user_sessions_by_last_use,
            ])
            .await
            .map_err(fail)?;
        self.throttle_collection()
            .create_index(expiry_ttl())
            .await
            .map_err(fail)?;
        let unique_hash = IndexOptions::builder()
            .name("token_hash_unique".to_owned())
            .unique(true)
            .build();
        self.mail_tokens_collection()
            .create_indexes([
                expiry_ttl(),
                index("token_hash", unique_hash),
                index("user_id", named("user_id")),
            ])
            .await
            .map_err(fail)?;
        Ok(())
    }

    pub fn users(&self) -> MongoUsers {
        MongoUsers {
            collection: self.users_collection(),
            timeout: self.operation_timeout,
        }
    }

    pub fn refresh_tokens(&self) -> MongoRefreshTokens {
        MongoRefreshTokens {
            collection: self.tokens_collection(),
            timeout: self.operation_timeout,
        }
    }

    pub fn sessions(&self) -> MongoSessions {
        MongoSessions {
            collection: self.sessions_collection(),
            timeout: self.operation_timeout,
        }
    }

    pub fn mail_tokens(&self) -> MongoMailTokens {
        MongoMailTokens {
            collection: self.mail_tokens_collection(),
            timeout: self.operation_timeout,
        }
    }

    pub fn throttle(&self) -> MongoThrottle {
        MongoThrottle {
            collection: self.throttle_collection(),
            timeout: self.operation_timeout,
        }
    }

    fn collection<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        self.database.collection_with_options(
            name,
            CollectionOptions::builder()
                .write_concern(WriteConcern::majority())
                .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
                .build(),
        )
    }

    fn users_collection(&self) -> Collection<UserDocument> {
        self.collection(USERS)
    }

    fn tokens_collection(&self) -> Collection<RefreshTokenDocument> {
        self.collection(REFRESH_TOKENS)
    }

    fn sessions_collection(&self) -> Collection<SessionDocument> {
        self.collection(SESSIONS)
    }

    fn mail_tokens_collection(&self) -> Collection<MailTokenDocument> {
        self.collection(MAIL_TOKENS)
    }

    fn throttle_collection(&self) -> Collection<bson::Document> {
        self.collection(THROTTLE)
    }
}

/// An ascending index on `field`.
fn index(field: &str, options: IndexOptions) -> IndexModel {
    IndexModel::builder()
        .keys(doc! { field: 1 })
        .options(options)
        .build()
}

fn named(name: &str) -> IndexOptions {
    IndexOptions::builder().name(name.to_owned()).build()
}

/// Removes a document once its `expires_at` has passed.
fn expiry_ttl() -> IndexModel {
    let options = IndexOptions::builder()
        .name("expires_at_ttl".to_owned())
        .expire_after(Duration::ZERO)
        .build();
    index("expires_at", options)
}

fn store_error(e: mongodb::error::Error) -> StoreError {
    StoreError(e.to_string())
}

/// Runs one store call under the operation timeout.
async fn timed<T>(
    timeout: Duration,
    call: impl IntoFuture<Output = Result<T, mongodb::error::Error>>,
) -> Result<T, mongodb::error::Error> {
    let result = match tokio::time::timeout(timeout, call.into_future()).await {
        Ok(result) => result,
        Err(_) => Err(mongodb::error::Error::custom(format!(
            "MongoDB did not answer within {} ms",
            timeout.as_millis()
        ))),
    };
    // Counted here, not from command monitoring: a server that cannot be reached sends no
    // command events at all. A unique index refusing a write is an answer, not an error.
    if matches!(&result, Err(e) if !is_duplicate_key(e)) {
        metrics::counter!("latchkey_store_errors_total").increment(1);
    }
    result
}

/// A write refused by a unique index. Servers say so as a write error, or (for
/// `findAndModify`, and on some MongoDB-compatible servers for updates too) as a command error.
fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

#[derive(Clone)]
pub struct MongoUsers {
    collection: Collection<UserDocument>,
    timeout: Duration,
}

impl MongoUsers {
    /// Applies `update` to the account and reads it back in one round trip.
    async fn update_and_read(
        &self,
        id: UserId,
        update: bson::Document,
    ) -> Result<Option<User>, StoreError> {
        timed(
            self.timeout,
            self.collection
                .find_one_and_update(doc! { "_id": id.to_string() }, update)
                .return_document(mongodb::options::ReturnDocument::After),
        )
        .await
        .map_err(store_error)?
        .map(User::try_from)
        .transpose()
    }
}

#[async_trait]
impl UserRepository for MongoUsers {
    async fn insert(&self, user: &User) -> Result<(), InsertUserError> {
        match timed(
            self.timeout,
            self.collection.insert_one(UserDocument::from(user)),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(InsertUserError::EmailTaken),
            Err(e) => Err(InsertUserError::Store(store_error(e))),
        }
    }

    async fn find_by_email(&self, email: &EmailKey) -> Result<Option<User>, StoreError> {
        timed(
            self.timeout,
            self.collection
                .find_one(doc! { "email_normalized": email.as_str() }),
        )
        .await
        .map_err(store_error)?
        .map(User::try_from)
        .transpose()
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        timed(
            self.timeout,
            self.collection.find_one(doc! { "_id": id.to_string() }),
        )
        .await
        .map_err(store_error)?
        .map(User::try_from)
        .transpose()
    }

    async fn replace_password_hash(
        &self,
        id: UserId,
        current: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        let result = timed(
            self.timeout,
            self.collection.update_one(
                doc! { "_id": id.to_string(), "password_hash": current.as_str() },
                doc! { "$set": { "password_hash": new.as_str() } },
            ),
        )
        .await
        .map_err(store_error)?;
        Ok(result.modified_count == 1)
    }

    async fn mark_email_verified(
        &self,
        id: UserId,
        email: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let filter = doc! { "_id": id.to_string(), "email_normalized": email };
        // `$min` keeps the first verification's time (an absent field counts as larger).
        let result = timed(
            self.timeout,
            self.collection.update_one(
                filter,
                doc! { "$min": { "email_verified_at": bson::DateTime::from_chrono(at) } },
            ),
        )
        .await
        .map_err(store_error)?;
        Ok(result.matched_count == 1)
    }

    async fn mark_password_set_by_mailbox_owner(
        &self,
        id: UserId,
        hash: &PasswordHash,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = timed(
            self.timeout,
            self.collection.update_one(
                doc! { "_id": id.to_string(), "password_hash": hash.as_str() },
                doc! { "$set": { "password_set_by_mailbox_owner_at": bson::DateTime::from_chrono(at) } },
            ),
        )
        .await
        .map_err(store_error)?;
        Ok(result.matched_count == 1)
    }

    async fn delete(&self, id: UserId) -> Result<bool, StoreError> {
        let result = timed(
            self.timeout,
            self.collection.delete_one(doc! { "_id": id.to_string() }),
        )
        .await
        .map_err(store_error)?;
        Ok(result.deleted_count == 1)
    }

    async fn note_login(&self, id: UserId, at: DateTime<Utc>) -> Result<Option<User>, StoreError> {
        self.update_and_read(
            id,
            // Two logins at once (two tabs) keep the later time, whichever writes last.
            doc! { "$max": { "last_login_at": bson::DateTime::from_chrono(at) } },
        )
        .await
    }

    async fn set_roles(&self, id: UserId, roles: &[Role]) -> Result<Option<User>, StoreError> {
        let roles: Vec<&str> = roles.iter().map(Role::as_str).collect();
        self.update_and_read(id, doc! { "$set": { "roles": roles } })
            .await
    }

    async fn set_disabled(
        &self,
        id: UserId,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<User>, StoreError> {
        let update = match at {
            // `$min` keeps the first time (an absent field counts as larger).
            Some(at) => doc! { "$min": { "disabled_at": bson::DateTime::from_chrono(at) } },
            None => doc! { "$unset": { "disabled_at": "" } },
        };
        self.update_and_read(id, update).await
    }

    async fn list(
        &self,
        filter: &UserFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<User>, StoreError> {
        // The unique index on `email_normalized` serves both the prefix range and the order.
        let mut range = bson::Document::new();
        if let Some(prefix) = &filter.email_prefix {
            let prefix = prefix.to_lowercase();
            range.insert("$gte", prefix.clone());
            // Every string with the prefix sorts below the prefix followed by the highest
            // character; normalised emails are ASCII.
            range.insert("$lt", format!("{prefix}\u{10FFFF}"));
        }
        if let Some(after) = after {
            range.insert("$gt", after);
        }
        let mut query = bson::Document::new();
        if !range.is_empty() {
            query.insert("email_normalized", range);
        }
        if let Some(role) = &filter.role {
            query.insert("roles", role.as_str());
        }
        match filter.disabled {
            Some(true) => {
                query.insert("disabled_at", doc! { "$type": "date" });
            }
            Some(false) => {
                query.insert("disabled_at", doc! { "$exists": false });
            }
            None => {}
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found: Vec<UserDocument> = timed(self.timeout, async {
            self.collection
                .find(query)
                .sort(doc! { "email_normalized": 1 })
                .limit(limit)
                // A filter that matches little walks far; the server stops when we stop waiting.
                .max_time(self.timeout)
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(store_error)?;
        found.into_iter().map(User::try_from).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let admin = self.collection.client().database("admin");
        timed(self.timeout, admin.run_command(doc! { "ping": 1 }))
            .await
            .map(|_| ())
            .map_err(store_error)
    }
}

#[derive(Clone)]
pub struct MongoRefreshTokens {
    collection: Collection<RefreshTokenDocument>,
    timeout: Duration,
}

#[async_trait]
impl RefreshTokenRepository for MongoRefreshTokens {
    async fn insert(
        &self,
        record: &RefreshTokenRecord,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let inserted = timed(
            self.timeout,
            self.collection
                .insert_one(RefreshTokenDocument::from(record)),
        )
        .await;
        match inserted {
            Ok(_) => Ok(None),
            // The same successor, stored by an earlier attempt of the same exchange.
            Err(e) if is_duplicate_key(&e) => match self.find_by_hash(&record.token_hash).await? {
                Some(existing) => Ok(Some(existing)),
                // Purged by the TTL index in between: as good as gone.
                None => Err(StoreError("refresh token vanished while storing it".into())),
            },
            Err(e) => Err(store_error(e)),
        }
    }

    async fn find_by_hash(
        &self,
        hash: &RefreshTokenHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        timed(
            self.timeout,
            self.collection.find_one(doc! { "_id": hash.to_hex() }),
        )
        .await
        .map_err(store_error)?
        .map(RefreshTokenRecord::try_from)
        .transpose()
    }

    async fn mark_rotated(
        &self,
        hash: &RefreshTokenHash,
        at: DateTime<Utc>,
        by: latchkey_domain::ClientNetwork,
    ) -> Result<bool, StoreError> {
        // A single-document conditional update is atomic: exactly one caller matches, and the
        // time and the network are written together.
        let result = timed(
            self.timeout,
            self.collection.update_one(
                doc! { "_id": hash.to_hex(), "rotated_at": null },
                doc! { "$set": {
                    "rotated_at": bson::DateTime::from_chrono(at),
                    "rotated_by": by.to_string(),
                } },
            ),
        )
        .await
        .map_err(store_error)?;
        Ok(result.modified_count == 1)
    }

    async fn unexchanged_of_user(
        &self,
        user: UserId,
    ) -> Result<Vec<RefreshTokenRecord>, StoreError> {
        let filter = doc! { "user_id": user.to_string(), "rotated_at": null };
        let documents: Vec<RefreshTokenDocument> = timed(self.timeout, async {
            self.collection.find(filter).await?.try_collect().await
        })
        .await
        .map_err(store_error)?;
        documents
            .into_iter()
            .map(RefreshTokenRecord::try_from)
            .collect()
    }

    async fn delete_all_of_user(&self, user: UserId) -> Result<(), StoreError> {
        timed(
            self.timeout,
            self.collection
                .delete_many(doc! { "user_id": user.to_string() }),
        )
        .await
        .map(|_| ())
        .map_err(store_error)
    }
}

#[derive(Clone)]
pub struct MongoSessions {
    collection: Collection<SessionDocument>,
    timeout: Duration,
}

/// The user's live sessions (see [`SessionLiveness`]).
fn live_filter(user: UserId, live: SessionLiveness) -> bson::Document {
    let used_after = bson::DateTime::from_chrono(live.used_after);
    doc! {
        "user_id": user.to_string(),
        "revoked_at": null,
        "expires_at": { "$gt": bson::DateTime::from_chrono(live.now) },
        "$or": [
            { "last_used_at": { "$gt": used_after } },
            // Stored before `last_used_at` was: live until their end or their next refresh
            // (their last use is unknown; hiding them would hide a thief's dormant token).
            { "last_used_at": null },
        ],
    }
}

#[async_trait]
impl SessionRepository for MongoSessions {
    async fn insert(&self, session: &SessionRecord) -> Result<(), StoreError> {
        timed(
            self.timeout,
            self.collection.insert_one(SessionDocument::from(session)),
        )
        .await
        .map(|_| ())
        .map_err(store_error)
    }

    async fn find(&self, id: FamilyId) -> Result<Option<SessionRecord>, StoreError> {
        timed(
            self.timeout,
            self.collection.find_one(doc! { "_id": id.to_string() }),
        )
        .await
        .map_err(store_error)?
        .map(SessionRecord::try_from)
        .transpose()
    }

    async fn revoke(&self, id: FamilyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = timed(
            self.timeout,
            self.collection.update_one(
                doc! { "_id": id.to_string(), "revoked_at": null },
                doc! { "$set": { "revoked_at": bson::DateTime::from_chrono(at) } },
            ),
        )
        .await
        .map_err(store_error)?;
        Ok(result.modified_count == 1)
    }

    async fn note_use(&self, id: FamilyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        timed(
            self.timeout,
            self.collection.update_one(
                doc! { "_id": id.to_string() },
                // Two refreshes at once keep the later time, whichever writes last.
                doc! { "$max": { "last_used_at": bson::DateTime::from_chrono(at) } },
            ),
        )
        .await
        .map(|_| ())
        .map_err(store_error)
    }

    async fn count_active(&self, user: UserId, live: SessionLiveness) -> Result<u64, StoreError> {
        timed(
            self.timeout,
            self.collection
                .count_documents(live_filter(user, live))
                .max_time(self.timeout),
        )
        .await
        .map_err(store_error)
    }

    async fn list_active(
        &self,
        user: UserId,
        live: SessionLiveness,
        after: Option<SessionPosition>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        // A limit of 0 means none to the server.
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = live_filter(user, live);
        if let Some(after) = after {
            let created_at = bson::DateTime::from_chrono(after.created_at);
            // A bound the index can use; the `$or` below only settles ties.
            filter.insert("created_at", doc! { "$lte": created_at });
            filter.insert(
                "$and",
                vec![doc! { "$or": [
                    { "created_at": { "$lt": created_at } },
                    { "created_at": created_at, "_id": { "$lt": after.id.to_string() } },
                ] }],
            );
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let documents: Vec<SessionDocument> = timed(self.timeout, async {
            self.collection
                .find(filter)
                // The `user_id_created_at` index serves the order.
                .sort(doc! { "created_at": -1, "_id": -1 })
                .limit(limit)
                .max_time(self.timeout)
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(store_error)?;
        documents.into_iter().map(SessionRecord::try_from).collect()
    }

    async fn least_recently_used_beyond(
        &self,
        user: UserId,
        live: SessionLiveness,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<FamilyId>, StoreError> {
        // A limit of 0 means none to the server.
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Only ids are read: untyped documents.
        let ids = self.collection.clone_with_type::<bson::Document>();
        let documents: Vec<bson::Document> = timed(self.timeout, async {
            ids.find(live_filter(user, live))
                // `user_id_revoked_at_last_used_at` serves the order. Those stored before
                // `last_used_at` was (no field) sort last: they end first.
                .sort(doc! { "last_used_at": -1, "created_at": -1, "_id": -1 })
                .skip(u64::try_from(keep).unwrap_or(u64::MAX))
                .limit(limit)
                .projection(doc! { "_id": 1 })
                .max_time(self.timeout)
                .await?
                .try_collect()
                .await
        })
        .await
        .map_err(store_error)?;
        documents
            .iter()
            .map(|document| {
                let id = document
                    .get_str("_id")
                    .map_err(|e| StoreError(e.to_string()))?;
                uuid::Uuid::parse_str(id)
                    .map(FamilyId::from_uuid)
                    .map_err(|_| StoreError(format!("stored session {id} is corrupt")))
            })
            .collect()
    }

    async fn revoke_all_of_user(
        &self,
        user: UserId,
        at: DateTime<Utc>,
        keep: Option<FamilyId>,
    ) -> Result<u64, StoreError> {
        let mut filter = doc! { "user_id": user.to_string(), "revoked_at": null };
        if let Some(keep) = keep {
            filter.insert("_id", doc! { "$ne": keep.to_string() });
        }
        let result = timed(
            self.timeout,
            self.collection.update_many(
                filter,
                doc! { "$set": { "revoked_at": bson::DateTime::from_chrono(at) } },
            ),
        )
        .await
        .map_err(store_error)?;
        Ok(result.modified_count)
    }

    async fn delete_all_of_user(&self, user: UserId) -> Result<(), StoreError> {
        timed(
            self.timeout,
            self.collection
                .delete_many(doc! { "user_id": user.to_string() }),
        )
        .await
        .map(|_| ())
        .map_err(store_error)
    }
}

/// Tokens of mailed links, one document per user and purpose (see [`MailTokenDocument`]).
#[derive(Clone)]
pub struct MongoMailTokens {
    collection: Collection<MailTokenDocument>,
    timeout: Duration,
}

fn live_token_filter(
    hash: &MailTokenHash,
    purpose: MailTokenPurpose,
    now: DateTime<Utc>,
) -> bson::Document {
    doc! {
        "token_hash": hash.to_hex(),
        "purpose": purpose.as_str(),
        // The TTL monitor runs about once a minute: expiry is checked here, not left to it.
        "expires_at": { "$gt": bson::DateTime::from_chrono(now) },
    }
}

#[async_trait]
impl MailTokenRepository for MongoMailTokens {
    async fn issue(&self, record: &MailTokenRecord) -> Result<(), StoreError> {
        let document = MailTokenDocument::from(record);
        let id = MailTokenDocument::id_of(record.user_id, record.purpose);
        timed(
            self.timeout,
            self.collection
                .replace_one(doc! { "_id": id }, document)
                .upsert(true),
        )
        .await
        .map(|_| ())
        .map_err(store_error)
    }

    async fn find(
        &self,
        hash: &MailTokenHash,
        purpose: MailTokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<MailTokenRecord>, StoreError> {
        timed(
            self.timeout,
            self.collection
                .find_one(live_token_filter(hash, purpose, now)),
        )
        .await
        .map_err(store_error)?
        .map(MailTokenRecord::try_from)
        .transpose()
    }

    async fn consume(
        &self,
        hash: &MailTokenHash,
        purpose: MailTokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<Option<MailTokenRecord>, StoreError> {
        // One atomic single-document operation: exactly one caller gets the document.
        timed(
            self.timeout,
            self.collection
                .find_one_and_delete(live_token_filter(hash, purpose, now)),
        )
        .await
        .map_err(store_error)?
        .map(MailTokenRecord::try_from)
        .transpose()
    }

    async fn restore(&self, record: &MailTokenRecord) -> Result<(), StoreError> {
        // `_id` is the user and purpose: a token stored meanwhile makes this a duplicate.
        match timed(
            self.timeout,
            self.collection.insert_one(MailTokenDocument::from(record)),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn discard(&self, user: UserId, purpose: MailTokenPurpose) -> Result<(), StoreError> {
        let id = MailTokenDocument::id_of(user, purpose);
        timed(self.timeout, self.collection.delete_one(doc! { "_id": id }))
            .await
            .map(|_| ())
            .map_err(store_error)
    }
}

/// Counters for abuse defence: one document per key, `{count, last_failure_at}` for failures,
/// `{tat}` for a token bucket, or only `expires_at` for a note (a network an account logged in
/// from), removed by the TTL index after `expires_at`. The TTL monitor
/// runs about once a minute, so every read and write also treats an expired document as absent.
/// Every change is one atomic single-document operation, so instances sharing the database
/// count as one.
#[derive(Clone)]
pub struct MongoThrottle {
    collection: Collection<bson::Document>,
    timeout: Duration,
}

/// Rounds of "increment, else start afresh" before giving up: another instance can only win
/// the start-afresh race once, after which the increment matches.
const UPSERT_ROUNDS: usize = 3;

fn bson_time(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_chrono(at)
}

/// `text` as a regex (PCRE, as MongoDB reads it) that matches it literally.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}-/#&~ ".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn corrupt(key: &ThrottleKey, field: &str) -> StoreError {
    StoreError(format!(
        "throttle record {} has no valid {field}",
        key.as_str()
    ))
}

impl MongoThrottle {
    async fn live(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
    ) -> Result<Option<bson::Document>, StoreError> {
        timed(
            self.timeout,
            self.collection
                .find_one(doc! { "_id": key.as_str(), "expires_at": { "$gt": bson_time(now) } }),
        )
        .await
        .map_err(store_error)
    }

    fn failure_record(
        key: &ThrottleKey,
        doc: &bson::Document,
    ) -> Result<FailureRecord, StoreError> {
        let count = match doc.get("count") {
            Some(bson::Bson::Int32(n)) => u32::try_from(*n).ok(),
            Some(bson::Bson::Int64(n)) => u32::try_from(*n).ok(),
            _ => None,
        }
        .ok_or_else(|| corrupt(key, "count"))?;
        let last_failure_at = doc
            .get_datetime("last_failure_at")
            .map_err(|_| corrupt(key, "last_failure_at"))?
            .to_chrono();
        Ok(FailureRecord {
            count,
            last_failure_at,
        })
    }

    /// Sets `fields` on the document of `key` if it is absent or expired; `false` when a live
    /// one exists (the insert then hits the unique `_id`).
    async fn start_afresh(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
        fields: bson::Document,
    ) -> Result<bool, StoreError> {
        let upsert = mongodb::options::UpdateOptions::builder()
            .upsert(true)
            .build();
        let started = timed(
            self.timeout,
            self.collection
                .update_one(
                    doc! { "_id": key.as_str(), "expires_at": { "$lte": bson_time(now) } },
                    doc! { "$set": fields },
                )
                .with_options(upsert),
        )
        .await;
        match started {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }
}

#[async_trait]
impl ThrottleStore for MongoThrottle {
    async fn failures(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
    ) -> Result<Option<FailureRecord>, StoreError> {
        self.live(key, now)
            .await?
            .map(|doc| Self::failure_record(key, &doc))
            .transpose()
    }

    async fn record_failure(
        &self,
        key: &ThrottleKey,
        at: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<FailureRecord, StoreError> {
        for _ in 0..UPSERT_ROUNDS {
            let counted = timed(
                self.timeout,
                self.collection
                    .find_one_and_update(
                        doc! { "_id": key.as_str(), "expires_at": { "$gt": bson_time(at) } },
                        doc! {
                            "$inc": { "count": 1_i64 },
                            "$set": {
                                "last_failure_at": bson_time(at),
                                "expires_at": bson_time(forget_at),
                            },
                        },
                    )
                    .return_document(mongodb::options::ReturnDocument::After),
            )
            .await
            .map_err(store_error)?;
            if let Some(doc) = counted {
                return Self::failure_record(key, &doc);
            }
            let fields = doc! {
                "count": 1_i64,
                "last_failure_at": bson_time(at),
                "expires_at": bson_time(forget_at),
            };
            if self.start_afresh(key, at, fields).await? {
                return Ok(FailureRecord {
                    count: 1,
                    last_failure_at: at,
                });
            }
        }
        Err(StoreError(format!(
            "throttle record {} kept changing",
            key.as_str()
        )))
    }

    async fn clear_failures(&self, key: &ThrottleKey) -> Result<(), StoreError> {
        timed(
            self.timeout,
            self.collection.delete_one(doc! { "_id": key.as_str() }),
        )
        .await
        .map(|_| ())
        .map_err(store_error)
    }

    /// An anchored, case-sensitive prefix regex on `_id`: the server answers it from the `_id`
    /// index as a range, so it reads only the matching keys.
    async fn forget_with_prefix(&self, prefix: &ThrottlePrefix) -> Result<(), StoreError> {
        let pattern = format!("^{}", escape_regex(prefix.as_str()));
        timed(
            self.timeout,
            self.collection
                .delete_many(doc! { "_id": { "$regex": pattern } }),
        )
        .await
        .map(|_| ())
        .map_err(store_error)
    }

    async fn remember(
        &self,
        key: &ThrottleKey,
        _now: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let upsert = mongodb::options::UpdateOptions::builder()
            .upsert(true)
            .build();
        let noted = timed(
            self.timeout,
            self.collection
                .update_one(
                    doc! { "_id": key.as_str() },
                    doc! { "$set": { "expires_at": bson_time(forget_at) } },
                )
                .with_options(upsert),
        )
        .await;
        match noted {
            Ok(_) => Ok(()),
            // A concurrent upsert inserted it first; this one's time is as good.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn remembers(&self, key: &ThrottleKey, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.live(key, now).await?.is_some())
    }

    async fn bucket(
        &self,
        key: &ThrottleKey,
        now: DateTime<Utc>,
    ) -> Result<Option<BucketState>, StoreError> {
        let Some(doc) = self.live(key, now).await? else {
            return Ok(None);
        };
        let tat = doc.get_i64("tat").map_err(|_| corrupt(key, "tat"))?;
        Ok(Some(BucketState(
            u64::try_from(tat).map_err(|_| corrupt(key, "tat"))?,
        )))
    }

    async fn replace_bucket(
        &self,
        key: &ThrottleKey,
        expected: Option<BucketState>,
        next: BucketState,
        now: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let as_stored = |state: BucketState| {
            i64::try_from(state.0)
                .map_err(|_| StoreError(format!("bucket state {} is beyond BSON's range", state.0)))
        };
        let fields = doc! { "tat": as_stored(next)?, "expires_at": bson_time(forget_at) };
        let Some(expected) = expected else {
            return self.start_afresh(key, now, fields).await;
        };
        let swapped = timed(
            self.timeout,
            self.collection.update_one(
                doc! {
                    "_id": key.as_str(),
                    "tat": as_stored(expected)?,
                    "expires_at": { "$gt": bson_time(now) },
                },
                doc! { "$set": fields },
            ),
        )
        .await
        .map_err(store_error)?;
        Ok(swapped.matched_count == 1)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prefix_becomes_a_regex_that_matches_it_literally() {
        assert_eq!(super::escape_regex("login:0af3"), "login:0af3");
        assert_eq!(super::escape_regex("a.b*c(d)\\"), "a\\.b\\*c\\(d\\)\\\\");
    }
}
