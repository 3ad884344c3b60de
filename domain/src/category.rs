//! Category names: the keys of `scan_runs.category_results`.
//!
//! One rule admits both kinds of key: a connector's categories (`identities`, `storage`, …) and
//! the platform's reserved cells, which start with `__` (`__sync`, …, and the `__driver__`
//! sentinel). Connector output may only use the first kind.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The rule itself, as one regular expression.
pub const CATEGORY_NAME_RULE: &str = r"^(?:[a-z][a-z0-9_]{0,63}|__[a-z][a-z0-9_]{0,30})$";

/// The part of the rule a connector's own categories follow (the other part is the platform's).
pub const CONNECTOR_CATEGORY_RULE: &str = r"^[a-z][a-z0-9_]{0,63}$";

static RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(CATEGORY_NAME_RULE).expect("the category-name rule compiles"));

/// The platform stages' cells, in pipeline order.
pub const SYNC: &str = "__sync";
pub const EVAL: &str = "__eval";
pub const CHAIN: &str = "__chain";
pub const STITCH: &str = "__stitch";
pub const EVIDENCE: &str = "__evidence";
pub const STAGE_CELLS: [&str; 5] = [SYNC, EVAL, CHAIN, STITCH, EVIDENCE];
/// The connector driver's own cell: what went wrong running the connector.
pub const DRIVER: &str = "__driver__";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CategoryNameError {
    #[error("category name {0:?} does not match {CATEGORY_NAME_RULE}")]
    Malformed(String),
    #[error("category name {0:?} is reserved for the platform (names starting with `__`)")]
    Reserved(String),
}

/// A key of `category_results` that follows the rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CategoryName(String);

impl CategoryName {
    /// Any name the rule admits, reserved ones included (the platform's own cells).
    pub fn parse(name: &str) -> Result<CategoryName, CategoryNameError> {
        if RULE.is_match(name) {
            Ok(CategoryName(name.to_string()))
        } else {
            Err(CategoryNameError::Malformed(name.to_string()))
        }
    }

    /// A name a connector may write: the rule, and not reserved.
    pub fn connector(name: &str) -> Result<CategoryName, CategoryNameError> {
        let parsed = CategoryName::parse(name)?;
        if parsed.is_reserved() {
            return Err(CategoryNameError::Reserved(name.to_string()));
        }
        Ok(parsed)
    }

    pub fn is_reserved(&self) -> bool {
        self.0.starts_with("__")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CategoryName {
    type Error = CategoryNameError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        CategoryName::parse(&name)
    }
}

impl From<CategoryName> for String {
    fn from(name: CategoryName) -> String {
        name.0
    }
}

impl fmt::Display for CategoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: usize) -> String {
        "a".repeat(n)
    }

    /// Every boundary of the rule, each side of it.
    #[test]
    fn the_rule_at_every_boundary() {
        let cases: Vec<(String, bool, &str)> = vec![
            (a(1), true, "one letter"),
            (a(64), true, "64 characters"),
            (a(65), false, "65 characters"),
            (format!("__{}", a(31)), true, "31 after __"),
            (format!("__{}", a(32)), false, "32 after __"),
            ("__".into(), false, "__ alone"),
            ("Identities".into(), false, "upper case"),
            ("iDentities".into(), false, "upper case inside"),
            ("1identities".into(), false, "a leading digit"),
            ("_identities".into(), false, "one leading underscore"),
            ("__1x".into(), false, "a digit after __"),
            ("___x".into(), false, "three underscores"),
            ("".into(), false, "empty"),
            ("identités".into(), false, "non-ASCII"),
            ("ıdentities".into(), false, "non-ASCII dotless i"),
            ("storage-buckets".into(), false, "a hyphen"),
            ("storage buckets".into(), false, "a space"),
            ("storage\n".into(), false, "a trailing newline"),
            (
                "storage_2".into(),
                true,
                "digits and underscores after the first letter",
            ),
            ("a_".into(), true, "a trailing underscore"),
            (DRIVER.into(), true, "the driver sentinel"),
        ];
        for (name, admitted, why) in cases {
            assert_eq!(
                CategoryName::parse(&name).is_ok(),
                admitted,
                "{why}: {name:?} should be {}",
                if admitted { "admitted" } else { "refused" }
            );
        }
    }

    #[test]
    fn connectors_may_not_write_reserved_names() {
        for reserved in STAGE_CELLS.iter().chain([&DRIVER]) {
            assert_eq!(
                CategoryName::connector(reserved),
                Err(CategoryNameError::Reserved(reserved.to_string())),
            );
            assert!(CategoryName::parse(reserved).unwrap().is_reserved());
        }
        assert_eq!(
            CategoryName::connector("__anything"),
            Err(CategoryNameError::Reserved("__anything".into()))
        );
        assert!(CategoryName::connector("identities").is_ok());
        // The rule a connector is told about is exactly what it may write.
        let stated = Regex::new(CONNECTOR_CATEGORY_RULE).unwrap();
        for name in [
            "a",
            "identities",
            "__sync",
            "__driver__",
            "Bad",
            "1x",
            "_x",
            &"a".repeat(64),
            &"a".repeat(65),
        ] {
            assert_eq!(
                CategoryName::connector(name).is_ok(),
                stated.is_match(name),
                "{name:?}"
            );
        }
        assert!(matches!(
            CategoryName::connector("Bad"),
            Err(CategoryNameError::Malformed(_))
        ));
    }

    #[test]
    fn deserializing_applies_the_rule() {
        let ok: CategoryName = serde_json::from_str("\"storage\"").unwrap();
        assert_eq!(ok.as_str(), "storage");
        assert!(serde_json::from_str::<CategoryName>("\"Storage\"").is_err());
    }
}
