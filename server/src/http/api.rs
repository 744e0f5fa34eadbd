//! REST API handlers under `/api/v1`. Each checks the permission table, then calls the domain
//! module that owns the data; none holds SQL of its own.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{Anonymous, ApiJson, ApiPath, ApiQuery, ApiUser};
use crate::audit;
use crate::auth::{self, Refusal, TokenKind};
use crate::roles::Permission;
use crate::schools::{self, NewSchool};
use crate::users::{self, NewUser, UserPatch};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// `POST /api/v1/auth/login`: a bearer token for the API.
pub async fn login(
    State(state): State<AppState>,
    Anonymous(actor): Anonymous,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Json<Value>> {
    let (token, user) = state
        .login(&actor, &body.username, &body.password, TokenKind::Api)
        .await?;
    Ok(Json(
        json!({ "token": token, "token_type": "Bearer", "user": user }),
    ))
}

/// `POST /api/v1/auth/logout`: revokes the token used.
pub async fn logout(State(state): State<AppState>, user: ApiUser) -> ApiResult<StatusCode> {
    auth::logout(&state.db, &user.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl AppState {
    /// Shared by the API and the web login form: throttle, check, and explain refusals.
    pub async fn login(
        &self,
        actor: &audit::Actor,
        username: &str,
        password: &str,
        kind: TokenKind,
    ) -> ApiResult<(String, users::User)> {
        if let Some(ip) = actor.source_ip.as_deref().and_then(|ip| ip.parse().ok()) {
            self.throttle
                .check(ip, std::time::Instant::now())
                .map_err(|retry_after_secs| ApiError::TooManyRequests { retry_after_secs })?;
        }
        match auth::login(&self.db, &self.policy, actor, username, password, kind).await? {
            Ok(ok) => {
                metrics::counter!("khetnet_logins_total", "outcome" => "ok").increment(1);
                Ok(ok)
            }
            Err(Refusal::BadCredentials) => {
                metrics::counter!("khetnet_logins_total", "outcome" => "bad_credentials")
                    .increment(1);
                Err(ApiError::Unauthorized("wrong user name or password".into()))
            }
            Err(Refusal::Locked { until }) => {
                metrics::counter!("khetnet_logins_total", "outcome" => "locked").increment(1);
                Err(ApiError::Unauthorized(format!(
                    "the account is locked after too many failed logins until {until}; \
                     an administrator can unlock it sooner"
                )))
            }
        }
    }
}

/// `GET /api/v1/me`
pub async fn me(State(state): State<AppState>, user: ApiUser) -> ApiResult<Json<users::User>> {
    Ok(Json(users::get(&state.db, user.principal.id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /api/v1/me/password`: change one's own password; other sessions end.
pub async fn change_password(
    State(state): State<AppState>,
    user: ApiUser,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    auth::change_password(
        &state.db,
        &state.policy,
        &user.actor,
        user.principal.id,
        &body.current_password,
        &body.new_password,
        &user.token,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/schools`
pub async fn create_school(
    State(state): State<AppState>,
    user: ApiUser,
    ApiJson(body): ApiJson<NewSchool>,
) -> ApiResult<impl IntoResponse> {
    user.require(Permission::SchoolsManage)?;
    let school = schools::create(&state.db, &user.actor, body).await?;
    Ok((StatusCode::CREATED, Json(school)))
}

/// `GET /api/v1/schools`: all of them, or a requester's own.
pub async fn list_schools(
    State(state): State<AppState>,
    user: ApiUser,
) -> ApiResult<Json<Vec<schools::School>>> {
    user.require(Permission::SchoolsView)?;
    Ok(Json(schools::list(&state.db, user.school_scope()).await?))
}

/// `GET /api/v1/schools/{id}`: another school than a requester's own is 404, not 403, so its
/// existence is not told.
pub async fn get_school(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<schools::School>> {
    user.require(Permission::SchoolsView)?;
    if user.school_scope().is_some_and(|own| own != id) {
        return Err(ApiError::NotFound);
    }
    Ok(Json(schools::get(&state.db, id).await?))
}

/// `PATCH /api/v1/schools/{id}`
pub async fn update_school(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<schools::SchoolPatch>,
) -> ApiResult<Json<schools::School>> {
    user.require(Permission::SchoolsManage)?;
    Ok(Json(
        schools::update(&state.db, &user.actor, id, patch).await?,
    ))
}

/// `POST /api/v1/users`
pub async fn create_user(
    State(state): State<AppState>,
    user: ApiUser,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<impl IntoResponse> {
    user.require(Permission::UsersManage)?;
    let created = users::create(
        &state.db,
        &user.actor,
        body,
        state.policy.min_password_length,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    school_id: Option<i64>,
}

/// `GET /api/v1/users[?school_id=]`
pub async fn list_users(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult<Json<Vec<users::User>>> {
    user.require(Permission::UsersView)?;
    Ok(Json(users::list(&state.db, q.school_id).await?))
}

/// `GET /api/v1/users/{id}`: anyone may read their own account.
pub async fn get_user(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<users::User>> {
    if id != user.principal.id {
        user.require(Permission::UsersView)?;
    }
    Ok(Json(users::get(&state.db, id).await?))
}

/// `PATCH /api/v1/users/{id}`
pub async fn update_user(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<users::User>> {
    user.require(Permission::UsersManage)?;
    Ok(Json(
        users::update(
            &state.db,
            &user.actor,
            id,
            patch,
            state.policy.min_password_length,
        )
        .await?,
    ))
}

/// `POST /api/v1/users/{id}/unlock`
pub async fn unlock_user(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<users::User>> {
    user.require(Permission::UsersManage)?;
    Ok(Json(users::unlock(&state.db, &user.actor, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    entity: Option<String>,
    entity_id: Option<i64>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/audit`: newest first, 100 a page (`before_id` for the next page). Admins only.
pub async fn list_audit(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<audit::Entry>>> {
    user.require(Permission::AuditRead)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Invalid {
            field: "limit".into(),
            message: "must be 1 to 1000".into(),
        });
    }
    let filter = audit::Filter {
        entity: q.entity,
        entity_id: q.entity_id,
        before_id: q.before_id,
        limit,
    };
    Ok(Json(audit::list(&state.db, &filter).await?))
}
