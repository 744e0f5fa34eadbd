//! The service desk and the asset register: requests of every kind on one workflow
//! ([`workflow`]), their forms ([`kinds`]), service levels ([`sla`]), the assets
//! ([`assets`]), the loans that reserve them ([`loans`]) and the fiscal-year reports
//! ([`reports`]).
//!
//! Invariants:
//! - A request changes only through [`requests::act`], which checks the workflow table, writes
//!   the request, its history entry and the audit entry in one transaction.
//! - Two approved loan reservations of one asset never overlap: the database refuses it (an
//!   exclusion constraint on PostgreSQL, a trigger on SQLite), not only this code.

pub mod assets;
pub mod kinds;
pub mod loans;
pub mod purchase;
pub mod reports;
pub mod requests;
pub mod sla;
pub mod workflow;

use std::collections::HashMap;

use kinds::Kind;

/// The desk's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub calendar: sla::Calendar,
    /// How long after resolving a request may be reopened.
    pub reopen_window_ms: i64,
    /// Approval steps per kind, overriding [`Kind::default_approval_steps`].
    pub approval_steps: HashMap<Kind, Vec<String>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            calendar: sla::Calendar::default(),
            reopen_window_ms: 14 * 86_400_000,
            approval_steps: HashMap::new(),
        }
    }
}

impl Settings {
    /// The approval steps a kind needs, in order.
    pub fn approval_steps(&self, kind: Kind) -> Vec<String> {
        match self.approval_steps.get(&kind) {
            Some(steps) => steps.clone(),
            None => kind
                .default_approval_steps()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}
