//! Who may do what: the one table of roles and permissions.
//!
//! Handlers ask [`Role::may`] and nothing else; `docs/PERMISSIONS.md` shows the same table,
//! and a test fails when the two disagree. Per-school isolation is separate from permissions:
//! a requester is bound to one school and sees only its data ([`Role::school_bound`]).

use serde::{Deserialize, Serialize};

/// A user's role. Each user has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the system: schools, users, configuration, the audit trail.
    Admin,
    /// ICT technician: works the desk queue and the device health of every school.
    Technician,
    /// Group director: approves or rejects requests that need approval.
    Approver,
    /// School or office staff, bound to one school: files and follows requests.
    Requester,
    /// Compliance officer: answers Computer Crime Act requests from the traffic store.
    Compliance,
    /// District director: reads the reports.
    Director,
}

pub const ROLES: [Role; 6] = [
    Role::Admin,
    Role::Technician,
    Role::Approver,
    Role::Requester,
    Role::Compliance,
    Role::Director,
];

/// Something a role may or may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See schools and offices (a requester: only their own).
    SchoolsView,
    /// Create and change schools and offices.
    SchoolsManage,
    /// See user accounts.
    UsersView,
    /// Create users, change roles, reset passwords, unlock accounts.
    UsersManage,
    /// Read the audit trail.
    AuditRead,
    /// File requests and follow one's own.
    RequestsFile,
    /// Work the desk queue: assign, act on, resolve requests.
    RequestsWork,
    /// Approve or reject requests that need approval.
    RequestsApprove,
    /// Read the fiscal-year reports.
    ReportsView,
    /// See the asset register (a requester: their own school's assets).
    AssetsView,
    /// Register assets and change the register.
    AssetsManage,
    /// Manage devices, agents and monitoring targets.
    DevicesManage,
    /// Search and export traffic data (the Computer Crime Act store).
    TrafficSearch,
}

use Permission as P;
use Role as R;

/// The table: for each permission, the roles that have it.
pub const PERMISSIONS: &[(Permission, &str, &[Role])] = &[
    (
        P::SchoolsView,
        "schools.view",
        &[
            R::Admin,
            R::Technician,
            R::Approver,
            R::Requester,
            R::Compliance,
            R::Director,
        ],
    ),
    (P::SchoolsManage, "schools.manage", &[R::Admin]),
    (
        P::UsersView,
        "users.view",
        &[R::Admin, R::Technician, R::Approver],
    ),
    (P::UsersManage, "users.manage", &[R::Admin]),
    (P::AuditRead, "audit.read", &[R::Admin]),
    (
        P::RequestsFile,
        "requests.file",
        &[R::Admin, R::Technician, R::Approver, R::Requester],
    ),
    (P::RequestsWork, "requests.work", &[R::Admin, R::Technician]),
    (P::RequestsApprove, "requests.approve", &[R::Approver]),
    (
        P::ReportsView,
        "reports.view",
        &[R::Admin, R::Technician, R::Approver, R::Director],
    ),
    (
        P::AssetsView,
        "assets.view",
        &[
            R::Admin,
            R::Technician,
            R::Approver,
            R::Requester,
            R::Director,
        ],
    ),
    (P::AssetsManage, "assets.manage", &[R::Admin, R::Technician]),
    (
        P::DevicesManage,
        "devices.manage",
        &[R::Admin, R::Technician],
    ),
    (P::TrafficSearch, "traffic.search", &[R::Compliance]),
];

impl Role {
    /// Whether this role has the permission.
    pub fn may(self, permission: Permission) -> bool {
        PERMISSIONS
            .iter()
            .any(|(p, _, roles)| *p == permission && roles.contains(&self))
    }

    /// Whether users of this role belong to one school and see only its data.
    pub fn school_bound(self) -> bool {
        self == Role::Requester
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Approver => "approver",
            Role::Requester => "requester",
            Role::Compliance => "compliance",
            Role::Director => "director",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        ROLES.into_iter().find(|r| r.as_str() == s)
    }
}

/// The permission table as the Markdown that `docs/PERMISSIONS.md` carries.
pub fn markdown_table() -> String {
    let mut out = String::from("| permission |");
    for role in ROLES {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(ROLES.len()));
    out.push('\n');
    for (_, name, roles) in PERMISSIONS {
        out.push_str(&format!("| {name} |"));
        for role in ROLES {
            out.push_str(if roles.contains(&role) {
                " yes |"
            } else {
                " |"
            });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_table_matches_code() {
        let doc = include_str!("../../docs/PERMISSIONS.md");
        let table = markdown_table();
        assert!(
            doc.contains(&table),
            "docs/PERMISSIONS.md is out of date; replace its table with:\n{table}"
        );
    }

    #[test]
    fn least_privilege_where_it_matters() {
        // Administrators run the system but do not read traffic data (the law asks that
        // administrators cannot reach or alter it); compliance officers do nothing else.
        assert!(!Role::Admin.may(Permission::TrafficSearch));
        assert!(Role::Compliance.may(Permission::TrafficSearch));
        assert!(!Role::Compliance.may(Permission::UsersView));
        assert!(!Role::Director.may(Permission::RequestsWork));
        assert!(!Role::Requester.may(Permission::UsersView));
        assert!(Role::Requester.school_bound());
        for role in ROLES {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}
