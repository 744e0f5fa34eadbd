//! A device's history for its page: latency, loss and interface traffic over a range, from raw
//! samples where they are still kept and from 5-minute aggregates beyond, drawn as plain SVG on
//! the server (no script); and uptime per calendar month (Bangkok time).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sqlx::{Any, Row};

use super::raw::{self, Scope};
use super::rollup::{AGGREGATE_COLUMNS, Aggregate, BUCKET_MS, RawSample, aggregate_from, raw_of};
use crate::db::Db;
use crate::error::Result;

/// One point of a series: the aggregate of a span starting at `at`.
#[derive(Debug, Clone)]
pub struct Point {
    pub at: i64,
    pub aggregate: Aggregate,
}

/// A device's history from `since` to `until`, in at most `points` spans (each a whole number of
/// 5-minute buckets; one minute when the range is short enough for raw samples to show).
pub async fn series(
    db: &Db,
    device_id: i64,
    since: i64,
    until: i64,
    points: i64,
) -> Result<Vec<Point>> {
    let range = (until - since).max(1);
    let step = if range / points.max(1) <= 60_000 {
        60_000
    } else {
        ((range / points.max(1)) + BUCKET_MS - 1) / BUCKET_MS * BUCKET_MS
    };
    let mut conn = db.pool.acquire().await?;
    let samples = raw_of(&mut conn, device_id, since, until).await?;
    let mut spans: BTreeMap<i64, Vec<&RawSample>> = BTreeMap::new();
    for s in &samples {
        spans
            .entry(s.at - (s.at - since) % step)
            .or_default()
            .push(s);
    }
    let mut out: BTreeMap<i64, Aggregate> = spans
        .into_iter()
        .map(|(at, group)| (at, Aggregate::of(&group)))
        .collect();
    let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
        "SELECT bucket_at, {AGGREGATE_COLUMNS} FROM device_aggregates \
         WHERE device_id = $1 AND bucket_at >= $2 AND bucket_at < $3 ORDER BY bucket_at"
    )))
    .bind(device_id)
    .bind(since)
    .bind(until)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let at: i64 = r.try_get("bucket_at")?;
        let a = aggregate_from(&r)?;
        let key = at - (at - since) % step;
        let merged = match out.get(&key) {
            Some(existing) => existing.merge(&a),
            None => a,
        };
        out.insert(key, merged);
    }
    Ok(out
        .into_iter()
        .map(|(at, aggregate)| Point { at, aggregate })
        .collect())
}

/// Uptime of one month: (year, month, samples that answered, all samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthUptime {
    pub year: i16,
    pub month: i8,
    pub up: i64,
    pub total: i64,
}

impl MonthUptime {
    /// The share that answered, in percent with one decimal, or `-` without samples.
    pub fn percent(&self) -> String {
        if self.total == 0 {
            "-".into()
        } else {
            format!("{:.1}%", self.up as f64 * 100.0 / self.total as f64)
        }
    }
}

/// Uptime per calendar month (Bangkok time), newest first, from raw samples and aggregates.
pub async fn monthly_uptime(db: &Db, device_id: i64) -> Result<Vec<MonthUptime>> {
    let mut conn = db.pool.acquire().await?;
    let mut days: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for ((_, day), (up, all)) in
        raw::day_counts(&mut conn, Scope::Device(device_id), i64::MIN).await?
    {
        let d = days.entry(day).or_default();
        d.0 += up;
        d.1 += all;
    }
    let rows = sqlx::query::<Any>(
        "SELECT (bucket_at + 25200000) / 86400000 AS day, CAST(SUM(up_samples) AS BIGINT) AS up, \
         CAST(SUM(samples) AS BIGINT) AS total \
         FROM device_aggregates WHERE device_id = $1 GROUP BY (bucket_at + 25200000) / 86400000",
    )
    .bind(device_id)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let d = days.entry(r.try_get("day")?).or_default();
        d.0 += r.try_get::<i64, _>("up")?;
        d.1 += r.try_get::<i64, _>("total")?;
    }
    let mut months: BTreeMap<(i16, i8), (i64, i64)> = BTreeMap::new();
    for (day, (up, total)) in days {
        let date = jiff::civil::date(1970, 1, 1)
            .checked_add(jiff::Span::new().days(day))
            .unwrap_or(jiff::civil::date(1970, 1, 1));
        let entry = months.entry((date.year(), date.month())).or_default();
        entry.0 += up;
        entry.1 += total;
    }
    Ok(months
        .into_iter()
        .rev()
        .map(|((year, month), (up, total))| MonthUptime {
            year,
            month,
            up,
            total,
        })
        .collect())
}

/// A line chart as SVG: `series` are (label, colour, values at the x positions); the y axis
/// starts at 0 and ends at the largest value. `x` are times (ms) from `since` to `until`.
pub fn svg(
    title: &str,
    unit: &str,
    since: i64,
    until: i64,
    xs: &[i64],
    series: &[(&str, &str, Vec<Option<f64>>)],
) -> String {
    const W: f64 = 640.0;
    const H: f64 = 160.0;
    const LEFT: f64 = 56.0;
    const TOP: f64 = 20.0;
    const BOTTOM: f64 = 20.0;
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().flatten())
        .copied()
        .fold(0.0_f64, f64::max);
    let max = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let span = (until - since).max(1) as f64;
    let x_of = |at: i64| LEFT + (at - since) as f64 / span * (W - LEFT - 8.0);
    let y_of = |v: f64| TOP + (1.0 - v / max) * (H - TOP - BOTTOM);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{}" class="chart">"#,
        escape(title)
    );
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="13" font-size="12">{}</text><line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#999"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="#999"/>"##,
        escape(title),
        H - BOTTOM,
        W - 8.0,
        H - BOTTOM,
        H - BOTTOM
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{} {}</text><text x="{}" y="{}" font-size="10" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        TOP + 8.0,
        short(max),
        escape(unit),
        LEFT - 4.0,
        H - BOTTOM
    );
    let mut legend_x = W - 8.0;
    for (label, colour, values) in series.iter().rev() {
        let mut path = String::new();
        let mut pen_down = false;
        for (x, v) in xs.iter().zip(values) {
            match v {
                Some(v) => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x_of(*x),
                        y_of(*v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(
                out,
                r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
                path.trim_end()
            );
        }
        let _ = write!(
            out,
            r#"<text x="{legend_x}" y="13" font-size="11" text-anchor="end" fill="{colour}">{}</text>"#,
            escape(label)
        );
        legend_x -= 12.0 + 7.0 * label.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

fn short(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_draws_lines_and_breaks_at_gaps() {
        let svg = svg(
            "latency <ms>",
            "ms",
            0,
            300,
            &[0, 100, 200, 300],
            &[("avg", "#06c", vec![Some(1.0), None, Some(3.0), Some(2.0)])],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("latency &lt;ms&gt;"), "{svg}");
        // Two pieces: the gap lifts the pen.
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
        assert_eq!(svg.matches('L').count(), 1, "{svg}");
    }
}
