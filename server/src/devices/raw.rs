//! Raw samples, kept as one row of `device_reports` per stored report: its samples encoded
//! together, with the counts per device and day that uptime needs beside them. An agent's
//! report of fifty samples is one row write instead of fifty, each in another device's place
//! of an index; a device's samples are read by opening its school's reports of the range.
//!
//! On-disk invariants:
//! - `sample_data` is the format byte [`FORMAT`] and then a zstd frame of the postcard encoding
//!   of the report's [`Row`]s, in the order the agent sent them.
//! - `day_counts` is the postcard encoding of (device id, Bangkok day number, samples that
//!   answered, all samples) for each device and day of `sample_data`; `first_at` and `last_at`
//!   are its oldest and newest sample times, `samples` how many rows it holds.
//! - A device's samples are the rows with its id in reports whose id is at least the device's
//!   `reports_from` (the next report id when it was created): SQLite may give a deleted
//!   device's id to a new one, and the old device's rows are not the new one's.
//! - A report row is deleted only in the transaction that adds its samples to the 5-minute
//!   aggregates ([`super::rollup`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::{Any, AnyConnection, Row as _};

use crate::db::{Db, now_ms};
use crate::error::{Error, Result};

/// The version of `sample_data`'s encoding.
pub const FORMAT: u8 = 1;

/// How many report rows one read takes from the database at a time.
const PAGE_REPORTS: i64 = 256;
/// How many samples of the old one-row-each table one transaction moves.
const MOVE_ROWS: i64 = 10_000;

/// One sample as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row<'a> {
    pub device_id: i64,
    /// Milliseconds since the epoch, UTC.
    pub at: i64,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub loss_percent: Option<f64>,
    #[serde(borrow)]
    pub error: Option<Cow<'a, str>>,
    /// The sample's `detail` as JSON text.
    #[serde(borrow)]
    pub detail: Option<Cow<'a, str>>,
}

/// A report's samples ready to be written as one `device_reports` row.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub first_at: i64,
    pub last_at: i64,
    pub samples: i64,
    pub sample_data: Vec<u8>,
    pub day_counts: Vec<u8>,
}

/// The Bangkok calendar day (UTC+7 all year) of a time, as days since 1970-01-01.
pub fn day(at: i64) -> i64 {
    (at + 25_200_000).div_euclid(86_400_000)
}

/// Encodes a report's samples (at least one).
///
/// # Errors
/// `Io` when the compressor fails (it does not on plain memory; nothing broken is stored).
pub fn encode(rows: &[Row<'_>]) -> Result<Encoded> {
    let mut counts: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for r in rows {
        let c = counts.entry((r.device_id, day(r.at))).or_default();
        c.0 += i64::from(r.ok);
        c.1 += 1;
    }
    let counts: Vec<(i64, i64, i64, i64)> = counts
        .into_iter()
        .map(|((device, day), (up, all))| (device, day, up, all))
        .collect();
    let failed = |e: &dyn std::fmt::Display| Error::Io {
        context: "encoding a report's samples".into(),
        source: std::io::Error::other(e.to_string()),
    };
    let plain = postcard::to_allocvec(rows).map_err(|e| failed(&e))?;
    let mut sample_data = vec![FORMAT];
    // Level 1: the repeated keys of SNMP details shrink several times at little CPU; a report
    // is compressed in its request's task, beside the others.
    // A compression context per thread: making one per report cost more than compressing.
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let frame = COMPRESSOR.with_borrow_mut(|compressor| match compressor {
        Some(c) => c.compress(&plain),
        None => {
            let c = compressor.insert(zstd::bulk::Compressor::new(1)?);
            c.compress(&plain)
        }
    });
    sample_data.extend(frame.map_err(|e| failed(&e))?);
    Ok(Encoded {
        first_at: rows.iter().map(|r| r.at).min().unwrap_or(0),
        last_at: rows.iter().map(|r| r.at).max().unwrap_or(0),
        samples: rows.len() as i64,
        sample_data,
        day_counts: postcard::to_allocvec(&counts).map_err(|e| failed(&e))?,
    })
}

fn corrupt(report_id: i64, what: impl std::fmt::Display) -> Error {
    Error::Io {
        context: format!("reading stored report {report_id}"),
        source: std::io::Error::other(what.to_string()),
    }
}

/// The plain postcard bytes of a stored `sample_data`, to be decoded by [`rows`].
pub fn unpack(report_id: i64, sample_data: &[u8]) -> Result<Vec<u8>> {
    match sample_data.split_first() {
        Some((&FORMAT, frame)) => {
            zstd::stream::decode_all(frame).map_err(|e| corrupt(report_id, e))
        }
        _ => Err(corrupt(report_id, "unknown sample format")),
    }
}

/// The rows of unpacked `sample_data`, borrowing its strings.
pub fn rows(report_id: i64, plain: &[u8]) -> Result<Vec<Row<'_>>> {
    postcard::from_bytes(plain).map_err(|e| corrupt(report_id, e))
}

/// Which devices a read covers: one device, one school's, or every device.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Device(i64),
    School(i64),
    All,
}

/// The devices of a scope, with the rule of which stored samples are theirs.
pub struct Owners {
    scope: Scope,
    /// Each device's school and `reports_from`.
    devices: HashMap<i64, (i64, i64)>,
}

impl Owners {
    /// Reads the scope's devices.
    pub async fn of(conn: &mut AnyConnection, scope: Scope) -> Result<Owners> {
        let (sql, key) = match scope {
            Scope::Device(id) => (
                "SELECT id, school_id, reports_from FROM devices WHERE id = $1",
                Some(id),
            ),
            Scope::School(id) => (
                "SELECT id, school_id, reports_from FROM devices WHERE school_id = $1",
                Some(id),
            ),
            Scope::All => ("SELECT id, school_id, reports_from FROM devices", None),
        };
        let mut query = sqlx::query::<Any>(sql);
        if let Some(key) = key {
            query = query.bind(key);
        }
        let devices = query
            .fetch_all(conn)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    (r.try_get("school_id")?, r.try_get("reports_from")?),
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Owners { scope, devices })
    }

    /// Whether a sample of `device` in stored report `report` is one of the scope's devices'
    /// (see the module's invariants).
    pub fn owns(&self, device: i64, report: i64) -> bool {
        match self.scope {
            Scope::Device(id) if id != device => false,
            _ => self
                .devices
                .get(&device)
                .is_some_and(|(_, reports_from)| report >= *reports_from),
        }
    }

    /// The school whose reports hold the scope's samples: `Some(None)` for every school,
    /// `None` for a device that does not exist.
    fn school(&self) -> Option<Option<i64>> {
        match self.scope {
            Scope::Device(id) => self.devices.get(&id).map(|(school, _)| Some(*school)),
            Scope::School(id) => Some(Some(id)),
            Scope::All => Some(None),
        }
    }
}

/// Calls `each` with every stored sample of the scope's devices with `from <= at < to`, report
/// by report in the order they were stored (not in time order: a replayed spool comes late).
pub async fn for_each(
    conn: &mut AnyConnection,
    scope: Scope,
    from: i64,
    to: i64,
    mut each: impl FnMut(&Row<'_>),
) -> Result<()> {
    let owners = Owners::of(conn, scope).await?;
    let Some(school) = owners.school() else {
        return Ok(());
    };
    let mut after = 0_i64;
    loop {
        let page = sqlx::query::<Any>(
            "SELECT id, sample_data FROM device_reports \
             WHERE ($1 IS NULL OR school_id = $1) AND last_at >= $2 AND first_at < $3 AND id > $4 \
             ORDER BY id LIMIT $5",
        )
        .bind(school)
        .bind(from)
        .bind(to)
        .bind(after)
        .bind(PAGE_REPORTS)
        .fetch_all(&mut *conn)
        .await?;
        for r in &page {
            let id: i64 = r.try_get("id")?;
            after = id;
            let plain = unpack(id, &r.try_get::<Vec<u8>, _>("sample_data")?)?;
            for row in rows(id, &plain)? {
                if row.at >= from && row.at < to && owners.owns(row.device_id, id) {
                    each(&row);
                }
            }
        }
        if (page.len() as i64) < PAGE_REPORTS {
            return Ok(());
        }
    }
}

/// (Samples that answered, all samples) per device of the scope and Bangkok day, from the
/// reports with samples at or after `since`; a report that also holds older samples is opened
/// to count only the newer ones.
pub async fn day_counts(
    conn: &mut AnyConnection,
    scope: Scope,
    since: i64,
) -> Result<HashMap<(i64, i64), (i64, i64)>> {
    let owners = Owners::of(conn, scope).await?;
    let mut out: HashMap<(i64, i64), (i64, i64)> = HashMap::new();
    let Some(school) = owners.school() else {
        return Ok(out);
    };
    let mut after = 0_i64;
    loop {
        let page = sqlx::query::<Any>(
            "SELECT id, first_at, day_counts FROM device_reports \
             WHERE ($1 IS NULL OR school_id = $1) AND last_at >= $2 AND id > $3 \
             ORDER BY id LIMIT $4",
        )
        .bind(school)
        .bind(since)
        .bind(after)
        .bind(PAGE_REPORTS)
        .fetch_all(&mut *conn)
        .await?;
        for r in &page {
            let id: i64 = r.try_get("id")?;
            after = id;
            if r.try_get::<i64, _>("first_at")? >= since {
                let counts: Vec<(i64, i64, i64, i64)> =
                    postcard::from_bytes(&r.try_get::<Vec<u8>, _>("day_counts")?)
                        .map_err(|e| corrupt(id, e))?;
                for (device, day, up, all) in counts {
                    if owners.owns(device, id) {
                        let c = out.entry((device, day)).or_default();
                        c.0 += up;
                        c.1 += all;
                    }
                }
            } else {
                let data: Vec<u8> = sqlx::query_scalar::<Any, Vec<u8>>(
                    "SELECT sample_data FROM device_reports WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
                let plain = unpack(id, &data)?;
                for row in rows(id, &plain)? {
                    if row.at >= since && owners.owns(row.device_id, id) {
                        let c = out.entry((row.device_id, day(row.at))).or_default();
                        c.0 += i64::from(row.ok);
                        c.1 += 1;
                    }
                }
            }
        }
        if (page.len() as i64) < PAGE_REPORTS {
            return Ok(out);
        }
    }
}

/// Moves samples kept one row each (`device_samples`, before migration 10) into report rows,
/// one per school and agent of each batch of [`MOVE_ROWS`], each batch in one transaction;
/// run at start. Returns how many samples moved.
pub async fn move_sample_rows(db: &Db) -> Result<u64> {
    let mut moved = 0;
    loop {
        let mut tx = db.begin_write().await?;
        let found = sqlx::query::<Any>(
            "SELECT s.id, s.device_id, s.agent_id, d.school_id, s.at, s.ok, s.latency_ms, s.loss_percent, \
             s.error, s.detail_json FROM device_samples s JOIN devices d ON d.id = s.device_id \
             ORDER BY s.id LIMIT $1",
        )
        .bind(MOVE_ROWS)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = found.last() else {
            return Ok(moved);
        };
        let last: i64 = last.try_get("id")?;
        let mut reports: BTreeMap<(i64, i64), Vec<Row<'static>>> = BTreeMap::new();
        for r in &found {
            reports
                .entry((r.try_get("school_id")?, r.try_get("agent_id")?))
                .or_default()
                .push(Row {
                    device_id: r.try_get("device_id")?,
                    at: r.try_get("at")?,
                    ok: r.try_get::<i64, _>("ok")? != 0,
                    latency_ms: r.try_get("latency_ms")?,
                    loss_percent: r.try_get("loss_percent")?,
                    error: r.try_get::<Option<String>, _>("error")?.map(Cow::Owned),
                    detail: r
                        .try_get::<Option<String>, _>("detail_json")?
                        .map(Cow::Owned),
                });
        }
        let now = now_ms();
        for ((school_id, agent_id), rows) in &reports {
            let e = encode(rows)?;
            sqlx::query(
                "INSERT INTO device_reports (school_id, agent_id, received_at, first_at, last_at, samples, \
                 sample_data, day_counts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(school_id)
            .bind(agent_id)
            .bind(now)
            .bind(e.first_at)
            .bind(e.last_at)
            .bind(e.samples)
            .bind(e.sample_data)
            .bind(e.day_counts)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM device_samples WHERE id <= $1")
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        moved += found.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device_id: i64, at: i64, ok: bool) -> Row<'static> {
        Row {
            device_id,
            at,
            ok,
            latency_ms: ok.then_some(1.5),
            loss_percent: Some(if ok { 0.0 } else { 100.0 }),
            error: (!ok).then_some(Cow::Borrowed("timeout")),
            detail: Some(Cow::Borrowed(r#"{"interfaces":[{"in_octets":1}]}"#)),
        }
    }

    #[test]
    fn a_report_reads_back_as_written_with_its_day_counts() {
        // 16:59:59 and 17:00:00 UTC fall on two Bangkok days.
        let evening = 1_763_744_399_000;
        let written = vec![
            row(7, evening, true),
            row(7, evening + 1000, false),
            row(9, evening, true),
        ];
        let e = encode(&written).unwrap();
        assert_eq!(
            (e.first_at, e.last_at, e.samples),
            (evening, evening + 1000, 3)
        );
        let plain = unpack(1, &e.sample_data).unwrap();
        assert_eq!(rows(1, &plain).unwrap(), written);
        let counts: Vec<(i64, i64, i64, i64)> = postcard::from_bytes(&e.day_counts).unwrap();
        let d = day(evening);
        assert_eq!(counts, vec![(7, d, 1, 1), (7, d + 1, 0, 1), (9, d, 1, 1)]);
    }

    #[test]
    fn damaged_data_is_an_error_naming_the_report() {
        let e = encode(&[row(1, 0, true)]).unwrap();
        let mut bad = e.sample_data.clone();
        bad[0] = 9;
        assert!(
            unpack(42, &bad)
                .unwrap_err()
                .to_string()
                .contains("report 42")
        );
        let cut = &e.sample_data[..e.sample_data.len() / 2];
        assert!(unpack(42, cut).is_err() || rows(42, &unpack(42, cut).unwrap()).is_err());
    }
}
