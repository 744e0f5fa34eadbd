//! Device-health API: enrollment tokens and agents (`/agents`), what agents call
//! (`/agent/config`, `/agent/reports`, authenticated by the agent's credential), devices and
//! their status (`/devices`), and incidents.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{Anonymous, ApiJson, ApiPath, ApiQuery, ApiUser};
use crate::devices::agents::{self, AgentIdentity, EnrollRequest, NewEnrollmentToken};
use crate::devices::alerts;
use crate::devices::discovered::{self, Accept, Discovered};
use crate::devices::samples::{self, Outcome, Report};
use crate::devices::targets::{self, DevicePatch, NewDevice};
use crate::roles::Permission;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents", get(list_agents))
        .route("/agents/enrollment-tokens", post(create_token))
        .route("/agents/enroll", post(enroll))
        .route("/agents/{agent_id}", get(get_agent))
        .route("/agents/{agent_id}/revoke", post(revoke_agent))
        .route("/agent/config", get(agent_config))
        .route("/agent/reports", post(agent_report))
        .route("/devices", get(list_devices).post(create_device))
        .route("/devices/status", get(school_health))
        .route(
            "/devices/{device_id}",
            get(get_device).patch(update_device).delete(delete_device),
        )
        .route("/devices/{device_id}/samples", get(device_samples))
        .route("/incidents", get(list_incidents))
        .route("/discovered-devices", get(list_discovered))
        .route("/discovered-devices/{id}/accept", post(accept_discovered))
        .route("/discovered-devices/{id}/ignore", post(ignore_discovered))
}

/// An enrolled, unrevoked agent (`Authorization: Bearer kha_...`).
pub struct AgentAuth {
    pub agent: AgentIdentity,
    pub source_ip: Option<String>,
}

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "send the agent credential as Authorization: Bearer (khetnet-agent enroll gives it)".into(),
                )
            })?;
        let agent = agents::authenticate(&state.db, &state.agent_credentials, credential)
            .await?
            .ok_or_else(|| {
                metrics::counter!("khetnet_agent_auth_refused_total").increment(1);
                ApiError::Unauthorized(
                    "the agent credential is unknown or revoked; enroll the agent again".into(),
                )
            })?;
        let source_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        Ok(AgentAuth { agent, source_ip })
    }
}

/// `POST /api/v1/agents/enrollment-tokens`: a one-time token for one school.
async fn create_token(
    State(state): State<AppState>,
    user: ApiUser,
    ApiJson(body): ApiJson<NewEnrollmentToken>,
) -> ApiResult<impl IntoResponse> {
    user.require(Permission::DevicesManage)?;
    let created = agents::create_token(&state.db, &user.actor, body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `POST /api/v1/agents/enroll`: an agent exchanges its token for its credential.
async fn enroll(
    State(state): State<AppState>,
    Anonymous(mut actor): Anonymous,
    ApiJson(body): ApiJson<EnrollRequest>,
) -> ApiResult<impl IntoResponse> {
    if let Some(ip) = actor.source_ip.as_deref().and_then(|ip| ip.parse().ok()) {
        state
            .throttle
            .check(ip, std::time::Instant::now())
            .map_err(|retry_after_secs| ApiError::TooManyRequests { retry_after_secs })?;
    }
    actor.username = format!("agent:{}", body.name.trim());
    match agents::enroll(&state.db, &actor, body).await? {
        Some(enrolled) => Ok((StatusCode::CREATED, Json(enrolled))),
        None => Err(ApiError::Unauthorized(
            "the enrollment token is unknown, expired or already used; ask for a new one".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchoolQuery {
    school_id: Option<i64>,
}

/// `GET /api/v1/agents[?school_id=]`
async fn list_agents(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<SchoolQuery>,
) -> ApiResult<Json<Vec<agents::Agent>>> {
    user.require(Permission::DevicesManage)?;
    Ok(Json(
        agents::list(&state.db, &state.devices, q.school_id).await?,
    ))
}

/// `GET /api/v1/agents/{id}`
async fn get_agent(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<agents::Agent>> {
    user.require(Permission::DevicesManage)?;
    Ok(Json(agents::get(&state.db, &state.devices, id).await?))
}

/// `POST /api/v1/agents/{id}/revoke`: the credential stops working at once.
async fn revoke_agent(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<agents::Agent>> {
    user.require(Permission::DevicesManage)?;
    Ok(Json(
        agents::revoke(
            &state.db,
            &state.devices,
            &state.agent_credentials,
            &user.actor,
            id,
        )
        .await?,
    ))
}

/// `GET /api/v1/agent/config`: the calling agent's targets and settings.
async fn agent_config(State(state): State<AppState>, auth: AgentAuth) -> ApiResult<Json<Value>> {
    agents::seen(&state.db, auth.agent, auth.source_ip.as_deref()).await?;
    let targets = targets::for_agent(&state.db, auth.agent.school_id).await?;
    Ok(Json(json!({
        "agent_id": auth.agent.id,
        "school_id": auth.agent.school_id,
        "report_interval_secs": state.devices.report_interval_secs,
        "config_refresh_secs": state.devices.config_refresh_secs,
        "targets": targets,
    })))
}

/// `POST /api/v1/agent/reports`: a batch of samples, acknowledged once committed. A batch id
/// seen before is acknowledged again without storing anything (`"outcome": "duplicate"`).
async fn agent_report(
    State(state): State<AppState>,
    auth: AgentAuth,
    ApiJson(report): ApiJson<Report>,
) -> ApiResult<Json<Outcome>> {
    let outcome = state
        .ingest
        .submit(auth.agent, auth.source_ip.as_deref(), report)
        .await?;
    if outcome == Outcome::Duplicate {
        metrics::counter!("khetnet_agent_batches_duplicate_total").increment(1);
    }
    Ok(Json(outcome))
}

/// The school a user may see devices of: a requester only their own.
fn scoped(user: &ApiUser, asked: Option<i64>) -> ApiResult<Option<i64>> {
    user.require(Permission::SchoolsView)?;
    match user.school_scope() {
        Some(own) if asked.is_some_and(|a| a != own) => Err(ApiError::NotFound),
        Some(own) => Ok(Some(own)),
        None => Ok(asked),
    }
}

/// `GET /api/v1/devices[?school_id=]`: devices with their status, worst first.
async fn list_devices(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<SchoolQuery>,
) -> ApiResult<Json<Vec<targets::Device>>> {
    let school = scoped(&user, q.school_id)?;
    let mut devices = targets::list(&state.db, school).await?;
    if !user.principal.role.may(Permission::DevicesManage) {
        for d in &mut devices {
            d.snmp_community = None;
        }
    }
    Ok(Json(devices))
}

/// `GET /api/v1/devices/status[?school_id=]`: each school's health, worst first.
async fn school_health(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<SchoolQuery>,
) -> ApiResult<Json<Vec<targets::SchoolHealth>>> {
    let school = scoped(&user, q.school_id)?;
    Ok(Json(targets::school_health(&state.db, school).await?))
}

/// `POST /api/v1/devices`
async fn create_device(
    State(state): State<AppState>,
    user: ApiUser,
    ApiJson(body): ApiJson<NewDevice>,
) -> ApiResult<impl IntoResponse> {
    user.require(Permission::DevicesManage)?;
    let device = targets::create(&state.db, &user.actor, body).await?;
    Ok((StatusCode::CREATED, Json(device)))
}

async fn visible_device(state: &AppState, user: &ApiUser, id: i64) -> ApiResult<targets::Device> {
    scoped(user, None)?;
    let mut device = targets::get(&state.db, id).await?;
    if user
        .school_scope()
        .is_some_and(|own| own != device.school_id)
    {
        return Err(ApiError::NotFound);
    }
    if !user.principal.role.may(Permission::DevicesManage) {
        device.snmp_community = None;
    }
    Ok(device)
}

/// `GET /api/v1/devices/{id}`
async fn get_device(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<targets::Device>> {
    Ok(Json(visible_device(&state, &user, id).await?))
}

/// `PATCH /api/v1/devices/{id}`
async fn update_device(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<DevicePatch>,
) -> ApiResult<Json<targets::Device>> {
    user.require(Permission::DevicesManage)?;
    Ok(Json(
        targets::update(&state.db, &user.actor, id, patch).await?,
    ))
}

/// `DELETE /api/v1/devices/{id}`
async fn delete_device(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    user.require(Permission::DevicesManage)?;
    targets::delete(&state.db, &user.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplesQuery {
    since: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/devices/{id}/samples[?since=RFC3339&limit=]`: raw samples, oldest first.
async fn device_samples(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<SamplesQuery>,
) -> ApiResult<Json<Vec<samples::StoredSample>>> {
    visible_device(&state, &user, id).await?;
    let since = q
        .since
        .map(|s| {
            s.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|e| ApiError::Invalid {
                    field: "since".into(),
                    message: format!("not an RFC 3339 time: {e}"),
                })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=100_000).contains(&limit) {
        return Err(ApiError::Invalid {
            field: "limit".into(),
            message: "must be 1 to 100000".into(),
        });
    }
    Ok(Json(samples::list(&state.db, id, since, limit).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    school_id: Option<i64>,
    open: Option<bool>,
}

/// `GET /api/v1/incidents[?school_id=&open=true]`: newest first, at most 500.
async fn list_incidents(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<IncidentQuery>,
) -> ApiResult<Json<Vec<alerts::Incident>>> {
    let school = scoped(&user, q.school_id)?;
    Ok(Json(
        alerts::list(&state.db, school, q.open.unwrap_or(false), 500).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoveredQuery {
    school_id: Option<i64>,
    /// Also the accepted and ignored ones.
    all: Option<bool>,
}

/// `GET /api/v1/discovered-devices[?school_id=&all=true]`: devices agents saw that are not in
/// the inventory, newest sighting first.
async fn list_discovered(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<DiscoveredQuery>,
) -> ApiResult<Json<Vec<Discovered>>> {
    user.require(Permission::DevicesManage)?;
    let school = scoped(&user, q.school_id)?;
    Ok(Json(
        discovered::list(&state.db, school, q.all.unwrap_or(false)).await?,
    ))
}

async fn visible_discovered(state: &AppState, user: &ApiUser, id: i64) -> ApiResult<Discovered> {
    user.require(Permission::DevicesManage)?;
    let found = discovered::get(&state.db, id).await?;
    if user
        .school_scope()
        .is_some_and(|own| own != found.school_id)
    {
        return Err(ApiError::NotFound);
    }
    Ok(found)
}

/// `POST /api/v1/discovered-devices/{id}/accept`: into the inventory as a monitored device
/// (and an asset when `asset` is given).
async fn accept_discovered(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Accept>,
) -> ApiResult<Json<Discovered>> {
    visible_discovered(&state, &user, id).await?;
    Ok(Json(
        discovered::accept(&state.db, &user.actor, id, body).await?,
    ))
}

/// `POST /api/v1/discovered-devices/{id}/ignore`: hidden from the list for good.
async fn ignore_discovered(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Discovered>> {
    visible_discovered(&state, &user, id).await?;
    Ok(Json(discovered::ignore(&state.db, &user.actor, id).await?))
}
