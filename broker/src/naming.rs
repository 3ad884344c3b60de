//! The naming rules: which tenant ids and refs are accepted, and the lookup names computed from
//! them. Every lookup path is built here and only here, from a validated tenant id and a validated
//! ref, so a ref can never choose (or escape) the tenant segment.
//!
//! - **Tenant id**: 1–63 ASCII characters from `a-z 0-9 - _`, starting with a letter or digit.
//!   Upper case is refused rather than folded (folding would merge `Acme` and `acme` into one
//!   namespace); so is anything non-ASCII.
//! - **Ref**: 1–64 characters from `A-Z 0-9 _`, starting with a letter or digit; `/`, `\`, `..`
//!   and `tenant` (any case) are named explicitly in the refusal.
//! - **Slug** (of a tenant id, or of a ref lower-cased): `x` written `xx`, `-` written `xd` and
//!   `_` written `xu`; every other character stays. `acme-corp` → `acmexdcorp`, `a_b` → `axub`,
//!   `xbox` → `xxboxx`; ref `AWS_PRIMARY` → `awsxuprimary`.
//! - **env**: variable prefix `SV0_TENANT_{TENANT SLUG}_{REF SLUG}_` (slugs upper-cased); the
//!   bundle name is the rest of the variable name. `SV0_TENANT_ACMEXDCORP_AWSXUPRIMARY_`.
//! - **Key Vault**: the path `tenants/{tenant}/connector/{ref}/{name}` becomes the secret name
//!   `tenants-{tenant slug}-connector-{ref slug}-{name}`; the bundle name is `{name}` upper-cased
//!   with `-` → `_`. `tenants-acmexdcorp-connector-awsxuprimary-access-key-id` → `ACCESS_KEY_ID`.
//!
//! Why slugs: a lookup matches every name that *starts with* its prefix, so no prefix may be a
//! prefix of another's, or one (tenant, ref) reads another's secrets (ref `AWS` would read ref
//! `AWS_PRIMARY`'s as `PRIMARY_…`). No code word of the slug is a prefix of another, so a slug names
//! exactly one id or ref; and a slug holds neither `_` nor `-`, so each segment ends at the first
//! separator after it. Two prefixes therefore agree up to the end of the tenant segment only if
//! the tenants are the same, then up to the end of the ref segment only if the refs are the same:
//! for two different (tenant, ref) pairs, neither prefix starts the other. Slugs are `a-z 0-9`, so
//! env names stay `A-Z 0-9 _` and Key Vault names letters, digits and `-`; and as a slug has one
//! case only, Key Vault's case-insensitive names merge no two of them. Key Vault names are at most
//! 127 characters: a tenant and ref whose prefix leaves no room for a name can hold no secret, and
//! resolve as not found.

use std::fmt;

/// Longest accepted tenant id, in bytes (= characters, as only ASCII is accepted).
pub const MAX_TENANT_ID_LEN: usize = 63;
/// Longest accepted ref, in bytes (= characters, as only ASCII is accepted).
pub const MAX_REF_LEN: usize = 64;

/// Why a tenant id or a ref was refused. Never carries the refused text itself: a mistyped field
/// may hold anything, even a pasted secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    TooLong { max: usize },
    PathSeparator,
    DotDot,
    ContainsTenant,
    BadFirstChar,
    BadChar,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Empty => f.write_str("is empty"),
            Refusal::TooLong { max } => write!(f, "is longer than {max} characters"),
            Refusal::PathSeparator => f.write_str("contains a path separator (`/` or `\\`)"),
            Refusal::DotDot => f.write_str("contains `..`"),
            Refusal::ContainsTenant => {
                f.write_str("contains `tenant` (the tenant is never taken from a ref)")
            }
            Refusal::BadFirstChar => f.write_str("must start with a letter or digit"),
            Refusal::BadChar => f.write_str("contains a character outside the allowed set"),
        }
    }
}

/// A tenant id that passed [`TenantId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Allowed characters: `a-z 0-9 - _`; first character a letter or digit.
    pub fn parse(tenant_id: &str) -> Result<Self, Refusal> {
        let first_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let rest_ok = |c: u8| first_ok(c) || c == b'-' || c == b'_';
        check_shape(tenant_id, MAX_TENANT_ID_LEN, first_ok, rest_ok)?;
        Ok(TenantId(tenant_id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The injective slug (see the module docs), lower case: `a-z 0-9` only.
    pub fn slug(&self) -> String {
        slug(&self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ref that passed [`Ref::parse`]: a plain connector suffix such as `AWS_PRIMARY`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ref(String);

impl Ref {
    /// Allowed characters: `A-Z 0-9 _`; first character a letter or digit. The named refusals are
    /// checked first so the error says what is wrong, not only that a character is.
    pub fn parse(reference: &str) -> Result<Self, Refusal> {
        if reference.contains(['/', '\\']) {
            return Err(Refusal::PathSeparator);
        }
        if reference.contains("..") {
            return Err(Refusal::DotDot);
        }
        if reference.to_ascii_lowercase().contains("tenant") {
            return Err(Refusal::ContainsTenant);
        }
        let first_ok = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
        let rest_ok = |c: u8| first_ok(c) || c == b'_';
        check_shape(reference, MAX_REF_LEN, first_ok, rest_ok)?;
        Ok(Ref(reference.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The injective slug of the ref lower-cased (see the module docs): `a-z 0-9` only.
    /// Lower-casing merges no two refs, as a ref has no lower case letters.
    pub fn slug(&self) -> String {
        slug(&self.0.to_ascii_lowercase())
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `x` → `xx`, `-` → `xd`, `_` → `xu`, anything else unchanged: see the module docs.
fn slug(s: &str) -> String {
    let mut slug = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        match c {
            'x' => slug.push_str("xx"),
            '-' => slug.push_str("xd"),
            '_' => slug.push_str("xu"),
            c => slug.push(c),
        }
    }
    slug
}

fn check_shape(
    s: &str,
    max: usize,
    first_ok: impl Fn(u8) -> bool,
    rest_ok: impl Fn(u8) -> bool,
) -> Result<(), Refusal> {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(Refusal::Empty);
    };
    if bytes.len() > max {
        return Err(Refusal::TooLong { max });
    }
    if !first_ok(first) {
        return Err(Refusal::BadFirstChar);
    }
    if !bytes.iter().all(|&c| rest_ok(c)) {
        return Err(Refusal::BadChar);
    }
    Ok(())
}

/// `SV0_TENANT_{TENANT SLUG}_{REF SLUG}_`: every variable of this tenant and ref starts with it,
/// and no variable of another tenant or ref does.
pub fn env_prefix(tenant: &TenantId, reference: &Ref) -> String {
    format!(
        "SV0_TENANT_{}_{}_",
        tenant.slug().to_ascii_uppercase(),
        reference.slug().to_ascii_uppercase()
    )
}

/// `tenants-{tenant slug}-connector-{ref slug}-`: every Key Vault secret of this tenant and ref
/// starts with it, and no secret of another tenant or ref does.
pub fn key_vault_prefix(tenant: &TenantId, reference: &Ref) -> String {
    format!("tenants-{}-connector-{}-", tenant.slug(), reference.slug())
}

/// The bundle name for a Key Vault secret name, or `None` when the name is outside `prefix` or
/// nothing follows it. Key Vault names are case-insensitive, so the comparison is too; the slug
/// alphabet has no case distinctions, so this merges no two tenants.
pub fn key_vault_bundle_name(secret_name: &str, prefix: &str) -> Option<String> {
    let lower = secret_name.to_ascii_lowercase();
    let rest = lower.strip_prefix(prefix)?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.to_ascii_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_escapes_x_dash_and_underscore() {
        let slug = |t: &str| TenantId::parse(t).unwrap().slug();
        assert_eq!(slug("acme"), "acme");
        assert_eq!(slug("acme-corp"), "acmexdcorp");
        assert_eq!(slug("a_b"), "axub");
        assert_eq!(slug("a-b"), "axdb");
        assert_eq!(slug("xbox"), "xxboxx");
        // `x-` and `-x` stay distinct because every escape is two characters starting with `x`.
        assert_ne!(slug("ax-b"), slug("a-xb"));
    }

    #[test]
    fn ref_slug_escapes_x_and_underscore() {
        let slug = |r: &str| Ref::parse(r).unwrap().slug();
        assert_eq!(slug("AWS"), "aws");
        assert_eq!(slug("AWS_PRIMARY"), "awsxuprimary");
        assert_eq!(slug("XBOX"), "xxboxx");
        assert_eq!(slug("A__B"), "axuxub");
        assert_eq!(slug("X_"), "xxxu");
    }

    #[test]
    fn key_vault_bundle_name_maps_and_ignores_case() {
        let prefix = "tenants-acme-connector-awsxuprimary-";
        assert_eq!(
            key_vault_bundle_name("tenants-acme-connector-awsxuprimary-access-key-id", prefix),
            Some("ACCESS_KEY_ID".to_owned())
        );
        assert_eq!(
            key_vault_bundle_name("Tenants-ACME-connector-AWSxuPRIMARY-Key", prefix),
            Some("KEY".to_owned())
        );
        assert_eq!(
            key_vault_bundle_name("tenants-acme-connector-awsxuprimary-", prefix),
            None
        );
        assert_eq!(
            key_vault_bundle_name("tenants-acmexdcorp-connector-awsxuprimary-key", prefix),
            None
        );
    }
}
