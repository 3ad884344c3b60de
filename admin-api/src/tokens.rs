//! Bearer tokens (`api_tokens`). A token reads `sv0_<id>_<secret>`: the id finds its record, the
//! secret (32 random bytes) is stored only as its SHA-256 digest and compared with it in constant
//! time. So the database never holds a usable token, a lookup never depends on the secret, and a
//! refusal looks the same whatever was wrong (unknown id, wrong secret, revoked, expired).
//!
//! A token may be limited to tenants (it then sees and acts on those tenants' things only) and
//! may expire. Its last use is kept to the minute: written at most once a minute per token, so
//! that a busy CI token does not turn every request into a write.

use futures::TryStreamExt;
use std::time::Duration;

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

/// The most tenants one token may be limited to: a token for more is an unscoped one.
pub const MAX_TOKEN_TENANTS: usize = 100;

/// How stale `last_used_at` may get before a request writes it again.
const LAST_USE_RESOLUTION: Duration = Duration::from_secs(60);

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
    /// Empty: every tenant.
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime>,
    #[serde(default)]
    last_used_at: Option<DateTime>,
}

/// A token as listed: everything but the secret's digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime,
    pub revoked_at: Option<DateTime>,
    /// The tenants it is limited to; empty: every tenant.
    pub tenants: Vec<String>,
    pub expires_at: Option<DateTime>,
    /// To the minute.
    pub last_used_at: Option<DateTime>,
}

/// A token to issue: for whom, with which role, limited to which tenants, until when.
#[derive(Debug, Clone)]
pub struct NewToken {
    name: String,
    role: Role,
    tenants: Vec<String>,
    expires_at: Option<DateTime>,
}

impl NewToken {
    /// An unscoped token that never expires; `name` says whose it is (1 to 64 letters, digits,
    /// ` _.-@`).
    pub fn new(name: impl Into<String>, role: Role) -> NewToken {
        NewToken {
            name: name.into(),
            role,
            tenants: Vec::new(),
            expires_at: None,
        }
    }

    /// Limits the token to these tenants (at most [`MAX_TOKEN_TENANTS`]).
    pub fn tenants(mut self, tenants: impl IntoIterator<Item = impl Into<String>>) -> NewToken {
        self.tenants = tenants.into_iter().map(Into::into).collect();
        self
    }

    /// Refused from `at` on.
    pub fn expires_at(mut self, at: DateTime) -> NewToken {
        self.expires_at = Some(at);
        self
    }

    fn validate(&self) -> Result<(), TokenError> {
        let name = &self.name;
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
        if self.tenants.len() > MAX_TOKEN_TENANTS {
            return Err(TokenError::Invalid {
                field: "tenants",
                reason: format!("at most {MAX_TOKEN_TENANTS}"),
            });
        }
        for tenant in &self.tenants {
            sv0_domain::validate_tenant_id(tenant).map_err(|error| TokenError::Invalid {
                field: "tenants",
                reason: error.to_string(),
            })?;
        }
        if self.expires_at.is_some_and(|at| at <= DateTime::now()) {
            return Err(TokenError::Invalid {
                field: "expires_at",
                reason: "must be in the future".into(),
            });
        }
        Ok(())
    }
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
    /// Empty: every tenant.
    pub tenants: Vec<String>,
}

/// What a presented token turned out to be.
#[derive(Debug)]
pub(crate) enum Verdict {
    Valid(Caller),
    /// Not a token of ours: malformed, unknown, or the secret is wrong.
    Unknown,
    Revoked,
    Expired,
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

    /// Issues `token`.
    pub async fn create(&self, token: &NewToken) -> Result<IssuedToken, TokenError> {
        token.validate()?;
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let record = TokenRecord {
            id: ObjectId::new(),
            name: token.name.clone(),
            role: token.role,
            secret_sha256: hex::encode(Sha256::digest(secret)),
            created_at: DateTime::now(),
            revoked_at: None,
            tenants: token.tenants.clone(),
            expires_at: token.expires_at,
            last_used_at: None,
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

    /// What `presented` is: a live token of ours and its caller, or why not. A valid token's
    /// last use is recorded when the record's is older than a minute.
    pub(crate) async fn verify(&self, presented: &str) -> Result<Verdict, TokenError> {
        let Some((id, secret)) = presented
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(Verdict::Unknown);
        };
        let (Ok(id), Ok(secret)) = (ObjectId::parse_str(id), hex::decode(secret)) else {
            return Ok(Verdict::Unknown);
        };
        let Some(record) = self.collection.find_one(doc! { "_id": id }).await? else {
            return Ok(Verdict::Unknown);
        };
        let Ok(stored) = hex::decode(&record.secret_sha256) else {
            return Ok(Verdict::Unknown);
        };
        let presented = Sha256::digest(&secret);
        let matches: bool = presented.as_slice().ct_eq(stored.as_slice()).into();
        if !matches {
            return Ok(Verdict::Unknown);
        }
        if record.revoked_at.is_some() {
            return Ok(Verdict::Revoked);
        }
        let now = DateTime::now();
        if record.expires_at.is_some_and(|at| at <= now) {
            return Ok(Verdict::Expired);
        }
        self.note_use(&record, now).await;
        Ok(Verdict::Valid(Caller {
            token_id: record.id.to_hex(),
            name: record.name,
            role: record.role,
            tenants: record.tenants,
        }))
    }

    /// Records a use when the last one recorded is a minute old. The condition is in the update
    /// too, so that concurrent requests write once between them. A failed write costs the
    /// request nothing: it is logged and the request goes on.
    async fn note_use(&self, record: &TokenRecord, now: DateTime) {
        let stale =
            DateTime::from_millis(now.timestamp_millis() - LAST_USE_RESOLUTION.as_millis() as i64);
        if record.last_used_at.is_some_and(|at| at > stale) {
            return;
        }
        let written = self
            .collection
            .update_one(
                doc! {
                    "_id": record.id,
                    "$or": [ { "last_used_at": null }, { "last_used_at": { "$lte": stale } } ],
                },
                doc! { "$set": { "last_used_at": now } },
            )
            .await;
        if let Err(error) = written {
            tracing::warn!(%error, token_id = %record.id, "the token's last use was not recorded");
        }
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
            tenants: record.tenants,
            expires_at: record.expires_at,
            last_used_at: record.last_used_at,
        }
    }
}
