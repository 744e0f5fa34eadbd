//! Loans: a loan request reserves specific assets for a period. The reservations count
//! against other loans once the request is approved, and two approved reservations of one
//! asset never overlap.
//!
//! Invariant: the database enforces the no-overlap rule itself (PostgreSQL: an exclusion
//! constraint over `int8range(starts_at, ends_at)`; SQLite: triggers, race-free because SQLite
//! runs one writer at a time). The check in [`approve_in`] only finds the conflicting request
//! to name it; when two approvals race, the constraint decides and the loser gets the same 409.

use serde::Serialize;
use sqlx::{Any, AnyConnection, Row};

use crate::db::{Db, rfc3339};
use crate::error::{Error, Result};

const DAY_MS: i64 = 86_400_000;

/// A loan period `[starts_at, ends_at)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub starts_at: i64,
    pub ends_at: i64,
}

/// Reads `fields.from` and `fields.to`: dates (the loan runs from the start of `from` to the
/// end of `to`, Bangkok time) or RFC 3339 instants.
///
/// # Errors
/// `Invalid` naming `fields.from` or `fields.to`.
pub fn period(from: &str, to: &str) -> Result<Period> {
    let instant = |field: &str, s: &str, end_of_day: bool| -> Result<i64> {
        // A bare date (jiff would also read the date out of a full timestamp).
        if let Some(date) = (s.len() == 10)
            .then(|| s.parse::<jiff::civil::Date>().ok())
            .flatten()
        {
            let start = date
                .to_zoned(jiff::tz::TimeZone::fixed(crate::BANGKOK))
                .map_err(|e| Error::invalid(field, e.to_string()))?
                .timestamp()
                .as_millisecond();
            return Ok(if end_of_day { start + DAY_MS } else { start });
        }
        s.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|_| {
                Error::invalid(
                    field,
                    "must be a date YYYY-MM-DD or an RFC 3339 time with offset",
                )
            })
    };
    let starts_at = instant("fields.from", from, false)?;
    let ends_at = instant("fields.to", to, true)?;
    if ends_at <= starts_at {
        return Err(Error::invalid(
            "fields.to",
            "must not be before fields.from",
        ));
    }
    if ends_at - starts_at > 366 * DAY_MS {
        return Err(Error::invalid("fields.to", "a loan lasts at most a year"));
    }
    Ok(Period { starts_at, ends_at })
}

/// Whether a database error is the no-overlap rule refusing a reservation.
pub fn is_overlap(e: &Error) -> bool {
    match e {
        Error::Database(sqlx::Error::Database(db)) => {
            db.code().as_deref() == Some("23P01") || db.message().contains("desk_loan_overlap")
        }
        _ => false,
    }
}

/// The approved reservation of `asset_id` that overlaps `period`, other than `request_id`'s.
async fn conflicting(
    conn: &mut AnyConnection,
    asset_id: i64,
    period: Period,
    request_id: i64,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar::<Any, i64>(
        "SELECT request_id FROM desk_request_assets \
         WHERE asset_id = $1 AND approved = 1 AND starts_at IS NOT NULL \
         AND starts_at < $3 AND $2 < ends_at AND request_id <> $4 LIMIT 1",
    )
    .bind(asset_id)
    .bind(period.starts_at)
    .bind(period.ends_at)
    .bind(request_id)
    .fetch_optional(conn)
    .await?)
}

async fn asset_number(conn: &mut AnyConnection, asset_id: i64) -> Result<String> {
    Ok(
        sqlx::query_scalar::<Any, String>("SELECT asset_number FROM assets WHERE id = $1")
            .bind(asset_id)
            .fetch_optional(conn)
            .await?
            .unwrap_or_default(),
    )
}

fn overlap_message(asset_id: i64, number: &str, other: Option<i64>) -> String {
    match other {
        Some(other) => format!(
            "asset {asset_id} ({number}) is already lent for an overlapping period by approved request {other}"
        ),
        None => format!(
            "asset {asset_id} ({number}) is already lent for an overlapping period by another approved request"
        ),
    }
}

/// Refuses a new loan whose assets are already lent for an overlapping period.
pub async fn check_free(conn: &mut AnyConnection, asset_ids: &[i64], period: Period) -> Result<()> {
    for &asset_id in asset_ids {
        if let Some(other) = conflicting(conn, asset_id, period, -1).await? {
            let number = asset_number(conn, asset_id).await?;
            return Err(Error::Conflict(overlap_message(
                asset_id,
                &number,
                Some(other),
            )));
        }
    }
    Ok(())
}

/// Makes a request's reservations count: `Conflict` naming the asset and the conflicting
/// request when one overlaps an approved loan. After a conflict the transaction must be
/// rolled back (PostgreSQL has aborted it).
pub async fn approve_in(db: &Db, conn: &mut AnyConnection, request_id: i64) -> Result<()> {
    let rows = sqlx::query::<Any>(
        "SELECT id, asset_id, starts_at, ends_at FROM desk_request_assets \
         WHERE request_id = $1 AND starts_at IS NOT NULL ORDER BY asset_id",
    )
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let asset_id: i64 = row.try_get("asset_id")?;
        let period = Period {
            starts_at: row.try_get("starts_at")?,
            ends_at: row.try_get("ends_at")?,
        };
        if let Some(other) = conflicting(conn, asset_id, period, request_id).await? {
            let number = asset_number(conn, asset_id).await?;
            return Err(Error::Conflict(overlap_message(
                asset_id,
                &number,
                Some(other),
            )));
        }
        let result = sqlx::query("UPDATE desk_request_assets SET approved = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(Error::from);
        if let Err(e) = result {
            if !is_overlap(&e) {
                return Err(e);
            }
            // Another approval won the race and has committed; find it outside this
            // (aborted) transaction to name it.
            let mut fresh = db.pool.acquire().await?;
            let other = conflicting(&mut fresh, asset_id, period, request_id).await?;
            let number = asset_number(&mut fresh, asset_id).await?;
            return Err(Error::Conflict(overlap_message(asset_id, &number, other)));
        }
    }
    Ok(())
}

/// Frees a request's reservations (cancelled or rejected).
pub async fn release_in(conn: &mut AnyConnection, request_id: i64) -> Result<()> {
    sqlx::query("UPDATE desk_request_assets SET approved = 0 WHERE request_id = $1")
        .bind(request_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// One booking of an asset, for its loan calendar.
#[derive(Debug, Clone, Serialize)]
pub struct Booking {
    pub request_id: i64,
    pub state: String,
    pub title: String,
    pub from: String,
    pub to: String,
    pub approved: bool,
}

/// The loans of one asset that end after `since`, in time order.
pub async fn calendar(db: &Db, asset_id: i64, since: i64) -> Result<Vec<Booking>> {
    let rows = sqlx::query::<Any>(
        "SELECT r.id, r.state, r.title, a.starts_at, a.ends_at, a.approved \
         FROM desk_request_assets a JOIN desk_requests r ON r.id = a.request_id \
         WHERE a.asset_id = $1 AND a.starts_at IS NOT NULL AND a.ends_at > $2 \
         AND r.state NOT IN ('rejected', 'cancelled') ORDER BY a.starts_at",
    )
    .bind(asset_id)
    .bind(since)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Booking {
                request_id: row.try_get("id")?,
                state: row.try_get("state")?,
                title: row.try_get("title")?,
                from: rfc3339(row.try_get("starts_at")?),
                to: rfc3339(row.try_get("ends_at")?),
                approved: row.try_get::<i64, _>("approved")? == 1,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let p = period("2026-12-01", "2026-12-01").unwrap();
        assert_eq!(p.ends_at - p.starts_at, DAY_MS, "one whole day");
        assert_eq!(rfc3339(p.starts_at), "2026-12-01T00:00:00+07:00");
        let p = period("2026-12-01T09:00:00+07:00", "2026-12-01T12:00:00+07:00").unwrap();
        assert_eq!(p.ends_at - p.starts_at, 3 * 3_600_000);
        let field = |r: Result<Period>| match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(period("2026-12-02", "2026-12-01")), "fields.to");
        assert_eq!(field(period("1 Dec", "2026-12-01")), "fields.from");
        assert_eq!(field(period("2026-12-01", "2028-12-01")), "fields.to");
    }
}
