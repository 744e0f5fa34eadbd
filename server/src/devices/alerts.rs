//! Incidents and the alert rules that open them: a device down for longer than its own
//! `down_after_minutes`, packet loss at or above `devices.loss_alert_percent`, a printer supply
//! at or below `devices.toner_alert_percent`, a disk of an agent's host at or above
//! `devices.disk_alert_percent`, and an agent silent for `devices.silent_after_intervals`
//! report intervals.
//!
//! Each broken rule opens one incident (one open per device and rule, per agent: the database's
//! partial unique indexes), and in the same transaction a repair request for the device's school,
//! filed by the built-in system user ([`crate::desk::system`]). While the incident is open the
//! request gets a comment each time the fault worsens by a step; when the rule holds again the
//! incident resolves and so does its request. A fault that comes back within
//! `devices.flap_window_minutes` reopens the incident and its request rather than filing another.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use sqlx::{Any, AnyConnection, Row};

use super::Settings;
use super::samples::{Sample, float_text};
use crate::db::{Db, now_ms, numbered, rfc3339, runs};
use crate::desk::system;
use crate::error::Result;

/// The alert rules' thresholds (from `[devices]`).
#[derive(Debug, Clone)]
pub struct Rules {
    pub loss_percent: f64,
    pub toner_percent: f64,
    pub disk_percent: f64,
    pub flap_window_ms: i64,
}

/// The rules that watch a device; each is an incident kind.
pub const DEVICE_KINDS: [&str; 4] = ["device_down", "loss_high", "toner_low", "disk_full"];

/// What one rule makes of a device's newest sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The rule is broken: `value` is how badly (loss, supply level, disk use), for comments.
    Broken { value: Option<f64>, summary: String },
    /// The rule holds.
    Fine,
    /// The sample says nothing about it (no supplies in it, the device did not answer).
    Unknown,
}

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
    pub sample: &'a Sample,
}

fn percent(value: f64) -> String {
    format!("{}%", (value * 10.0).round() / 10.0)
}

/// What rule `kind` makes of a device's newest sample.
pub fn judge(rules: &Rules, kind: &str, device: &DeviceNow<'_>) -> Verdict {
    let sample = device.sample;
    let detail = sample.detail.as_ref();
    match kind {
        "device_down" => {
            if device.status != "down" {
                Verdict::Fine
            } else if device.at - device.status_since >= device.down_after_minutes * 60_000 {
                Verdict::Broken {
                    value: None,
                    summary: match &sample.error {
                        Some(e) => format!("{} down: {e}", device.name),
                        None => format!("{} down", device.name),
                    },
                }
            } else {
                Verdict::Unknown
            }
        }
        "loss_high" => match sample.loss_percent {
            Some(loss) if sample.ok && loss >= rules.loss_percent => Verdict::Broken {
                value: Some(loss),
                summary: format!("{}: {} packet loss", device.name, percent(loss)),
            },
            Some(_) if sample.ok => Verdict::Fine,
            _ => Verdict::Unknown,
        },
        "toner_low" => {
            let lowest = detail
                .and_then(|d| d.get("supplies"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    let level = s.get("level_percent")?.as_f64().filter(|l| *l >= 0.0)?;
                    let name = s
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("supply");
                    Some((level, name))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0));
            match lowest {
                Some((level, name)) if level <= rules.toner_percent => Verdict::Broken {
                    value: Some(level),
                    summary: format!("{}: {name} at {}", device.name, percent(level)),
                },
                Some(_) => Verdict::Fine,
                None => Verdict::Unknown,
            }
        }
        "disk_full" => {
            let fullest = detail
                .and_then(|d| d.get("disks"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let used = d.get("used_percent")?.as_f64()?;
                    let mount = d.get("mount").and_then(Value::as_str).unwrap_or("?");
                    Some((used, mount))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match fullest {
                Some((used, mount)) if used >= rules.disk_percent => Verdict::Broken {
                    value: Some(used),
                    summary: format!("{}: disk {mount} {} full", device.name, percent(used)),
                },
                Some(_) => Verdict::Fine,
                None => Verdict::Unknown,
            }
        }
        _ => Verdict::Unknown,
    }
}

/// Whether `value` is worse than the value the request was last told about by a full step
/// (10 points of loss, 5 points of toner or disk), so that the request gets a comment.
pub fn worsened(kind: &str, noted: Option<f64>, value: Option<f64>) -> bool {
    match (noted, value) {
        (Some(noted), Some(value)) => match kind {
            "loss_high" => value >= noted + 10.0,
            "disk_full" => value >= noted + 5.0,
            "toner_low" => value <= noted - 5.0,
            _ => false,
        },
        _ => false,
    }
}

/// An open incident, as ingestion needs it.
#[derive(Debug, Clone)]
pub struct OpenIncident {
    pub id: i64,
    pub request_id: Option<i64>,
    pub noted_value: Option<f64>,
}

/// The open incidents of a school, by (device, kind), and by (agent, `agent_silent`).
pub async fn open_incidents(
    conn: &mut AnyConnection,
    school_id: i64,
) -> Result<HashMap<(i64, String), OpenIncident>> {
    let rows = sqlx::query::<Any>(
        "SELECT id, COALESCE(device_id, agent_id) AS subject, kind, request_id, noted_value FROM device_incidents \
         WHERE school_id = $1 AND resolved_at IS NULL",
    )
    .bind(school_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                (r.try_get("subject")?, r.try_get("kind")?),
                OpenIncident {
                    id: r.try_get("id")?,
                    request_id: r.try_get("request_id")?,
                    noted_value: r.try_get("noted_value")?,
                },
            ))
        })
        .collect()
}

/// The open incidents of each of `schools` (an empty map for a school without any), as
/// [`open_incidents`] gives them, in one statement.
pub async fn open_incidents_of(
    conn: &mut AnyConnection,
    schools: &[i64],
) -> Result<HashMap<i64, HashMap<(i64, String), OpenIncident>>> {
    let mut out: HashMap<i64, HashMap<(i64, String), OpenIncident>> =
        schools.iter().map(|s| (*s, HashMap::new())).collect();
    for chunk in runs(schools, 64) {
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(numbered(&format!(
            "SELECT id, school_id, COALESCE(device_id, agent_id) AS subject, kind, request_id, noted_value \
             FROM device_incidents WHERE school_id IN ({}) AND resolved_at IS NULL",
            vec!["?"; chunk.len()].join(", ")
        ))));
        for school in chunk {
            query = query.bind(*school);
        }
        for r in query.fetch_all(&mut *conn).await? {
            out.entry(r.try_get("school_id")?).or_default().insert(
                (r.try_get("subject")?, r.try_get("kind")?),
                OpenIncident {
                    id: r.try_get("id")?,
                    request_id: r.try_get("request_id")?,
                    noted_value: r.try_get("noted_value")?,
                },
            );
        }
    }
    Ok(out)
}

/// Applies every device rule to a device's newest sample: opens, comments on and resolves its
/// incidents and their repair requests. Runs in the caller's transaction; `open` holds the
/// school's open incidents as the transaction sees them. Returns whether it changed any (the
/// caller then reads them again).
pub async fn device_changed(
    conn: &mut AnyConnection,
    rules: &Rules,
    device: &DeviceNow<'_>,
    open: &HashMap<(i64, String), OpenIncident>,
) -> Result<bool> {
    let mut changed = false;
    for kind in DEVICE_KINDS {
        let verdict = judge(rules, kind, device);
        match (verdict, open.get(&(device.id, kind.to_owned()))) {
            (Verdict::Broken { value, summary }, None) => {
                open_incident(conn, rules, device, kind, value, &summary).await?;
                changed = true;
            }
            (Verdict::Broken { value, summary }, Some(incident))
                if worsened(kind, incident.noted_value, value) =>
            {
                changed = true;
                sqlx::query(
                        "UPDATE device_incidents SET noted_value = CAST($2 AS DOUBLE PRECISION), summary = $3 WHERE id = $1",
                    )
                    .bind(incident.id)
                    .bind(float_text(value))
                    .bind(&summary)
                    .execute(&mut *conn)
                    .await?;
                if let Some(request) = incident.request_id {
                    system::comment(
                        conn,
                        request,
                        &format!("Worse at {}: {summary}", rfc3339(device.at)),
                    )
                    .await?;
                }
            }
            (Verdict::Fine, Some(incident)) => {
                let resolved = sqlx::query(
                    "UPDATE device_incidents SET resolved_at = $2 WHERE id = $1 AND resolved_at IS NULL",
                )
                .bind(incident.id)
                .bind(device.at)
                .execute(&mut *conn)
                .await?;
                if resolved.rows_affected() == 0 {
                    continue;
                }
                changed = true;
                tracing::info!(
                    device_id = device.id,
                    device = device.name,
                    kind,
                    "device recovered: incident resolved"
                );
                metrics::counter!("khetnet_device_incidents_resolved_total", "kind" => kind)
                    .increment(1);
                if let Some(request) = incident.request_id {
                    system::resolve(conn, request, &recovered(kind, device)).await?;
                }
            }
            _ => {}
        }
    }
    Ok(changed)
}

/// The comment that resolves a request.
fn recovered(kind: &str, device: &DeviceNow<'_>) -> String {
    let at = rfc3339(device.at);
    let sample = device.sample;
    match kind {
        "device_down" => match sample.latency_ms {
            Some(ms) => format!("{} answers again since {at} ({ms} ms).", device.name),
            None => format!("{} answers again since {at}.", device.name),
        },
        "loss_high" => format!(
            "{}: packet loss back to {} at {at}.",
            device.name,
            percent(sample.loss_percent.unwrap_or(0.0))
        ),
        "toner_low" => format!("{}: supplies above the alert level at {at}.", device.name),
        "disk_full" => format!("{}: disks below the alert level at {at}.", device.name),
        _ => format!("{} recovered at {at}.", device.name),
    }
}

/// Opens an incident of `kind` for a device with its repair request, or reopens the last one
/// when the fault came back within the flap window and its request is still resolved.
async fn open_incident(
    conn: &mut AnyConnection,
    rules: &Rules,
    device: &DeviceNow<'_>,
    kind: &'static str,
    value: Option<f64>,
    summary: &str,
) -> Result<()> {
    let last = sqlx::query::<Any>(
        "SELECT id, resolved_at, request_id FROM device_incidents WHERE device_id = $1 AND kind = $2 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(device.id)
    .bind(kind)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(last) = last {
        let resolved_at: Option<i64> = last.try_get("resolved_at")?;
        let request: Option<i64> = last.try_get("request_id")?;
        if let (Some(resolved_at), Some(request)) = (resolved_at, request)
            && device.at - resolved_at <= rules.flap_window_ms
            && system::reopen(
                conn,
                request,
                &format!(
                    "Again at {}, {} min after it cleared: {summary}",
                    rfc3339(device.at),
                    (device.at - resolved_at).max(0) / 60_000
                ),
            )
            .await?
        {
            sqlx::query(
                "UPDATE device_incidents SET resolved_at = NULL, summary = $2, noted_value = CAST($3 AS DOUBLE PRECISION) \
                 WHERE id = $1",
            )
            .bind(last.try_get::<i64, _>("id")?)
            .bind(summary)
            .bind(float_text(value))
            .execute(&mut *conn)
            .await?;
            tracing::warn!(
                device_id = device.id,
                kind,
                "fault came back: incident reopened"
            );
            metrics::counter!("khetnet_device_incidents_reopened_total", "kind" => kind)
                .increment(1);
            return Ok(());
        }
    }
    let started_at = if kind == "device_down" {
        device.status_since
    } else {
        device.at
    };
    let id: Option<i64> = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO device_incidents (kind, school_id, device_id, summary, started_at, opened_at, noted_value) \
         VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS DOUBLE PRECISION)) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(kind)
    .bind(device.school_id)
    .bind(device.id)
    .bind(summary)
    .bind(started_at)
    .bind(now_ms())
    .bind(float_text(value))
    .fetch_optional(&mut *conn)
    .await?;
    // Another report opened it first: its request is the one.
    let Some(id) = id else { return Ok(()) };
    tracing::warn!(
        device_id = device.id,
        device = device.name,
        kind,
        "incident opened"
    );
    metrics::counter!("khetnet_device_incidents_opened_total", "kind" => kind).increment(1);
    let problem = format!(
        "{summary} (since {}). Opened by khetnet's device health for device {:?} (id {}); \
         it resolves this request when the device recovers.",
        rfc3339(started_at),
        device.name,
        device.id
    );
    let request = system::open_repair(
        conn,
        system::Repair {
            school_id: device.school_id,
            title: summary,
            problem: &problem,
            priority: if kind == "device_down" {
                "high"
            } else {
                "normal"
            },
        },
    )
    .await?;
    sqlx::query("UPDATE device_incidents SET request_id = $2 WHERE id = $1 AND request_id IS NULL")
        .bind(id)
        .bind(request)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Resolves an agent's open silence incident and its request: it has just reported.
pub async fn agent_heard(conn: &mut AnyConnection, agent_id: i64, at: i64) -> Result<()> {
    let resolved = sqlx::query::<Any>(
        "UPDATE device_incidents SET resolved_at = $2 \
         WHERE agent_id = $1 AND kind = 'agent_silent' AND resolved_at IS NULL RETURNING request_id",
    )
    .bind(agent_id)
    .bind(at)
    .fetch_all(&mut *conn)
    .await?;
    for row in resolved {
        if let Some(request) = row.try_get::<Option<i64>, _>("request_id")? {
            system::resolve(
                conn,
                request,
                &format!("The agent reported again at {}.", rfc3339(at)),
            )
            .await?;
        }
    }
    Ok(())
}

/// Opens an incident, with its repair request, for every agent silent longer than the rule
/// allows (counted from its last report, or from its enrollment when it never reported). The
/// server runs it every half report interval; tests call it directly with their own `now`.
pub async fn sweep(db: &Db, settings: &Settings, now: i64) -> Result<usize> {
    let silent_since = now - settings.silent_after_ms();
    let rows = sqlx::query::<Any>(
        "SELECT a.id, a.school_id, a.name, COALESCE(a.last_seen_at, a.enrolled_at) AS seen FROM agents a \
         WHERE a.revoked_at IS NULL AND COALESCE(a.last_seen_at, a.enrolled_at) < $1 \
         AND NOT EXISTS (SELECT 1 FROM device_incidents i WHERE i.agent_id = a.id AND i.kind = 'agent_silent' AND i.resolved_at IS NULL)",
    )
    .bind(silent_since)
    .fetch_all(&db.pool)
    .await?;
    let mut opened = 0;
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let school_id: i64 = r.try_get("school_id")?;
        let name: String = r.try_get("name")?;
        let seen: i64 = r.try_get("seen")?;
        let summary = format!("agent {name} silent since {}", rfc3339(seen));
        let mut tx = db.begin_write().await?;
        super::changing(&mut tx, &[school_id]).await?;
        let incident: Option<i64> = sqlx::query_scalar::<Any, i64>(
            "INSERT INTO device_incidents (kind, school_id, agent_id, summary, started_at, opened_at) \
             VALUES ('agent_silent', $1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(school_id)
        .bind(id)
        .bind(&summary)
        .bind(seen)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(incident) = incident else { continue };
        let problem = format!(
            "{summary}. Opened by khetnet's device health: the school agent {name:?} (id {id}) has \
             sent no report for {} report intervals; its school's devices are not watched meanwhile. \
             Check the agent's host, its power and its network. This request resolves when it reports again.",
            settings.silent_after_intervals
        );
        let request = system::open_repair(
            &mut tx,
            system::Repair {
                school_id,
                title: &summary,
                problem: &problem,
                priority: "high",
            },
        )
        .await?;
        sqlx::query("UPDATE device_incidents SET request_id = $2 WHERE id = $1")
            .bind(incident)
            .bind(request)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        opened += 1;
        tracing::warn!(agent_id = id, agent = %name, "agent silent: incident opened");
        metrics::counter!("khetnet_device_incidents_opened_total", "kind" => "agent_silent")
            .increment(1);
    }
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
    /// The desk's repair request for it.
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
