//! Authentication: argon2id passwords, login with lock-out, per-address throttling, and the
//! opaque tokens behind both the web session cookie and API bearer tokens.
//!
//! Invariant: the database holds only argon2id hashes of passwords and SHA-256 hashes of
//! tokens; a token is shown once, to the client that logged in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{Any, Row};

use crate::audit::{self, Actor, Change};
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{Error, Result};
use crate::roles::Role;
use crate::users::{self, User};

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes), off the async
/// threads because it is deliberately slow.
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Password(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Password(e.to_string()))
    })
    .await
    .map_err(|e| Error::Password(e.to_string()))?
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that an unknown user name
/// takes as long to refuse as a wrong password.
async fn dummy_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    if let Some(h) = HASH.get() {
        return h.clone();
    }
    let h = hash_password("not a real password".into())
        .await
        .unwrap_or_default();
    HASH.get_or_init(|| h).clone()
}

/// Lock-out and session settings, from `[auth]`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_failed_logins: u32,
    pub lockout: Duration,
    pub session: Duration,
    pub min_password_length: u32,
}

impl From<&khetnet_config::AuthConfig> for Policy {
    fn from(c: &khetnet_config::AuthConfig) -> Self {
        Policy {
            max_failed_logins: c.max_failed_logins,
            lockout: Duration::from_secs(u64::from(c.lockout_minutes) * 60),
            session: Duration::from_secs(u64::from(c.session_hours) * 3600),
            min_password_length: c.min_password_length,
        }
    }
}

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user, wrong password or inactive account: deliberately not told apart.
    BadCredentials,
    /// Too many failures in a row; lifts at the given time (RFC 3339) or when an admin unlocks.
    Locked { until: String },
}

/// Which kind of token to issue: a browser session (cookie) or an API bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Session,
    Api,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Api => "api",
        }
    }
}

/// Checks a user name and password. On success issues a token; on failure counts it and locks
/// the account after `max_failed_logins` failures in a row. Every outcome is audited.
pub async fn login(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    username: &str,
    password: &str,
    kind: TokenKind,
) -> Result<std::result::Result<(String, User), Refusal>> {
    let username = username.trim().to_lowercase();
    let row = sqlx::query::<Any>(
        "SELECT id, password_hash, failed_logins, locked_until, active FROM users WHERE username = $1",
    )
    .bind(&username)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        verify_password(password.to_owned(), dummy_hash().await).await;
        audit_login(db, actor, "auth.login_failed", None, &username).await?;
        return Ok(Err(Refusal::BadCredentials));
    };
    let id: i64 = row.try_get("id")?;
    let hash: String = row.try_get("password_hash")?;
    let locked_until: Option<i64> = row.try_get("locked_until")?;
    let active = row.try_get::<i64, _>("active")? != 0;
    let now = now_ms();
    if let Some(until) = locked_until.filter(|t| *t > now) {
        audit_login(db, actor, "auth.login_refused_locked", Some(id), &username).await?;
        return Ok(Err(Refusal::Locked {
            until: rfc3339(until),
        }));
    }
    let ok = verify_password(password.to_owned(), hash).await && active;
    let mut tx = db.begin_write().await?;
    if !ok {
        // Count in the database, so parallel attempts and several server instances agree.
        let failed = sqlx::query_scalar::<Any, i64>(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let login_actor = Actor {
            user_id: Some(id),
            username: username.clone(),
            ..actor.clone()
        };
        audit::record(
            &mut tx,
            &login_actor,
            Change {
                action: "auth.login_failed",
                entity: "user",
                entity_id: Some(id),
                before: None,
                after: None,
            },
        )
        .await?;
        let mut refusal = Refusal::BadCredentials;
        if failed >= i64::from(policy.max_failed_logins) {
            let until = now + policy.lockout.as_millis() as i64;
            sqlx::query("UPDATE users SET locked_until = $2, failed_logins = 0 WHERE id = $1")
                .bind(id)
                .bind(until)
                .execute(&mut *tx)
                .await?;
            audit::record(
                &mut tx,
                &login_actor,
                Change {
                    action: "user.locked",
                    entity: "user",
                    entity_id: Some(id),
                    before: None,
                    after: Some(serde_json::json!({ "locked_until": rfc3339(until), "failed_logins": failed })),
                },
            )
            .await?;
            refusal = Refusal::Locked {
                until: rfc3339(until),
            };
        }
        tx.commit().await?;
        return Ok(Err(refusal));
    }
    sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let token = issue_token(
        &mut tx,
        id,
        kind,
        actor.source_ip.as_deref(),
        policy.session,
    )
    .await?;
    let login_actor = Actor {
        user_id: Some(id),
        username: username.clone(),
        ..actor.clone()
    };
    audit::record(
        &mut tx,
        &login_actor,
        Change {
            action: "auth.login",
            entity: "user",
            entity_id: Some(id),
            before: None,
            after: Some(serde_json::json!({ "token_kind": kind.as_str() })),
        },
    )
    .await?;
    let user = users::get_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Ok((token, user)))
}

async fn audit_login(
    db: &Db,
    actor: &Actor,
    action: &str,
    id: Option<i64>,
    username: &str,
) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let actor = Actor {
        user_id: id,
        username: username.to_owned(),
        ..actor.clone()
    };
    audit::record(
        &mut tx,
        &actor,
        Change {
            action,
            entity: "user",
            entity_id: id,
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn issue_token(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    kind: TokenKind,
    source_ip: Option<&str>,
    lifetime: Duration,
) -> Result<String> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("khn_{}", hex::encode(bytes));
    let now = now_ms();
    sqlx::query(
        "INSERT INTO auth_tokens (user_id, token_hash, kind, source_ip, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user_id)
    .bind(token_hash(&token))
    .bind(kind.as_str())
    .bind(source_ip)
    .bind(now)
    .bind(now + lifetime.as_millis() as i64)
    .execute(conn)
    .await?;
    Ok(token)
}

/// The signed-in user behind a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub school_id: Option<i64>,
    pub language: Option<String>,
}

/// Finds the active user a token belongs to, if the token is known and not expired.
pub async fn authenticate(db: &Db, token: &str) -> Result<Option<Principal>> {
    let row = sqlx::query::<Any>(
        "SELECT u.id, u.username, u.display_name, u.role, u.school_id, u.language FROM auth_tokens t \
         JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.expires_at > $2 AND u.active = 1",
    )
    .bind(token_hash(token))
    .bind(now_ms())
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role")?;
    Ok(Some(Principal {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role)
            .ok_or_else(|| Error::invalid("role", "unknown role in database"))?,
        school_id: row.try_get("school_id")?,
        language: row.try_get("language")?,
    }))
}

/// Ends the session or revokes the API token.
pub async fn logout(db: &Db, token: &str) -> Result<()> {
    sqlx::query("DELETE FROM auth_tokens WHERE token_hash = $1")
        .bind(token_hash(token))
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Changes one's own password after checking the current one. Other sessions of the user
/// end; the one making the change (`keep_token`) stays signed in.
pub async fn change_password(
    db: &Db,
    policy: &Policy,
    actor: &Actor,
    user_id: i64,
    current: &str,
    new: &str,
    keep_token: &str,
) -> Result<()> {
    let (username, hash): (String, String) = sqlx::query_as::<Any, (String, String)>(
        "SELECT username, password_hash FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(Error::NotFound)?;
    if !verify_password(current.to_owned(), hash).await {
        return Err(Error::invalid(
            "current_password",
            "is not your current password",
        ));
    }
    users::validate_password(new, &username, policy.min_password_length)?;
    if new == current {
        return Err(Error::invalid(
            "new_password",
            "must differ from the current password",
        ));
    }
    let new_hash = hash_password(new.to_owned()).await?;
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE id = $1")
        .bind(user_id)
        .bind(new_hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM auth_tokens WHERE user_id = $1 AND token_hash <> $2")
        .bind(user_id)
        .bind(token_hash(keep_token))
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "user.password_change",
            entity: "user",
            entity_id: Some(user_id),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Limits login attempts per client address, whatever user names they try: a password
/// guesser is slowed before lock-outs pile up, and argon2's cost cannot be used to flood the CPU.
#[derive(Debug)]
pub struct Throttle {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(per_minute: u32) -> Throttle {
        Throttle {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt; `Err(seconds)` says how long to wait when over the limit.
    pub fn check(&self, ip: IpAddr, now: Instant) -> std::result::Result<(), u64> {
        let mut windows = self.windows.lock().expect("throttle lock");
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > self.per_minute {
            Err(60 - now.duration_since(entry.0).as_secs())
        } else {
            Ok(())
        }
    }
}

/// Creates the first `admin` on a new database. The password comes from
/// `KHETNET_ADMIN_PASSWORD` when set; otherwise one is generated and returned so the caller can
/// print it once.
pub async fn ensure_first_admin(
    db: &Db,
    given_password: Option<String>,
    min_password_length: u32,
) -> Result<Option<String>> {
    if users::any_exist(db).await? {
        return Ok(None);
    }
    let (password, generated) = match given_password {
        Some(p) => (p, false),
        None => {
            let mut bytes = [0u8; 15];
            rand::rng().fill_bytes(&mut bytes);
            (hex::encode(bytes), true)
        }
    };
    let new = users::NewUser {
        username: "admin".into(),
        display_name: "Administrator".into(),
        email: None,
        role: Role::Admin,
        school_id: None,
        password: password.clone(),
    };
    users::create(db, &Actor::system(), new, min_password_length)
        .await
        .map_err(|e| match e {
            Error::Invalid { message, .. } => Error::invalid("KHETNET_ADMIN_PASSWORD", message),
            other => other,
        })?;
    Ok(generated.then_some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_limits_each_address_for_a_minute() {
        let t = Throttle::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check(a, start), Ok(()));
        }
        assert!(t.check(a, start + Duration::from_secs(10)).is_err());
        assert_eq!(t.check(b, start), Ok(()), "another address is not affected");
        assert_eq!(
            t.check(a, start + Duration::from_secs(61)),
            Ok(()),
            "the window passes"
        );
    }

    #[tokio::test]
    async fn passwords_are_argon2id_and_verify() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery".into(), hash.clone()).await);
        assert!(!verify_password("wrong".into(), hash).await);
    }
}
