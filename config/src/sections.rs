//! One struct per table of `khetnet.toml`. Defaults here are the embedded one-machine setup.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The Computer Crime Act's floor for keeping traffic data, in days.
pub const MIN_RETENTION_DAYS: u32 = 90;

/// `[server]`: the HTTP server, its data directory and TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The address people use to reach the server (links in e-mails, QR labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    pub tls_self_signed: bool,
    /// Serve plain HTTP on a non-loopback address. Passwords would cross the network in clear.
    pub allow_plain_http: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./khetnet-data"),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            allow_plain_http: false,
            max_body_bytes: 2 * 1024 * 1024,
        }
    }
}

/// `[database]`: SQLite by default, PostgreSQL for scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 16,
        }
    }
}

/// `[auth]`: sessions, tokens and lock-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Failed logins in a row before the account is locked.
    pub max_failed_logins: u32,
    /// How long a lock lasts before it lifts by itself (an admin can unlock sooner).
    pub lockout_minutes: u32,
    /// Lifetime of a web session (cookie) and of an API token from `auth/login`.
    pub session_hours: u32,
    /// Login attempts per minute allowed from one client address, whatever the user name.
    pub login_attempts_per_minute: u32,
    pub min_password_length: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            max_failed_logins: 5,
            lockout_minutes: 15,
            session_hours: 12,
            login_attempts_per_minute: 30,
            min_password_length: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    Stdout,
    Journald,
    Syslog,
}

/// `[logging]`: khetnet's own logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    pub format: LogFormat,
    pub target: LogTarget,
    /// A tracing filter: `info`, `debug`, `khetnet_server=debug,info`.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::Human,
            target: LogTarget::Stdout,
            level: "info".into(),
        }
    }
}

/// `[collector]`: the log collector embedded in `khetnet serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Run the collector inside `khetnet serve` (false when it runs on its own box).
    pub enabled: bool,
    /// Syslog over UDP (RFC 5426): `ADDRESS:PORT`, or `""` for off.
    pub syslog_udp: String,
    /// Syslog over TCP (RFC 6587): `ADDRESS:PORT`, or `""` for off.
    pub syslog_tcp: String,
    /// Syslog over TLS (RFC 5425); started only when `tls_cert` and `tls_key` are set.
    pub syslog_tls: String,
    /// RELP (rsyslog's omrelp): `ADDRESS:PORT`, or `""` for off.
    pub relp: String,
    /// RADIUS accounting (RFC 2866): `ADDRESS:PORT`, or `""` for off.
    pub radius: String,
    /// NetFlow v5/v9 and IPFIX: `ADDRESS:PORT`, or `""` for off.
    pub netflow: String,
    /// A second NetFlow/IPFIX port (IPFIX's standard 4739), or `""` for off.
    pub ipfix: String,
    /// PEM certificate chain for syslog over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for syslog over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates; when set, TLS clients must present a certificate it signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// Sources allowed to send, `ADDRESS[/PREFIX][=SCHOOL]`; others are counted and refused.
    pub allow: Vec<String>,
    /// The RADIUS shared secret of clients not listed in `radius_clients`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius_secret: Option<String>,
    /// Per-client RADIUS shared secrets, `ADDRESS[/PREFIX]=SECRET`; longest prefix wins.
    pub radius_clients: Vec<String>,
    /// Seconds without a message after which an allowed source is reported silent.
    pub silent_after_secs: u64,
    /// Connections (TCP, TLS, RELP together) open at once, at most.
    pub max_connections: usize,
    /// NTP servers whose offset to this clock is measured (SNTP); empty for none.
    pub ntp_servers: Vec<String>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            enabled: true,
            syslog_udp: "0.0.0.0:514".into(),
            syslog_tcp: "0.0.0.0:514".into(),
            syslog_tls: "0.0.0.0:6514".into(),
            relp: "0.0.0.0:2514".into(),
            radius: "0.0.0.0:1813".into(),
            netflow: "0.0.0.0:2055".into(),
            ipfix: "0.0.0.0:4739".into(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            allow: Vec::new(),
            radius_secret: None,
            radius_clients: Vec::new(),
            silent_after_secs: 3600,
            max_connections: 1024,
            ntp_servers: Vec::new(),
        }
    }
}

/// `[retention]`: the tamper-evident store of traffic data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<PathBuf>,
    /// Days traffic data is kept, counted from when it was received. At least 90 by law.
    pub retention_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            store: None,
            retention_days: MIN_RETENTION_DAYS,
        }
    }
}

/// `[devices]`: device health on the server: how agents report and when they count as silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// Seconds between two reports of an agent (each agent adds its own jitter).
    pub report_interval_secs: u64,
    /// Seconds between two configuration pulls of an agent.
    pub config_refresh_secs: u64,
    /// Report intervals without a report after which an agent is silent (an incident).
    pub silent_after_intervals: u32,
    /// Days raw samples are kept.
    pub raw_retention_days: u32,
    /// Days the 5-minute aggregates of samples are kept (at least `raw_retention_days`).
    pub aggregate_retention_days: u32,
    /// Packet loss (percent) at or above which a device that answers opens an incident.
    pub loss_alert_percent: u32,
    /// A printer supply (toner, ink) at or below this level (percent) opens an incident.
    pub toner_alert_percent: u32,
    /// A disk of an agent's host used at or above this share (percent) opens an incident.
    pub disk_alert_percent: u32,
    /// A fault that comes back within this many minutes of clearing reopens its incident and
    /// repair request instead of filing a new one.
    pub flap_window_minutes: u32,
}

impl DevicesConfig {
    /// Rules beyond the types: (key, value, what is allowed) of the first broken one.
    pub fn check(&self) -> std::result::Result<(), (String, String, String)> {
        for (key, value) in [
            ("devices.loss_alert_percent", self.loss_alert_percent),
            ("devices.toner_alert_percent", self.toner_alert_percent),
            ("devices.disk_alert_percent", self.disk_alert_percent),
        ] {
            if !(1..=100).contains(&value) {
                return Err((key.into(), value.to_string(), "allowed: 1 to 100".into()));
            }
        }
        if self.aggregate_retention_days < self.raw_retention_days {
            return Err((
                "devices.aggregate_retention_days".into(),
                self.aggregate_retention_days.to_string(),
                format!(
                    "allowed: at least devices.raw_retention_days ({})",
                    self.raw_retention_days
                ),
            ));
        }
        Ok(())
    }
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            report_interval_secs: 60,
            config_refresh_secs: 300,
            silent_after_intervals: 3,
            raw_retention_days: 7,
            aggregate_retention_days: 400,
            loss_alert_percent: 20,
            toner_alert_percent: 10,
            disk_alert_percent: 90,
            flap_window_minutes: 30,
        }
    }
}

/// `[agent]`: the school agent `khetnet-agent` (only the agent reads this section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Where the agent keeps its credential, cached configuration and spool.
    pub state_dir: PathBuf,
    /// Probes run at the same time, at most.
    pub max_concurrency: usize,
    /// Report batches kept on disk while the server is unreachable; past it the oldest go.
    pub spool_max_batches: usize,
    /// Seconds a probe may take before it counts as failed.
    pub probe_timeout_secs: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            state_dir: PathBuf::from("/var/lib/khetnet-agent"),
            max_concurrency: 32,
            spool_max_batches: 10_000,
            probe_timeout_secs: 5,
        }
    }
}

/// The request kinds of the service desk, as `desk.approval_steps` names them.
pub const DESK_KINDS: [&str; 8] = [
    "repair",
    "loan",
    "purchase",
    "use_of_materials",
    "account",
    "system_access",
    "data_service",
    "general",
];

/// The request priorities, as `desk.sla_targets` names them.
pub const DESK_PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

/// The file types a request may carry, as `desk.attachment_types` names them; the server tells
/// them apart by their content.
pub const ATTACHMENT_TYPES: [&str; 6] = ["jpeg", "png", "gif", "webp", "heic", "pdf"];

/// One service-level target of `desk.sla_targets`, in working minutes; an unset one keeps its
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_minutes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution_minutes: Option<u32>,
}

/// `[desk]`: the service desk: the working hours service levels are counted in, public
/// holidays, service-level targets, how long a resolved request may be reopened, approval steps
/// per kind, and the files a request may carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskConfig {
    /// Start of the working day, `HH:MM`, Asia/Bangkok.
    pub work_day_start: String,
    /// End of the working day, `HH:MM`, Asia/Bangkok.
    pub work_day_end: String,
    /// Public holidays (`YYYY-MM-DD`) on which the service-level clock stops.
    pub holidays: Vec<String>,
    /// Days after resolving during which a request may be reopened.
    pub reopen_window_days: u32,
    /// Approval steps per kind, in order; kinds not listed keep their defaults.
    pub approval_steps: BTreeMap<String, Vec<String>>,
    /// SMTP server for e-mail notifications: `smtp://HOST:PORT` (plain, e.g. a local relay),
    /// `smtp://HOST:PORT?tls=required` (STARTTLS) or `smtps://USER:PASSWORD@HOST`; unset: no
    /// e-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<String>,
    /// The sender of notifications.
    pub mail_from: String,
    /// Service-level targets per kind and priority, overriding the defaults.
    pub sla_targets: BTreeMap<String, BTreeMap<String, SlaTarget>>,
    /// Largest file that may be attached to a request, in bytes.
    pub attachment_max_bytes: u64,
    /// The file types that may be attached (by content), from [`ATTACHMENT_TYPES`].
    pub attachment_types: Vec<String>,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            work_day_start: "08:30".into(),
            work_day_end: "16:30".into(),
            holidays: Vec::new(),
            reopen_window_days: 14,
            approval_steps: BTreeMap::new(),
            smtp_url: None,
            mail_from: "khetnet <khetnet@localhost>".into(),
            sla_targets: BTreeMap::new(),
            attachment_max_bytes: 10 * 1024 * 1024,
            attachment_types: ["jpeg", "png", "webp", "heic", "pdf"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Minutes since midnight of `HH:MM`.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
}

/// `(year, month, day)` of `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<(i16, i8, i8)> {
    let mut parts = s.split('-');
    let y: i16 = parts.next()?.parse().ok()?;
    let m: i8 = parts.next()?.parse().ok()?;
    let d: i8 = parts.next()?.parse().ok()?;
    let days = match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    (s.len() == 10 && parts.next().is_none() && (1..=days).contains(&d)).then_some((y, m, d))
}

impl DeskConfig {
    /// The first bad key as `(key, value, what is allowed)`.
    pub fn check(&self) -> Result<(), (String, String, String)> {
        let bad = |key: &str, value: String, allowed: &str| {
            Err((key.to_owned(), value, allowed.to_owned()))
        };
        let (Some(start), Some(end)) = (
            parse_hhmm(&self.work_day_start),
            parse_hhmm(&self.work_day_end),
        ) else {
            let key = if parse_hhmm(&self.work_day_start).is_none() {
                "desk.work_day_start"
            } else {
                "desk.work_day_end"
            };
            let value = if key.ends_with("start") {
                &self.work_day_start
            } else {
                &self.work_day_end
            };
            return bad(
                key,
                format!("{value:?}"),
                "allowed: a time HH:MM such as \"08:30\"",
            );
        };
        if end <= start {
            return bad(
                "desk.work_day_end",
                format!("{:?}", self.work_day_end),
                "allowed: a time after desk.work_day_start",
            );
        }
        if let Some(day) = self.holidays.iter().find(|d| parse_date(d).is_none()) {
            return bad(
                "desk.holidays",
                format!("{day:?}"),
                "allowed: dates YYYY-MM-DD such as \"2026-12-10\"",
            );
        }
        if self.reopen_window_days > 365 {
            return bad(
                "desk.reopen_window_days",
                self.reopen_window_days.to_string(),
                "allowed: 0 to 365",
            );
        }
        if let Some(url) = &self.smtp_url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            return bad(
                "desk.smtp_url",
                format!("{url:?}"),
                "allowed: smtp://HOST:PORT, smtp://HOST:PORT?tls=required or smtps://USER:PASSWORD@HOST",
            );
        }
        if !self.mail_from.contains('@') {
            return bad(
                "desk.mail_from",
                format!("{:?}", self.mail_from),
                "allowed: an address such as \"ICT <ict@example.go.th>\"",
            );
        }
        for (kind, steps) in &self.approval_steps {
            if !DESK_KINDS.contains(&kind.as_str()) {
                return Err((
                    format!("desk.approval_steps.{kind}"),
                    format!("{steps:?}"),
                    format!("allowed kinds: {}", DESK_KINDS.join(", ")),
                ));
            }
            let bad_name = |s: &String| {
                let name = s.strip_prefix('@').unwrap_or(s);
                name.is_empty()
                    || name.trim() != name
                    || (s.starts_with('@')
                        && !name.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "._-@".contains(c)
                        }))
            };
            if steps.iter().any(bad_name) || steps.len() > 5 {
                return Err((
                    format!("desk.approval_steps.{kind}"),
                    format!("{steps:?}"),
                    "allowed: up to 5 named steps, e.g. [\"group_director\", \"district_director\"]; \
                     \"@username\" for a step only that user may take"
                        .into(),
                ));
            }
        }
        for (kind, priorities) in &self.sla_targets {
            if !DESK_KINDS.contains(&kind.as_str()) {
                return Err((
                    format!("desk.sla_targets.{kind}"),
                    format!("{priorities:?}"),
                    format!("allowed kinds: {}", DESK_KINDS.join(", ")),
                ));
            }
            for (priority, target) in priorities {
                let key = format!("desk.sla_targets.{kind}.{priority}");
                if !DESK_PRIORITIES.contains(&priority.as_str()) {
                    return Err((
                        key,
                        format!("{target:?}"),
                        format!("allowed priorities: {}", DESK_PRIORITIES.join(", ")),
                    ));
                }
                let year = 480 * 260;
                for (name, value) in [
                    ("response_minutes", target.response_minutes),
                    ("resolution_minutes", target.resolution_minutes),
                ] {
                    if let Some(v) = value
                        && !(1..=year).contains(&v)
                    {
                        return Err((
                            format!("{key}.{name}"),
                            v.to_string(),
                            format!("allowed: 1 to {year} working minutes (a working day is 480)"),
                        ));
                    }
                }
                if let (Some(response), Some(resolution)) =
                    (target.response_minutes, target.resolution_minutes)
                    && resolution < response
                {
                    return Err((
                        format!("{key}.resolution_minutes"),
                        resolution.to_string(),
                        format!("allowed: at least the response target ({response})"),
                    ));
                }
            }
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.attachment_max_bytes) {
            return bad(
                "desk.attachment_max_bytes",
                self.attachment_max_bytes.to_string(),
                "allowed: 1024 to 1073741824 (1 GiB)",
            );
        }
        if let Some(t) = self
            .attachment_types
            .iter()
            .find(|t| !ATTACHMENT_TYPES.contains(&t.as_str()))
        {
            return bad(
                "desk.attachment_types",
                format!("{t:?}"),
                &format!("allowed: {}", ATTACHMENT_TYPES.join(", ")),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod desk_tests {
    use super::*;

    /// `Ok(())` or the key the refusal names.
    fn check(adjust: impl FnOnce(&mut DeskConfig), expected: Result<(), &str>) {
        let mut c = DeskConfig::default();
        adjust(&mut c);
        assert_eq!(
            c.check().map_err(|(key, _, _)| key),
            expected.map_err(str::to_owned),
            "{c:?}"
        );
    }

    #[test]
    fn desk_values_are_checked() {
        check(|_| {}, Ok(()));
        check(
            |c| c.holidays = vec!["2026-12-10".into(), "2024-02-29".into()],
            Ok(()),
        );
        check(
            |c| c.holidays = vec!["2025-02-29".into()],
            Err("desk.holidays"),
        );
        check(
            |c| c.holidays = vec!["10/12/2026".into()],
            Err("desk.holidays"),
        );
        check(
            |c| c.work_day_start = "8:30".into(),
            Err("desk.work_day_start"),
        );
        check(
            |c| c.work_day_end = "25:00".into(),
            Err("desk.work_day_end"),
        );
        check(
            |c| c.work_day_end = "08:00".into(),
            Err("desk.work_day_end"),
        );
        check(
            |c| c.reopen_window_days = 1000,
            Err("desk.reopen_window_days"),
        );
        check(|c| c.smtp_url = Some("smtp://127.0.0.1:25".into()), Ok(()));
        check(
            |c| c.smtp_url = Some("mail.example".into()),
            Err("desk.smtp_url"),
        );
        check(|c| c.mail_from = "nobody".into(), Err("desk.mail_from"));
        check(
            |c| {
                c.approval_steps.insert(
                    "loan".into(),
                    vec!["head_of_school".into(), "group_director".into()],
                );
            },
            Ok(()),
        );
        check(
            |c| {
                c.approval_steps.insert("fax".into(), vec![]);
            },
            Err("desk.approval_steps.fax"),
        );
        check(
            |c| {
                c.approval_steps.insert("loan".into(), vec![" ".into()]);
            },
            Err("desk.approval_steps.loan"),
        );
        check(
            |c| {
                c.approval_steps
                    .insert("data_service".into(), vec!["@planning.director".into()]);
            },
            Ok(()),
        );
        for step in ["@", "@Somchai", "@som chai"] {
            check(
                |c| {
                    c.approval_steps
                        .insert("data_service".into(), vec![step.into()]);
                },
                Err("desk.approval_steps.data_service"),
            );
        }
        let target = |response, resolution| SlaTarget {
            response_minutes: response,
            resolution_minutes: resolution,
        };
        let sla = |kind: &str, priority: &str, t: SlaTarget| {
            let kind = kind.to_owned();
            let priority = priority.to_owned();
            move |c: &mut DeskConfig| {
                c.sla_targets.entry(kind).or_default().insert(priority, t);
            }
        };
        check(sla("repair", "urgent", target(Some(15), Some(120))), Ok(()));
        check(sla("repair", "urgent", target(None, Some(60))), Ok(()));
        check(
            sla("fax", "urgent", target(Some(15), None)),
            Err("desk.sla_targets.fax"),
        );
        check(
            sla("repair", "soon", target(Some(15), None)),
            Err("desk.sla_targets.repair.soon"),
        );
        check(
            sla("repair", "low", target(Some(0), None)),
            Err("desk.sla_targets.repair.low.response_minutes"),
        );
        check(
            sla("loan", "high", target(Some(60), Some(30))),
            Err("desk.sla_targets.loan.high.resolution_minutes"),
        );
        check(
            |c| c.attachment_max_bytes = 10,
            Err("desk.attachment_max_bytes"),
        );
        check(
            |c| c.attachment_types = vec!["jpeg".into(), "exe".into()],
            Err("desk.attachment_types"),
        );
    }
}
