//! The naming rules: which tenant ids and refs are accepted, and the lookup names computed from
//! them. Every lookup path is built here and only here, from a validated tenant id and a validated
//! ref, so a ref can never choose (or escape) the tenant segment.
//!
//! - **Tenant id**: 1–63 ASCII characters from `a-z 0-9 - _`, starting with a letter or digit.
//!   Upper case is refused rather than folded (folding would merge `Acme` and `acme` into one
//!   namespace); so is anything non-ASCII.
//! - **Tenant slug**: the tenant id with `x` written `xx`, `-` written `xd` and `_` written `xu`;
//!   every other character stays. No code word is a prefix of another, so the slug is injective,
//!   and it contains neither `_` nor `-`: it can never run into the separator that follows it.
//!   `acme-corp` → `acmexdcorp`, `a_b` → `axub`, `xbox` → `xxboxx`.
//! - **Ref**: 1–64 characters from `A-Z 0-9 _`, starting with a letter or digit; `/`, `\`, `..`
//!   and `tenant` (any case) are named explicitly in the refusal.
//! - **env**: variable prefix `SV0_TENANT_{SLUG}_{REF}_` (slug upper-cased); the bundle name is the
//!   rest of the variable name.
//! - **Key Vault**: the ADR's path `tenants/{tenant}/connector/{kind}/{name}` becomes the secret name
//!   `tenants-{slug}-connector-{kind}-{name}`, where `kind` is the ref lower-cased with `_` → `-`;
//!   the bundle name is `{name}` upper-cased with `-` → `_`.

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
        let mut slug = String::with_capacity(self.0.len() * 2);
        for c in self.0.chars() {
            match c {
                'x' => slug.push_str("xx"),
                '-' => slug.push_str("xd"),
                '_' => slug.push_str("xu"),
                c => slug.push(c),
            }
        }
        slug
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

    /// The Key Vault `kind` segment: lower case, `_` → `-` (a bijection on valid refs).
    pub fn kind(&self) -> String {
        self.0.to_ascii_lowercase().replace('_', "-")
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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

/// `SV0_TENANT_{SLUG}_{REF}_`: every variable of this tenant and ref starts with it.
pub fn env_prefix(tenant: &TenantId, reference: &Ref) -> String {
    format!(
        "SV0_TENANT_{}_{}_",
        tenant.slug().to_ascii_uppercase(),
        reference.as_str()
    )
}

/// `tenants-{slug}-connector-{kind}-`: every Key Vault secret of this tenant and ref starts with it.
pub fn key_vault_prefix(tenant: &TenantId, reference: &Ref) -> String {
    format!("tenants-{}-connector-{}-", tenant.slug(), reference.kind())
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
    fn key_vault_bundle_name_maps_and_ignores_case() {
        let prefix = "tenants-acme-connector-aws-primary-";
        assert_eq!(
            key_vault_bundle_name("tenants-acme-connector-aws-primary-access-key-id", prefix),
            Some("ACCESS_KEY_ID".to_owned())
        );
        assert_eq!(
            key_vault_bundle_name("Tenants-ACME-connector-AWS-primary-Key", prefix),
            Some("KEY".to_owned())
        );
        assert_eq!(
            key_vault_bundle_name("tenants-acme-connector-aws-primary-", prefix),
            None
        );
        assert_eq!(
            key_vault_bundle_name("tenants-acmexdcorp-connector-aws-primary-key", prefix),
            None
        );
    }
}
