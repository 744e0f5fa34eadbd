//! The asset register (ทะเบียนครุภัณฑ์): each asset under its government asset number
//! (เลขครุภัณฑ์), where it is, who keeps it, its lifecycle state and its history.
//!
//! Invariant: the asset number is unique (the database says so); every change of an asset
//! appends to `asset_events` and to the audit trail in the same transaction.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use crate::audit::{self, Actor, Change};
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{Error, Result, ResultExt};

pub const STATES: [&str; 6] = [
    "in_stock",
    "in_use",
    "on_loan",
    "in_repair",
    "lost",
    "disposed",
];

/// An asset as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Asset {
    pub id: i64,
    pub asset_number: String,
    pub category: String,
    pub brand: String,
    pub model: String,
    pub serial: String,
    /// Budget year in the Buddhist era (พ.ศ.), as on the register.
    pub budget_year: Option<i64>,
    /// Price in baht.
    pub price: Option<f64>,
    pub funding_source: String,
    pub school_id: i64,
    pub room: String,
    pub custodian: String,
    pub state: String,
    pub warranty_end: Option<String>,
    pub notes: String,
    pub created_at: String,
    pub updated_at: String,
}

/// What a client sends to register an asset. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAsset {
    pub asset_number: String,
    pub category: String,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub serial: String,
    pub budget_year: Option<i64>,
    pub price: Option<f64>,
    #[serde(default)]
    pub funding_source: String,
    pub school_id: i64,
    #[serde(default)]
    pub room: String,
    #[serde(default)]
    pub custodian: String,
    #[serde(default = "default_state")]
    pub state: String,
    pub warranty_end: Option<String>,
    #[serde(default)]
    pub notes: String,
}

fn default_state() -> String {
    "in_stock".into()
}

impl NewAsset {
    fn validate(&self) -> Result<()> {
        let number = self.asset_number.trim();
        if number.is_empty() || number.chars().count() > 64 {
            return Err(Error::invalid("asset_number", "must be 1 to 64 characters"));
        }
        if self.category.trim().is_empty() {
            return Err(Error::invalid("category", "must not be empty"));
        }
        if self
            .budget_year
            .is_some_and(|y| !(2400..=2800).contains(&y))
        {
            return Err(Error::invalid(
                "budget_year",
                "give the Buddhist-era year (พ.ศ.), e.g. 2567",
            ));
        }
        if self
            .price
            .is_some_and(|p| !(p.is_finite() && (0.0..1e12).contains(&p)))
        {
            return Err(Error::invalid("price", "must be 0 or more baht"));
        }
        if !STATES.contains(&self.state.as_str()) {
            return Err(Error::invalid(
                "state",
                format!("must be one of {}", STATES.join(", ")),
            ));
        }
        if let Some(d) = &self.warranty_end
            && d.parse::<jiff::civil::Date>().is_err()
        {
            return Err(Error::invalid("warranty_end", "must be a date YYYY-MM-DD"));
        }
        Ok(())
    }
}

const COLUMNS: &str = "id, asset_number, category, brand, model, serial, budget_year, price_satang, funding_source, \
    school_id, room, custodian, state, warranty_end, notes, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Asset> {
    let satang: Option<i64> = row.try_get("price_satang")?;
    Ok(Asset {
        id: row.try_get("id")?,
        asset_number: row.try_get("asset_number")?,
        category: row.try_get("category")?,
        brand: row.try_get("brand")?,
        model: row.try_get("model")?,
        serial: row.try_get("serial")?,
        budget_year: row.try_get("budget_year")?,
        price: satang.map(|s| s as f64 / 100.0),
        funding_source: row.try_get("funding_source")?,
        school_id: row.try_get("school_id")?,
        room: row.try_get("room")?,
        custodian: row.try_get("custodian")?,
        state: row.try_get("state")?,
        warranty_end: row.try_get("warranty_end")?,
        notes: row.try_get("notes")?,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

/// Registers an asset, inside the caller's transaction (a purchase's receipt registers many).
///
/// # Errors
/// `Invalid` naming the field; `Conflict` when the asset number is taken.
pub async fn create_in(
    conn: &mut AnyConnection,
    actor: &Actor,
    new: &NewAsset,
    request_id: Option<i64>,
) -> Result<Asset> {
    new.validate()?;
    let school: Option<i64> =
        sqlx::query_scalar::<Any, i64>("SELECT id FROM schools WHERE id = $1")
            .bind(new.school_id)
            .fetch_optional(&mut *conn)
            .await?;
    if school.is_none() {
        return Err(Error::invalid("school_id", "no such school"));
    }
    let now = now_ms();
    let id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO assets (asset_number, category, brand, model, serial, budget_year, price_satang, funding_source, \
         school_id, room, custodian, state, warranty_end, notes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) RETURNING id",
    )
    .bind(new.asset_number.trim())
    .bind(new.category.trim())
    .bind(new.brand.trim())
    .bind(new.model.trim())
    .bind(new.serial.trim())
    .bind(new.budget_year)
    .bind(new.price.map(|p| (p * 100.0).round() as i64))
    .bind(new.funding_source.trim())
    .bind(new.school_id)
    .bind(new.room.trim())
    .bind(new.custodian.trim())
    .bind(&new.state)
    .bind(&new.warranty_end)
    .bind(new.notes.trim())
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .on_unique_violation(|| {
        format!(
            "asset number {:?} is already registered",
            new.asset_number.trim()
        )
    })?;
    let asset = get_in(conn, id).await?;
    event(conn, actor, id, "register", request_id, &new.state).await?;
    audit::record(
        conn,
        actor,
        Change {
            action: "asset.create",
            entity: "asset",
            entity_id: Some(id),
            before: None,
            after: audit::snapshot(&asset),
        },
    )
    .await?;
    Ok(asset)
}

/// Registers one asset in its own transaction.
pub async fn create(db: &Db, actor: &Actor, new: NewAsset) -> Result<Asset> {
    let mut tx = db.begin_write().await?;
    let asset = create_in(&mut tx, actor, &new, None).await?;
    tx.commit().await?;
    Ok(asset)
}

async fn event(
    conn: &mut AnyConnection,
    actor: &Actor,
    asset_id: i64,
    action: &str,
    request_id: Option<i64>,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO asset_events (asset_id, at, actor_id, actor, action, request_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(asset_id)
    .bind(now_ms())
    .bind(actor.user_id)
    .bind(&actor.username)
    .bind(action)
    .bind(request_id)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an asset to another lifecycle state because of a request (check-out, repair, ...).
/// Returns the state it had.
pub async fn set_state_in(
    conn: &mut AnyConnection,
    actor: &Actor,
    asset_id: i64,
    state: &str,
    action: &str,
    request_id: Option<i64>,
    detail: &str,
) -> Result<String> {
    debug_assert!(STATES.contains(&state));
    let before = get_in(conn, asset_id).await?;
    sqlx::query("UPDATE assets SET state = $1, updated_at = $2 WHERE id = $3")
        .bind(state)
        .bind(now_ms())
        .bind(asset_id)
        .execute(&mut *conn)
        .await?;
    event(conn, actor, asset_id, action, request_id, detail).await?;
    audit::record(
        conn,
        actor,
        Change {
            action: "asset.state",
            entity: "asset",
            entity_id: Some(asset_id),
            before: Some(json!({ "state": before.state })),
            after: Some(json!({ "state": state, "request_id": request_id })),
        },
    )
    .await?;
    Ok(before.state)
}

pub async fn get_in(conn: &mut AnyConnection, id: i64) -> Result<Asset> {
    let sql = format!("SELECT {COLUMNS} FROM assets WHERE id = $1");
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

/// One entry of an asset's history.
#[derive(Debug, Clone, Serialize)]
pub struct AssetEvent {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub request_id: Option<i64>,
    pub detail: String,
}

/// A request an asset is linked to, with the reserved period of a loan.
#[derive(Debug, Clone, Serialize)]
pub struct AssetRequest {
    pub request_id: i64,
    pub kind: String,
    pub state: String,
    pub title: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub approved: bool,
}

/// An asset with its history and the requests that concern it.
#[derive(Debug, Clone, Serialize)]
pub struct AssetDetail {
    #[serde(flatten)]
    pub asset: Asset,
    pub history: Vec<AssetEvent>,
    pub requests: Vec<AssetRequest>,
}

/// An asset with history and linked requests; `NotFound` outside `school_scope`.
pub async fn get(db: &Db, id: i64, school_scope: Option<i64>) -> Result<AssetDetail> {
    let mut conn = db.pool.acquire().await?;
    let asset = get_in(&mut conn, id).await?;
    if school_scope.is_some_and(|s| s != asset.school_id) {
        return Err(Error::NotFound);
    }
    let history = sqlx::query::<Any>(
        "SELECT at, actor, action, request_id, detail FROM asset_events WHERE asset_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(AssetEvent {
            at: rfc3339(row.try_get("at")?),
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            request_id: row.try_get("request_id")?,
            detail: row.try_get("detail")?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let requests = sqlx::query::<Any>(
        "SELECT r.id, r.kind, r.state, r.title, a.starts_at, a.ends_at, a.approved \
         FROM desk_request_assets a JOIN desk_requests r ON r.id = a.request_id \
         WHERE a.asset_id = $1 ORDER BY a.starts_at, r.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let starts: Option<i64> = row.try_get("starts_at")?;
        let ends: Option<i64> = row.try_get("ends_at")?;
        Ok(AssetRequest {
            request_id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            state: row.try_get("state")?,
            title: row.try_get("title")?,
            from: starts.map(rfc3339),
            to: ends.map(rfc3339),
            approved: row.try_get::<i64, _>("approved")? == 1,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(AssetDetail {
        asset,
        history,
        requests,
    })
}

/// Which assets to list: newest first, paged by id.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A prefix of the asset number or of the serial number.
    pub q: Option<String>,
    pub school_id: Option<i64>,
    pub state: Option<String>,
    pub category: Option<String>,
    /// The last id of the previous page.
    pub before_id: Option<i64>,
    pub limit: Option<i64>,
}

/// Lists assets matching `filter`; a school-bound user sees only their school's.
///
/// Each filter is served by an index (`asset_number` unique, `serial`, `(school_id, id)`,
/// `(state, id)`, `(category, id)`), so a page stays fast at a million assets.
pub async fn list(db: &Db, filter: &Filter, school_scope: Option<i64>) -> Result<Vec<Asset>> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("limit", "must be 1 to 500"));
    }
    if let Some(state) = &filter.state
        && !STATES.contains(&state.as_str())
    {
        return Err(Error::invalid(
            "state",
            format!("must be one of {}", STATES.join(", ")),
        ));
    }
    let school = match (school_scope, filter.school_id) {
        (Some(own), Some(asked)) if own != asked => return Ok(Vec::new()),
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let q = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    // A prefix as a range, which both engines answer from a B-tree index.
    let q_end = q.map(|q| format!("{q}\u{10FFFF}"));
    let sql = format!(
        "SELECT {COLUMNS} FROM assets \
         WHERE ($1 IS NULL OR (asset_number >= $1 AND asset_number < $2) OR (serial >= $1 AND serial < $2)) \
         AND ($3 IS NULL OR school_id = $3) AND ($4 IS NULL OR state = $4) AND ($5 IS NULL OR category = $5) \
         AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
    );
    let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(q)
        .bind(q_end)
        .bind(school)
        .bind(&filter.state)
        .bind(&filter.category)
        .bind(filter.before_id)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}
