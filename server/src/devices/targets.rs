//! The devices of each school that its agent probes (the "targets"), with their current
//! status as the latest samples left it.
//!
//! Besides devices, two kinds of target concern the agent itself: `host` (the agent's own
//! machine: CPU, memory, disks) and `discovery` (an ARP sweep of one IPv4 network of the school,
//! at most a /22, for the inventory). No school has a discovery target unless one is created.
//!
//! Invariant: SNMPv3 passphrases are write-only. They are stored so that the school's own
//! agent can be given them (`for_agent`, over its authenticated TLS connection); they are never
//! serialized into an API answer or the audit trail.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use crate::audit::{self, Actor, Change};
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{Error, Result, ResultExt};

/// The probes an agent knows.
pub const PROBES: &[&str] = &["icmp", "tcp", "http", "snmp", "host", "discovery"];

/// SNMPv3 authentication protocols, as the agent names them (`sha` is SHA-1).
pub const SNMP_AUTH_PROTOCOLS: &[&str] = &["md5", "sha", "sha224", "sha256", "sha384", "sha512"];

/// SNMPv3 privacy protocols (`aes` is AES-128).
pub const SNMP_PRIV_PROTOCOLS: &[&str] = &["des", "aes", "aes192", "aes256"];

/// The widest network a discovery target may name: a /22 (1024 addresses).
pub const DISCOVERY_MAX_PREFIX: u8 = 22;

/// A discovery sweep runs at most this often.
pub const DISCOVERY_MIN_INTERVAL_SECS: i64 = 300;

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: i64,
    pub school_id: i64,
    pub name: String,
    pub probe: String,
    pub address: String,
    pub port: Option<i64>,
    pub snmp_community: Option<String>,
    /// `2c` or `3`.
    pub snmp_version: String,
    pub snmp_user: Option<String>,
    pub snmp_auth_protocol: Option<String>,
    /// Write-only: never serialized.
    #[serde(skip_serializing)]
    pub snmp_auth_passphrase: Option<String>,
    pub snmp_priv_protocol: Option<String>,
    /// Write-only: never serialized.
    #[serde(skip_serializing)]
    pub snmp_priv_passphrase: Option<String>,
    pub interval_secs: i64,
    pub down_after_minutes: i64,
    pub degraded_loss_percent: i64,
    pub enabled: bool,
    /// `unknown` (no sample yet), `up`, `degraded` or `down`.
    pub status: String,
    pub status_since: Option<String>,
    pub last_sample_at: Option<String>,
    pub last_latency_ms: Option<f64>,
    pub last_loss_percent: Option<f64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// What a client sends to create a device. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub school_id: i64,
    pub name: String,
    /// `icmp`, `tcp`, `http`, `snmp`, `host` or `discovery`.
    pub probe: String,
    /// Host name or IP address; for `http` the URL; for `host` `localhost`; for `discovery`
    /// the IPv4 network (`192.168.1.0/24`, at most a /22).
    pub address: String,
    pub port: Option<i64>,
    /// The v2c community (`snmp_version` `2c`).
    pub snmp_community: Option<String>,
    /// `2c` (default) or `3` (USM authPriv: user, auth and privacy protocols and passphrases).
    #[serde(default = "default_snmp_version")]
    pub snmp_version: String,
    pub snmp_user: Option<String>,
    pub snmp_auth_protocol: Option<String>,
    pub snmp_auth_passphrase: Option<String>,
    pub snmp_priv_protocol: Option<String>,
    pub snmp_priv_passphrase: Option<String>,
    #[serde(default = "default_interval")]
    pub interval_secs: i64,
    #[serde(default = "default_down_after")]
    pub down_after_minutes: i64,
    #[serde(default = "default_degraded_loss")]
    pub degraded_loss_percent: i64,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_snmp_version() -> String {
    "2c".into()
}
fn default_interval() -> i64 {
    60
}
fn default_down_after() -> i64 {
    5
}
fn default_degraded_loss() -> i64 {
    20
}
fn default_enabled() -> bool {
    true
}

/// A change to a device: only the fields given change. The school cannot change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub probe: Option<String>,
    pub address: Option<String>,
    pub port: Option<i64>,
    pub snmp_community: Option<String>,
    pub snmp_version: Option<String>,
    pub snmp_user: Option<String>,
    pub snmp_auth_protocol: Option<String>,
    /// Given: replaces the stored passphrase; absent: keeps it.
    pub snmp_auth_passphrase: Option<String>,
    pub snmp_priv_protocol: Option<String>,
    pub snmp_priv_passphrase: Option<String>,
    pub interval_secs: Option<i64>,
    pub down_after_minutes: Option<i64>,
    pub degraded_loss_percent: Option<i64>,
    pub enabled: Option<bool>,
}

impl NewDevice {
    fn validate(&mut self) -> Result<()> {
        self.name = self.name.trim().to_owned();
        self.address = self.address.trim().to_owned();
        if self.name.is_empty() || self.name.chars().count() > 100 {
            return Err(Error::invalid("name", "must be 1 to 100 characters"));
        }
        if !PROBES.contains(&self.probe.as_str()) {
            return Err(Error::invalid(
                "probe",
                format!("allowed: {}", PROBES.join(", ")),
            ));
        }
        if self.address.is_empty()
            || self.address.len() > 500
            || self.address.chars().any(char::is_whitespace)
        {
            return Err(Error::invalid(
                "address",
                "must be a host name, an IP address or (for http) a URL, without spaces",
            ));
        }
        if self.probe == "http"
            && !(self.address.starts_with("http://") || self.address.starts_with("https://"))
        {
            return Err(Error::invalid(
                "address",
                "an http probe needs a URL starting with http:// or https://",
            ));
        }
        if let Some(port) = self.port {
            if !(1..=65535).contains(&port) {
                return Err(Error::invalid("port", "must be 1 to 65535"));
            }
        } else if self.probe == "tcp" {
            return Err(Error::invalid("port", "a tcp probe needs a port"));
        }
        if self.probe == "snmp" {
            self.validate_snmp()?;
        } else {
            self.clear_snmp_v3();
        }
        if self.probe == "host" && self.address != "localhost" {
            return Err(Error::invalid(
                "address",
                "a host probe measures the agent's own machine: the address is localhost",
            ));
        }
        if self.probe == "discovery" {
            if let Err(why) = check_network(&self.address) {
                return Err(Error::invalid("address", why));
            }
            if self.interval_secs < DISCOVERY_MIN_INTERVAL_SECS {
                return Err(Error::invalid(
                    "interval_secs",
                    format!(
                        "a discovery sweep runs at most every {DISCOVERY_MIN_INTERVAL_SECS} s: give interval_secs of {DISCOVERY_MIN_INTERVAL_SECS} or more"
                    ),
                ));
            }
        }
        if !(1..=86_400).contains(&self.interval_secs) {
            return Err(Error::invalid("interval_secs", "must be 1 to 86400"));
        }
        if !(0..=10_080).contains(&self.down_after_minutes) {
            return Err(Error::invalid("down_after_minutes", "must be 0 to 10080"));
        }
        if !(1..=100).contains(&self.degraded_loss_percent) {
            return Err(Error::invalid("degraded_loss_percent", "must be 1 to 100"));
        }
        Ok(())
    }
}

impl NewDevice {
    /// Keeps no v3 credentials where they are not used (another probe, or v2c).
    fn clear_snmp_v3(&mut self) {
        self.snmp_user = None;
        self.snmp_auth_protocol = None;
        self.snmp_auth_passphrase = None;
        self.snmp_priv_protocol = None;
        self.snmp_priv_passphrase = None;
    }

    fn validate_snmp(&mut self) -> Result<()> {
        match self.snmp_version.as_str() {
            "2c" => {
                if self.snmp_community.as_deref().unwrap_or("").is_empty() {
                    return Err(Error::invalid(
                        "snmp_community",
                        "an snmp probe needs the SNMP v2c community (or snmp_version 3 with its user)",
                    ));
                }
                self.clear_snmp_v3();
            }
            "3" => {
                let user = self.snmp_user.as_deref().unwrap_or("");
                if user.is_empty() || user.chars().count() > 32 {
                    return Err(Error::invalid(
                        "snmp_user",
                        "SNMPv3 needs the USM user name, 1 to 32 characters",
                    ));
                }
                let protocol =
                    |field: &'static str, value: &Option<String>, allowed: &[&str]| match value
                        .as_deref()
                    {
                        Some(p) if allowed.contains(&p) => Ok(()),
                        _ => Err(Error::invalid(
                            field,
                            format!("allowed: {}", allowed.join(", ")),
                        )),
                    };
                protocol(
                    "snmp_auth_protocol",
                    &self.snmp_auth_protocol,
                    SNMP_AUTH_PROTOCOLS,
                )?;
                protocol(
                    "snmp_priv_protocol",
                    &self.snmp_priv_protocol,
                    SNMP_PRIV_PROTOCOLS,
                )?;
                for (field, value) in [
                    ("snmp_auth_passphrase", &self.snmp_auth_passphrase),
                    ("snmp_priv_passphrase", &self.snmp_priv_passphrase),
                ] {
                    let n = value.as_deref().map_or(0, |v| v.chars().count());
                    if !(8..=128).contains(&n) {
                        return Err(Error::invalid(
                            field,
                            "SNMPv3 authPriv needs a passphrase of 8 to 128 characters",
                        ));
                    }
                }
            }
            _ => return Err(Error::invalid("snmp_version", "allowed: 2c, 3")),
        }
        Ok(())
    }
}

/// Whether `s` is an IPv4 network a discovery target may sweep: `a.b.c.d/n`, host bits
/// clear, n at least [`DISCOVERY_MAX_PREFIX`].
pub fn check_network(s: &str) -> std::result::Result<(), String> {
    let Some((ip, prefix)) = s.split_once('/') else {
        return Err("a discovery target's address is an IPv4 network like 192.168.1.0/24".into());
    };
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else {
        return Err(format!("{ip:?} is not an IPv4 address"));
    };
    let prefix = match prefix.parse::<u8>() {
        Ok(p) if p <= 32 => p,
        _ => return Err("the prefix length must be 0 to 32".into()),
    };
    if prefix < DISCOVERY_MAX_PREFIX {
        return Err(format!(
            "at most a /{DISCOVERY_MAX_PREFIX} (1024 addresses) is swept; add one target per part of a larger network"
        ));
    }
    let mask = u32::MAX << (32 - u32::from(prefix));
    if u32::from(ip) & !mask != 0 {
        return Err(format!(
            "host bits are set; the network is {}/{prefix}",
            std::net::Ipv4Addr::from(u32::from(ip) & mask)
        ));
    }
    Ok(())
}

const COLUMNS: &str = "id, school_id, name, probe, address, port, snmp_community, snmp_version, snmp_user, \
     snmp_auth_protocol, snmp_auth_passphrase, snmp_priv_protocol, snmp_priv_passphrase, interval_secs, down_after_minutes, \
     degraded_loss_percent, enabled, status, status_since, last_sample_at, last_latency_ms, last_loss_percent, \
     last_error, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Device> {
    let opt_time = |name: &str| -> Result<Option<String>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(rfc3339))
    };
    Ok(Device {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        name: row.try_get("name")?,
        probe: row.try_get("probe")?,
        address: row.try_get("address")?,
        port: row.try_get("port")?,
        snmp_community: row.try_get("snmp_community")?,
        snmp_version: row.try_get("snmp_version")?,
        snmp_user: row.try_get("snmp_user")?,
        snmp_auth_protocol: row.try_get("snmp_auth_protocol")?,
        snmp_auth_passphrase: row.try_get("snmp_auth_passphrase")?,
        snmp_priv_protocol: row.try_get("snmp_priv_protocol")?,
        snmp_priv_passphrase: row.try_get("snmp_priv_passphrase")?,
        interval_secs: row.try_get("interval_secs")?,
        down_after_minutes: row.try_get("down_after_minutes")?,
        degraded_loss_percent: row.try_get("degraded_loss_percent")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        status: row.try_get("status")?,
        status_since: opt_time("status_since")?,
        last_sample_at: opt_time("last_sample_at")?,
        last_latency_ms: row.try_get("last_latency_ms")?,
        last_loss_percent: row.try_get("last_loss_percent")?,
        last_error: row.try_get("last_error")?,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

fn audited(device: &Device) -> serde_json::Value {
    let mut value = serde_json::to_value(device).expect("device serializes");
    if value["snmp_community"].is_string() {
        value["snmp_community"] = "***".into();
    }
    value
}

/// Creates a device of a school and records it in the audit trail.
///
/// # Errors
/// `Invalid` naming the field (also `school_id` for an unknown school); `Conflict` when the
/// school already has a device of that name.
pub async fn create(db: &Db, actor: &Actor, new: NewDevice) -> Result<Device> {
    let mut tx = db.begin_write().await?;
    let device = create_in(&mut tx, actor, new).await?;
    tx.commit().await?;
    Ok(device)
}

/// [`create`] inside the caller's transaction (accepting a discovered device).
///
/// # Errors
/// As [`create`].
pub(crate) async fn create_in(
    tx: &mut sqlx::AnyConnection,
    actor: &Actor,
    mut new: NewDevice,
) -> Result<Device> {
    new.validate()?;
    let now = now_ms();
    if super::changing(&mut *tx, &[new.school_id]).await? == 0 {
        return Err(Error::invalid("school_id", "no such school"));
    }
    let id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO devices (school_id, name, probe, address, port, snmp_community, interval_secs, down_after_minutes, \
         degraded_loss_percent, enabled, created_at, updated_at, snmp_version, snmp_user, snmp_auth_protocol, \
         snmp_auth_passphrase, snmp_priv_protocol, snmp_priv_passphrase, reports_from) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16, $17, \
         (SELECT COALESCE(MAX(id), 0) + 1 FROM device_reports)) RETURNING id",
    )
    .bind(new.school_id)
    .bind(&new.name)
    .bind(&new.probe)
    .bind(&new.address)
    .bind(new.port)
    .bind(&new.snmp_community)
    .bind(new.interval_secs)
    .bind(new.down_after_minutes)
    .bind(new.degraded_loss_percent)
    .bind(i64::from(new.enabled))
    .bind(now)
    .bind(&new.snmp_version)
    .bind(&new.snmp_user)
    .bind(&new.snmp_auth_protocol)
    .bind(&new.snmp_auth_passphrase)
    .bind(&new.snmp_priv_protocol)
    .bind(&new.snmp_priv_passphrase)
    .fetch_one(&mut *tx)
    .await
    .on_unique_violation(|| format!("the school already has a device named {:?}", new.name))?;
    let device = get_in(&mut *tx, id).await?;
    audit::record(
        &mut *tx,
        actor,
        Change {
            action: "device.create",
            entity: "device",
            entity_id: Some(id),
            before: None,
            after: Some(audited(&device)),
        },
    )
    .await?;
    Ok(device)
}

pub(crate) async fn get_in(conn: &mut sqlx::AnyConnection, id: i64) -> Result<Device> {
    let sql = format!("SELECT {COLUMNS} FROM devices WHERE id = $1");
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

pub async fn get(db: &Db, id: i64) -> Result<Device> {
    let mut conn = db.pool.acquire().await?;
    get_in(&mut conn, id).await
}

/// Lists devices, worst status first then by name, optionally of one school.
pub async fn list(db: &Db, school_id: Option<i64>) -> Result<Vec<Device>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM devices WHERE ($1 IS NULL OR school_id = $1) \
         ORDER BY CASE status WHEN 'down' THEN 0 WHEN 'degraded' THEN 1 WHEN 'unknown' THEN 2 ELSE 3 END, school_id, name"
    );
    let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(school_id)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Changes a device; a change of what is probed resets its status to `unknown`.
pub async fn update(db: &Db, actor: &Actor, id: i64, patch: DevicePatch) -> Result<Device> {
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    super::changing(&mut tx, &[before.school_id]).await?;
    let mut new = NewDevice {
        school_id: before.school_id,
        name: patch.name.unwrap_or_else(|| before.name.clone()),
        probe: patch.probe.unwrap_or_else(|| before.probe.clone()),
        address: patch.address.unwrap_or_else(|| before.address.clone()),
        port: patch.port.or(before.port),
        snmp_community: patch
            .snmp_community
            .or_else(|| before.snmp_community.clone()),
        snmp_version: patch
            .snmp_version
            .unwrap_or_else(|| before.snmp_version.clone()),
        snmp_user: patch.snmp_user.or_else(|| before.snmp_user.clone()),
        snmp_auth_protocol: patch
            .snmp_auth_protocol
            .or_else(|| before.snmp_auth_protocol.clone()),
        snmp_auth_passphrase: patch
            .snmp_auth_passphrase
            .or_else(|| before.snmp_auth_passphrase.clone()),
        snmp_priv_protocol: patch
            .snmp_priv_protocol
            .or_else(|| before.snmp_priv_protocol.clone()),
        snmp_priv_passphrase: patch
            .snmp_priv_passphrase
            .or_else(|| before.snmp_priv_passphrase.clone()),
        interval_secs: patch.interval_secs.unwrap_or(before.interval_secs),
        down_after_minutes: patch
            .down_after_minutes
            .unwrap_or(before.down_after_minutes),
        degraded_loss_percent: patch
            .degraded_loss_percent
            .unwrap_or(before.degraded_loss_percent),
        enabled: patch.enabled.unwrap_or(before.enabled),
    };
    new.validate()?;
    let target_changed =
        new.probe != before.probe || new.address != before.address || new.port != before.port;
    sqlx::query(
        "UPDATE devices SET name = $2, probe = $3, address = $4, port = $5, snmp_community = $6, interval_secs = $7, \
         down_after_minutes = $8, degraded_loss_percent = $9, enabled = $10, updated_at = $11, \
         status = CASE WHEN $12 = 1 THEN 'unknown' ELSE status END, \
         status_since = CASE WHEN $12 = 1 THEN NULL ELSE status_since END, \
         snmp_version = $13, snmp_user = $14, snmp_auth_protocol = $15, snmp_auth_passphrase = $16, \
         snmp_priv_protocol = $17, snmp_priv_passphrase = $18 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(&new.name)
    .bind(&new.probe)
    .bind(&new.address)
    .bind(new.port)
    .bind(&new.snmp_community)
    .bind(new.interval_secs)
    .bind(new.down_after_minutes)
    .bind(new.degraded_loss_percent)
    .bind(i64::from(new.enabled))
    .bind(now_ms())
    .bind(i64::from(target_changed))
    .bind(&new.snmp_version)
    .bind(&new.snmp_user)
    .bind(&new.snmp_auth_protocol)
    .bind(&new.snmp_auth_passphrase)
    .bind(&new.snmp_priv_protocol)
    .bind(&new.snmp_priv_passphrase)
    .execute(&mut *tx)
    .await
    .on_unique_violation(|| format!("the school already has a device named {:?}", new.name))?;
    let after = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "device.update",
            entity: "device",
            entity_id: Some(id),
            before: Some(audited(&before)),
            after: Some(audited(&after)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Removes a device with its incidents and aggregates. Its raw samples stay in their stored
/// reports, unread (see [`super::raw`]), until the rollup deletes those.
pub async fn delete(db: &Db, actor: &Actor, id: i64) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    super::changing(&mut tx, &[before.school_id]).await?;
    sqlx::query("DELETE FROM device_incidents WHERE device_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM devices WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "device.delete",
            entity: "device",
            entity_id: Some(id),
            before: Some(audited(&before)),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One school's health at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct SchoolHealth {
    pub school_id: i64,
    pub code: String,
    pub name_th: String,
    pub name_en: String,
    /// The worst status among its devices: `down`, `degraded`, `unknown`, `up`, or `none`
    /// when it has no device.
    pub status: &'static str,
    pub devices: i64,
    pub up: i64,
    pub degraded: i64,
    pub down: i64,
    pub unknown: i64,
    pub open_incidents: i64,
}

/// Every school's health, worst first (most devices down, then degraded), then by code.
pub async fn school_health(db: &Db, only: Option<i64>) -> Result<Vec<SchoolHealth>> {
    let rows = sqlx::query::<Any>(
        "SELECT s.id, s.code, s.name_th, s.name_en, \
           (SELECT COUNT(*) FROM devices d WHERE d.school_id = s.id AND d.enabled = 1) AS devices, \
           (SELECT COUNT(*) FROM devices d WHERE d.school_id = s.id AND d.enabled = 1 AND d.status = 'up') AS up, \
           (SELECT COUNT(*) FROM devices d WHERE d.school_id = s.id AND d.enabled = 1 AND d.status = 'degraded') AS degraded, \
           (SELECT COUNT(*) FROM devices d WHERE d.school_id = s.id AND d.enabled = 1 AND d.status = 'down') AS down, \
           (SELECT COUNT(*) FROM devices d WHERE d.school_id = s.id AND d.enabled = 1 AND d.status = 'unknown') AS unknown, \
           (SELECT COUNT(*) FROM device_incidents i WHERE i.school_id = s.id AND i.resolved_at IS NULL) AS open_incidents \
         FROM schools s WHERE ($1 IS NULL OR s.id = $1)",
    )
    .bind(only)
    .fetch_all(&db.pool)
    .await?;
    let mut schools = rows
        .iter()
        .map(|r| {
            let (devices, up, degraded, down, unknown): (i64, i64, i64, i64, i64) = (
                r.try_get("devices")?,
                r.try_get("up")?,
                r.try_get("degraded")?,
                r.try_get("down")?,
                r.try_get("unknown")?,
            );
            let status = if down > 0 {
                "down"
            } else if degraded > 0 {
                "degraded"
            } else if unknown > 0 {
                "unknown"
            } else if devices > 0 {
                "up"
            } else {
                "none"
            };
            Ok(SchoolHealth {
                school_id: r.try_get("id")?,
                code: r.try_get("code")?,
                name_th: r.try_get("name_th")?,
                name_en: r.try_get("name_en")?,
                status,
                devices,
                up,
                degraded,
                down,
                unknown,
                open_incidents: r.try_get("open_incidents")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    schools.sort_by(|a, b| {
        (b.down, b.degraded, b.open_incidents, b.unknown)
            .cmp(&(a.down, a.degraded, a.open_incidents, a.unknown))
            .then_with(|| a.code.cmp(&b.code))
    });
    Ok(schools)
}

/// A target as an agent receives it in its configuration.
#[derive(Debug, Clone, Serialize)]
pub struct AgentTarget {
    pub id: i64,
    pub name: String,
    pub probe: String,
    pub address: String,
    pub port: Option<i64>,
    pub snmp_community: Option<String>,
    /// Present for an SNMP v3 device: the agent then speaks v3 authPriv.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snmp_v3: Option<AgentSnmpV3>,
    pub interval_secs: i64,
}

/// SNMPv3 USM credentials, given only to the agent of the device's school.
#[derive(Clone, Serialize)]
pub struct AgentSnmpV3 {
    pub user: String,
    pub auth_protocol: String,
    pub auth_passphrase: String,
    pub priv_protocol: String,
    pub priv_passphrase: String,
}

impl std::fmt::Debug for AgentSnmpV3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSnmpV3")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The enabled devices of one school, for its agent (with their SNMPv3 passphrases).
pub async fn for_agent(db: &Db, school_id: i64) -> Result<Vec<AgentTarget>> {
    let rows = sqlx::query::<Any>(
        "SELECT id, name, probe, address, port, snmp_community, snmp_version, snmp_user, snmp_auth_protocol, \
         snmp_auth_passphrase, snmp_priv_protocol, snmp_priv_passphrase, interval_secs FROM devices \
         WHERE school_id = $1 AND enabled = 1 ORDER BY id",
    )
    .bind(school_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AgentTarget {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                probe: r.try_get("probe")?,
                address: r.try_get("address")?,
                port: r.try_get("port")?,
                snmp_community: r.try_get("snmp_community")?,
                snmp_v3: match (
                    r.try_get::<String, _>("snmp_version")?.as_str(),
                    r.try_get::<Option<String>, _>("snmp_user")?,
                    r.try_get::<Option<String>, _>("snmp_auth_protocol")?,
                    r.try_get::<Option<String>, _>("snmp_auth_passphrase")?,
                    r.try_get::<Option<String>, _>("snmp_priv_protocol")?,
                    r.try_get::<Option<String>, _>("snmp_priv_passphrase")?,
                ) {
                    (
                        "3",
                        Some(user),
                        Some(auth_protocol),
                        Some(auth_passphrase),
                        Some(priv_protocol),
                        Some(priv_passphrase),
                    ) => Some(AgentSnmpV3 {
                        user,
                        auth_protocol,
                        auth_passphrase,
                        priv_protocol,
                        priv_passphrase,
                    }),
                    _ => None,
                },
                interval_secs: r.try_get("interval_secs")?,
            })
        })
        .collect()
}
