//! Device health: school agents and their enrollment ([`agents`]), the devices each school's
//! agent probes ([`targets`]), the reports agents send ([`samples`]) and how their samples are
//! kept ([`raw`], [`rollup`]), and the incidents that follow from them ([`alerts`]).
//!
//! Invariants:
//! - The database holds only SHA-256 hashes of enrollment tokens and agent credentials; the
//!   secrets themselves are shown once, to whoever asked for them.
//! - An enrollment token is used at most once: it is marked used in the same transaction that
//!   creates the agent, by an update that only succeeds on an unused token.
//! - A report batch is stored whole or not at all, and at most once per (agent, batch id): the
//!   batch row and the row of its samples are written in one transaction, and a replayed batch
//!   id is recognised and acknowledged without storing anything.
//! - At most one incident is open per device and rule, and per agent (partial unique indexes);
//!   the repair request of an incident is filed in the transaction that opens it, so an
//!   incident has exactly one request however many reports arrive at once.
//! - A raw sample is deleted only after the 5-minute bucket it falls in has been rolled up
//!   ([`rollup`]), in the same transaction.
//! - Every transaction that changes a school's devices or open incidents bumps the school's
//!   `devices_version` ([`changing`]) before it touches them; the report writers remember
//!   those rows between groups only while it stands still ([`samples`]).

pub mod agents;
pub mod alerts;
pub mod discovered;
pub mod graphs;
pub mod raw;
pub mod rollup;
pub mod samples;
pub mod targets;

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sqlx::{Any, AnyConnection, Row};

use crate::db::{Backend, numbered, runs};
use crate::error::Result;

/// How the server runs device health: from `[devices]` in `khetnet.toml`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often an agent sends what it measured, in seconds.
    pub report_interval_secs: u64,
    /// How often an agent asks for its configuration again, in seconds.
    pub config_refresh_secs: u64,
    /// An agent that sends nothing for this many report intervals is silent: an incident.
    pub silent_after_intervals: u32,
    /// Days raw samples are kept.
    pub raw_retention_days: u32,
    /// Days 5-minute aggregates are kept.
    pub aggregate_retention_days: u32,
    /// The alert rules' thresholds.
    pub rules: alerts::Rules,
}

impl From<&khetnet_config::DevicesConfig> for Settings {
    fn from(c: &khetnet_config::DevicesConfig) -> Self {
        Settings {
            report_interval_secs: c.report_interval_secs,
            config_refresh_secs: c.config_refresh_secs,
            silent_after_intervals: c.silent_after_intervals,
            raw_retention_days: c.raw_retention_days,
            aggregate_retention_days: c.aggregate_retention_days,
            rules: alerts::Rules {
                loss_percent: f64::from(c.loss_alert_percent),
                toner_percent: f64::from(c.toner_alert_percent),
                disk_percent: f64::from(c.disk_alert_percent),
                flap_window_ms: i64::from(c.flap_window_minutes) * 60_000,
            },
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from(&khetnet_config::DevicesConfig::default())
    }
}

impl Settings {
    /// Milliseconds of silence after which an agent counts as silent.
    pub fn silent_after_ms(&self) -> i64 {
        (self.report_interval_secs as i64) * 1000 * i64::from(self.silent_after_intervals)
    }
}

/// Marks the devices or open incidents of `schools` as changed by the caller's transaction: bumps
/// each school's `devices_version`, so that no report writer goes on with what it remembers of
/// them ([`samples`]). Called before the transaction touches those rows, so that, as in the
/// writers, the school's row lock comes first. Returns how many of `schools` exist.
pub async fn changing(conn: &mut AnyConnection, schools: &[i64]) -> Result<u64> {
    let mut schools = schools.to_vec();
    schools.sort_unstable();
    schools.dedup();
    let mut found = 0;
    for chunk in runs(&schools, 64) {
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(numbered(&format!(
            "UPDATE schools SET devices_version = devices_version + 1 WHERE id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        ))));
        for school in chunk {
            query = query.bind(*school);
        }
        found += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(found)
}

/// The `devices_version` of each of `schools` that exists, locking their rows on PostgreSQL
/// until the caller's transaction ends (on SQLite the write transaction excludes every other):
/// while it is held nothing else changes their devices or open incidents.
pub async fn lock_versions(
    conn: &mut AnyConnection,
    backend: Backend,
    schools: &[i64],
) -> Result<HashMap<i64, i64>> {
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR NO KEY UPDATE",
    };
    let mut versions = HashMap::new();
    for chunk in runs(schools, 64) {
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(numbered(&format!(
            "SELECT id, devices_version FROM schools WHERE id IN ({}) ORDER BY id{lock}",
            vec!["?"; chunk.len()].join(", ")
        ))));
        for school in chunk {
            query = query.bind(*school);
        }
        for row in query.fetch_all(&mut *conn).await? {
            versions.insert(row.try_get("id")?, row.try_get("devices_version")?);
        }
    }
    Ok(versions)
}

/// A new random secret with a recognisable prefix (`khe_` enrollment, `kha_` agent).
fn new_secret(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// What the database keeps of a secret.
fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `s` is a UUID in its usual text form (8-4-4-4-12 hexadecimal digits).
pub fn is_uuid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        let check = |s: &str, expected: bool| assert_eq!(is_uuid(s), expected, "{s}");
        check("0b6f1c8e-3a52-4c1e-9d7a-2f0e8b1c4d5e", true);
        check("0B6F1C8E-3A52-4C1E-9D7A-2F0E8B1C4D5E", true);
        check("0b6f1c8e3a524c1e9d7a2f0e8b1c4d5e", false);
        check("0b6f1c8e-3a52-4c1e-9d7a-2f0e8b1c4d5", false);
        check("0b6f1c8e-3a52-4c1e-9d7a-2f0e8b1c4d5g", false);
        check("", false);
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret("kha_");
        let b = new_secret("kha_");
        assert_ne!(a, b);
        assert!(a.starts_with("kha_") && a.len() == 68);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }
}
