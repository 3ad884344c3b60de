//! Bearer tokens (`api_tokens`). A token reads `sv0_<id>_<secret>`: the id finds its record, the
//! secret (32 random bytes) is stored only as its SHA-256 digest and compared with it in constant
//! time. So the database never holds a usable token, a lookup never depends on the secret, and a
//! refusal looks the same whatever was wrong (unknown id, wrong secret, revoked).

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use mongodb::{Collection, Database};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::roles::Role;

const PREFIX: &str = "sv0_";
const SECRET_BYTES: usize = 32;

/// A token's record, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    #[serde(rename = "_id")]
    id: ObjectId,
    name: String,
    role: Role,
    /// Hex SHA-256 of the secret part.
    secret_sha256: String,
    created_at: DateTime,
    #[serde(default)]
    revoked_at: Option<DateTime>,
}

/// A token as listed: everything but the secret's digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime,
    pub revoked_at: Option<DateTime>,
}

/// A token just created: `token` is shown once and never again.
pub struct IssuedToken {
    pub info: TokenInfo,
    pub token: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("info", &self.info)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub token_id: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("token {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Storage(#[from] mongodb::error::Error),
}

#[derive(Debug, Clone)]
pub struct Tokens {
    collection: Collection<TokenRecord>,
}

impl Tokens {
    pub fn new(db: &Database) -> Tokens {
        Tokens {
            collection: db.collection("api_tokens"),
        }
    }

    /// Issues a token with `role`; `name` says whose it is (1 to 64 letters, digits, ` _.-@`).
    pub async fn create(&self, name: &str, role: Role) -> Result<IssuedToken, TokenError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _.-@".contains(c))
        {
            return Err(TokenError::Invalid {
                field: "name",
                reason: "must be 1 to 64 letters, digits, spaces or `_.-@`".into(),
            });
        }
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let record = TokenRecord {
            id: ObjectId::new(),
            name: name.to_string(),
            role,
            secret_sha256: hex::encode(Sha256::digest(secret)),
            created_at: DateTime::now(),
            revoked_at: None,
        };
        self.collection.insert_one(&record).await?;
        Ok(IssuedToken {
            token: format!("{PREFIX}{}_{}", record.id.to_hex(), hex::encode(secret)),
            info: record.into(),
        })
    }

    /// Tokens oldest first, after the token `after`, at most `limit`.
    pub async fn list(
        &self,
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<TokenInfo>, TokenError> {
        let filter = match after {
            Some(after) => doc! { "_id": { "$gt": after } },
            None => doc! {},
        };
        let records: Vec<TokenRecord> = self
            .collection
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok(records.into_iter().map(TokenInfo::from).collect())
    }

    /// Revokes a token: it is refused from the next request on. Revoking twice is harmless.
    pub async fn revoke(&self, id: &str) -> Result<TokenInfo, TokenError> {
        let oid = ObjectId::parse_str(id).map_err(|_| TokenError::Invalid {
            field: "id",
            reason: "must be a token id (24 hex digits)".into(),
        })?;
        self.collection
            .update_one(
                doc! { "_id": oid, "revoked_at": null },
                doc! { "$set": { "revoked_at": DateTime::now() } },
            )
            .await?;
        self.collection
            .find_one(doc! { "_id": oid })
            .await?
            .map(TokenInfo::from)
            .ok_or_else(|| TokenError::NotFound(id.to_string()))
    }

    /// The caller a presented token speaks for, or `None` for anything but a live token of
    /// ours.
    pub(crate) async fn verify(&self, presented: &str) -> Result<Option<Caller>, TokenError> {
        let Some((id, secret)) = presented
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let (Ok(id), Ok(secret)) = (ObjectId::parse_str(id), hex::decode(secret)) else {
            return Ok(None);
        };
        let Some(record) = self.collection.find_one(doc! { "_id": id }).await? else {
            return Ok(None);
        };
        let Ok(stored) = hex::decode(&record.secret_sha256) else {
            return Ok(None);
        };
        let presented = Sha256::digest(&secret);
        let matches: bool = presented.as_slice().ct_eq(stored.as_slice()).into();
        if !matches || record.revoked_at.is_some() {
            return Ok(None);
        }
        Ok(Some(Caller {
            token_id: record.id.to_hex(),
            name: record.name,
            role: record.role,
        }))
    }
}

impl From<TokenRecord> for TokenInfo {
    fn from(record: TokenRecord) -> TokenInfo {
        TokenInfo {
            id: record.id.to_hex(),
            name: record.name,
            role: record.role,
            created_at: record.created_at,
            revoked_at: record.revoked_at,
        }
    }
}
