//! The one `khetnet.toml`: typed sections for every part of khetnet.
//!
//! [`Config::load`] reads an optional file, applies `KHETNET_<SECTION>_<KEY>` environment
//! overrides, and refuses unknown keys and bad values with the key, the value and what is
//! allowed. Every key is documented in `config/khetnet.example.toml`; a test keeps the two in
//! step. With no file and no environment, the defaults run the whole district on one machine
//! with its data in `./khetnet-data`.

mod sections;

use std::path::{Path, PathBuf};

pub use sections::{
    ATTACHMENT_TYPES, AgentConfig, AuthConfig, CollectorConfig, DESK_KINDS, DESK_PRIORITIES,
    DatabaseConfig, DeskConfig, DevicesConfig, LogFormat, LogTarget, LoggingConfig,
    MIN_RETENTION_DAYS, RetentionConfig, ServerConfig, SlaTarget,
};
use serde::{Deserialize, Serialize};

/// Environment variables that start with `KHETNET_` but are not configuration keys.
pub const NON_CONFIG_ENV: &[&str] = &[
    "KHETNET_CONFIG",
    "KHETNET_ADMIN_PASSWORD",
    "KHETNET_TEST_DATABASE_URL",
];

/// Why a configuration was refused. Every variant names what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{origin}: key `{key}`{value}: {message}")]
    Key {
        origin: String,
        key: String,
        value: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The whole configuration. Each section is one table of `khetnet.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub logging: LoggingConfig,
    pub collector: CollectorConfig,
    pub retention: RetentionConfig,
    pub devices: DevicesConfig,
    pub desk: DeskConfig,
    pub agent: AgentConfig,
}

/// The table names, in the order the example file documents them.
const SECTIONS: &[&str] = &[
    "server",
    "database",
    "auth",
    "logging",
    "collector",
    "retention",
    "devices",
    "desk",
    "agent",
];

impl Config {
    /// Loads `file` (when given) and the `KHETNET_*` variables of `env`, then validates.
    ///
    /// `env` is passed in rather than read here so that tests and `config check` can say
    /// exactly which environment applies.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, an unknown key or section, a value of the wrong
    /// type or out of range: each names the key (or variable), the value and what is allowed.
    pub fn load<I>(file: Option<&Path>, env: I) -> Result<Config>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let (mut table, origin) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| Error::Syntax {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?;
                (table, path.display().to_string())
            }
            None => (toml::Table::new(), "defaults".to_owned()),
        };
        let env_keys = apply_env(&mut table, env)?;
        let config = deserialize(&table, &origin, &env_keys)?;
        config.validate(&origin, &env_keys)?;
        Ok(config)
    }

    /// Where the data lives: the database (by default), the retention store, TLS material.
    pub fn data_dir(&self) -> &Path {
        &self.server.data_dir
    }

    /// The database URL, defaulting to an SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir().join("khetnet.db").display()),
        }
    }

    /// The retention store's directory, defaulting to `store/` in the data directory.
    pub fn store_dir(&self) -> PathBuf {
        match &self.retention.store {
            Some(dir) => dir.clone(),
            None => self.data_dir().join("store"),
        }
    }

    fn validate(&self, origin: &str, env_keys: &[(String, String)]) -> Result<()> {
        let refuse = |key: &str, value: String, message: String| {
            let origin = env_keys
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, var)| format!("environment {var}"))
                .unwrap_or_else(|| origin.to_owned());
            Err(Error::Key {
                origin,
                key: key.to_owned(),
                value: format!(" = {value}"),
                message,
            })
        };
        if let Some(url) = &self.database.url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return refuse(
                "database.url",
                format!("{url:?}"),
                "allowed: sqlite://PATH or postgres://USER@HOST:PORT/DB".into(),
            );
        }
        if self.database.max_connections == 0 {
            return refuse(
                "database.max_connections",
                "0".into(),
                "allowed: 1 or more".into(),
            );
        }
        if self.auth.max_failed_logins == 0 {
            return refuse(
                "auth.max_failed_logins",
                "0".into(),
                "allowed: 1 or more".into(),
            );
        }
        if self.auth.session_hours == 0 {
            return refuse(
                "auth.session_hours",
                "0".into(),
                "allowed: 1 or more".into(),
            );
        }
        let days = self.retention.retention_days;
        if days < MIN_RETENTION_DAYS {
            return refuse(
                "retention.retention_days",
                days.to_string(),
                format!(
                    "the Computer Crime Act B.E. 2550 (s.26) requires traffic data to be kept at \
                     least {MIN_RETENTION_DAYS} days; allowed: {MIN_RETENTION_DAYS} to 730"
                ),
            );
        }
        if days > 730 {
            return refuse(
                "retention.retention_days",
                days.to_string(),
                format!(
                    "allowed: {MIN_RETENTION_DAYS} to 730 (use a legal hold for a specific case)"
                ),
            );
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => {
                return refuse(
                    "server.tls_key",
                    "(missing)".into(),
                    "set it together with server.tls_cert".into(),
                );
            }
            (None, Some(_)) => {
                return refuse(
                    "server.tls_cert",
                    "(missing)".into(),
                    "set it together with server.tls_key".into(),
                );
            }
            _ => {}
        }
        let positive: [(&str, u64); 6] = [
            (
                "devices.report_interval_secs",
                self.devices.report_interval_secs,
            ),
            (
                "devices.config_refresh_secs",
                self.devices.config_refresh_secs,
            ),
            (
                "devices.silent_after_intervals",
                self.devices.silent_after_intervals.into(),
            ),
            (
                "devices.raw_retention_days",
                self.devices.raw_retention_days.into(),
            ),
            ("agent.max_concurrency", self.agent.max_concurrency as u64),
            ("agent.probe_timeout_secs", self.agent.probe_timeout_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return refuse(key, "0".into(), "allowed: 1 or more".into());
            }
        }
        if let Err((key, value, message)) = self.devices.check() {
            return refuse(&key, value, message);
        }
        if let Err((key, value, message)) = self.desk.check() {
            return refuse(&key, value, message);
        }
        if self.agent.spool_max_batches < 10 {
            return refuse(
                "agent.spool_max_batches",
                self.agent.spool_max_batches.to_string(),
                "allowed: 10 or more".into(),
            );
        }
        if self.server.tls_cert.is_some() && self.server.tls_self_signed {
            return refuse(
                "server.tls_self_signed",
                "true".into(),
                "choose one: a configured certificate (tls_cert/tls_key) or a self-signed one"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Applies `KHETNET_<SECTION>_<KEY>` variables to the table. Returns `(key, variable)` pairs so
/// errors can say a bad value came from the environment.
fn apply_env<I>(table: &mut toml::Table, env: I) -> Result<Vec<(String, String)>>
where
    I: IntoIterator<Item = (String, String)>,
{
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("KHETNET_") && !NON_CONFIG_ENV.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let rest = &var["KHETNET_".len()..];
        let Some(section) = SECTIONS.iter().find(|s| {
            rest.len() > s.len() + 1 && rest.to_ascii_lowercase().starts_with(&format!("{s}_"))
        }) else {
            return Err(Error::Env {
                var,
                message: format!(
                    "not a configuration key; expected KHETNET_<SECTION>_<KEY> with SECTION one of {}, \
                     or one of {}",
                    SECTIONS.join(", ").to_uppercase(),
                    NON_CONFIG_ENV.join(", ")
                ),
            });
        };
        let key = rest[section.len() + 1..].to_ascii_lowercase();
        let default = defaults.get(*section).and_then(|t| t.get(&key));
        let value = env_value(&raw, default);
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(Error::Env {
                var,
                message: format!("`{section}` in the file is not a table"),
            });
        };
        section_table.insert(key.clone(), value);
        applied.push((format!("{section}.{key}"), var));
    }
    Ok(applied)
}

/// Reads an environment value as the type the key has by default: strings stay strings (so a
/// password of digits is not a number), numbers and booleans are parsed, anything else is read
/// as a TOML value when it is one.
fn env_value(raw: &str, default: Option<&toml::Value>) -> toml::Value {
    let parsed = || {
        format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match default {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        Some(toml::Value::Array(_)) if !raw.trim_start().starts_with('[') => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        _ => parsed().unwrap_or_else(|| toml::Value::String(raw.to_owned())),
    }
}

fn deserialize(table: &toml::Table, origin: &str, env_keys: &[(String, String)]) -> Result<Config> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize::<_, Config>(value).map_err(|err| {
        let key = err.path().to_string();
        let origin = env_keys
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, var)| format!("environment {var}"))
            .unwrap_or_else(|| origin.to_owned());
        let value = lookup(table, &key)
            .map(|v| format!(" = {v}"))
            .unwrap_or_default();
        let inner = err.inner().to_string();
        let mut message = inner.lines().next().unwrap_or_default().to_owned();
        for number in ["u16", "u32", "u64", "usize"] {
            message = message.replace(
                &format!("expected {number}"),
                "expected a whole number (integer)",
            );
        }
        if message.starts_with("unknown field") && !key.contains('.') {
            message = format!("unknown section; allowed sections: {}", SECTIONS.join(", "));
        }
        Error::Key {
            origin,
            key,
            value,
            message,
        }
    })
}

fn lookup<'a>(table: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let mut parts = dotted.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("khetnet.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    /// Loads and expects an error whose message contains every fragment.
    fn refused(text: &str, env: &[(&str, &str)], fragments: &[&str]) {
        let err = load_str(text, env)
            .expect_err("should be refused")
            .to_string();
        for f in fragments {
            assert!(err.contains(f), "error {err:?} lacks {f:?}");
        }
    }

    #[test]
    fn no_file_gives_embedded_defaults() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url(), "sqlite://./khetnet-data/khetnet.db");
        assert_eq!(c.store_dir(), PathBuf::from("./khetnet-data/store"));
        assert_eq!(c.auth.max_failed_logins, 5);
        assert_eq!(c.retention.retention_days, 90);
        assert!(c.collector.enabled);
    }

    #[test]
    fn refusals_name_key_value_and_what_is_allowed() {
        refused(
            "[server]\nlisten = \"nonsense\"\n",
            &[],
            &["server.listen", "\"nonsense\"", "socket address"],
        );
        refused(
            "[server]\nlisen = \"1.2.3.4:5\"\n",
            &[],
            &["server.lisen", "unknown field", "listen"],
        );
        refused("[srever]\n", &[], &["srever", "unknown section", "server"]);
        refused(
            "[auth]\nmax_failed_logins = \"five\"\n",
            &[],
            &["auth.max_failed_logins", "\"five\"", "integer"],
        );
        refused(
            "[retention]\nretention_days = 30\n",
            &[],
            &["retention.retention_days", "30", "Computer Crime Act", "90"],
        );
        refused(
            "[database]\nurl = \"mysql://x\"\n",
            &[],
            &["database.url", "mysql://x", "postgres://"],
        );
        refused(
            "[logging]\nformat = \"xml\"\n",
            &[],
            &["logging.format", "xml", "human", "json"],
        );
        refused(
            "[server]\ntls_cert = \"a.pem\"\n",
            &[],
            &["server.tls_key", "tls_cert"],
        );
        refused("[server\n", &[], &["not valid TOML"]);
    }

    #[test]
    fn environment_overrides_the_file_and_is_named_in_errors() {
        let c = load_str(
            "[server]\nlisten = \"127.0.0.1:1\"\n",
            &[
                ("KHETNET_SERVER_LISTEN", "127.0.0.1:9999"),
                ("KHETNET_AUTH_MAX_FAILED_LOGINS", "7"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(c.auth.max_failed_logins, 7);

        let c = load_str(
            "",
            &[("KHETNET_DATABASE_URL", "postgres://u@127.0.0.1:5432/test")],
        )
        .unwrap();
        assert_eq!(c.database_url(), "postgres://u@127.0.0.1:5432/test");

        refused(
            "",
            &[("KHETNET_AUTH_MAX_FAILED_LOGINS", "many")],
            &["KHETNET_AUTH_MAX_FAILED_LOGINS", "many"],
        );
        refused(
            "",
            &[("KHETNET_SERVER_LISTN", "x")],
            &["KHETNET_SERVER_LISTN", "server.listn", "unknown field"],
        );
        refused(
            "",
            &[("KHETNET_FOO_BAR", "x")],
            &["KHETNET_FOO_BAR", "SERVER"],
        );
        // Variables that are not configuration are left alone.
        load_str("", &[("KHETNET_ADMIN_PASSWORD", "x"), ("OTHER", "y")]).unwrap();
    }

    /// Every key the program knows is documented in the example file, and the example file is
    /// itself a valid configuration with the same values as the defaults.
    #[test]
    fn example_file_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("khetnet.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let example = Config::load(Some(&path), Vec::new()).expect("the example file is valid");
        assert_eq!(
            example,
            Config::default(),
            "the example file shows the defaults"
        );
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = "))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let documented: toml::Table =
            toml::from_str(&uncommented).expect("commented keys are valid TOML");
        for section in SECTIONS {
            assert!(
                documented.contains_key(*section),
                "section [{section}] is not in the example file"
            );
        }
        let mut known: Vec<String> = Vec::new();
        for (section, keys) in &defaults {
            for key in keys.as_table().unwrap().keys() {
                known.push(format!("{section}.{key}"));
            }
        }
        // Options that default to unset are not serialized; list them so they are checked too.
        known.extend(
            [
                "database.url",
                "server.tls_cert",
                "server.tls_key",
                "server.public_url",
                "retention.store",
                "desk.smtp_url",
            ]
            .map(String::from),
        );
        for key in known {
            assert!(
                lookup(&documented, &key).is_some(),
                "key {key} is not documented in {}",
                path.display()
            );
        }
    }
}
