//! The stored shape of each entity, kept apart from the domain types so a schema change is a
//! change here only.

use bson::DateTime as BsonDateTime;
use latchkey_domain::{
    ports::StoreError, EmailAddress, FamilyId, MailTokenHash, MailTokenPurpose, MailTokenRecord,
    PasswordHash, RefreshTokenHash, RefreshTokenRecord, Role, SessionOrigin, SessionRecord, User,
    UserId,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize, Deserialize)]
pub struct UserDocument {
    #[serde(rename = "_id")]
    id: String,
    email: String,
    /// The unique key; lower-cased so lookups and the index ignore case.
    email_normalized: String,
    password_hash: String,
    roles: Vec<String>,
    created_at: BsonDateTime,
    /// Absent until a mailed link proved the address (and in accounts stored before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_verified_at: Option<BsonDateTime>,
    /// Absent while the account is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_at: Option<BsonDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_login_at: Option<BsonDateTime>,
}

#[derive(Serialize, Deserialize)]
pub struct MailTokenDocument {
    /// `<user id>:<purpose>`: one token per user and purpose, so issuing one replaces the last.
    #[serde(rename = "_id")]
    id: String,
    /// Hex SHA-256 of the token (unique index); the token itself is never stored.
    token_hash: String,
    user_id: String,
    purpose: String,
    email: String,
    issued_at: BsonDateTime,
    /// A TTL index on this field removes the document once the link has expired.
    expires_at: BsonDateTime,
}

impl MailTokenDocument {
    pub fn id_of(user: UserId, purpose: MailTokenPurpose) -> String {
        format!("{user}:{}", purpose.as_str())
    }
}

impl From<&MailTokenRecord> for MailTokenDocument {
    fn from(record: &MailTokenRecord) -> Self {
        Self {
            id: Self::id_of(record.user_id, record.purpose),
            token_hash: record.token_hash.to_hex(),
            user_id: record.user_id.to_string(),
            purpose: record.purpose.as_str().to_owned(),
            email: record.email.clone(),
            issued_at: BsonDateTime::from_chrono(record.issued_at),
            expires_at: BsonDateTime::from_chrono(record.expires_at),
        }
    }
}

impl TryFrom<MailTokenDocument> for MailTokenRecord {
    type Error = StoreError;

    fn try_from(doc: MailTokenDocument) -> Result<Self, StoreError> {
        let id = &doc.id;
        Ok(MailTokenRecord {
            token_hash: MailTokenHash::from_hex(&doc.token_hash)
                .ok_or_else(|| corrupt("mail token", id))?,
            user_id: UserId::from_uuid(parse_uuid(&doc.user_id, "mail token", id)?),
            purpose: MailTokenPurpose::parse(&doc.purpose)
                .ok_or_else(|| corrupt("mail token", id))?,
            email: doc.email,
            issued_at: doc.issued_at.to_chrono(),
            expires_at: doc.expires_at.to_chrono(),
        })
    }
}

#[derive(Serialize, Deserialize)]
pub struct RefreshTokenDocument {
    /// Hex SHA-256 of the token; the token itself is never stored.
    #[serde(rename = "_id")]
    token_hash: String,
    user_id: String,
    family_id: String,
    issued_at: BsonDateTime,
    /// A TTL index on this field removes the document once the token has expired.
    expires_at: BsonDateTime,
    rotated_at: Option<BsonDateTime>,
}

#[derive(Serialize, Deserialize)]
pub struct SessionDocument {
    /// The session (token family) id.
    #[serde(rename = "_id")]
    id: String,
    user_id: String,
    created_at: BsonDateTime,
    /// The absolute end; a TTL index removes the document afterwards.
    expires_at: BsonDateTime,
    revoked_at: Option<BsonDateTime>,
    /// Absent in sessions stored before origins were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
}

fn corrupt(what: &str, id: &str) -> StoreError {
    StoreError(format!("stored {what} {id} is corrupt"))
}

fn parse_uuid(raw: &str, what: &str, id: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|_| corrupt(what, id))
}

impl From<&User> for UserDocument {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.as_str().to_owned(),
            email_normalized: user.email.normalized().to_owned(),
            password_hash: user.password_hash.as_str().to_owned(),
            roles: user.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            created_at: BsonDateTime::from_chrono(user.created_at),
            email_verified_at: user.email_verified_at.map(BsonDateTime::from_chrono),
            disabled_at: user.disabled_at.map(BsonDateTime::from_chrono),
            last_login_at: user.last_login_at.map(BsonDateTime::from_chrono),
        }
    }
}

impl TryFrom<UserDocument> for User {
    type Error = StoreError;

    fn try_from(doc: UserDocument) -> Result<Self, StoreError> {
        let roles = doc
            .roles
            .iter()
            .map(|r| Role::parse(r).map_err(|_| corrupt("user", &doc.id)))
            .collect::<Result<_, _>>()?;
        Ok(User {
            id: UserId::from_uuid(parse_uuid(&doc.id, "user", &doc.id)?),
            email: EmailAddress::from_trusted(doc.email),
            password_hash: PasswordHash::new(doc.password_hash),
            roles,
            created_at: doc.created_at.to_chrono(),
            email_verified_at: doc.email_verified_at.map(BsonDateTime::to_chrono),
            disabled_at: doc.disabled_at.map(BsonDateTime::to_chrono),
            last_login_at: doc.last_login_at.map(BsonDateTime::to_chrono),
        })
    }
}

impl From<&RefreshTokenRecord> for RefreshTokenDocument {
    fn from(record: &RefreshTokenRecord) -> Self {
        Self {
            token_hash: record.token_hash.to_hex(),
            user_id: record.user_id.to_string(),
            family_id: record.family_id.to_string(),
            issued_at: BsonDateTime::from_chrono(record.issued_at),
            expires_at: BsonDateTime::from_chrono(record.expires_at),
            rotated_at: record.rotated_at.map(BsonDateTime::from_chrono),
        }
    }
}

impl TryFrom<RefreshTokenDocument> for RefreshTokenRecord {
    type Error = StoreError;

    fn try_from(doc: RefreshTokenDocument) -> Result<Self, StoreError> {
        let id = &doc.token_hash;
        Ok(RefreshTokenRecord {
            token_hash: RefreshTokenHash::from_hex(id)
                .ok_or_else(|| corrupt("refresh token", id))?,
            user_id: UserId::from_uuid(parse_uuid(&doc.user_id, "refresh token", id)?),
            family_id: FamilyId::from_uuid(parse_uuid(&doc.family_id, "refresh token", id)?),
            issued_at: doc.issued_at.to_chrono(),
            expires_at: doc.expires_at.to_chrono(),
            rotated_at: doc.rotated_at.map(BsonDateTime::to_chrono),
        })
    }
}

impl From<&SessionRecord> for SessionDocument {
    fn from(session: &SessionRecord) -> Self {
        Self {
            id: session.id.to_string(),
            user_id: session.user_id.to_string(),
            created_at: BsonDateTime::from_chrono(session.created_at),
            expires_at: BsonDateTime::from_chrono(session.expires_at),
            revoked_at: session.revoked_at.map(BsonDateTime::from_chrono),
            user_agent: session.origin.user_agent.clone(),
            address: session.origin.address.clone(),
        }
    }
}

impl TryFrom<SessionDocument> for SessionRecord {
    type Error = StoreError;

    fn try_from(doc: SessionDocument) -> Result<Self, StoreError> {
        Ok(SessionRecord {
            id: FamilyId::from_uuid(parse_uuid(&doc.id, "session", &doc.id)?),
            user_id: UserId::from_uuid(parse_uuid(&doc.user_id, "session", &doc.id)?),
            created_at: doc.created_at.to_chrono(),
            expires_at: doc.expires_at.to_chrono(),
            revoked_at: doc.revoked_at.map(BsonDateTime::to_chrono),
            origin: SessionOrigin {
                user_agent: doc.user_agent,
                address: doc.address,
            },
        })
    }
}
