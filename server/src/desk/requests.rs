//! Requests: filing, listing, reading with history, and acting on them through the workflow.
//!
//! Invariant: every change goes through [`act`] (or [`create`]), which checks
//! [`workflow::check`], updates the row only if it is still in the state that was checked
//! (so two people acting at once cannot both win), and writes the history entry and the audit
//! entry in the same transaction.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::Settings;
use super::kinds::Kind;
use super::loans;
use super::sla;
use super::workflow::{self, Action, Party, Refusal, State, To};
use crate::audit::{self, Actor, Change};
use crate::db::{Arg, Db, Where, now_ms, rfc3339};
use crate::error::{Error, Result, ResultExt};
use crate::roles::{Permission, Role};

/// Who is asking, as far as requests care.
#[derive(Debug, Clone, Copy)]
pub struct Who {
    pub user_id: i64,
    pub role: Role,
    pub school_id: Option<i64>,
}

impl Who {
    /// The only school this user may see, for school-bound roles.
    pub fn school_scope(&self) -> Option<i64> {
        self.role
            .school_bound()
            .then_some(self.school_id.unwrap_or(-1))
    }

    /// Whether the user may see requests at all.
    pub fn may_view(&self) -> bool {
        [
            Permission::RequestsFile,
            Permission::RequestsWork,
            Permission::RequestsApprove,
            Permission::ReportsView,
        ]
        .into_iter()
        .any(|p| self.role.may(p))
    }

    pub(super) fn parties(&self, request: &Row_) -> Vec<Party> {
        let mut parties = vec![Party::Viewer];
        if request.requester_id == self.user_id && self.role.may(Permission::RequestsFile) {
            parties.push(Party::Filer);
        }
        if self.role.may(Permission::RequestsWork) {
            parties.push(Party::Worker);
        }
        if self.role.may(Permission::RequestsApprove) {
            parties.push(Party::Approver);
        }
        parties
    }
}

pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

/// What a client sends to file a request. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub kind: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_priority")]
    pub priority: String,
    /// The school the request is for; a requester's own by default (and only).
    pub school_id: Option<i64>,
    /// The kind's form (see `kinds`).
    pub fields: Value,
    /// The assets concerned: required for a loan, optional for a repair.
    #[serde(default)]
    pub asset_ids: Vec<i64>,
}

fn default_priority() -> String {
    "normal".into()
}

/// The body of `POST /requests/{id}/actions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub action: String,
    pub comment: Option<String>,
    pub assignee_id: Option<i64>,
    /// For `wait`: parts, vendor or requester.
    pub reason: Option<String>,
    /// For `rate` (or `close`): 1 to 5.
    pub rating: Option<i64>,
}

/// One entry of a request's history.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: String,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub comment: Option<String>,
    pub detail: Option<Value>,
}

/// Where a request stands with its approvals.
#[derive(Debug, Clone, Serialize)]
pub struct Approvals {
    pub steps: Vec<String>,
    pub done: i64,
    /// The step that waits for an approver now, if any.
    pub waiting_for: Option<String>,
}

/// A request as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub priority: String,
    pub title: String,
    pub description: String,
    pub fields: Value,
    pub school_id: i64,
    pub requester_id: i64,
    pub assignee_id: Option<i64>,
    pub approvals: Approvals,
    pub wait_reason: Option<String>,
    pub rating: Option<i64>,
    pub rating_comment: Option<String>,
    pub sla: sla::Status,
    /// A loan checked out and not returned after its period.
    pub overdue: bool,
    pub created_at: String,
    pub updated_at: String,
    pub resolved_at: Option<String>,
    pub closed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_ids: Option<Vec<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Event>>,
    /// Files attached to it (photos, scans), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<super::attachments::Attachment>>,
}

/// The stored row, before it is shown.
#[derive(Debug, Clone)]
pub(super) struct Row_ {
    pub(super) id: i64,
    pub(super) kind: Kind,
    pub(super) state: State,
    priority: String,
    title: String,
    description: String,
    pub(super) fields: Value,
    pub(super) school_id: i64,
    requester_id: i64,
    assignee_id: Option<i64>,
    approvals_done: i64,
    wait_reason: Option<String>,
    waiting_since: Option<i64>,
    paused_ms: i64,
    clock_start_at: Option<i64>,
    responded_at: Option<i64>,
    resolved_at: Option<i64>,
    closed_at: Option<i64>,
    rating: Option<i64>,
    rating_comment: Option<String>,
    created_at: i64,
    updated_at: i64,
    loan_ends: Option<i64>,
}

const COLUMNS: &str = "r.id, r.kind, r.state, r.priority, r.title, r.description, r.fields_json, r.school_id, \
    r.requester_id, r.assignee_id, r.approvals_done, r.wait_reason, r.waiting_since, r.paused_ms, r.clock_start_at, \
    r.responded_at, r.resolved_at, r.closed_at, r.rating, r.rating_comment, r.created_at, r.updated_at, \
    (SELECT MAX(a.ends_at) FROM desk_request_assets a WHERE a.request_id = r.id) AS loan_ends";

fn from_row(row: &AnyRow) -> Result<Row_> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let fields: String = row.try_get("fields_json")?;
    Ok(Row_ {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind).unwrap_or(Kind::General),
        state: State::parse(&state).unwrap_or(State::Submitted),
        priority: row.try_get("priority")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        fields: serde_json::from_str(&fields).unwrap_or(Value::Null),
        school_id: row.try_get("school_id")?,
        requester_id: row.try_get("requester_id")?,
        assignee_id: row.try_get("assignee_id")?,
        approvals_done: row.try_get("approvals_done")?,
        wait_reason: row.try_get("wait_reason")?,
        waiting_since: row.try_get("waiting_since")?,
        paused_ms: row.try_get("paused_ms")?,
        clock_start_at: row.try_get("clock_start_at")?,
        responded_at: row.try_get("responded_at")?,
        resolved_at: row.try_get("resolved_at")?,
        closed_at: row.try_get("closed_at")?,
        rating: row.try_get("rating")?,
        rating_comment: row.try_get("rating_comment")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        loan_ends: row.try_get("loan_ends")?,
    })
}

impl Row_ {
    fn show(&self, settings: &Settings, now: i64) -> Request {
        let steps = settings.approval_steps(self.kind);
        let waiting_for = (self.state == State::PendingApproval)
            .then(|| steps.get(self.approvals_done as usize).cloned())
            .flatten();
        let clock = sla::Clock {
            start: self.clock_start_at,
            responded: self.responded_at,
            resolved: self.resolved_at.or(match self.state {
                State::Rejected | State::Cancelled => Some(self.updated_at),
                _ => None,
            }),
            paused_ms: self.paused_ms,
            paused_since: (self.wait_reason.as_deref() == Some("requester"))
                .then_some(self.waiting_since)
                .flatten(),
        };
        Request {
            id: self.id,
            kind: self.kind.as_str().to_owned(),
            state: self.state.as_str().to_owned(),
            priority: self.priority.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            fields: self.fields.clone(),
            school_id: self.school_id,
            requester_id: self.requester_id,
            assignee_id: self.assignee_id,
            approvals: Approvals {
                steps,
                done: self.approvals_done,
                waiting_for,
            },
            wait_reason: self.wait_reason.clone(),
            rating: self.rating,
            rating_comment: self.rating_comment.clone(),
            sla: sla::status(
                &settings.calendar,
                settings.targets(self.kind, &self.priority),
                clock,
                now,
            ),
            overdue: self.kind == Kind::Loan
                && matches!(self.state, State::InProgress | State::Waiting)
                && self.loan_ends.is_some_and(|end| end < now),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            resolved_at: self.resolved_at.map(rfc3339),
            closed_at: self.closed_at.map(rfc3339),
            asset_ids: None,
            history: None,
            attachments: None,
        }
    }
}

async fn load(conn: &mut AnyConnection, id: i64) -> Result<Row_> {
    let sql = format!("SELECT {COLUMNS} FROM desk_requests r WHERE r.id = $1");
    let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(Error::NotFound)?;
    from_row(&row)
}

/// Loads a request the user may see; another school's is `NotFound`.
pub(super) async fn load_visible(conn: &mut AnyConnection, who: &Who, id: i64) -> Result<Row_> {
    if !who.may_view() {
        return Err(Error::Forbidden);
    }
    let row = load(conn, id).await?;
    if who.school_scope().is_some_and(|s| s != row.school_id) {
        return Err(Error::NotFound);
    }
    Ok(row)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn add_event(
    conn: &mut AnyConnection,
    actor: &Actor,
    request_id: i64,
    action: &str,
    from: Option<State>,
    to: State,
    comment: Option<&str>,
    detail: Option<Value>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO desk_events (request_id, at, actor_id, actor, action, from_state, to_state, comment, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(request_id)
    .bind(now_ms())
    .bind(actor.user_id)
    .bind(&actor.username)
    .bind(action)
    .bind(from.map(State::as_str))
    .bind(to.as_str())
    .bind(comment)
    .bind(detail.map(|d| d.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

async fn history(conn: &mut AnyConnection, id: i64) -> Result<Vec<Event>> {
    let rows = sqlx::query::<Any>(
        "SELECT at, actor_id, actor, action, from_state, to_state, comment, detail \
         FROM desk_events WHERE request_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let detail: Option<String> = row.try_get("detail")?;
            Ok(Event {
                at: rfc3339(row.try_get("at")?),
                actor_id: row.try_get("actor_id")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                from_state: row.try_get("from_state")?,
                to_state: row.try_get("to_state")?,
                comment: row.try_get("comment")?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
            })
        })
        .collect()
}

async fn asset_ids(conn: &mut AnyConnection, id: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar::<Any, i64>(
        "SELECT asset_id FROM desk_request_assets WHERE request_id = $1 ORDER BY asset_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

async fn full(conn: &mut AnyConnection, settings: &Settings, row: &Row_) -> Result<Request> {
    let mut request = row.show(settings, now_ms());
    request.asset_ids = Some(asset_ids(conn, row.id).await?);
    request.history = Some(history(conn, row.id).await?);
    request.attachments = Some(super::attachments::of_request(conn, row.id).await?);
    Ok(request)
}

/// A request with its assets and history.
///
/// # Errors
/// `Forbidden` for roles that see no requests; `NotFound` for another school's.
pub async fn get(db: &Db, settings: &Settings, who: &Who, id: i64) -> Result<Request> {
    let mut conn = db.pool.acquire().await?;
    let row = load_visible(&mut conn, who, id).await?;
    full(&mut conn, settings, &row).await
}

/// Files a request: checks its kind's form and assets, and puts it in `pending_approval` when
/// its kind needs approval, else `submitted`.
///
/// # Errors
/// `Forbidden` when the role may not file; `Invalid` naming the field; `Conflict` when a loan's
/// asset is already lent for an overlapping period or an account's user ID is taken.
pub async fn create(
    db: &Db,
    settings: &Settings,
    actor: &Actor,
    who: &Who,
    new: NewRequest,
) -> Result<Request> {
    if !who.role.may(Permission::RequestsFile) {
        return Err(Error::Forbidden);
    }
    let kind = Kind::parse(&new.kind).ok_or_else(|| {
        Error::invalid(
            "kind",
            format!(
                "must be one of {}",
                super::kinds::KINDS.map(Kind::as_str).join(", ")
            ),
        )
    })?;
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(Error::invalid("title", "must be 1 to 200 characters"));
    }
    if !PRIORITIES.contains(&new.priority.as_str()) {
        return Err(Error::invalid(
            "priority",
            "must be low, normal, high or urgent",
        ));
    }
    let school_id = match (who.school_scope(), new.school_id) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(Error::invalid(
                "school_id",
                "you may file requests only for your own school",
            ));
        }
        (Some(own), _) => own,
        (None, Some(asked)) => asked,
        (None, None) => who
            .school_id
            .ok_or_else(|| Error::invalid("school_id", "say which school the request is for"))?,
    };
    let fields = kind.validate(&new.fields)?;
    let mut asset_ids = new.asset_ids.clone();
    asset_ids.sort_unstable();
    asset_ids.dedup();
    let period = match kind {
        Kind::Loan => {
            if asset_ids.is_empty() {
                return Err(Error::invalid(
                    "asset_ids",
                    "a loan names at least one asset",
                ));
            }
            Some(loans::period(
                fields["from"].as_str().unwrap_or_default(),
                fields["to"].as_str().unwrap_or_default(),
            )?)
        }
        Kind::Repair => None,
        _ if !asset_ids.is_empty() => {
            return Err(Error::invalid(
                "asset_ids",
                "only loan and repair requests name assets",
            ));
        }
        _ => None,
    };
    let steps = settings.approval_steps(kind);
    let state = if steps.is_empty() {
        State::Submitted
    } else {
        State::PendingApproval
    };
    let now = now_ms();

    let mut tx = db.begin_write().await?;
    let school: Option<i64> =
        sqlx::query_scalar::<Any, i64>("SELECT id FROM schools WHERE id = $1")
            .bind(school_id)
            .fetch_optional(&mut *tx)
            .await?;
    if school.is_none() {
        return Err(Error::invalid("school_id", "no such school"));
    }
    for (i, &asset_id) in asset_ids.iter().enumerate() {
        let owner: Option<i64> =
            sqlx::query_scalar::<Any, i64>("SELECT school_id FROM assets WHERE id = $1")
                .bind(asset_id)
                .fetch_optional(&mut *tx)
                .await?;
        match owner {
            None => {
                return Err(Error::invalid(
                    &format!("asset_ids[{i}]"),
                    format!("no asset {asset_id}"),
                ));
            }
            Some(owner) if kind == Kind::Repair && owner != school_id => {
                return Err(Error::invalid(
                    &format!("asset_ids[{i}]"),
                    format!("asset {asset_id} belongs to another school"),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(period) = period {
        loans::check_free(&mut tx, &asset_ids, period).await?;
    }
    if kind == Kind::Account {
        let login = fields["login"].as_str().unwrap_or_default();
        let taken: Option<i64> =
            sqlx::query_scalar::<Any, i64>("SELECT id FROM network_identities WHERE login = $1")
                .bind(login)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(Error::Conflict(format!(
                "the network user ID {login:?} is already in use"
            )));
        }
    }
    let id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO desk_requests (kind, state, priority, title, description, fields_json, school_id, requester_id, \
         clock_start_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
    )
    .bind(kind.as_str())
    .bind(state.as_str())
    .bind(&new.priority)
    .bind(title)
    .bind(new.description.trim())
    .bind(fields.to_string())
    .bind(school_id)
    .bind(who.user_id)
    .bind(steps.is_empty().then_some(now))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    for &asset_id in &asset_ids {
        sqlx::query(
            "INSERT INTO desk_request_assets (request_id, asset_id, starts_at, ends_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(asset_id)
        .bind(period.map(|p| p.starts_at))
        .bind(period.map(|p| p.ends_at))
        .execute(&mut *tx)
        .await?;
    }
    add_event(&mut tx, actor, id, "submit", None, state, None, None).await?;
    let row = load(&mut tx, id).await?;
    let request = full(&mut tx, settings, &row).await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: "request.create",
            entity: "request",
            entity_id: Some(id),
            before: None,
            after: Some(json!({ "kind": request.kind, "state": request.state, "title": request.title,
                                "school_id": school_id, "fields": request.fields, "asset_ids": asset_ids })),
        },
    )
    .await?;
    tx.commit().await?;
    super::notify::after_change(
        db,
        settings.mailer.clone(),
        settings.public_url.clone(),
        request.clone(),
        true,
        who_id(who),
    );
    Ok(request)
}

fn who_id(who: &Who) -> Option<i64> {
    Some(who.user_id)
}

/// Which requests to list: newest first, paged by id.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub state: Option<String>,
    pub kind: Option<String>,
    pub school_id: Option<i64>,
    pub assignee_id: Option<i64>,
    pub requester_id: Option<i64>,
    pub before_id: Option<i64>,
    pub limit: Option<i64>,
}

/// Lists requests; a requester sees only their school's.
///
/// # Errors
/// `Forbidden` for roles that see no requests; `Invalid` for an unknown state or kind.
pub async fn list(
    db: &Db,
    settings: &Settings,
    who: &Who,
    filter: &Filter,
) -> Result<Vec<Request>> {
    if !who.may_view() {
        return Err(Error::Forbidden);
    }
    let limit = filter.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("limit", "must be 1 to 500"));
    }
    if let Some(state) = &filter.state
        && State::parse(state).is_none()
    {
        return Err(Error::invalid(
            "state",
            format!(
                "must be one of {}",
                workflow::STATES.map(State::as_str).join(", ")
            ),
        ));
    }
    if let Some(kind) = &filter.kind
        && Kind::parse(kind).is_none()
    {
        return Err(Error::invalid(
            "kind",
            format!(
                "must be one of {}",
                super::kinds::KINDS.map(Kind::as_str).join(", ")
            ),
        ));
    }
    let school = match (who.school_scope(), filter.school_id) {
        (Some(own), Some(asked)) if own != asked => return Ok(Vec::new()),
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    // Only the filters given, so each engine reads the page from the index that fits them
    // (`(state, id)`, `(school_id, state, id)`, `(assignee_id, state, id)`, ...).
    let mut conditions = Where::default();
    if let Some(state) = &filter.state {
        conditions.push("r.state = ?", [Arg::Text(state.clone())]);
    }
    if let Some(kind) = &filter.kind {
        conditions.push("r.kind = ?", [Arg::Text(kind.clone())]);
    }
    if let Some(school) = school {
        conditions.push("r.school_id = ?", [Arg::Int(school)]);
    }
    if let Some(assignee) = filter.assignee_id {
        conditions.push("r.assignee_id = ?", [Arg::Int(assignee)]);
    }
    if let Some(requester) = filter.requester_id {
        conditions.push("r.requester_id = ?", [Arg::Int(requester)]);
    }
    if let Some(before) = filter.before_id {
        conditions.push("r.id < ?", [Arg::Int(before)]);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM desk_requests r WHERE {} ORDER BY r.id DESC LIMIT {limit}",
        conditions.sql()
    );
    let rows = conditions
        .bind(sqlx::query::<Any>(sqlx::AssertSqlSafe(sql)))
        .fetch_all(&db.pool)
        .await?;
    let now = now_ms();
    rows.iter()
        .map(|row| Ok(from_row(row)?.show(settings, now)))
        .collect()
}

/// Takes an action on a request.
///
/// # Errors
/// `NotFound` for another school's request; `Forbidden` when none of the user's parties may
/// take the action; `Conflict` when it is not allowed in the current state (or the request
/// changed meanwhile, or a loan overlaps an approved one); `Invalid` naming a missing or bad
/// field.
pub async fn act(
    db: &Db,
    settings: &Settings,
    actor: &Actor,
    who: &Who,
    id: i64,
    body: ActionBody,
) -> Result<Request> {
    let action = Action::parse(&body.action).ok_or_else(|| {
        Error::invalid(
            "action",
            format!(
                "must be one of {}",
                workflow::RULES
                    .iter()
                    .map(|r| r.action.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let comment = body
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row = load_visible(&mut tx, who, id).await?;
    let rule = workflow::check(action, row.state, &who.parties(&row)).map_err(|r| match r {
        Refusal::NotYours => Error::Forbidden,
        Refusal::NotNow => Error::Conflict(format!(
            "cannot {} a request that is {}",
            action.as_str(),
            row.state.as_str()
        )),
    })?;

    let mut next = row.clone();
    let mut detail: Option<Value> = None;
    let steps = settings.approval_steps(row.kind);
    next.state = match rule.to {
        To::State(s) => s,
        To::Same => row.state,
        To::NextApprovalStep => {
            if (row.approvals_done as usize + 1) >= steps.len() {
                State::Approved
            } else {
                State::PendingApproval
            }
        }
        To::Reopened => {
            if row.assignee_id.is_some() {
                State::Assigned
            } else if steps.is_empty() {
                State::Submitted
            } else {
                State::Approved
            }
        }
    };
    // Leaving `waiting`: a pause on the requester ends and its working time is kept.
    if row.state == State::Waiting && next.state != State::Waiting {
        if row.wait_reason.as_deref() == Some("requester")
            && let Some(since) = row.waiting_since
        {
            next.paused_ms += settings.calendar.working_ms(since, now);
        }
        next.wait_reason = None;
        next.waiting_since = None;
    }

    if matches!(action, Action::Approve | Action::Reject) {
        let step = steps
            .get(row.approvals_done as usize)
            .map(String::as_str)
            .unwrap_or_default();
        if let Some(name) = super::named_approver(step)
            && name != actor.username
        {
            return Err(Error::Conflict(format!(
                "step {step} is for {name} alone to approve or reject"
            )));
        }
    }
    match action {
        Action::Approve => {
            let step = steps
                .get(row.approvals_done as usize)
                .cloned()
                .unwrap_or_default();
            let already: Option<i64> = sqlx::query_scalar::<Any, i64>(
                "SELECT id FROM desk_events WHERE request_id = $1 AND action = 'approve' AND actor_id = $2 LIMIT 1",
            )
            .bind(id)
            .bind(who.user_id)
            .fetch_optional(&mut *tx)
            .await?;
            if already.is_some() {
                return Err(Error::Conflict(format!(
                    "you approved an earlier step; step {step} needs another approver"
                )));
            }
            next.approvals_done += 1;
            detail = Some(json!({ "step": step }));
            if next.state == State::Approved {
                next.clock_start_at = Some(now);
                if row.kind == Kind::Loan {
                    loans::approve_in(db, &mut tx, id).await?;
                }
                if row.kind == Kind::Account {
                    create_identity(&mut tx, actor, &row).await?;
                }
            }
        }
        Action::Reject => {
            if comment.is_none() {
                return Err(Error::invalid("comment", "say why the request is rejected"));
            }
        }
        Action::Assign => {
            let assignee = body
                .assignee_id
                .ok_or_else(|| Error::invalid("assignee_id", "say who is to work on it"))?;
            let role: Option<(String, i64)> = sqlx::query_as::<Any, (String, i64)>(
                "SELECT role, active FROM users WHERE id = $1",
            )
            .bind(assignee)
            .fetch_optional(&mut *tx)
            .await?;
            let ok = role.is_some_and(|(role, active)| {
                active == 1 && Role::parse(&role).is_some_and(|r| r.may(Permission::RequestsWork))
            });
            if !ok {
                return Err(Error::invalid(
                    "assignee_id",
                    "must be an active user who may work the desk queue",
                ));
            }
            next.assignee_id = Some(assignee);
            next.responded_at = row.responded_at.or(Some(now));
            detail = Some(json!({ "assignee_id": assignee }));
        }
        Action::Start => {
            next.responded_at = row.responded_at.or(Some(now));
            if row.state == State::Assigned {
                move_assets(&mut tx, actor, &row, comment, true).await?;
            }
        }
        Action::Wait => {
            let reason = body.reason.as_deref().unwrap_or_default();
            if !["parts", "vendor", "requester"].contains(&reason) {
                return Err(Error::invalid(
                    "reason",
                    "must be parts, vendor or requester",
                ));
            }
            next.wait_reason = Some(reason.to_owned());
            next.waiting_since = Some(now);
            detail = Some(json!({ "reason": reason }));
        }
        Action::Resolve => {
            next.resolved_at = Some(now);
            move_assets(&mut tx, actor, &row, comment, false).await?;
        }
        Action::Close => {
            next.closed_at = Some(now);
            if body.rating.is_some() {
                rate(&mut next, &body, comment, &mut detail)?;
            }
        }
        Action::Cancel => {
            if row.kind == Kind::Loan {
                loans::release_in(&mut tx, id).await?;
            }
        }
        Action::Reopen => {
            reopen_window(settings, &row, now)?;
            next.resolved_at = None;
            next.closed_at = None;
        }
        Action::Comment => {
            if comment.is_none() {
                return Err(Error::invalid("comment", "must not be empty"));
            }
        }
        Action::Rate => {
            if row.rating.is_some() {
                return Err(Error::Conflict("the request is already rated".into()));
            }
            rate(&mut next, &body, comment, &mut detail)?;
        }
    }
    if action == Action::Reject && row.kind == Kind::Loan {
        loans::release_in(&mut tx, id).await?;
    }

    let updated = sqlx::query(
        "UPDATE desk_requests SET state = $1, assignee_id = $2, approvals_done = $3, wait_reason = $4, waiting_since = $5, \
         paused_ms = $6, clock_start_at = $7, responded_at = $8, resolved_at = $9, closed_at = $10, rating = $11, \
         rating_comment = $12, updated_at = $13 WHERE id = $14 AND state = $15 AND approvals_done = $16 AND updated_at = $17",
    )
    .bind(next.state.as_str())
    .bind(next.assignee_id)
    .bind(next.approvals_done)
    .bind(&next.wait_reason)
    .bind(next.waiting_since)
    .bind(next.paused_ms)
    .bind(next.clock_start_at)
    .bind(next.responded_at)
    .bind(next.resolved_at)
    .bind(next.closed_at)
    .bind(next.rating)
    .bind(&next.rating_comment)
    .bind(now.max(row.updated_at + 1))
    .bind(id)
    .bind(row.state.as_str())
    .bind(row.approvals_done)
    .bind(row.updated_at)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(Error::Conflict(
            "the request changed meanwhile; reload it and try again".into(),
        ));
    }
    add_event(
        &mut tx,
        actor,
        id,
        action.as_str(),
        Some(row.state),
        next.state,
        comment,
        detail,
    )
    .await?;
    audit::record(
        &mut tx,
        actor,
        Change {
            action: &format!("request.{}", action.as_str()),
            entity: "request",
            entity_id: Some(id),
            before: Some(
                json!({ "state": row.state.as_str(), "assignee_id": row.assignee_id,
                                 "approvals_done": row.approvals_done }),
            ),
            after: Some(
                json!({ "state": next.state.as_str(), "assignee_id": next.assignee_id,
                                "approvals_done": next.approvals_done, "comment": comment }),
            ),
        },
    )
    .await?;
    let changed_state = row.state != next.state;
    let row = load(&mut tx, id).await?;
    let request = full(&mut tx, settings, &row).await?;
    tx.commit().await?;
    super::notify::after_change(
        db,
        settings.mailer.clone(),
        settings.public_url.clone(),
        request.clone(),
        changed_state,
        who_id(who),
    );
    Ok(request)
}

fn rate(
    next: &mut Row_,
    body: &ActionBody,
    comment: Option<&str>,
    detail: &mut Option<Value>,
) -> Result<()> {
    let rating = body
        .rating
        .filter(|r| (1..=5).contains(r))
        .ok_or_else(|| Error::invalid("rating", "must be 1 to 5"))?;
    next.rating = Some(rating);
    next.rating_comment = comment.map(str::to_owned);
    *detail = Some(json!({ "rating": rating }));
    Ok(())
}

fn reopen_window(settings: &Settings, row: &Row_, now: i64) -> Result<()> {
    let since = row.resolved_at.unwrap_or(row.updated_at);
    if now - since > settings.reopen_window_ms {
        return Err(Error::Conflict(format!(
            "the request was resolved more than {} days ago; file a new one",
            settings.reopen_window_ms / 86_400_000
        )));
    }
    Ok(())
}

/// Check-out and check-in of a loan's assets, and a repair's assets going in and out of
/// repair. `out` is true when work starts.
async fn move_assets(
    conn: &mut AnyConnection,
    actor: &Actor,
    row: &Row_,
    comment: Option<&str>,
    out: bool,
) -> Result<()> {
    let (to, action) = match (row.kind, out) {
        (Kind::Loan, true) => ("on_loan", "check_out"),
        (Kind::Loan, false) => ("", "check_in"),
        (Kind::Repair, true) => ("in_repair", "repair_start"),
        (Kind::Repair, false) => ("", "repair_done"),
        _ => return Ok(()),
    };
    let links = sqlx::query_as::<Any, (i64, i64, Option<String>)>(
        "SELECT id, asset_id, prior_state FROM desk_request_assets WHERE request_id = $1 ORDER BY asset_id",
    )
    .bind(row.id)
    .fetch_all(&mut *conn)
    .await?;
    let detail = comment.unwrap_or_default();
    for (link_id, asset_id, prior) in links {
        if out {
            let prior = super::assets::set_state_in(
                conn,
                actor,
                asset_id,
                to,
                action,
                Some(row.id),
                detail,
            )
            .await?;
            sqlx::query("UPDATE desk_request_assets SET prior_state = $1 WHERE id = $2")
                .bind(prior)
                .bind(link_id)
                .execute(&mut *conn)
                .await?;
        } else if let Some(prior) = prior {
            super::assets::set_state_in(
                conn,
                actor,
                asset_id,
                &prior,
                action,
                Some(row.id),
                detail,
            )
            .await?;
        }
    }
    Ok(())
}

/// An approved account request makes the network identity the collector attributes sessions to.
async fn create_identity(conn: &mut AnyConnection, actor: &Actor, row: &Row_) -> Result<()> {
    let login = row.fields["login"].as_str().unwrap_or_default();
    let full_name = row.fields["full_name"].as_str().unwrap_or_default();
    let id: i64 = sqlx::query_scalar::<Any, i64>(
        "INSERT INTO network_identities (login, full_name, school_id, request_id, active, created_at) \
         VALUES ($1, $2, $3, $4, 1, $5) RETURNING id",
    )
    .bind(login)
    .bind(full_name)
    .bind(row.school_id)
    .bind(row.id)
    .bind(now_ms())
    .fetch_one(&mut *conn)
    .await
    .on_unique_violation(|| format!("the network user ID {login:?} is already in use"))?;
    audit::record(
        conn,
        actor,
        Change {
            action: "network_identity.create",
            entity: "network_identity",
            entity_id: Some(id),
            before: None,
            after: Some(
                json!({ "login": login, "full_name": full_name, "school_id": row.school_id,
                                "request_id": row.id }),
            ),
        },
    )
    .await?;
    Ok(())
}

/// A network identity (user ID) as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub id: i64,
    pub login: String,
    pub full_name: String,
    pub school_id: i64,
    pub request_id: Option<i64>,
    pub active: bool,
    pub created_at: String,
}

/// Network identities, newest first, optionally one login or one school's.
pub async fn identities(
    db: &Db,
    login: Option<&str>,
    school_id: Option<i64>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Identity>> {
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be 1 to 1000"));
    }
    let rows = sqlx::query::<Any>(
        "SELECT id, login, full_name, school_id, request_id, active, created_at FROM network_identities \
         WHERE ($1 IS NULL OR login = $1) AND ($2 IS NULL OR school_id = $2) AND ($3 IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(login)
    .bind(school_id)
    .bind(before_id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Identity {
                id: row.try_get("id")?,
                login: row.try_get("login")?,
                full_name: row.try_get("full_name")?,
                school_id: row.try_get("school_id")?,
                request_id: row.try_get("request_id")?,
                active: row.try_get::<i64, _>("active")? == 1,
                created_at: rfc3339(row.try_get("created_at")?),
            })
        })
        .collect()
}
