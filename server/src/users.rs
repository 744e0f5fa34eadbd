//! User accounts: who they are, their role, and the school a requester is bound to.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use crate::audit::{self, Actor, Change};
use crate::auth::hash_password;
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{Error, Result, ResultExt};
use crate::roles::Role;

/// A user as the API shows it. The password hash never leaves this module.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub school_id: Option<i64>,
    pub active: bool,
    pub language: Option<String>,
    /// Until when the account is locked after too many failed logins, if it is.
    pub locked_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// What an admin sends to create a user. Unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub school_id: Option<i64>,
    pub password: String,
}

/// What an admin may change on a user. Absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    pub school_id: Option<i64>,
    pub active: Option<bool>,
    /// Sets a new password (an admin's reset).
    pub password: Option<String>,
}

const COLUMNS: &str = "id, username, display_name, email, role, school_id, active, language, locked_until, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<User> {
    let role: String = row.try_get("role")?;
    let locked_until: Option<i64> = row.try_get("locked_until")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        role: Role::parse(&role)
            .ok_or_else(|| Error::invalid("role", format!("unknown role {role:?} in database")))?,
        school_id: row.try_get("school_id")?,
        active: row.try_get::<i64, _>("active")? != 0,
        language: row.try_get("language")?,
        locked_until: locked_until.filter(|t| *t > now_ms()).map(rfc3339),
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

pub(crate) fn validate_password(password: &str, username: &str, min_length: u32) -> Result<()> {
    if password.chars().count() < min_length as usize {
        return Err(Error::invalid(
            "password",
            format!("must be at least {min_length} characters"),
        ));
    }
    if password.eq_ignore_ascii_case(username) {
        return Err(Error::invalid("password", "must not be the user name"));
    }
    Ok(())
}

async fn validate_school(
    conn: &mut AnyConnection,
    role: Role,
    school_id: Option<i64>,
) -> Result<()> {
    match school_id {
        None if role.school_bound() => Err(Error::invalid(
            "school_id",
            format!("a {} must belong to a school", role.as_str()),
        )),
        None => Ok(()),
        Some(id) => {
            let exists = sqlx::query_scalar::<Any, i64>("SELECT id FROM schools WHERE id = $1")
                .bind(id)
                .fetch_optional(conn)
                .await?;
            match exists {
                Some(_) => Ok(()),
                None => Err(Error::invalid(
                    "school_id",
                    format!("no school has id {id}"),
                )),
            }
        }
    }
}

/// Creates a user with an argon2id password hash, and records it in the audit trail.
///
/// # Errors
/// `Invalid` naming the field; `Conflict` when the user name is taken.
pub async fn create(
    db: &Db,
    actor: &Actor,
    new: NewUser,
    min_password_length: u32,
) -> Result<User> {
    let username = new.username.trim().to_lowercase();
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(Error::invalid(
            "username",
            "must be 1 to 64 characters of a-z, 0-9, '.', '_', '-' or '@'",
        ));
    }
    if new.display_name.trim().is_empty() {
        return Err(Error::invalid("display_name", "must not be empty"));
    }
    validate_password(&new.password, &username, min_password_length)?;
    let hash = hash_password(new.password).await?;
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    validate_school(&mut tx, new.role, new.school_id).await?;
    let id = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO users (username, display_name, email, role, school_id, password_hash, password_changed_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) RETURNING id",
    )
    .bind(&username)
    .bind(new.display_name.trim())
    .bind(new.email.as_deref().map(str::trim).filter(|e| !e.is_empty()))
    .bind(new.role.as_str())
    .bind(new.school_id)
    .bind(hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .on_unique_violation(|| format!("the user name {username:?} is taken"))?;
    let user = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "user.create",
            entity: "user",
            entity_id: Some(id),
            before: None,
            after: audit::snapshot(&user),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Applies an admin's changes to a user, recording before and after.
pub async fn update(
    db: &Db,
    actor: &Actor,
    id: i64,
    patch: UserPatch,
    min_password_length: u32,
) -> Result<User> {
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    if before.username == crate::desk::system::USERNAME {
        return Err(Error::Conflict(
            "the built-in system user files requests for device incidents; it cannot be changed or signed in as".into(),
        ));
    }
    let role = patch.role.unwrap_or(before.role);
    let school_id = patch.school_id.or(before.school_id);
    validate_school(&mut tx, role, school_id).await?;
    if let Some(name) = &patch.display_name
        && name.trim().is_empty()
    {
        return Err(Error::invalid("display_name", "must not be empty"));
    }
    if actor.user_id == Some(id)
        && (patch.active == Some(false) || patch.role.is_some_and(|r| r != Role::Admin))
    {
        return Err(Error::Conflict(
            "an administrator cannot deactivate or demote their own account; ask another administrator".into(),
        ));
    }
    let hash = match &patch.password {
        Some(password) => {
            validate_password(password, &before.username, min_password_length)?;
            Some(hash_password(password.clone()).await?)
        }
        None => None,
    };
    let now = now_ms();
    sqlx::query(
        "UPDATE users SET display_name = COALESCE($2, display_name), email = COALESCE($3, email), \
         role = $4, school_id = $5, active = COALESCE($6, active), \
         password_hash = COALESCE($7, password_hash), \
         password_changed_at = CASE WHEN $7 IS NULL THEN password_changed_at ELSE $8 END, updated_at = $8 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(patch.display_name.as_deref().map(str::trim))
    .bind(patch.email.as_deref().map(str::trim))
    .bind(role.as_str())
    .bind(school_id)
    .bind(patch.active.map(i64::from))
    .bind(&hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if hash.is_some() {
        // A reset password ends every session the old one opened.
        sqlx::query("DELETE FROM auth_tokens WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let after = get_in(&mut tx, id).await?;
    let mut after_json = serde_json::to_value(&after).expect("user serializes");
    if hash.is_some() {
        after_json["password"] = "(reset)".into();
    }
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "user.update",
            entity: "user",
            entity_id: Some(id),
            before: audit::snapshot(&before),
            after: Some(after_json),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Lifts a lock-out before it expires.
pub async fn unlock(db: &Db, actor: &Actor, id: i64) -> Result<User> {
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    sqlx::query(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, updated_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let after = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "user.unlock",
            entity: "user",
            entity_id: Some(id),
            before: audit::snapshot(&before),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Sets the user's preferred language for the web UI (`th` or `en`).
pub async fn set_language(db: &Db, id: i64, language: &str) -> Result<()> {
    sqlx::query("UPDATE users SET language = $2 WHERE id = $1")
        .bind(id)
        .bind(language)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub(crate) async fn get_in(conn: &mut AnyConnection, id: i64) -> Result<User> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

pub async fn get(db: &Db, id: i64) -> Result<User> {
    let mut conn = db.pool.acquire().await?;
    get_in(&mut conn, id).await
}

/// Lists users by user name, optionally only those of one school.
pub async fn list(db: &Db, school_id: Option<i64>) -> Result<Vec<User>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE ($1 IS NULL OR school_id = $1) ORDER BY username"
    );
    let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(school_id)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Whether any user exists besides the built-in `system` (first start creates the admin when
/// none does).
pub async fn any_exist(db: &Db) -> Result<bool> {
    let n = sqlx::query_scalar::<Any, i64>("SELECT COUNT(*) FROM users WHERE username <> 'system'")
        .fetch_one(&db.pool)
        .await?;
    Ok(n > 0)
}
