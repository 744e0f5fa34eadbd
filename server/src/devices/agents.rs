//! School agents: one-time enrollment tokens, enrollment, the agent list, revocation, and
//! authentication of an agent's requests by its bearer credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::{Settings, new_secret, secret_hash};
use crate::audit::{self, Actor, Change};
use crate::db::{Db, now_ms, rfc3339};
use crate::error::{Error, Result};

/// What an admin or technician sends to create an enrollment token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollmentToken {
    pub school_id: i64,
    /// Hours the token stays valid (1 to 720).
    #[serde(default = "default_valid_hours")]
    pub valid_hours: i64,
    #[serde(default)]
    pub note: String,
}

fn default_valid_hours() -> i64 {
    24
}

/// A token just created: the secret is shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    pub id: i64,
    pub school_id: i64,
    pub token: String,
    pub expires_at: String,
    pub note: String,
}

/// Creates a one-time enrollment token for one school.
///
/// # Errors
/// `Invalid` naming `school_id` (no such school) or `valid_hours`.
pub async fn create_token(db: &Db, actor: &Actor, new: NewEnrollmentToken) -> Result<CreatedToken> {
    if !(1..=720).contains(&new.valid_hours) {
        return Err(Error::invalid("valid_hours", "must be 1 to 720"));
    }
    let mut tx = db.begin_write().await?;
    let school: Option<i64> =
        sqlx::query_scalar::<Any, i64>("SELECT id FROM schools WHERE id = $1")
            .bind(new.school_id)
            .fetch_optional(&mut *tx)
            .await?;
    if school.is_none() {
        return Err(Error::invalid("school_id", "no such school"));
    }
    let token = new_secret("khe_");
    let now = now_ms();
    let expires_at = now + new.valid_hours * 3_600_000;
    let id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO agent_enrollment_tokens (school_id, token_hash, note, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(new.school_id)
    .bind(secret_hash(&token))
    .bind(new.note.trim())
    .bind(actor.user_id)
    .bind(now)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await?;
    let created = CreatedToken {
        id,
        school_id: new.school_id,
        token,
        expires_at: rfc3339(expires_at),
        note: new.note.trim().to_owned(),
    };
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "agent_token.create",
            entity: "agent_enrollment_token",
            entity_id: Some(id),
            before: None,
            after: Some(serde_json::json!({
                "school_id": created.school_id, "expires_at": created.expires_at, "note": created.note,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(created)
}

/// What an agent sends to enroll.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    /// The agent's name as technicians will see it (usually the host name).
    pub name: String,
    #[serde(default)]
    pub version: String,
}

/// The agent's identity and credential, shown once.
#[derive(Debug, Serialize)]
pub struct Enrolled {
    pub agent_id: i64,
    pub school_id: i64,
    pub credential: String,
}

/// Exchanges an enrollment token for an agent credential. `None` when the token is unknown,
/// expired or already used (the caller answers 401 without saying which).
///
/// # Errors
/// `Invalid` naming `name`; database errors.
pub async fn enroll(db: &Db, actor: &Actor, request: EnrollRequest) -> Result<Option<Enrolled>> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name", "must be 1 to 100 characters"));
    }
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row = sqlx::query::<Any>(
        "SELECT id, school_id FROM agent_enrollment_tokens \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(secret_hash(request.token.trim()))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let token_id: i64 = row.try_get("id")?;
    let school_id: i64 = row.try_get("school_id")?;
    let claimed = sqlx::query(
        "UPDATE agent_enrollment_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL",
    )
    .bind(token_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() != 1 {
        return Ok(None);
    }
    let credential = new_secret("kha_");
    let agent_id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO agents (school_id, name, credential_hash, version, enrolled_at, last_address) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(school_id)
    .bind(name)
    .bind(secret_hash(&credential))
    .bind(request.version.trim())
    .bind(now)
    .bind(&actor.source_ip)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE agent_enrollment_tokens SET agent_id = $2 WHERE id = $1")
        .bind(token_id)
        .bind(agent_id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "agent.enroll",
            entity: "agent",
            entity_id: Some(agent_id),
            before: None,
            after: Some(serde_json::json!({
                "school_id": school_id, "name": name, "enrollment_token_id": token_id,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Enrolled {
        agent_id,
        school_id,
        credential,
    }))
}

/// An agent as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub id: i64,
    pub school_id: i64,
    pub name: String,
    pub version: String,
    /// `online`, `silent` (nothing for longer than the rule allows), `never_seen` or `revoked`.
    pub state: &'static str,
    pub enrolled_at: String,
    pub revoked_at: Option<String>,
    pub last_seen_at: Option<String>,
    pub last_address: Option<String>,
    pub samples_received: i64,
    /// Samples the agent had to drop from its full spool, as it reported them.
    pub samples_lost: i64,
}

const COLUMNS: &str = "id, school_id, name, version, enrolled_at, revoked_at, last_seen_at, last_address, samples_received, samples_lost";

fn from_row(row: &AnyRow, settings: &Settings, now: i64) -> Result<Agent> {
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let last_seen_at: Option<i64> = row.try_get("last_seen_at")?;
    let state = match (revoked_at, last_seen_at) {
        (Some(_), _) => "revoked",
        (None, None) => "never_seen",
        (None, Some(seen)) if now - seen > settings.silent_after_ms() => "silent",
        (None, Some(_)) => "online",
    };
    Ok(Agent {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        state,
        enrolled_at: rfc3339(row.try_get("enrolled_at")?),
        revoked_at: revoked_at.map(rfc3339),
        last_seen_at: last_seen_at.map(rfc3339),
        last_address: row.try_get("last_address")?,
        samples_received: row.try_get("samples_received")?,
        samples_lost: row.try_get("samples_lost")?,
    })
}

/// Lists agents by id, optionally of one school.
pub async fn list(db: &Db, settings: &Settings, school_id: Option<i64>) -> Result<Vec<Agent>> {
    let sql =
        format!("SELECT {COLUMNS} FROM agents WHERE ($1 IS NULL OR school_id = $1) ORDER BY id");
    let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(school_id)
        .fetch_all(&db.pool)
        .await?;
    let now = now_ms();
    rows.iter().map(|r| from_row(r, settings, now)).collect()
}

async fn get_in(conn: &mut sqlx::AnyConnection, settings: &Settings, id: i64) -> Result<Agent> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE id = $1");
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row, settings, now_ms())
}

pub async fn get(db: &Db, settings: &Settings, id: i64) -> Result<Agent> {
    let mut conn = db.pool.acquire().await?;
    get_in(&mut conn, settings, id).await
}

/// Revokes an agent: its credential stops working at once. Revoking twice is a no-op.
pub async fn revoke(
    db: &Db,
    settings: &Settings,
    credentials: &Credentials,
    actor: &Actor,
    id: i64,
) -> Result<Agent> {
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, settings, id).await?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    sqlx::query("UPDATE agents SET revoked_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    let after = get_in(&mut tx, settings, id).await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "agent.revoke",
            entity: "agent",
            entity_id: Some(id),
            before: audit::snapshot(&before),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    // After the commit, so that no request can read the credential as valid again.
    credentials.forget_all();
    Ok(after)
}

/// The agent behind a request.
#[derive(Debug, Clone, Copy)]
pub struct AgentIdentity {
    pub id: i64,
    pub school_id: i64,
}

/// How long an authenticated credential is believed without reading the agents table again.
/// Revocation through this server forgets every credential at once; this bounds how long
/// another server process sharing the database would still take a revoked one.
const CREDENTIAL_TTL: Duration = Duration::from_secs(10);
/// The most credentials remembered; beyond that the memory is emptied and refilled.
const CREDENTIALS_KEPT: usize = 65_536;

/// Credentials recently found valid, by their hash, so that an agent's every report does not
/// read the agents table (at thousands of reports a second, that read was a large share of a
/// report's cost). Only hashes are kept, as in the database.
#[derive(Debug, Clone, Default)]
pub struct Credentials(Arc<Mutex<Known>>);

#[derive(Debug, Default)]
struct Known {
    /// Counts revocations: a credential read before one is not kept after it.
    generation: u64,
    agents: HashMap<String, (AgentIdentity, Instant)>,
}

impl Credentials {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, hash: &str) -> Result<AgentIdentity, u64> {
        let known = self.known();
        known
            .agents
            .get(hash)
            .filter(|(_, at)| at.elapsed() < CREDENTIAL_TTL)
            .map(|(agent, _)| *agent)
            .ok_or(known.generation)
    }

    fn keep(&self, generation: u64, hash: String, agent: AgentIdentity) {
        let mut known = self.known();
        if known.generation != generation {
            return;
        }
        if known.agents.len() >= CREDENTIALS_KEPT {
            known.agents.clear();
        }
        known.agents.insert(hash, (agent, Instant::now()));
    }

    fn forget_all(&self) {
        let mut known = self.known();
        known.generation += 1;
        known.agents.clear();
    }
}

/// The agent a credential belongs to, unless it is unknown or revoked.
pub async fn authenticate(
    db: &Db,
    credentials: &Credentials,
    credential: &str,
) -> Result<Option<AgentIdentity>> {
    let hash = secret_hash(credential);
    let generation = match credentials.get(&hash) {
        Ok(agent) => return Ok(Some(agent)),
        Err(generation) => generation,
    };
    let row = sqlx::query::<Any>(
        "SELECT id, school_id FROM agents WHERE credential_hash = $1 AND revoked_at IS NULL",
    )
    .bind(&hash)
    .fetch_optional(&db.pool)
    .await?;
    let agent = row
        .map(|r| {
            Ok::<_, Error>(AgentIdentity {
                id: r.try_get("id")?,
                school_id: r.try_get("school_id")?,
            })
        })
        .transpose()?;
    if let Some(agent) = agent {
        credentials.keep(generation, hash, agent);
    }
    Ok(agent)
}

/// Notes that an agent was heard from (its configuration pull).
pub async fn seen(db: &Db, agent: AgentIdentity, address: Option<&str>) -> Result<()> {
    sqlx::query("UPDATE agents SET last_seen_at = $2, last_address = $3 WHERE id = $1")
        .bind(agent.id)
        .bind(now_ms())
        .bind(address)
        .execute(&db.pool)
        .await?;
    Ok(())
}
