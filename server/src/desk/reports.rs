//! Fiscal-year reports of the desk (ปีงบประมาณ: 1 October to 30 September), by school, kind and
//! state: counts, mean time to resolve, SLA met, satisfaction. Years are given and shown in the
//! Buddhist era (พ.ศ. = ค.ศ. + 543), as the district's own documents do.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{Any, Row};

use super::Settings;
use super::kinds::Kind;
use super::sla;
use crate::db::Db;
use crate::error::{Error, Result};

/// The Buddhist-era year of a Common-era year.
pub const BE_OFFSET: i32 = 543;

/// The fiscal year `fiscal_year_be` (e.g. 2569) as `[start, end)` in ms: 1 Oct of the year
/// before to 1 Oct, Bangkok time.
///
/// # Errors
/// `Invalid` naming `fiscal_year` when it is not a plausible Buddhist-era year.
pub fn fiscal_year_range(fiscal_year_be: i32) -> Result<(i64, i64)> {
    if !(2500..=2700).contains(&fiscal_year_be) {
        return Err(Error::invalid(
            "fiscal_year",
            "give the Buddhist-era fiscal year (ปีงบประมาณ), e.g. 2569",
        ));
    }
    let ce = (fiscal_year_be - BE_OFFSET) as i16;
    let at = |year: i16| -> i64 {
        jiff::civil::date(year, 10, 1)
            .to_zoned(jiff::tz::TimeZone::fixed(crate::BANGKOK))
            .expect("1 October exists")
            .timestamp()
            .as_millisecond()
    };
    Ok((at(ce - 1), at(ce)))
}

/// The Buddhist-era fiscal year an instant falls in.
pub fn fiscal_year_of(ms: i64) -> i32 {
    let zoned = jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::fixed(crate::BANGKOK));
    let ce = i32::from(zoned.year()) + i32::from(zoned.month() >= 10);
    ce + BE_OFFSET
}

/// One line of the summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    pub school_id: i64,
    pub school_code: String,
    pub school_name: String,
    pub kind: String,
    pub state: String,
    pub count: i64,
    /// Resolved requests of the line, and their mean working hours to resolve.
    pub resolved: i64,
    pub mean_hours_to_resolve: Option<f64>,
    /// Resolved within the resolution target.
    pub sla_met: i64,
    pub rated: i64,
    pub mean_rating: Option<f64>,
}

/// The summary of one fiscal year.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub fiscal_year: i32,
    pub from: String,
    pub to: String,
    pub lines: Vec<Line>,
}

/// Summarises the requests filed in the fiscal year, optionally of one school only.
pub async fn summary(
    db: &Db,
    settings: &Settings,
    fiscal_year_be: i32,
    school: Option<i64>,
) -> Result<Summary> {
    let (start, end) = fiscal_year_range(fiscal_year_be)?;
    let rows = sqlx::query::<Any>(
        "SELECT r.school_id, s.code, s.name_th, r.kind, r.state, r.priority, r.clock_start_at, r.responded_at, \
         r.resolved_at, r.paused_ms, r.rating FROM desk_requests r JOIN schools s ON s.id = r.school_id \
         WHERE r.created_at >= $1 AND r.created_at < $2 AND ($3 IS NULL OR r.school_id = $3)",
    )
    .bind(start)
    .bind(end)
    .bind(school)
    .fetch_all(&db.pool)
    .await?;
    #[derive(Default)]
    struct Acc {
        code: String,
        name: String,
        count: i64,
        resolved: i64,
        resolve_ms: i64,
        sla_met: i64,
        rated: i64,
        rating_sum: i64,
    }
    let mut groups: BTreeMap<(i64, String, String), Acc> = BTreeMap::new();
    for row in rows {
        let school_id: i64 = row.try_get("school_id")?;
        let kind: String = row.try_get("kind")?;
        let state: String = row.try_get("state")?;
        let priority: String = row.try_get("priority")?;
        let start: Option<i64> = row.try_get("clock_start_at")?;
        let resolved: Option<i64> = row.try_get("resolved_at")?;
        let paused_ms: i64 = row.try_get("paused_ms")?;
        let rating: Option<i64> = row.try_get("rating")?;
        let acc = groups.entry((school_id, kind.clone(), state)).or_default();
        acc.code = row.try_get("code")?;
        acc.name = row.try_get("name_th")?;
        acc.count += 1;
        if let (Some(start), Some(resolved)) = (start, resolved) {
            let kind = Kind::parse(&kind).unwrap_or(Kind::General);
            let status = sla::status(
                &settings.calendar,
                settings.targets(kind, &priority),
                sla::Clock {
                    start: Some(start),
                    responded: row.try_get("responded_at")?,
                    resolved: Some(resolved),
                    paused_ms,
                    paused_since: None,
                },
                resolved,
            );
            acc.resolved += 1;
            acc.resolve_ms += status.resolution_minutes * 60_000;
            acc.sla_met += i64::from(!status.resolution_breached);
        }
        if let Some(r) = rating {
            acc.rated += 1;
            acc.rating_sum += r;
        }
    }
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let lines = groups
        .into_iter()
        .map(|((school_id, kind, state), a)| Line {
            school_id,
            school_code: a.code,
            school_name: a.name,
            kind,
            state,
            count: a.count,
            resolved: a.resolved,
            mean_hours_to_resolve: (a.resolved > 0)
                .then(|| round2(a.resolve_ms as f64 / a.resolved as f64 / 3_600_000.0)),
            sla_met: a.sla_met,
            rated: a.rated,
            mean_rating: (a.rated > 0).then(|| round2(a.rating_sum as f64 / a.rated as f64)),
        })
        .collect();
    Ok(Summary {
        fiscal_year: fiscal_year_be,
        from: crate::db::rfc3339(start),
        to: crate::db::rfc3339(end - 1),
        lines,
    })
}

/// The column headings, in Thai and English, shared by CSV and XLSX.
pub const HEADINGS: [&str; 11] = [
    "รหัสโรงเรียน school_code",
    "โรงเรียน school",
    "ประเภท kind",
    "สถานะ state",
    "จำนวน count",
    "แก้ไขแล้ว resolved",
    "ชั่วโมงเฉลี่ย mean_hours_to_resolve",
    "ตาม SLA sla_met",
    "ประเมิน rated",
    "ความพึงพอใจเฉลี่ย mean_rating",
    "ปีงบประมาณ fiscal_year",
];

/// The cells of one line, in the order of [`HEADINGS`].
pub fn cells(summary: &Summary, line: &Line) -> [String; 11] {
    let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    [
        line.school_code.clone(),
        line.school_name.clone(),
        line.kind.clone(),
        line.state.clone(),
        line.count.to_string(),
        line.resolved.to_string(),
        opt(line.mean_hours_to_resolve),
        line.sla_met.to_string(),
        line.rated.to_string(),
        opt(line.mean_rating),
        summary.fiscal_year.to_string(),
    ]
}

/// The summary as CSV (RFC 4180, UTF-8 with a byte-order mark so that Excel reads Thai).
pub fn csv(summary: &Summary) -> String {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from("\u{feff}");
    out.push_str(&HEADINGS.map(field).join(","));
    out.push_str("\r\n");
    for line in &summary.lines {
        out.push_str(&cells(summary, line).map(|c| field(&c)).join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiscal_years_in_the_buddhist_era() {
        let (start, end) = fiscal_year_range(2569).unwrap();
        assert_eq!(crate::db::rfc3339(start), "2025-10-01T00:00:00+07:00");
        assert_eq!(crate::db::rfc3339(end), "2026-10-01T00:00:00+07:00");
        let check = |at: &str, expected: i32| {
            let ms = at.parse::<jiff::Timestamp>().unwrap().as_millisecond();
            assert_eq!(fiscal_year_of(ms), expected, "{at}");
        };
        check("2025-09-30T23:59:59+07:00", 2568);
        check("2025-10-01T00:00:00+07:00", 2569);
        check("2025-09-30T17:30:00Z", 2569); // already 1 October in Bangkok
        check("2026-11-21T12:00:00+07:00", 2570);
        assert!(
            fiscal_year_range(2026).is_err(),
            "a Common-era year is refused"
        );
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let summary = Summary {
            fiscal_year: 2570,
            from: String::new(),
            to: String::new(),
            lines: vec![Line {
                school_id: 1,
                school_code: "1057010001".into(),
                school_name: "โรงเรียน \"บ้าน\", หนองบัว".into(),
                kind: "repair".into(),
                state: "closed".into(),
                count: 3,
                resolved: 2,
                mean_hours_to_resolve: Some(1.5),
                sla_met: 2,
                rated: 1,
                mean_rating: None,
            }],
        };
        let csv = csv(&summary);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert!(lines[0].starts_with("\u{feff}รหัสโรงเรียน school_code,"));
        assert_eq!(
            lines[1],
            "1057010001,\"โรงเรียน \"\"บ้าน\"\", หนองบัว\",repair,closed,3,2,1.5,2,1,,2570"
        );
    }
}
