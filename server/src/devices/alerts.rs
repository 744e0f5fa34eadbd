//! Incidents: a device down for longer than its rule allows, an agent silent for longer than
//! `devices.silent_after_intervals` report intervals. Each opens one incident, which resolves
//! when the device answers again or the agent reports again.
//!
//! Not yet done: opening a repair request on the desk for each incident. The desk module has
//! no function to open, comment on or resolve a request yet; `device_incidents.request_id`
//! is where the link will go when it does.

use serde::Serialize;
use sqlx::{Any, AnyConnection, Row};

use super::Settings;
use crate::db::{Db, now_ms, rfc3339};
use crate::error::Result;

/// A device's state just after a sample changed it.
pub struct DeviceNow<'a> {
    pub id: i64,
    pub school_id: i64,
    pub name: &'a str,
    pub status: &'a str,
    /// Since when it has had this status (sample time, ms).
    pub status_since: i64,
    /// The newest sample's time (ms).
    pub at: i64,
    pub down_after_minutes: i64,
    pub error: Option<&'a str>,
}

/// Opens an incident when a device has been down long enough; resolves an open one when it
/// answers again. Runs in the caller's transaction.
pub async fn device_changed(conn: &mut AnyConnection, device: DeviceNow<'_>) -> Result<()> {
    if device.status == "down" {
        if device.at - device.status_since >= device.down_after_minutes * 60_000 {
            let summary = match device.error {
                Some(e) => format!("{} down: {e}", device.name),
                None => format!("{} down", device.name),
            };
            let opened = sqlx::query(
                "INSERT INTO device_incidents (kind, school_id, device_id, summary, started_at, opened_at) \
                 VALUES ('device_down', $1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(device.school_id)
            .bind(device.id)
            .bind(summary)
            .bind(device.status_since)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
            if opened.rows_affected() > 0 {
                tracing::warn!(
                    device_id = device.id,
                    device = device.name,
                    "device down: incident opened"
                );
                metrics::counter!("khetnet_device_incidents_opened_total", "kind" => "device_down")
                    .increment(1);
            }
        }
    } else {
        let resolved = sqlx::query(
            "UPDATE device_incidents SET resolved_at = $2 \
             WHERE device_id = $1 AND kind = 'device_down' AND resolved_at IS NULL",
        )
        .bind(device.id)
        .bind(device.at)
        .execute(&mut *conn)
        .await?;
        if resolved.rows_affected() > 0 {
            tracing::info!(
                device_id = device.id,
                device = device.name,
                "device recovered: incident resolved"
            );
        }
    }
    Ok(())
}

/// Resolves an agent's open silence incident: it has just reported.
pub async fn agent_heard(conn: &mut AnyConnection, agent_id: i64, at: i64) -> Result<()> {
    sqlx::query(
        "UPDATE device_incidents SET resolved_at = $2 \
         WHERE agent_id = $1 AND kind = 'agent_silent' AND resolved_at IS NULL",
    )
    .bind(agent_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Opens an incident for every agent silent longer than the rule allows (counted from its
/// last report, or from its enrollment when it never reported), and purges raw samples past
/// their retention. The server runs it every half report interval; tests call it directly
/// with their own `now`.
pub async fn sweep(db: &Db, settings: &Settings, now: i64) -> Result<usize> {
    let silent_since = now - settings.silent_after_ms();
    let rows = sqlx::query::<Any>(
        "SELECT id, school_id, name, COALESCE(last_seen_at, enrolled_at) AS seen FROM agents \
         WHERE revoked_at IS NULL AND COALESCE(last_seen_at, enrolled_at) < $1",
    )
    .bind(silent_since)
    .fetch_all(&db.pool)
    .await?;
    let mut opened = 0;
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let name: String = r.try_get("name")?;
        let seen: i64 = r.try_get("seen")?;
        let done = sqlx::query(
            "INSERT INTO device_incidents (kind, school_id, agent_id, summary, started_at, opened_at) \
             VALUES ('agent_silent', $1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(r.try_get::<i64, _>("school_id")?)
        .bind(id)
        .bind(format!("agent {name} silent since {}", rfc3339(seen)))
        .bind(seen)
        .bind(now)
        .execute(&db.pool)
        .await?;
        if done.rows_affected() > 0 {
            opened += 1;
            tracing::warn!(agent_id = id, agent = %name, "agent silent: incident opened");
            metrics::counter!("khetnet_device_incidents_opened_total", "kind" => "agent_silent")
                .increment(1);
        }
    }
    super::samples::purge(db, settings.raw_retention_days).await?;
    Ok(opened)
}

/// An incident as the API shows it.
#[derive(Debug, Serialize)]
pub struct Incident {
    pub id: i64,
    pub kind: String,
    pub school_id: i64,
    pub device_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub summary: String,
    pub started_at: String,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    /// The desk's repair request for it, once the desk can open one.
    pub request_id: Option<i64>,
}

/// Incidents newest first, optionally of one school and only the open ones.
pub async fn list(
    db: &Db,
    school_id: Option<i64>,
    open_only: bool,
    limit: i64,
) -> Result<Vec<Incident>> {
    let rows = sqlx::query::<Any>(
        "SELECT id, kind, school_id, device_id, agent_id, summary, started_at, opened_at, resolved_at, request_id \
         FROM device_incidents WHERE ($1 IS NULL OR school_id = $1) AND ($2 = 0 OR resolved_at IS NULL) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(school_id)
    .bind(i64::from(open_only))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Incident {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                school_id: r.try_get("school_id")?,
                device_id: r.try_get("device_id")?,
                agent_id: r.try_get("agent_id")?,
                summary: r.try_get("summary")?,
                started_at: rfc3339(r.try_get("started_at")?),
                opened_at: rfc3339(r.try_get("opened_at")?),
                resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(rfc3339),
                request_id: r.try_get("request_id")?,
            })
        })
        .collect()
}
