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
    /// Absent until a reset link set the password (and in accounts stored before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_set_by_mailbox_owner_at: Option<BsonDateTime>,
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
    /// The client network that rotated it, as `ClientNetwork` displays it (an IPv4 address, an
    /// IPv6 /64, `unknown`). Absent until rotated, and in tokens rotated before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_by: Option<String>,
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
    /// Absent in sessions stored before it was recorded, until their next refresh: they count
    /// as last used at their login, and are the first to end past the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used_at: Option<BsonDateTime>,
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
            password_set_by_mailbox_owner_at: user
                .password_set_by_mailbox_owner_at
                .map(BsonDateTime::from_chrono),
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
            password_set_by_mailbox_owner_at: doc
                .password_set_by_mailbox_owner_at
                .map(BsonDateTime::to_chrono),
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
            rotated_by: record.rotated_by.map(|by| by.to_string()),
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
            rotated_by: doc
                .rotated_by
                .as_deref()
                .map(|by| {
                    latchkey_domain::ClientNetwork::parse(by)
                        .ok_or_else(|| corrupt("refresh token", id))
                })
                .transpose()?,
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
            last_used_at: Some(BsonDateTime::from_chrono(session.last_used_at)),
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
            last_used_at: doc.last_used_at.unwrap_or(doc.created_at).to_chrono(),
            origin: SessionOrigin {
                user_agent: doc.user_agent,
                address: doc.address,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use latchkey_domain::ClientNetwork;

    fn a_token(rotated_by: Option<&str>) -> bson::Document {
        let mut document = doc! {
            "_id": "ab".repeat(32),
            "user_id": Uuid::nil().to_string(),
            "family_id": Uuid::nil().to_string(),
            "issued_at": BsonDateTime::from_millis(0),
            "expires_at": BsonDateTime::from_millis(60_000),
            "rotated_at": BsonDateTime::from_millis(1_000),
        };
        if let Some(by) = rotated_by {
            document.insert("rotated_by", by);
        }
        document
    }

    fn read(document: bson::Document) -> Result<RefreshTokenRecord, StoreError> {
        let stored: RefreshTokenDocument = bson::from_document(document).unwrap();
        RefreshTokenRecord::try_from(stored)
    }

    #[test]
    fn a_token_rotated_before_networks_were_recorded_reads_as_rotated_by_none() {
        let record = read(a_token(None)).unwrap();
        assert!(record.rotated_at.is_some());
        assert_eq!(record.rotated_by, None);
    }

    #[test]
    fn the_rotating_network_is_stored_as_its_text_and_read_back() {
        let network = ClientNetwork::of("2001:db8:1:2::9".parse().unwrap());
        let record = read(a_token(Some(&network.to_string()))).unwrap();
        assert_eq!(record.rotated_by, Some(network));
        let written = bson::to_document(&RefreshTokenDocument::from(&record)).unwrap();
        assert_eq!(written.get_str("rotated_by").unwrap(), "2001:db8:1:2::/64");

        let unrotated = RefreshTokenRecord {
            rotated_at: None,
            rotated_by: None,
            ..record
        };
        let written = bson::to_document(&RefreshTokenDocument::from(&unrotated)).unwrap();
        assert!(!written.contains_key("rotated_by"));
    }

    #[test]
    fn a_rotating_network_that_is_not_one_is_corrupt() {
        // A whole IPv6 address is never stored: only its /64.
        for text in ["2001:db8:1:2::9", "somewhere"] {
            assert!(read(a_token(Some(text))).is_err(), "{text}");
        }
    }

    #[test]
    fn a_session_stored_before_last_use_was_recorded_counts_as_used_at_its_login() {
        let stored = doc! {
            "_id": Uuid::nil().to_string(),
            "user_id": Uuid::nil().to_string(),
            "created_at": BsonDateTime::from_millis(5_000),
            "expires_at": BsonDateTime::from_millis(60_000),
            "revoked_at": null,
        };
        let document: SessionDocument = bson::from_document(stored).unwrap();
        let session = SessionRecord::try_from(document).unwrap();
        assert_eq!(session.last_used_at, session.created_at);

        let used = SessionRecord {
            last_used_at: session.created_at + chrono::Duration::seconds(7),
            ..session
        };
        let written = bson::to_document(&SessionDocument::from(&used)).unwrap();
        assert_eq!(
            written.get_datetime("last_used_at").unwrap(),
            &BsonDateTime::from_millis(12_000)
        );
    }
}
