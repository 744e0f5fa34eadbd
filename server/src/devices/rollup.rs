//! Downsampling: raw samples older than `devices.raw_retention_days` become 5-minute aggregates
//! (min/avg/max latency, average and worst loss, the share of samples that answered, interface
//! traffic where the samples carry SNMP counters), kept `devices.aggregate_retention_days`.
//!
//! On-disk invariants:
//! - A raw sample is deleted only in the transaction that adds it to its bucket's aggregate;
//!   a crash leaves either both or neither.
//! - Work is done in bounded batches (whole stored reports, oldest first, about [`BATCH_ROWS`]
//!   samples, and at most [`BATCHES_PER_RUN`] transactions a run), so the writer lock is never
//!   held long. A stored report that also holds newer samples is rewritten with only those.
//! - A bucket rolled twice (samples that arrived late, from an agent's old spool) merges into
//!   the stored aggregate: counts add up, averages are weighted, minimum and maximum combine.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{Any, Row};

use super::Settings;
use super::raw::{self, Scope};
use super::samples::float_text;
use crate::db::Db;
use crate::error::Result;

/// The width of one aggregate, in milliseconds.
pub const BUCKET_MS: i64 = 300_000;
/// About how many raw samples one transaction rolls up.
pub const BATCH_ROWS: i64 = 5_000;
/// At most this many stored reports one transaction rolls up.
const BATCH_REPORTS: i64 = 64;
/// At most this many transactions a maintenance run (it runs again soon).
pub const BATCHES_PER_RUN: usize = 50;

/// One stored raw sample, as the rollup and the graphs read it.
#[derive(Debug, Clone)]
pub struct RawSample {
    pub device_id: i64,
    pub at: i64,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub loss_percent: Option<f64>,
    /// Summed interface counters (in, out octets) when the sample carries them.
    pub octets: Option<(f64, f64)>,
}

/// The sums of a device's interface counters in a sample's `detail.interfaces`.
pub fn octets(detail: Option<&str>) -> Option<(f64, f64)> {
    let detail = detail.filter(|d| d.contains("\"interfaces\""))?;
    let detail: Value = serde_json::from_str(detail).ok()?;
    let interfaces = detail.get("interfaces")?.as_array()?;
    let mut sum = (0.0, 0.0);
    let mut any = false;
    for i in interfaces {
        if let (Some(a), Some(b)) = (
            i.get("in_octets").and_then(Value::as_f64),
            i.get("out_octets").and_then(Value::as_f64),
        ) {
            sum.0 += a;
            sum.1 += b;
            any = true;
        }
    }
    any.then_some(sum)
}

/// Five minutes (or any span) of one device's samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub samples: i64,
    pub up_samples: i64,
    pub latency_min_ms: Option<f64>,
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub loss_avg_percent: Option<f64>,
    pub loss_max_percent: Option<f64>,
    pub in_bps: Option<f64>,
    pub out_bps: Option<f64>,
}

fn merge_min(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn merge_max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn weighted(a: Option<f64>, wa: i64, b: Option<f64>, wb: i64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if wa + wb > 0 => {
            Some((a * wa as f64 + b * wb as f64) / (wa + wb) as f64)
        }
        (a, b) => a.or(b),
    }
}

impl Aggregate {
    /// The aggregate of one device's samples, oldest first.
    pub fn of(samples: &[&RawSample]) -> Aggregate {
        let latencies: Vec<f64> = samples.iter().filter_map(|s| s.latency_ms).collect();
        let losses: Vec<f64> = samples.iter().filter_map(|s| s.loss_percent).collect();
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        // Traffic: counter growth between consecutive samples; a counter that went back (a
        // reboot, a wrap) leaves that step out.
        let mut bits = (0.0, 0.0);
        let mut secs = 0.0;
        let counted: Vec<(i64, (f64, f64))> = samples
            .iter()
            .filter_map(|s| Some((s.at, s.octets?)))
            .collect();
        for pair in counted.windows(2) {
            let ((t0, (i0, o0)), (t1, (i1, o1))) = (pair[0], pair[1]);
            if t1 > t0 && i1 >= i0 && o1 >= o0 {
                bits.0 += (i1 - i0) * 8.0;
                bits.1 += (o1 - o0) * 8.0;
                secs += (t1 - t0) as f64 / 1000.0;
            }
        }
        Aggregate {
            samples: samples.len() as i64,
            up_samples: samples.iter().filter(|s| s.ok).count() as i64,
            latency_min_ms: latencies.iter().copied().reduce(f64::min),
            latency_avg_ms: mean(&latencies),
            latency_max_ms: latencies.iter().copied().reduce(f64::max),
            loss_avg_percent: mean(&losses),
            loss_max_percent: losses.iter().copied().reduce(f64::max),
            in_bps: (secs > 0.0).then(|| bits.0 / secs),
            out_bps: (secs > 0.0).then(|| bits.1 / secs),
        }
    }

    /// Both aggregates as one (counts add, averages weighted by the samples behind them).
    pub fn merge(&self, other: &Aggregate) -> Aggregate {
        Aggregate {
            samples: self.samples + other.samples,
            up_samples: self.up_samples + other.up_samples,
            latency_min_ms: merge_min(self.latency_min_ms, other.latency_min_ms),
            latency_avg_ms: weighted(
                self.latency_avg_ms,
                self.up_samples,
                other.latency_avg_ms,
                other.up_samples,
            ),
            latency_max_ms: merge_max(self.latency_max_ms, other.latency_max_ms),
            loss_avg_percent: weighted(
                self.loss_avg_percent,
                self.samples,
                other.loss_avg_percent,
                other.samples,
            ),
            loss_max_percent: merge_max(self.loss_max_percent, other.loss_max_percent),
            in_bps: weighted(self.in_bps, self.samples, other.in_bps, other.samples),
            out_bps: weighted(self.out_bps, self.samples, other.out_bps, other.samples),
        }
    }
}

impl RawSample {
    fn of(r: &raw::Row<'_>) -> RawSample {
        RawSample {
            device_id: r.device_id,
            at: r.at,
            ok: r.ok,
            latency_ms: r.latency_ms,
            loss_percent: r.loss_percent,
            octets: octets(r.detail.as_deref()),
        }
    }
}

/// A device's raw samples with `from <= at < to`, oldest first.
pub async fn raw_of(
    conn: &mut sqlx::AnyConnection,
    device_id: i64,
    from: i64,
    to: i64,
) -> Result<Vec<RawSample>> {
    let mut out = Vec::new();
    raw::for_each(conn, Scope::Device(device_id), from, to, |r| {
        out.push(RawSample::of(r));
    })
    .await?;
    out.sort_by_key(|s| s.at);
    Ok(out)
}

/// What one maintenance run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub buckets_written: u64,
    pub raw_deleted: u64,
    pub aggregates_deleted: u64,
}

/// Rolls up raw samples older than the raw window and deletes them, then deletes aggregates
/// older than theirs; bounded (see the module invariants). `now` is passed in so tests can
/// move time.
pub async fn maintain(db: &Db, settings: &Settings, now: i64) -> Result<Done> {
    let mut done = Done::default();
    let raw_cutoff = (now - i64::from(settings.raw_retention_days) * 86_400_000)
        .div_euclid(BUCKET_MS)
        * BUCKET_MS;
    for _ in 0..BATCHES_PER_RUN {
        let mut tx = db.begin_write().await?;
        let reports = sqlx::query::<Any>(
            "SELECT id, sample_data FROM device_reports WHERE first_at < $1 \
             ORDER BY first_at, id LIMIT $2",
        )
        .bind(raw_cutoff)
        .bind(BATCH_REPORTS)
        .fetch_all(&mut *tx)
        .await?;
        if reports.is_empty() {
            break;
        }
        let owners = raw::Owners::of(&mut tx, Scope::All).await?;
        // Whole reports, the oldest first, until about BATCH_ROWS samples. A report's samples
        // past the window leave it; the newer ones stay, the report rewritten without them.
        let mut samples = Vec::new();
        for r in &reports {
            let id: i64 = r.try_get("id")?;
            let plain = raw::unpack(id, &r.try_get::<Vec<u8>, _>("sample_data")?)?;
            let (old, kept): (Vec<raw::Row<'_>>, Vec<raw::Row<'_>>) = raw::rows(id, &plain)?
                .into_iter()
                .partition(|row| row.at < raw_cutoff);
            done.raw_deleted += old.len() as u64;
            // A deleted device's samples (or those of the one whose id it had) go.
            samples.extend(
                old.iter()
                    .filter(|row| owners.owns(row.device_id, id))
                    .map(RawSample::of),
            );
            if kept.is_empty() {
                sqlx::query("DELETE FROM device_reports WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                let e = raw::encode(&kept)?;
                sqlx::query(
                    "UPDATE device_reports SET first_at = $2, last_at = $3, samples = $4, sample_data = $5, \
                     day_counts = $6 WHERE id = $1",
                )
                .bind(id)
                .bind(e.first_at)
                .bind(e.last_at)
                .bind(e.samples)
                .bind(e.sample_data)
                .bind(e.day_counts)
                .execute(&mut *tx)
                .await?;
            }
            if samples.len() as i64 >= BATCH_ROWS {
                break;
            }
        }
        samples.sort_by_key(|s| (s.device_id, s.at));
        let mut buckets: BTreeMap<(i64, i64), Vec<&RawSample>> = BTreeMap::new();
        for s in &samples {
            buckets
                .entry((s.device_id, s.at.div_euclid(BUCKET_MS) * BUCKET_MS))
                .or_default()
                .push(s);
        }
        for ((device_id, bucket_at), group) in &buckets {
            let mut aggregate = Aggregate::of(group);
            let stored = stored(&mut tx, *device_id, *bucket_at).await?;
            if let Some(stored) = &stored {
                aggregate = stored.merge(&aggregate);
            }
            write(
                &mut tx,
                *device_id,
                *bucket_at,
                &aggregate,
                stored.is_some(),
            )
            .await?;
            done.buckets_written += 1;
        }
        tx.commit().await?;
    }
    let aggregate_cutoff = now - i64::from(settings.aggregate_retention_days) * 86_400_000;
    for _ in 0..BATCHES_PER_RUN {
        // A day of buckets at a time.
        let first: Option<i64> = sqlx::query_scalar::<Any, Option<i64>>(
            "SELECT MIN(bucket_at) FROM device_aggregates WHERE bucket_at < $1",
        )
        .bind(aggregate_cutoff)
        .fetch_one(&db.pool)
        .await?;
        let Some(first) = first else { break };
        let deleted =
            sqlx::query("DELETE FROM device_aggregates WHERE bucket_at < $1 AND bucket_at < $2")
                .bind(aggregate_cutoff)
                .bind(first + 86_400_000)
                .execute(&db.pool)
                .await?;
        done.aggregates_deleted += deleted.rows_affected();
    }
    if done != Done::default() {
        tracing::info!(
            buckets = done.buckets_written,
            raw_deleted = done.raw_deleted,
            aggregates_deleted = done.aggregates_deleted,
            "device samples rolled up"
        );
    }
    Ok(done)
}

async fn stored(
    conn: &mut sqlx::AnyConnection,
    device_id: i64,
    bucket_at: i64,
) -> Result<Option<Aggregate>> {
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
        "SELECT {AGGREGATE_COLUMNS} FROM device_aggregates WHERE device_id = $1 AND bucket_at = $2"
    )))
    .bind(device_id)
    .bind(bucket_at)
    .fetch_optional(conn)
    .await?;
    row.map(|r| aggregate_from(&r)).transpose()
}

/// The columns [`aggregate_from`] reads.
pub const AGGREGATE_COLUMNS: &str = "samples, up_samples, latency_min_ms, latency_avg_ms, latency_max_ms, \
    loss_avg_percent, loss_max_percent, in_bps, out_bps";

/// An aggregate from a row with [`AGGREGATE_COLUMNS`].
pub fn aggregate_from(r: &sqlx::any::AnyRow) -> Result<Aggregate> {
    Ok(Aggregate {
        samples: r.try_get("samples")?,
        up_samples: r.try_get("up_samples")?,
        latency_min_ms: r.try_get("latency_min_ms")?,
        latency_avg_ms: r.try_get("latency_avg_ms")?,
        latency_max_ms: r.try_get("latency_max_ms")?,
        loss_avg_percent: r.try_get("loss_avg_percent")?,
        loss_max_percent: r.try_get("loss_max_percent")?,
        in_bps: r.try_get("in_bps")?,
        out_bps: r.try_get("out_bps")?,
    })
}

async fn write(
    conn: &mut sqlx::AnyConnection,
    device_id: i64,
    bucket_at: i64,
    a: &Aggregate,
    replace: bool,
) -> Result<()> {
    if replace {
        sqlx::query("DELETE FROM device_aggregates WHERE device_id = $1 AND bucket_at = $2")
            .bind(device_id)
            .bind(bucket_at)
            .execute(&mut *conn)
            .await?;
    }
    let f = "CAST($ AS DOUBLE PRECISION)";
    let floats: Vec<String> = (5..=11).map(|i| f.replace('$', &format!("${i}"))).collect();
    sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO device_aggregates (device_id, bucket_at, samples, up_samples, latency_min_ms, latency_avg_ms, \
         latency_max_ms, loss_avg_percent, loss_max_percent, in_bps, out_bps) VALUES ($1, $2, $3, $4, {})",
        floats.join(", ")
    )))
    .bind(device_id)
    .bind(bucket_at)
    .bind(a.samples)
    .bind(a.up_samples)
    .bind(float_text(a.latency_min_ms))
    .bind(float_text(a.latency_avg_ms))
    .bind(float_text(a.latency_max_ms))
    .bind(float_text(a.loss_avg_percent))
    .bind(float_text(a.loss_max_percent))
    .bind(float_text(a.in_bps))
    .bind(float_text(a.out_bps))
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(
        at: i64,
        ok: bool,
        latency: Option<f64>,
        loss: f64,
        octets: Option<(f64, f64)>,
    ) -> RawSample {
        RawSample {
            device_id: 1,
            at,
            ok,
            latency_ms: latency,
            loss_percent: Some(loss),
            octets,
        }
    }

    #[test]
    fn aggregates_of_samples() {
        let samples = [
            s(0, true, Some(2.0), 0.0, Some((1000.0, 0.0))),
            s(60_000, true, Some(4.0), 20.0, Some((61_000.0, 6_000.0))),
            s(120_000, false, None, 100.0, None),
            s(180_000, true, Some(9.0), 0.0, Some((0.0, 0.0))),
        ];
        let refs: Vec<&RawSample> = samples.iter().collect();
        let a = Aggregate::of(&refs);
        assert_eq!(a.samples, 4);
        assert_eq!(a.up_samples, 3);
        assert_eq!(a.latency_min_ms, Some(2.0));
        assert_eq!(a.latency_avg_ms, Some(5.0));
        assert_eq!(a.latency_max_ms, Some(9.0));
        assert_eq!(a.loss_avg_percent, Some(30.0));
        assert_eq!(a.loss_max_percent, Some(100.0));
        // 60,000 octets in over 60 s is 8,000 bit/s; the counter that went back is left out.
        assert_eq!(a.in_bps, Some(8_000.0));
        assert_eq!(a.out_bps, Some(800.0));
    }

    #[test]
    fn merged_aggregates_weigh_their_samples() {
        let a = Aggregate {
            samples: 3,
            up_samples: 3,
            latency_min_ms: Some(1.0),
            latency_avg_ms: Some(2.0),
            latency_max_ms: Some(3.0),
            loss_avg_percent: Some(0.0),
            loss_max_percent: Some(0.0),
            ..Default::default()
        };
        let b = Aggregate {
            samples: 1,
            up_samples: 1,
            latency_min_ms: Some(6.0),
            latency_avg_ms: Some(6.0),
            latency_max_ms: Some(6.0),
            loss_avg_percent: Some(40.0),
            loss_max_percent: Some(40.0),
            ..Default::default()
        };
        let m = a.merge(&b);
        assert_eq!((m.samples, m.up_samples), (4, 4));
        assert_eq!(m.latency_avg_ms, Some(3.0));
        assert_eq!(m.loss_avg_percent, Some(10.0));
        assert_eq!((m.latency_min_ms, m.latency_max_ms), (Some(1.0), Some(6.0)));
    }

    #[test]
    fn octets_sum_interfaces() {
        let detail = r#"{"interfaces":[{"index":1,"in_octets":10,"out_octets":5},{"index":2,"in_octets":1,"out_octets":2},{"index":3}]}"#;
        assert_eq!(octets(Some(detail)), Some((11.0, 7.0)));
        assert_eq!(octets(Some("{}")), None);
        assert_eq!(octets(None), None);
    }
}
