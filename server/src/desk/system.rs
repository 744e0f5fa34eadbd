//! Repair requests khetnet files on its own, for device-health incidents: opened, commented on,
//! resolved and reopened by the built-in `system` user (migration 0006), inside the caller's
//! transaction so that an incident and its request are written together or not at all.
//!
//! The `system` user cannot sign in (inactive, no password hash). History and audit entries name
//! it as the actor. Resolving differs from [`super::requests::act`] in one way: the system may
//! resolve a request nobody has started, because the fault cleared by itself.

use serde_json::json;
use sqlx::{Any, AnyConnection, Row};

use super::requests::add_event;
use super::workflow::State;
use crate::audit::{self, Actor, Change};
use crate::db::now_ms;
use crate::error::{Error, Result};

/// The user name of the built-in system user.
pub const USERNAME: &str = "system";

/// The system user as actor, with its user id.
async fn actor(conn: &mut AnyConnection) -> Result<Actor> {
    // Migration 0006 made it; a database without it fails here with "no rows".
    let id: i64 = sqlx::query_scalar::<Any, i64>("SELECT id FROM users WHERE username = $1")
        .bind(USERNAME)
        .fetch_one(conn)
        .await?;
    Ok(Actor {
        user_id: Some(id),
        ..Actor::system()
    })
}

/// A repair request to file for an incident.
pub struct Repair<'a> {
    pub school_id: i64,
    pub title: &'a str,
    /// What is wrong, as the request's `problem` field.
    pub problem: &'a str,
    /// `high` for a device down, `normal` otherwise.
    pub priority: &'a str,
}

/// Files a repair request as the system user and returns its id.
pub async fn open_repair(conn: &mut AnyConnection, repair: Repair<'_>) -> Result<i64> {
    let actor = actor(conn).await?;
    let now = now_ms();
    let fields = json!({ "problem": repair.problem, "location": "" });
    let title: String = repair.title.chars().take(200).collect();
    let id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO desk_requests (kind, state, priority, title, description, fields_json, school_id, requester_id, \
         clock_start_at, created_at, updated_at) VALUES ('repair', 'submitted', $1, $2, $3, $4, $5, $6, $7, $7, $7) RETURNING id",
    )
    .bind(repair.priority)
    .bind(&title)
    .bind(repair.problem)
    .bind(fields.to_string())
    .bind(repair.school_id)
    .bind(actor.user_id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    add_event(
        conn,
        &actor,
        id,
        "submit",
        None,
        State::Submitted,
        None,
        None,
    )
    .await?;
    audit::record(
        conn,
        &actor,
        Change {
            action: "request.create",
            entity: "request",
            entity_id: Some(id),
            before: None,
            after: Some(
                json!({ "kind": "repair", "state": "submitted", "title": title,
                                "school_id": repair.school_id, "fields": fields }),
            ),
        },
    )
    .await?;
    Ok(id)
}

async fn state_of(conn: &mut AnyConnection, id: i64) -> Result<(State, Option<i64>, i64)> {
    let row = sqlx::query::<Any>(
        "SELECT state, assignee_id, updated_at FROM desk_requests WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound)?;
    let state: String = row.try_get("state")?;
    Ok((
        State::parse(&state).unwrap_or(State::Submitted),
        row.try_get("assignee_id")?,
        row.try_get("updated_at")?,
    ))
}

/// Moves a request to `to` as the system (or only notes the comment when `to` is `None`), with
/// its history and audit entries.
async fn change(
    conn: &mut AnyConnection,
    id: i64,
    action: &str,
    to: Option<State>,
    comment: &str,
) -> Result<State> {
    let actor = actor(conn).await?;
    let (from, _, updated_at) = state_of(conn, id).await?;
    let now = now_ms().max(updated_at + 1);
    let next = to.unwrap_or(from);
    sqlx::query(
        "UPDATE desk_requests SET state = $2, updated_at = $3, \
         resolved_at = CASE WHEN $2 = 'resolved' THEN $3 WHEN $2 = $4 THEN resolved_at ELSE NULL END, \
         wait_reason = CASE WHEN $2 = $4 THEN wait_reason ELSE NULL END, \
         waiting_since = CASE WHEN $2 = $4 THEN waiting_since ELSE NULL END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(next.as_str())
    .bind(now)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?;
    add_event(
        conn,
        &actor,
        id,
        action,
        Some(from),
        next,
        Some(comment),
        None,
    )
    .await?;
    audit::record(
        conn,
        &actor,
        Change {
            action: &format!("request.{action}"),
            entity: "request",
            entity_id: Some(id),
            before: Some(json!({ "state": from.as_str() })),
            after: Some(json!({ "state": next.as_str(), "comment": comment })),
        },
    )
    .await?;
    Ok(next)
}

/// Adds the system's comment to a request.
pub async fn comment(conn: &mut AnyConnection, id: i64, comment: &str) -> Result<()> {
    change(conn, id, "comment", None, comment).await?;
    Ok(())
}

/// Resolves a request that is still open, with a comment saying why; on one a technician has
/// already resolved, closed or cancelled, only adds the comment. Returns the state after.
pub async fn resolve(conn: &mut AnyConnection, id: i64, comment: &str) -> Result<State> {
    let (state, _, _) = state_of(conn, id).await?;
    match state {
        State::Submitted
        | State::Approved
        | State::Assigned
        | State::InProgress
        | State::Waiting => change(conn, id, "resolve", Some(State::Resolved), comment).await,
        _ => change(conn, id, "comment", None, comment).await,
    }
}

/// Reopens a request the system (or a technician) resolved, when the fault came back: to
/// `assigned` when someone is assigned, else `submitted`. Returns false, changing nothing, when
/// the request is in any other state (closed, cancelled, still open).
pub async fn reopen(conn: &mut AnyConnection, id: i64, comment: &str) -> Result<bool> {
    let (state, assignee, _) = state_of(conn, id).await?;
    if state != State::Resolved {
        return Ok(false);
    }
    let to = if assignee.is_some() {
        State::Assigned
    } else {
        State::Submitted
    };
    change(conn, id, "reopen", Some(to), comment).await?;
    Ok(true)
}
