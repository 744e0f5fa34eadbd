//! The HTTP surface: the REST API under `/api/v1`, the web UI, `/healthz`, `/metrics` and the
//! OpenAPI document, with request ids, tracing and a body limit around all of it.

pub mod api;
pub mod desk;
pub mod devices;
pub mod error;
pub mod extract;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{Policy, Throttle};
use crate::db::Db;
use crate::health::Health;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub policy: Policy,
    pub throttle: Arc<Throttle>,
    /// Whether the server speaks TLS (cookies are then `Secure`).
    pub tls: bool,
    pub metrics: PrometheusHandle,
    pub health: Arc<Health>,
    /// Device-health settings (`[devices]`).
    pub devices: crate::devices::Settings,
    /// Stores agent reports (group commit).
    pub ingest: crate::devices::samples::Ingest,
    /// Agent credentials recently found valid.
    pub agent_credentials: crate::devices::agents::Credentials,
    /// The service desk's settings (`[desk]`).
    pub desk: Arc<crate::desk::Settings>,
}

/// The OpenAPI 3.1 document of the REST API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/auth/login", post(api::login))
        .route("/auth/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/me/password", post(api::change_password))
        .route("/schools", get(api::list_schools).post(api::create_school))
        .route(
            "/schools/{id}",
            get(api::get_school).patch(api::update_school),
        )
        .route("/users", get(api::list_users).post(api::create_user))
        .route("/users/{id}", get(api::get_user).patch(api::update_user))
        .route("/users/{id}/unlock", post(api::unlock_user))
        .route("/audit", get(api::list_audit))
        .route("/openapi.json", get(openapi))
        .merge(devices::routes())
        .merge(desk::routes())
        .fallback(api_not_found);
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::web::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .merge(desk::file_routes(&state.desk.attachments))
        .layer(middleware::from_fn(record_metrics))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /healthz`: 200 when the database answers, 503 when it does not; lists each part and
/// any input that is down with how to fix it.
async fn healthz(State(state): State<AppState>) -> Response {
    let database_ok = sqlx::query("SELECT 1")
        .execute(&state.db.pool)
        .await
        .is_ok();
    let (status, body) = state.health.report(database_ok);
    (status, axum::Json(body)).into_response()
}

/// `GET /metrics` in Prometheus text format. Served to loopback clients (the local
/// Prometheus or node exporter); others need an admin or technician bearer token.
async fn metrics_text(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if !peer.ip().is_loopback() {
        let (mut parts, _) = request.into_parts();
        match <extract::ApiUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, &state,
        )
        .await
        {
            Ok(user)
                if user
                    .principal
                    .role
                    .may(crate::roles::Permission::DevicesManage) => {}
            Ok(_) => return ApiError::Forbidden.into_response(),
            Err(e) => return e.into_response(),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts requests by route and status, and times them.
async fn record_metrics(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("khetnet_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("khetnet_http_request_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// A status for handlers that only redirect or confirm.
pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}
