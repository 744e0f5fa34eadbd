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
use crate::db::{Arg, Db, Where, bind_all, now_ms, numbered, rfc3339};
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
    index_words_in(conn, id).await?;
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

/// What a client sends to change an asset: only the fields given change. A nullable field
/// (`budget_year`, `price`, `warranty_end`) given as `null` is cleared. Unknown fields are
/// refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetPatch {
    pub asset_number: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub budget_year: Option<Option<i64>>,
    #[serde(default, deserialize_with = "given")]
    pub price: Option<Option<f64>>,
    pub funding_source: Option<String>,
    /// Moves the asset to another school (a transfer between schools).
    pub school_id: Option<i64>,
    pub room: Option<String>,
    pub custodian: Option<String>,
    /// One of [`MANUAL_STATES`]: on loan and in repair follow their requests.
    pub state: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub warranty_end: Option<Option<String>>,
    pub notes: Option<String>,
    /// Why, kept in the asset's history (e.g. the disposal order's number).
    pub comment: Option<String>,
}

/// A field that was in the JSON, `null` or not.
fn given<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The states a technician sets by hand. `on_loan` and `in_repair` are set and cleared by the
/// check-out and check-in of loan and repair requests, so the loan calendar and the requests
/// stay true.
pub const MANUAL_STATES: [&str; 4] = ["in_stock", "in_use", "lost", "disposed"];

/// Changes an asset's fields; each change is in its history and the audit trail.
///
/// # Errors
/// `NotFound` outside `school_scope`; `Invalid` naming the field; `Conflict` when the asset is
/// on loan or in repair and the state is to change, when it is disposed (only `notes` may
/// change then), or when the new asset number is taken.
pub async fn update(
    db: &Db,
    actor: &Actor,
    id: i64,
    school_scope: Option<i64>,
    patch: AssetPatch,
) -> Result<Asset> {
    if let Some(state) = &patch.state
        && !MANUAL_STATES.contains(&state.as_str())
    {
        return Err(Error::invalid(
            "state",
            format!(
                "must be one of {} (on_loan and in_repair follow their requests)",
                MANUAL_STATES.join(", ")
            ),
        ));
    }
    if patch
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 1000)
    {
        return Err(Error::invalid("comment", "at most 1000 characters"));
    }
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    if school_scope.is_some_and(|s| s != before.school_id) {
        return Err(Error::NotFound);
    }
    let merged = NewAsset {
        asset_number: patch
            .asset_number
            .unwrap_or_else(|| before.asset_number.clone()),
        category: patch.category.unwrap_or_else(|| before.category.clone()),
        brand: patch.brand.unwrap_or_else(|| before.brand.clone()),
        model: patch.model.unwrap_or_else(|| before.model.clone()),
        serial: patch.serial.unwrap_or_else(|| before.serial.clone()),
        budget_year: patch.budget_year.unwrap_or(before.budget_year),
        price: patch.price.unwrap_or(before.price),
        funding_source: patch
            .funding_source
            .unwrap_or_else(|| before.funding_source.clone()),
        school_id: patch.school_id.unwrap_or(before.school_id),
        room: patch.room.unwrap_or_else(|| before.room.clone()),
        custodian: patch.custodian.unwrap_or_else(|| before.custodian.clone()),
        state: patch.state.unwrap_or_else(|| before.state.clone()),
        warranty_end: patch
            .warranty_end
            .unwrap_or_else(|| before.warranty_end.clone()),
        notes: patch.notes.unwrap_or_else(|| before.notes.clone()),
    };
    merged.validate()?;
    if school_scope.is_some_and(|s| s != merged.school_id) {
        return Err(Error::invalid(
            "school_id",
            "you may keep assets of your own school only",
        ));
    }
    if merged.state != before.state && ["on_loan", "in_repair"].contains(&before.state.as_str()) {
        let request: Option<i64> = sqlx::query_scalar::<Any, i64>(
            "SELECT a.request_id FROM desk_request_assets a JOIN desk_requests r ON r.id = a.request_id \
             WHERE a.asset_id = $1 AND r.state IN ('in_progress', 'waiting') ORDER BY a.request_id DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let by = request.map_or(String::new(), |r| format!(" by request #{r}"));
        return Err(Error::Conflict(format!(
            "the asset is {}{by}: its state changes when that request's work ends",
            before.state.replace('_', " ")
        )));
    }
    if merged.school_id != before.school_id {
        let school: Option<i64> =
            sqlx::query_scalar::<Any, i64>("SELECT id FROM schools WHERE id = $1")
                .bind(merged.school_id)
                .fetch_optional(&mut *tx)
                .await?;
        if school.is_none() {
            return Err(Error::invalid("school_id", "no such school"));
        }
    }
    sqlx::query(
        "UPDATE assets SET asset_number = $2, category = $3, brand = $4, model = $5, serial = $6, budget_year = $7, \
         price_satang = $8, funding_source = $9, school_id = $10, room = $11, custodian = $12, state = $13, \
         warranty_end = $14, notes = $15, updated_at = $16 WHERE id = $1",
    )
    .bind(id)
    .bind(merged.asset_number.trim())
    .bind(merged.category.trim())
    .bind(merged.brand.trim())
    .bind(merged.model.trim())
    .bind(merged.serial.trim())
    .bind(merged.budget_year)
    .bind(merged.price.map(|p| (p * 100.0).round() as i64))
    .bind(merged.funding_source.trim())
    .bind(merged.school_id)
    .bind(merged.room.trim())
    .bind(merged.custodian.trim())
    .bind(&merged.state)
    .bind(&merged.warranty_end)
    .bind(merged.notes.trim())
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .on_unique_violation(|| {
        format!(
            "asset number {:?} is already registered",
            merged.asset_number.trim()
        )
    })?;
    // What changed, as stored (trimmed, the price in satang); nothing changed: nothing is
    // recorded (the transaction is dropped, which undoes the UPDATE).
    let after = get_in(&mut tx, id).await?;
    let changed: Vec<(&str, String, String)> = field_texts(&before)
        .into_iter()
        .zip(field_texts(&after))
        .filter(|((_, old), (_, new))| old != new)
        .map(|((field, old), (_, new))| (field, old, new))
        .collect();
    if changed.is_empty() {
        return Ok(before);
    }
    if before.state == "disposed" && changed.iter().any(|(field, ..)| *field != "notes") {
        return Err(Error::Conflict(
            "the asset is disposed of: only its notes may change".into(),
        ));
    }
    const WORD_FIELDS: [&str; 6] = [
        "asset_number",
        "category",
        "serial",
        "brand",
        "model",
        "room",
    ];
    if changed
        .iter()
        .any(|(field, ..)| WORD_FIELDS.contains(field))
    {
        index_words_in(&mut tx, id).await?;
    }
    let comment = patch.comment.as_deref().unwrap_or_default().trim();
    let mut detail = changed
        .iter()
        .map(|(field, old, new)| format!("{field}: {old} → {new}"))
        .collect::<Vec<_>>()
        .join("; ");
    if !comment.is_empty() {
        detail = format!("{detail} ({comment})");
    }
    let action = if after.state != before.state {
        after.state.as_str()
    } else {
        "edit"
    };
    event(&mut tx, actor, id, action, None, &detail).await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "asset.update",
            entity: "asset",
            entity_id: Some(id),
            before: audit::snapshot(&before),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// An asset's fields as its history shows them ("—" for none).
fn field_texts(a: &Asset) -> [(&'static str, String); 14] {
    let text = |value: String| {
        if value.is_empty() {
            "—".to_owned()
        } else {
            value
        }
    };
    [
        ("asset_number", a.asset_number.clone()),
        ("category", a.category.clone()),
        ("brand", a.brand.clone()),
        ("model", a.model.clone()),
        ("serial", a.serial.clone()),
        (
            "budget_year",
            a.budget_year.map(|y| y.to_string()).unwrap_or_default(),
        ),
        (
            "price",
            a.price.map(|p| format!("{p:.2}")).unwrap_or_default(),
        ),
        ("funding_source", a.funding_source.clone()),
        ("school_id", a.school_id.to_string()),
        ("room", a.room.clone()),
        ("custodian", a.custodian.clone()),
        ("state", a.state.clone()),
        ("warranty_end", a.warranty_end.clone().unwrap_or_default()),
        ("notes", a.notes.clone()),
    ]
    .map(|(field, value)| (field, text(value)))
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
    /// Words that must all start a word of the asset number, category, serial, brand, model or room
    /// (see [`words`]); case does not matter.
    pub q: Option<String>,
    pub school_id: Option<i64>,
    pub state: Option<String>,
    pub category: Option<String>,
    /// The last id of the previous page: the next page starts below it.
    pub before_id: Option<i64>,
    pub limit: Option<i64>,
}

/// The longest search a user may type.
const MAX_QUERY_CHARS: usize = 100;

/// How many of the newest assets (under the other filters) a search reads before it turns to
/// the word index. A common word fills a page from these; a rare one is found from the index,
/// whose cost grows with the word's matches, which are few when this window held too few.
const SEARCH_WINDOW: i64 = 2000;

/// Splits at punctuation inside a word ("E14-G2" is also found as "E14" and "G2").
fn is_separator(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// The words an asset is found by: each whitespace-separated word of its asset number,
/// category, serial, brand, model and room, lower-cased, and (but for the asset number, whose
/// parts are codes shared by thousands) the parts of a word that has punctuation inside. A search term matches an asset when it starts one of these words.
///
/// Thai is written without spaces between words, so a Thai run is one word: "ห้องสมุด" is found
/// by "ห้อง" and "ห้องสมุด", not by "สมุด".
pub fn words(
    asset_number: &str,
    category: &str,
    serial: &str,
    brand: &str,
    model: &str,
    room: &str,
) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for (field, parts) in [
        (asset_number, false),
        (category, true),
        (serial, true),
        (brand, true),
        (model, true),
        (room, true),
    ] {
        for chunk in field.to_lowercase().split_whitespace() {
            let chunk = chunk.trim_matches(is_separator);
            if chunk.is_empty() {
                continue;
            }
            if parts {
                out.extend(
                    chunk
                        .split(is_separator)
                        .filter(|p| !p.is_empty() && *p != chunk)
                        .map(str::to_owned),
                );
            }
            out.insert(chunk.to_owned());
        }
    }
    out.into_iter().collect()
}

/// The terms of a search: lower-cased, split at whitespace, outer punctuation removed.
fn search_terms(q: &str) -> Vec<String> {
    q.to_lowercase()
        .split_whitespace()
        .map(|t| t.trim_matches(is_separator).to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `words LIKE` pattern matching a word that starts with `term` (`words` puts a space before
/// each word); `\` escapes LIKE's wildcards in the term.
fn word_pattern(term: &str) -> String {
    let mut p = String::from("% ");
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Writes an asset's words (`assets.words` and `asset_words`) from its current fields,
/// replacing the ones it had. Every change of those fields must call it.
pub async fn index_words_in(conn: &mut AnyConnection, id: i64) -> Result<()> {
    let row = sqlx::query::<Any>(
        "SELECT asset_number, category, serial, brand, model, room, words FROM assets WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound)?;
    let old: Option<String> = row.try_get("words")?;
    for word in old.as_deref().unwrap_or_default().split_whitespace() {
        sqlx::query("DELETE FROM asset_words WHERE word = $1 AND asset_id = $2")
            .bind(word)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    let words = words(
        row.try_get("asset_number")?,
        row.try_get("category")?,
        row.try_get("serial")?,
        row.try_get("brand")?,
        row.try_get("model")?,
        row.try_get("room")?,
    );
    for chunk in words.chunks(100) {
        let values = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("INSERT INTO asset_words (word, asset_id) VALUES {values}");
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for word in chunk {
            query = query.bind(word.as_str()).bind(id);
        }
        query.execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE assets SET words = $1 WHERE id = $2")
        .bind(words_column(&words))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `assets.words`: each word preceded by a space.
pub fn words_column(words: &[String]) -> String {
    words.iter().map(|w| format!(" {w}")).collect()
}

/// Indexes the words of assets registered before search by word existed (`words` is NULL).
/// Runs at start; returns how many it indexed.
pub async fn index_pending_words(db: &Db) -> Result<u64> {
    let mut done = 0;
    loop {
        let ids: Vec<i64> = sqlx::query_scalar::<Any, i64>(
            "SELECT id FROM assets WHERE words IS NULL ORDER BY id LIMIT 500",
        )
        .fetch_all(&db.pool)
        .await?;
        if ids.is_empty() {
            return Ok(done);
        }
        let mut tx = db.begin_write().await?;
        for id in &ids {
            index_words_in(&mut tx, *id).await?;
        }
        tx.commit().await?;
        done += ids.len() as u64;
    }
}

/// Lists assets matching `filter`, newest first; a school-bound user sees only their school's.
///
/// Every page is read from an index at a million assets: the filters from `(school_id, id)`,
/// `(school_id, state, id)`, `(state, id)`, `(category, id)`; a search first from the newest
/// [`SEARCH_WINDOW`] assets under the filters, then, when those held less than a page, below
/// them: from `asset_words` when one of its terms starts few words ([`RARE_WORD`]), else from
/// the next [`COMMON_WINDOW`] assets and only then the word index. Nothing is counted but a
/// term's words, up to [`RARE_WORD`].
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
    let q = filter.q.as_deref().unwrap_or_default();
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::invalid(
            "q",
            format!("search with at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let school = match (school_scope, filter.school_id) {
        (Some(own), Some(asked)) if own != asked => return Ok(Vec::new()),
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let mut base = Where::default();
    if let Some(school) = school {
        base.push("school_id = ?", [Arg::Int(school)]);
    }
    if let Some(state) = &filter.state {
        base.push("state = ?", [Arg::Text(state.clone())]);
    }
    if let Some(category) = &filter.category {
        base.push("category = ?", [Arg::Text(category.clone())]);
    }
    if let Some(before) = filter.before_id {
        base.push("id < ?", [Arg::Int(before)]);
    }
    let terms = search_terms(q);
    if terms.is_empty() {
        return page(db, &base, limit).await;
    }
    let mut matches = Where::default();
    for term in &terms {
        matches.push("words LIKE ? ESCAPE '\\'", [Arg::Text(word_pattern(term))]);
    }

    // The newest assets under the filters: a common word fills the page from these. Only the
    // window's ids and words are read (a quarter less work than whole rows); the page's rows
    // are fetched by id.
    let mut found = window(db, &base, &matches, SEARCH_WINDOW, limit).await?;
    if found.len() as i64 == limit {
        return Ok(found);
    }
    // Where the window ended; none when it held every asset under the filters.
    let Some(end) = window_end(db, &base, SEARCH_WINDOW).await? else {
        return Ok(found);
    };
    let mut below = base.clone();
    below.push("id < ?", [Arg::Int(end)]);
    // Below the window: the rarest term's assets from the word index when it has few; when
    // every term is common, the next assets in id order find the rest sooner. (Neither
    // engine's planner can be trusted here: PostgreSQL estimates a prefix range of the index
    // at one row whatever its size, and then joins every asset of a common word.)
    let mut rarest: Option<(usize, &String)> = None;
    for term in &terms {
        let n = word_count(db, term, RARE_WORD).await?;
        if rarest.is_none_or(|(least, _)| n < least) {
            rarest = Some((n, term));
        }
    }
    let (count, rarest) = rarest.unwrap_or((0, &terms[0]));
    let rest = limit - found.len() as i64;
    if count > RARE_WORD {
        found.extend(window(db, &below, &matches, COMMON_WINDOW, rest).await?);
        if found.len() as i64 == limit {
            return Ok(found);
        }
        match window_end(db, &below, COMMON_WINDOW).await? {
            Some(end) => below.push("id < ?", [Arg::Int(end)]),
            None => return Ok(found),
        }
    }
    below.push(
        "id IN (SELECT asset_id FROM asset_words WHERE word >= ? AND word < ?)",
        [
            Arg::Text(rarest.clone()),
            Arg::Text(format!("{rarest}\u{10FFFF}")),
        ],
    );
    below.push_all("{}", &matches);
    found.extend(page(db, &below, limit - found.len() as i64).await?);
    Ok(found)
}

/// A word (the start of one) with more assets than this is common: searched by walking the
/// register rather than through the word index.
const RARE_WORD: usize = 2000;

/// How many assets a search walks below [`SEARCH_WINDOW`] when all its words are common.
const COMMON_WINDOW: i64 = 50_000;

/// The newest `limit` assets among the newest `size` meeting `conditions` that match `matches`.
async fn window(
    db: &Db,
    conditions: &Where,
    matches: &Where,
    size: i64,
    limit: i64,
) -> Result<Vec<Asset>> {
    let sql = numbered(&format!(
        "SELECT {COLUMNS} FROM assets WHERE id IN (SELECT id FROM \
         (SELECT id, words FROM assets WHERE {} ORDER BY id DESC LIMIT {size}) a \
         WHERE {} ORDER BY id DESC LIMIT {limit}) ORDER BY id DESC",
        conditions.text(),
        matches.text()
    ));
    let rows = bind_all(
        sqlx::query::<Any>(sqlx::AssertSqlSafe(sql)),
        conditions.args().iter().chain(matches.args()),
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The id of the `size`th newest asset meeting `conditions`; none when there are fewer.
async fn window_end(db: &Db, conditions: &Where, size: i64) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT id FROM assets WHERE {} ORDER BY id DESC LIMIT 1 OFFSET {}",
        conditions.sql(),
        size - 1
    );
    Ok(conditions
        .bind(sqlx::query::<Any>(sqlx::AssertSqlSafe(sql)))
        .fetch_optional(&db.pool)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()?)
}

/// How many assets have a word starting with `term`, counted up to `cap + 1`.
async fn word_count(db: &Db, term: &str, cap: usize) -> Result<usize> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM asset_words WHERE word >= $1 AND word < $2 LIMIT {}) w",
        cap + 1
    );
    let n: i64 = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(term)
        .bind(format!("{term}\u{10FFFF}"))
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    Ok(n as usize)
}

/// The newest `limit` assets meeting `conditions`.
async fn page(db: &Db, conditions: &Where, limit: i64) -> Result<Vec<Asset>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM assets WHERE {} ORDER BY id DESC LIMIT {limit}",
        conditions.sql()
    );
    let rows = conditions
        .bind(sqlx::query::<Any>(sqlx::AssertSqlSafe(sql)))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fields: [&str; 6], expected: &[&str]) {
        let [number, category, serial, brand, model, room] = fields;
        assert_eq!(
            words(number, category, serial, brand, model, room),
            expected
        );
    }

    #[test]
    fn words_an_asset_is_found_by() {
        check(
            ["7440-001-0001/2565", "", "", "", "", ""],
            &["7440-001-0001/2565"],
        );
        check(
            ["A1", "desktop", "5CG1234XYZ", "Dell", "OptiPlex 7090", ""],
            &["5cg1234xyz", "7090", "a1", "dell", "desktop", "optiplex"],
        );
        check(
            ["A1", "", "", "", "ThinkPad E14-G2", ""],
            &["a1", "e14", "e14-g2", "g2", "thinkpad"],
        );
        check(
            ["A1", "", "", "", "", "ห้องสมุด (ชั้น 2)"],
            &["2", "a1", "ชั้น", "ห้องสมุด"],
        );
        check(
            ["A1", "printer", "", "HP", "hp", " "],
            &["a1", "hp", "printer"],
        );
    }

    #[test]
    fn search_terms_and_their_patterns() {
        assert_eq!(search_terms("  Dell  (OptiPlex) "), ["dell", "optiplex"]);
        assert_eq!(search_terms(" - "), Vec::<String>::new());
        assert_eq!(word_pattern("ab_1%"), "% ab\\_1\\%%");
    }
}
