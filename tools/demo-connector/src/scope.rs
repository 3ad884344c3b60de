//! The scope a run is given (`scope.json`): which clouds, how many entities in each, from which
//! seed, and how far the clouds have drifted since that seed's graph. Read strictly: an unknown
//! field or a value out of range is refused, naming its field.

use serde::Deserialize;

/// The fewest entities per cloud: below it a cloud cannot hold every chain and finding the
/// graph promises.
const MIN_SIZE: u64 = 8;
/// Four clouds of this many fit the 50,000 entities one sync may carry (`sv0_domain::graph`).
const MAX_SIZE: u64 = 12_500;
const MAX_CLOUDS: usize = 4;
/// A drift changes at most every entity.
const MAX_DRIFT_PERCENT: u64 = 100;

/// `scope.json` as written; [`Scope`] once checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScopeDoc {
    #[serde(default = "default_clouds")]
    clouds: Vec<String>,
    #[serde(default = "default_size")]
    size: u64,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default)]
    drift: Option<DriftDoc>,
}

/// `drift` as written; [`Drift`] once checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DriftDoc {
    percent: u64,
    round: u64,
}

pub(crate) fn default_clouds() -> Vec<String> {
    vec!["aws".to_string(), "azure".to_string()]
}

pub(crate) fn default_size() -> u64 {
    200
}

pub(crate) fn default_seed() -> u64 {
    1
}

/// What to draw: `size` entities in each of `clouds`, from `seed`, drifted by `drift`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) clouds: Vec<String>,
    pub(crate) size: usize,
    pub(crate) seed: u64,
    /// `None`: the graph as drawn.
    pub(crate) drift: Option<Drift>,
}

/// How the clouds changed since the seed's graph was drawn, for re-scans that find some items
/// changed: `percent` % of each cloud's entities (rounded down) are renamed for `round`. The
/// entities that drift depend on the seed, the cloud and `percent` only, never on `round`, so
/// each round changes the same entities again and round 0 is the graph as drawn; a larger
/// `percent` drifts the entities of a smaller one and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drift {
    pub(crate) percent: usize,
    pub(crate) round: u64,
}

/// A scope that does not read, naming its field.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ScopeError {
    /// `size`, `clouds[1]`, an unknown field's own name, …; `None` for the document as a whole
    /// (not JSON, not an object).
    field: Option<String>,
    message: String,
}

impl std::fmt::Display for ScopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl ScopeError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> ScopeError {
        ScopeError {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl Scope {
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Scope, ScopeError> {
        let whole = |message: String| ScopeError {
            field: None,
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| whole(format!("not JSON: {e}")))?;
        // Serde would also read a struct from an array (`[["aws"], 200, 1]`, `"drift": [5, 1]`);
        // a scope and its drift are objects.
        if !value.is_object() {
            return Err(whole(format!("must be a JSON object, not {value}")));
        }
        if let Some(drift) = value
            .get("drift")
            .filter(|d| !d.is_object() && !d.is_null())
        {
            return Err(ScopeError::new(
                "drift",
                format!("must be a JSON object, {{\"percent\": P, \"round\": R}}, not {drift}"),
            ));
        }
        let doc: ScopeDoc = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ScopeError {
                field: (path != ".").then_some(path),
                message: e.into_inner().to_string(),
            }
        })?;
        if doc.clouds.is_empty() || doc.clouds.len() > MAX_CLOUDS {
            return Err(ScopeError::new(
                "clouds",
                format!(
                    "must list 1 to {MAX_CLOUDS} clouds, got {}",
                    doc.clouds.len()
                ),
            ));
        }
        for (i, cloud) in doc.clouds.iter().enumerate() {
            if !is_cloud_name(cloud) {
                return Err(ScopeError::new(
                    format!("clouds[{i}]"),
                    format!("{cloud:?} must match [a-z][a-z0-9]*"),
                ));
            }
            if doc.clouds[..i].contains(cloud) {
                return Err(ScopeError::new(
                    format!("clouds[{i}]"),
                    format!("{cloud:?} appears more than once"),
                ));
            }
        }
        if !(MIN_SIZE..=MAX_SIZE).contains(&doc.size) {
            return Err(ScopeError::new(
                "size",
                format!(
                    "must be {MIN_SIZE} to {MAX_SIZE} entities per cloud, got {}",
                    doc.size
                ),
            ));
        }
        let drift = match doc.drift {
            None => None,
            Some(drift) if drift.percent > MAX_DRIFT_PERCENT => {
                return Err(ScopeError::new(
                    "drift.percent",
                    format!(
                        "must be 0 to {MAX_DRIFT_PERCENT} per cent of each cloud's entities, got {}",
                        drift.percent
                    ),
                ));
            }
            Some(drift) => Some(Drift {
                percent: usize::try_from(drift.percent).expect("at most MAX_DRIFT_PERCENT"),
                round: drift.round,
            }),
        };
        Ok(Scope {
            clouds: doc.clouds,
            size: usize::try_from(doc.size).expect("at most MAX_SIZE"),
            seed: doc.seed,
            drift,
        })
    }
}

pub(crate) fn is_cloud_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(json: &str) -> Result<Scope, ScopeError> {
        Scope::from_json(json.as_bytes())
    }

    fn field(json: &str) -> (String, String) {
        let e = scope(json).expect_err("the scope is invalid");
        let message = e.to_string();
        (e.field.unwrap_or_default(), message)
    }

    #[test]
    fn an_empty_scope_reads_as_the_defaults() {
        assert_eq!(
            scope("{}").unwrap(),
            Scope {
                clouds: vec!["aws".into(), "azure".into()],
                size: 200,
                seed: 1,
                drift: None,
            }
        );
        assert_eq!(
            scope(r#"{"clouds": ["gcp"], "size": 8, "seed": 18446744073709551615}"#).unwrap(),
            Scope {
                clouds: vec!["gcp".into()],
                size: 8,
                seed: u64::MAX,
                drift: None,
            }
        );
        assert_eq!(scope(r#"{"size": 12500}"#).unwrap().size, 12_500);
    }

    #[test]
    fn a_drift_reads_with_both_its_fields() {
        let drift = |json: &str| scope(json).unwrap().drift;
        assert_eq!(
            drift(r#"{"drift": {"percent": 5, "round": 1}}"#),
            Some(Drift {
                percent: 5,
                round: 1
            })
        );
        assert_eq!(
            drift(r#"{"drift": {"round": 18446744073709551615, "percent": 100}}"#),
            Some(Drift {
                percent: 100,
                round: u64::MAX
            })
        );
        assert_eq!(
            drift(r#"{"drift": {"percent": 0, "round": 0}}"#),
            Some(Drift {
                percent: 0,
                round: 0
            })
        );
        assert_eq!(drift(r#"{"drift": null}"#), None);
    }

    #[test]
    fn an_invalid_drift_names_its_field() {
        assert_eq!(
            field(r#"{"drift": {"percent": 101, "round": 1}}"#),
            (
                "drift.percent".to_string(),
                "drift.percent: must be 0 to 100 per cent of each cloud's entities, got 101"
                    .to_string()
            )
        );
        assert_eq!(
            field(r#"{"drift": {"percent": -5, "round": 1}}"#).0,
            "drift.percent"
        );
        assert_eq!(
            field(r#"{"drift": {"percent": 2.5, "round": 1}}"#).0,
            "drift.percent"
        );
        assert_eq!(
            field(r#"{"drift": {"percent": "5", "round": 1}}"#).0,
            "drift.percent"
        );
        assert_eq!(
            field(r#"{"drift": {"percent": 5, "round": -1}}"#).0,
            "drift.round"
        );
        assert_eq!(
            field(r#"{"drift": {"percent": 5, "round": "one"}}"#).0,
            "drift.round"
        );
        let (field_name, message) = field(r#"{"drift": {"percent": 5}}"#);
        assert_eq!(field_name, "drift");
        assert!(message.contains("missing field `round`"), "{message}");
        let (field_name, message) = field(r#"{"drift": {"round": 1}}"#);
        assert_eq!(field_name, "drift");
        assert!(message.contains("missing field `percent`"), "{message}");
        let (field_name, message) = field(r#"{"drift": {"percent": 5, "round": 1, "seed": 2}}"#);
        assert_eq!(field_name, "drift.seed");
        assert!(message.contains("unknown field `seed`"), "{message}");
        assert_eq!(field(r#"{"drift": 5}"#).0, "drift");
        assert_eq!(field(r#"{"drift": [5, 1]}"#).0, "drift");
    }

    #[test]
    fn an_invalid_scope_names_its_field() {
        assert_eq!(field(r#"{"size": 3}"#).0, "size");
        assert_eq!(field(r#"{"size": 200001}"#).0, "size");
        assert_eq!(field(r#"{"size": "big"}"#).0, "size");
        assert_eq!(field(r#"{"size": -1}"#).0, "size");
        assert_eq!(field(r#"{"seed": -1}"#).0, "seed");
        assert_eq!(field(r#"{"seed": 1.5}"#).0, "seed");
        assert_eq!(field(r#"{"clouds": []}"#).0, "clouds");
        assert_eq!(field(r#"{"clouds": "aws"}"#).0, "clouds");
        assert_eq!(
            field(r#"{"clouds": ["a", "b", "c", "d", "e"]}"#).0,
            "clouds"
        );
        assert_eq!(field(r#"{"clouds": ["aws", "AWS"]}"#).0, "clouds[1]");
        assert_eq!(field(r#"{"clouds": ["1aws"]}"#).0, "clouds[0]");
        assert_eq!(field(r#"{"clouds": [""]}"#).0, "clouds[0]");
        assert_eq!(field(r#"{"clouds": ["aws", "gcp", "aws"]}"#).0, "clouds[2]");
        assert_eq!(field(r#"{"clouds": [7]}"#).0, "clouds[0]");
        let (field, message) = field(r#"{"size": 10, "colour": "blue"}"#);
        assert_eq!(field, "colour");
        assert!(
            message.starts_with("colour: unknown field `colour`"),
            "{message}"
        );
        assert!(scope("[]").is_err());
        assert!(scope("not json").is_err());
    }
}
