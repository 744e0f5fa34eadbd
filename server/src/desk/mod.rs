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
pub mod notify;
pub mod purchase;
pub mod register;
pub mod reports;
pub mod requests;
pub mod sla;
pub mod workbook;
pub mod workflow;

use std::collections::HashMap;
use std::sync::Arc;

use kinds::Kind;

/// The desk's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub calendar: sla::Calendar,
    /// How long after resolving a request may be reopened.
    pub reopen_window_ms: i64,
    /// Approval steps per kind, overriding [`Kind::default_approval_steps`].
    pub approval_steps: HashMap<Kind, Vec<String>>,
    /// Sends e-mail notifications, when `desk.smtp_url` is set.
    pub mailer: Option<Arc<notify::Mailer>>,
    /// The server's address for links in e-mails (`server.public_url`).
    pub public_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            calendar: sla::Calendar::default(),
            reopen_window_ms: 14 * 86_400_000,
            approval_steps: HashMap::new(),
            mailer: None,
            public_url: None,
        }
    }
}

impl From<&khetnet_config::DeskConfig> for Settings {
    /// The configuration has been checked at load (`DeskConfig::check`); a value that still does
    /// not parse keeps the default.
    fn from(c: &khetnet_config::DeskConfig) -> Self {
        let default = Settings::default();
        Settings {
            calendar: sla::Calendar {
                day_start: c
                    .work_day_start
                    .parse()
                    .unwrap_or(default.calendar.day_start),
                day_end: c.work_day_end.parse().unwrap_or(default.calendar.day_end),
                holidays: c.holidays.iter().filter_map(|d| d.parse().ok()).collect(),
            },
            reopen_window_ms: i64::from(c.reopen_window_days) * 86_400_000,
            approval_steps: c
                .approval_steps
                .iter()
                .filter_map(|(kind, steps)| Some((Kind::parse(kind)?, steps.clone())))
                .collect(),
            mailer: c.smtp_url.as_deref().and_then(|url| {
                notify::Mailer::new(url, &c.mail_from)
                    .inspect_err(|error| {
                        tracing::error!(%error, "e-mail notifications are off");
                    })
                    .ok()
                    .map(Arc::new)
            }),
            public_url: None,
        }
    }
}

impl Settings {
    /// Links in e-mails point to this address (`server.public_url`).
    pub fn with_public_url(mut self, url: Option<String>) -> Settings {
        self.public_url = url;
        self
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_names_the_same_kinds() {
        assert_eq!(
            khetnet_config::DESK_KINDS,
            kinds::KINDS.map(Kind::as_str),
            "config's DESK_KINDS must list the desk's kinds"
        );
    }

    #[test]
    fn settings_from_configuration() {
        let mut c = khetnet_config::DeskConfig {
            work_day_start: "09:00".into(),
            holidays: vec!["2026-12-10".into()],
            reopen_window_days: 3,
            ..Default::default()
        };
        c.approval_steps.insert("loan".into(), vec![]);
        c.approval_steps
            .insert("general".into(), vec!["group_director".into()]);
        let s = Settings::from(&c);
        assert_eq!(
            s.calendar.day_start,
            jiff::civil::Time::constant(9, 0, 0, 0)
        );
        assert!(
            s.calendar
                .holidays
                .contains(&jiff::civil::date(2026, 12, 10))
        );
        assert_eq!(s.reopen_window_ms, 3 * 86_400_000);
        assert!(
            s.approval_steps(Kind::Loan).is_empty(),
            "a loan without approval"
        );
        assert_eq!(s.approval_steps(Kind::General), ["group_director"]);
        assert_eq!(
            s.approval_steps(Kind::Purchase),
            ["group_director", "district_director"],
            "defaults stay"
        );
    }
}
