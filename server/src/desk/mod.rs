//! The service desk and the asset register: requests of every kind on one workflow
//! ([`workflow`]), their forms ([`kinds`]), service levels ([`sla`]), the assets
//! ([`assets`]), the loans that reserve them ([`loans`]) and the fiscal-year reports
//! ([`reports`]).
//!
//! Invariants:
//! - A request changes only through [`requests::act`] (or, for device-health incidents, through
//!   [`system`] as the built-in system user), which checks the workflow table, writes
//!   the request, its history entry and the audit entry in one transaction.
//! - Two approved loan reservations of one asset never overlap: the database refuses it (an
//!   exclusion constraint on PostgreSQL, a trigger on SQLite), not only this code.

pub mod assets;
pub mod attachments;
pub mod kinds;
pub mod loans;
pub mod notify;
pub mod purchase;
pub mod register;
pub mod reports;
pub mod requests;
pub mod sample;
pub mod sla;
pub mod system;
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
    /// Service-level targets per kind and priority, overriding [`sla::targets`]: response and
    /// resolution in working minutes, `None` keeping the default.
    pub sla_targets: HashMap<(Kind, String), (Option<i64>, Option<i64>)>,
    /// What may be attached to a request, and where files are kept.
    pub attachments: attachments::Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            calendar: sla::Calendar::default(),
            reopen_window_ms: 14 * 86_400_000,
            approval_steps: HashMap::new(),
            mailer: None,
            public_url: None,
            sla_targets: HashMap::new(),
            attachments: attachments::Limits::default(),
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
            sla_targets: c
                .sla_targets
                .iter()
                .filter_map(|(kind, priorities)| Some((Kind::parse(kind)?, priorities)))
                .flat_map(|(kind, priorities)| {
                    priorities.iter().map(move |(priority, t)| {
                        (
                            (kind, priority.clone()),
                            (
                                t.response_minutes.map(i64::from),
                                t.resolution_minutes.map(i64::from),
                            ),
                        )
                    })
                })
                .collect(),
            attachments: attachments::Limits {
                max_bytes: c.attachment_max_bytes,
                types: c
                    .attachment_types
                    .iter()
                    .filter_map(|t| attachments::FileType::parse(t))
                    .collect(),
                ..default.attachments
            },
        }
    }
}

impl Settings {
    /// Files are kept under `<data_dir>/attachments`.
    pub fn with_data_dir(mut self, data_dir: &std::path::Path) -> Settings {
        self.attachments.dir = data_dir.join("attachments");
        self
    }

    /// The service-level targets of a kind at a priority: the configured ones
    /// (`desk.sla_targets`), else the defaults.
    pub fn targets(&self, kind: Kind, priority: &str) -> sla::Targets {
        let default = sla::targets(kind, priority);
        match self.sla_targets.get(&(kind, priority.to_owned())) {
            Some(&(response, resolution)) => sla::Targets {
                response_minutes: response.unwrap_or(default.response_minutes),
                resolution_minutes: resolution.unwrap_or(default.resolution_minutes),
            },
            None => default,
        }
    }

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

/// The user an approval step names (`@username`), if it names one rather than any approver.
pub fn named_approver(step: &str) -> Option<&str> {
    step.strip_prefix('@').filter(|name| !name.is_empty())
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
        assert_eq!(
            khetnet_config::DESK_PRIORITIES,
            requests::PRIORITIES,
            "config's DESK_PRIORITIES must list the desk's priorities"
        );
        assert_eq!(
            khetnet_config::ATTACHMENT_TYPES,
            attachments::FILE_TYPES.map(attachments::FileType::as_str),
            "config's ATTACHMENT_TYPES must list the types the desk recognises"
        );
    }

    /// The default targets in `config/khetnet.example.toml` are those of [`sla::targets`].
    #[test]
    fn example_configuration_shows_the_default_targets() {
        let example = include_str!("../../../config/khetnet.example.toml");
        for kind in kinds::KINDS {
            let mut line = format!("#   {:<18}", kind.as_str());
            for priority in requests::PRIORITIES {
                let t = sla::targets(kind, priority);
                let cell = format!("{} / {}", t.response_minutes, t.resolution_minutes);
                line.push_str(&format!("{cell:<12}"));
            }
            let line = line.trim_end();
            assert!(
                example.lines().any(|l| l == line),
                "config/khetnet.example.toml lacks the line\n{line}"
            );
        }
    }

    #[test]
    fn configured_targets_override_the_defaults() {
        let mut c = khetnet_config::DeskConfig::default();
        c.sla_targets.entry("repair".into()).or_default().insert(
            "urgent".into(),
            khetnet_config::SlaTarget {
                response_minutes: None,
                resolution_minutes: Some(120),
            },
        );
        let s = Settings::from(&c);
        assert_eq!(
            s.targets(Kind::Repair, "urgent"),
            sla::Targets {
                response_minutes: 30,
                resolution_minutes: 120
            }
        );
        assert_eq!(
            s.targets(Kind::General, "urgent"),
            sla::targets(Kind::General, "urgent")
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
