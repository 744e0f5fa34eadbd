//! The audit trail: every change appended with who, when, from where, what, before and after.
//!
//! Invariant: entries are only ever inserted. The database refuses UPDATE and DELETE on
//! `audit_log` (triggers in the migrations), and this module has no function that would try.
//! An entry is written in the same transaction as the change it describes, so there is no
//! change without its entry.

use serde::Serialize;
use serde_json::Value;
use sqlx::{Any, AnyConnection, Row};

use crate::db::{Db, now_ms, rfc3339};
use crate::error::Result;

/// Who is acting, as the audit trail records it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub username: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// khetnet itself (first start, scheduled jobs).
    pub fn system() -> Actor {
        Actor {
            user_id: None,
            username: "system".into(),
            source_ip: None,
            request_id: None,
        }
    }
}

/// What changed, for [`record`].
pub struct Change<'a> {
    /// `school.create`, `user.update`, `auth.login_failed`, ...
    pub action: &'a str,
    /// The kind of thing changed: `school`, `user`, ...
    pub entity: &'a str,
    pub entity_id: Option<i64>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A value as the trail keeps it in `before` or `after`: its API form (never a password hash,
/// which the API types do not carry).
pub fn snapshot(value: &impl Serialize) -> Option<Value> {
    Some(serde_json::to_value(value).expect("API types serialize"))
}

/// Appends one entry, inside the caller's transaction.
pub async fn record(conn: &mut AnyConnection, actor: &Actor, change: Change<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor, source_ip, request_id, action, entity, entity_id, before_json, after_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(now_ms())
    .bind(actor.user_id)
    .bind(&actor.username)
    .bind(&actor.source_ip)
    .bind(&actor.request_id)
    .bind(change.action)
    .bind(change.entity)
    .bind(change.entity_id)
    .bind(change.before.map(|v| v.to_string()))
    .bind(change.after.map(|v| v.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

/// One entry as the API shows it.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: String,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<i64>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Which entries to list: newest first, optionally only one entity, paged by id.
#[derive(Debug, Default)]
pub struct Filter {
    pub entity: Option<String>,
    pub entity_id: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

pub async fn list(db: &Db, filter: &Filter) -> Result<Vec<Entry>> {
    let rows = sqlx::query::<Any>(
        "SELECT id, at, actor_id, actor, source_ip, request_id, action, entity, entity_id, before_json, after_json \
         FROM audit_log \
         WHERE ($1 IS NULL OR entity = $1) AND ($2 IS NULL OR entity_id = $2) AND ($3 IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(&filter.entity)
    .bind(filter.entity_id)
    .bind(filter.before_id)
    .bind(filter.limit)
    .fetch_all(&db.pool)
    .await?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    rows.into_iter()
        .map(|row| {
            Ok(Entry {
                id: row.try_get("id")?,
                at: rfc3339(row.try_get("at")?),
                actor_id: row.try_get("actor_id")?,
                actor: row.try_get("actor")?,
                source_ip: row.try_get("source_ip")?,
                request_id: row.try_get("request_id")?,
                action: row.try_get("action")?,
                entity: row.try_get("entity")?,
                entity_id: row.try_get("entity_id")?,
                before: json(row.try_get("before_json")?),
                after: json(row.try_get("after_json")?),
            })
        })
        .collect()
}
