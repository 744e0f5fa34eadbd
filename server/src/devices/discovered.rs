//! Devices an agent saw on its school's network that nobody has put in the inventory yet:
//! kept per school by MAC address (first and last seen), listed for the school's technicians,
//! who accept one (it becomes a monitored device, and an asset when they say so) or ignore it.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::agents::AgentIdentity;
use super::targets::{self, NewDevice};
use crate::audit::{self, Actor, Change};
use crate::db::{Db, now_ms, rfc3339};
use crate::desk::assets::{self, NewAsset};
use crate::error::{Error, Result};

/// The most discovered devices one report may carry.
pub const MAX_DISCOVERED: usize = 4096;

/// A device as an agent reports seeing it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    pub ip: String,
    pub mac: String,
    pub vendor: Option<String>,
    /// When the agent last saw it, RFC 3339.
    pub seen_at: String,
}

/// A sighting after checking: MAC in lower-case colon form.
#[derive(Debug, Clone)]
pub struct Checked {
    ip: String,
    mac: String,
    vendor: Option<String>,
    seen_at: i64,
}

/// A MAC address in its usual lower-case colon form, from colon, dash or bare hex text.
pub fn normal_mac(mac: &str) -> Option<String> {
    let hex: String = mac
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(
        (0..6)
            .map(|i| &hex[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Checks a report's `discovered` list.
///
/// # Errors
/// `Invalid` naming the first offending field (`discovered[2].mac`).
pub fn check(seen: &[Seen], now: i64) -> Result<Vec<Checked>> {
    if seen.len() > MAX_DISCOVERED {
        return Err(Error::invalid(
            "discovered",
            format!("at most {MAX_DISCOVERED} devices a report"),
        ));
    }
    seen.iter()
        .enumerate()
        .map(|(i, s)| {
            let field = |name: &str| format!("discovered[{i}].{name}");
            let ip: std::net::IpAddr =
                s.ip.trim()
                    .parse()
                    .map_err(|_| Error::invalid(&field("ip"), "not an IP address"))?;
            let mac = normal_mac(&s.mac).ok_or_else(|| {
                Error::invalid(&field("mac"), "not a MAC address (six hex octets)")
            })?;
            let vendor = s
                .vendor
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned);
            if vendor.as_ref().is_some_and(|v| v.chars().count() > 200) {
                return Err(Error::invalid(&field("vendor"), "at most 200 characters"));
            }
            let seen_at = s
                .seen_at
                .parse::<jiff::Timestamp>()
                .map_err(|e| {
                    Error::invalid(&field("seen_at"), format!("not an RFC 3339 time: {e}"))
                })?
                .as_millisecond();
            if seen_at > now + 300_000 {
                return Err(Error::invalid(
                    &field("seen_at"),
                    "lies more than 5 minutes in the future; check the agent's clock",
                ));
            }
            Ok(Checked {
                ip: ip.to_string(),
                mac,
                vendor,
                seen_at,
            })
        })
        .collect()
}

/// Records sightings for the agent's school, inside the report's transaction: a new MAC is
/// added, a known one gets its newest address, vendor and time.
pub async fn record_in(
    conn: &mut AnyConnection,
    agent: AgentIdentity,
    seen: &[Checked],
) -> Result<()> {
    for s in seen {
        sqlx::query(
            "INSERT INTO discovered_devices (school_id, mac, ip, vendor, first_seen_at, last_seen_at, agent_id) \
             VALUES ($1, $2, $3, $4, $5, $5, $6) \
             ON CONFLICT (school_id, mac) DO UPDATE SET ip = excluded.ip, \
             vendor = COALESCE(excluded.vendor, discovered_devices.vendor), \
             last_seen_at = excluded.last_seen_at, agent_id = excluded.agent_id \
             WHERE excluded.last_seen_at > discovered_devices.last_seen_at",
        )
        .bind(agent.school_id)
        .bind(&s.mac)
        .bind(&s.ip)
        .bind(&s.vendor)
        .bind(s.seen_at)
        .bind(agent.id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A discovered device as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Discovered {
    pub id: i64,
    pub school_id: i64,
    pub mac: String,
    pub ip: String,
    pub vendor: Option<String>,
    pub first_seen_at: String,
    pub last_seen_at: String,
    /// `new`, `accepted` or `ignored`.
    pub state: String,
    pub device_id: Option<i64>,
    pub asset_id: Option<i64>,
}

const COLUMNS: &str = "d.id, d.school_id, d.mac, d.ip, d.vendor, d.first_seen_at, d.last_seen_at, d.state, d.device_id, d.asset_id";

fn from_row(row: &AnyRow) -> Result<Discovered> {
    Ok(Discovered {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        mac: row.try_get("mac")?,
        ip: row.try_get("ip")?,
        vendor: row.try_get("vendor")?,
        first_seen_at: rfc3339(row.try_get("first_seen_at")?),
        last_seen_at: rfc3339(row.try_get("last_seen_at")?),
        state: row.try_get("state")?,
        device_id: row.try_get("device_id")?,
        asset_id: row.try_get("asset_id")?,
    })
}

/// Discovered devices still to decide on (state `new`) that are not in the inventory (no
/// monitored device of the school has their address), newest sighting first; with `all`, also
/// the accepted and ignored ones.
pub async fn list(db: &Db, school_id: Option<i64>, all: bool) -> Result<Vec<Discovered>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM discovered_devices d WHERE ($1 IS NULL OR d.school_id = $1) \
         AND ($2 = 1 OR (d.state = 'new' AND NOT EXISTS \
             (SELECT 1 FROM devices v WHERE v.school_id = d.school_id AND v.address = d.ip))) \
         ORDER BY d.last_seen_at DESC, d.id DESC LIMIT 1000"
    );
    let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(school_id)
        .bind(i64::from(all))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// One discovered device.
pub async fn get(db: &Db, id: i64) -> Result<Discovered> {
    let mut conn = db.pool.acquire().await?;
    get_in(&mut conn, id).await
}

async fn get_in(conn: &mut AnyConnection, id: i64) -> Result<Discovered> {
    let sql = format!("SELECT {COLUMNS} FROM discovered_devices d WHERE d.id = $1");
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

/// What a technician sends to accept a discovered device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    /// The monitored device's name.
    pub name: String,
    /// How to probe it: `icmp` unless said otherwise.
    #[serde(default = "default_probe")]
    pub probe: String,
    pub port: Option<i64>,
    pub snmp_community: Option<String>,
    /// Also registers it as an asset of the school (the school is the discovered device's).
    pub asset: Option<AcceptAsset>,
}

fn default_probe() -> String {
    "icmp".into()
}

/// The asset to register with an accepted device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptAsset {
    pub asset_number: String,
    pub category: String,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub room: String,
}

async fn undecided(conn: &mut AnyConnection, id: i64) -> Result<Discovered> {
    let found = get_in(conn, id).await?;
    if found.state != "new" {
        return Err(Error::Conflict(format!(
            "the discovered device is already {}",
            found.state
        )));
    }
    Ok(found)
}

/// Accepts a discovered device: it becomes a monitored device of its school (probed at its
/// address) and, when asked, an asset; each step is audited.
///
/// # Errors
/// `Conflict` when it was already accepted or ignored, or the name or asset number is taken;
/// `Invalid` naming the field.
pub async fn accept(db: &Db, actor: &Actor, id: i64, body: Accept) -> Result<Discovered> {
    // One transaction: the device, the asset and the decision exist together or not at all,
    // and of two technicians accepting at once only one creates a device.
    let mut tx = db.begin_write().await?;
    let before = undecided(&mut tx, id).await?;
    let found = &before;
    let device = targets::create_in(
        &mut tx,
        actor,
        NewDevice {
            school_id: found.school_id,
            name: body.name,
            probe: body.probe,
            address: found.ip.clone(),
            port: body.port,
            snmp_community: body.snmp_community,
            snmp_version: "2c".into(),
            snmp_user: None,
            snmp_auth_protocol: None,
            snmp_auth_passphrase: None,
            snmp_priv_protocol: None,
            snmp_priv_passphrase: None,
            interval_secs: 60,
            down_after_minutes: 5,
            degraded_loss_percent: 20,
            enabled: true,
        },
    )
    .await?;
    let asset_id = match &body.asset {
        Some(a) => {
            let new: NewAsset = serde_json::from_value(serde_json::json!({
                "asset_number": a.asset_number, "category": a.category, "brand": a.brand,
                "model": a.model, "room": a.room, "school_id": found.school_id, "state": "in_use",
                "notes": format!("MAC {}, found on the network by the school agent", found.mac),
            }))
            .map_err(|e| Error::invalid("asset", e.to_string()))?;
            Some(assets::create_in(&mut tx, actor, &new, None).await?.id)
        }
        None => None,
    };
    decide(
        &mut tx,
        actor,
        &before,
        "accepted",
        Some(device.id),
        asset_id,
    )
    .await?;
    let after = get_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(after)
}

/// Hides a discovered device from the list for good (a guest phone, a neighbour's printer).
///
/// # Errors
/// `Conflict` when it was already accepted or ignored.
pub async fn ignore(db: &Db, actor: &Actor, id: i64) -> Result<Discovered> {
    let mut tx = db.begin_write().await?;
    let before = undecided(&mut tx, id).await?;
    decide(&mut tx, actor, &before, "ignored", None, None).await?;
    let after = get_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(after)
}

async fn decide(
    conn: &mut AnyConnection,
    actor: &Actor,
    before: &Discovered,
    state: &str,
    device_id: Option<i64>,
    asset_id: Option<i64>,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE discovered_devices SET state = $2, device_id = $3, asset_id = $4, decided_by = $5, decided_at = $6 \
         WHERE id = $1 AND state = 'new'",
    )
    .bind(before.id)
    .bind(state)
    .bind(device_id)
    .bind(asset_id)
    .bind(actor.user_id)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(Error::Conflict(
            "the discovered device changed meanwhile; reload and try again".into(),
        ));
    }
    audit::record(
        conn,
        actor,
        Change {
            action: if state == "accepted" {
                "discovered_device.accept"
            } else {
                "discovered_device.ignore"
            },
            entity: "discovered_device",
            entity_id: Some(before.id),
            before: audit::snapshot(before),
            after: Some(serde_json::json!({
                "state": state, "device_id": device_id, "asset_id": asset_id,
            })),
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses() {
        let check = |s: &str, expected: Option<&str>| {
            assert_eq!(normal_mac(s).as_deref(), expected, "{s}");
        };
        check("AA:BB:CC:00:11:22", Some("aa:bb:cc:00:11:22"));
        check("aa-bb-cc-00-11-22", Some("aa:bb:cc:00:11:22"));
        check("aabb.cc00.1122", Some("aa:bb:cc:00:11:22"));
        check("aabbcc001122", Some("aa:bb:cc:00:11:22"));
        check("aa:bb:cc:00:11", None);
        check("aa:bb:cc:00:11:zz", None);
        check("", None);
    }
}
