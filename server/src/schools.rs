//! The district's schools and offices.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use crate::audit::{self, Actor, Change};
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{Error, Result, ResultExt};

/// A school or an office of the district, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct School {
    pub id: i64,
    pub code: String,
    pub kind: String,
    pub name_th: String,
    pub name_en: String,
    pub district: String,
    pub address: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub created_at: String,
    pub updated_at: String,
}

/// What a client sends to create a school. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchool {
    /// The ministry's school code (รหัสโรงเรียน), or the office's own code.
    pub code: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    pub name_th: String,
    #[serde(default)]
    pub name_en: String,
    #[serde(default)]
    pub district: String,
    #[serde(default)]
    pub address: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

fn default_kind() -> String {
    "school".into()
}

impl NewSchool {
    fn validate(&self) -> Result<()> {
        let code = self.code.trim();
        if code.is_empty() || code.len() > 32 {
            return Err(Error::invalid("code", "must be 1 to 32 characters"));
        }
        if !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::invalid(
                "code",
                "may hold only letters, digits and '-'",
            ));
        }
        if !["school", "office"].contains(&self.kind.as_str()) {
            return Err(Error::invalid("kind", "must be \"school\" or \"office\""));
        }
        if self.name_th.trim().is_empty() {
            return Err(Error::invalid("name_th", "must not be empty"));
        }
        match (self.latitude, self.longitude) {
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(&lat) {
                    return Err(Error::invalid("latitude", "must be between -90 and 90"));
                }
                if !(-180.0..=180.0).contains(&lon) {
                    return Err(Error::invalid("longitude", "must be between -180 and 180"));
                }
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::invalid(
                    "longitude",
                    "give it together with latitude",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "latitude",
                    "give it together with longitude",
                ));
            }
        }
        Ok(())
    }
}

/// What an admin may change on a school. Absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchoolPatch {
    pub kind: Option<String>,
    pub name_th: Option<String>,
    pub name_en: Option<String>,
    pub district: Option<String>,
    pub address: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

const COLUMNS: &str = "id, code, kind, name_th, name_en, district, address, latitude, longitude, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<School> {
    Ok(School {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        kind: row.try_get("kind")?,
        name_th: row.try_get("name_th")?,
        name_en: row.try_get("name_en")?,
        district: row.try_get("district")?,
        address: row.try_get("address")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

/// Creates a school and records it in the audit trail.
///
/// # Errors
/// `Invalid` naming the field; `Conflict` when the code is taken.
pub async fn create(db: &Db, actor: &Actor, new: NewSchool) -> Result<School> {
    new.validate()?;
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO schools (code, kind, name_th, name_en, district, address, latitude, longitude, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(new.code.trim())
    .bind(&new.kind)
    .bind(new.name_th.trim())
    .bind(new.name_en.trim())
    .bind(new.district.trim())
    .bind(new.address.trim())
    .bind(new.latitude)
    .bind(new.longitude)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .on_unique_violation(|| format!("a school with code {:?} already exists", new.code.trim()))?;
    let school = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "school.create",
            entity: "school",
            entity_id: Some(id),
            before: None,
            after: audit::snapshot(&school),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(school)
}

/// Changes a school, recording before and after. The code is its identity and does not change.
pub async fn update(db: &Db, actor: &Actor, id: i64, patch: SchoolPatch) -> Result<School> {
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    let merged = NewSchool {
        code: before.code.clone(),
        kind: patch.kind.unwrap_or_else(|| before.kind.clone()),
        name_th: patch.name_th.unwrap_or_else(|| before.name_th.clone()),
        name_en: patch.name_en.unwrap_or_else(|| before.name_en.clone()),
        district: patch.district.unwrap_or_else(|| before.district.clone()),
        address: patch.address.unwrap_or_else(|| before.address.clone()),
        latitude: patch.latitude.or(before.latitude),
        longitude: patch.longitude.or(before.longitude),
    };
    merged.validate()?;
    sqlx::query(
        "UPDATE schools SET kind = $2, name_th = $3, name_en = $4, district = $5, address = $6, \
         latitude = $7, longitude = $8, updated_at = $9 WHERE id = $1",
    )
    .bind(id)
    .bind(&merged.kind)
    .bind(merged.name_th.trim())
    .bind(merged.name_en.trim())
    .bind(merged.district.trim())
    .bind(merged.address.trim())
    .bind(merged.latitude)
    .bind(merged.longitude)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let after = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "school.update",
            entity: "school",
            entity_id: Some(id),
            before: audit::snapshot(&before),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

async fn get_in(conn: &mut sqlx::AnyConnection, id: i64) -> Result<School> {
    let sql = format!("SELECT {COLUMNS} FROM schools WHERE id = $1");
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

pub async fn get(db: &Db, id: i64) -> Result<School> {
    let mut conn = db.pool.acquire().await?;
    get_in(&mut conn, id).await
}

/// Lists schools by code, optionally only one (a school-bound user's own).
pub async fn list(db: &Db, only: Option<i64>) -> Result<Vec<School>> {
    let sql = format!("SELECT {COLUMNS} FROM schools WHERE ($1 IS NULL OR id = $1) ORDER BY code");
    let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(only)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}
