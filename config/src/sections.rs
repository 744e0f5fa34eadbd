//! One struct per table of `khetnet.toml`. Defaults here are the embedded one-machine setup.

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
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            report_interval_secs: 60,
            config_refresh_secs: 300,
            silent_after_intervals: 3,
            raw_retention_days: 7,
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
