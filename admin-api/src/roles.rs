//! Who may do what. A token carries one role; each route asks for one right.
//!
//! - `super_admin`: everything.
//! - `operator`: reads everything but tokens and the audit log; acts on runs (create, retry,
//!   cancel, rematerialize, ingest), scopes (edit, pause, resume, trigger, backfill, create,
//!   delete), connector instances and jobs. Not tenants, not tokens.
//! - `ci`: rematerialize, and read the runs it creates (deploy-gate runs).
//! - `read_only`: reads everything but tokens and the audit log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    SuperAdmin,
    Operator,
    Ci,
    ReadOnly,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Right {
    /// Read runs, scopes, instances, tenants, jobs.
    Read,
    /// Read deploy-gate runs only (what `ci` may read besides).
    ReadDeployRuns,
    Rematerialize,
    /// Create, retry and cancel runs; ingest graphs.
    ActOnRuns,
    /// Edit scopes and their schedules.
    ActOnScopes,
    /// Create, edit and delete connector instances.
    ActOnInstances,
    ActOnJobs,
    /// Create tenants and change their status.
    ManageTenants,
    /// List and revoke tokens; read the audit log.
    ManageTokens,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::SuperAdmin, Role::Operator, Role::Ci, Role::ReadOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "super_admin",
            Role::Operator => "operator",
            Role::Ci => "ci",
            Role::ReadOnly => "read_only",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    pub(crate) fn may(self, right: Right) -> bool {
        use Right::*;
        match self {
            Role::SuperAdmin => true,
            Role::Operator => !matches!(right, ManageTenants | ManageTokens),
            Role::Ci => matches!(right, Rematerialize | ReadDeployRuns),
            Role::ReadOnly => matches!(right, Read | ReadDeployRuns),
        }
    }
}

impl Right {
    /// How a refusal names the action.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Right::Read => "read this resource",
            Right::ReadDeployRuns => "read runs",
            Right::Rematerialize => "rematerialize",
            Right::ActOnRuns => "create, retry or cancel runs",
            Right::ActOnScopes => "change scan scopes",
            Right::ActOnInstances => "change connector instances",
            Right::ActOnJobs => "cancel or retry jobs",
            Right::ManageTenants => "manage tenants",
            Right::ManageTokens => "manage tokens or read the audit log",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_has_exactly_its_rights() {
        use Right::*;
        let all = [
            Read,
            ReadDeployRuns,
            Rematerialize,
            ActOnRuns,
            ActOnScopes,
            ActOnInstances,
            ActOnJobs,
            ManageTenants,
            ManageTokens,
        ];
        let granted =
            |role: Role| -> Vec<Right> { all.into_iter().filter(|r| role.may(*r)).collect() };
        assert_eq!(granted(Role::SuperAdmin), all.to_vec());
        assert_eq!(
            granted(Role::Operator),
            vec![
                Read,
                ReadDeployRuns,
                Rematerialize,
                ActOnRuns,
                ActOnScopes,
                ActOnInstances,
                ActOnJobs
            ]
        );
        assert_eq!(granted(Role::Ci), vec![ReadDeployRuns, Rematerialize]);
        assert_eq!(granted(Role::ReadOnly), vec![Read, ReadDeployRuns]);
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
