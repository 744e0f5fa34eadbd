//! REST API of the service desk and the asset register. Handlers check permissions and call
//! `crate::desk`; the workflow table decides per request what a user may do.

use axum::extract::State;
use axum::http::header::{self, HeaderName};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use axum::extract::Multipart;
use axum::extract::multipart::MultipartRejection;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, ApiUser};
use crate::auth::Principal;
use crate::db::now_ms;
use crate::desk::requests::{self, ActionBody, NewRequest, Who};
use crate::desk::{assets, attachments, loans, purchase, register, reports};
use crate::roles::Permission;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/requests", get(list_requests).post(create_request))
        .route("/requests/{request_id}", get(get_request))
        .route("/requests/{request_id}/actions", post(act_on_request))
        .route(
            "/requests/{request_id}/quotes",
            get(get_quotes).post(add_quote),
        )
        .route("/requests/{request_id}/receipt", post(receive))
        .route("/assets", get(list_assets).post(create_asset))
        .route("/assets/{asset_id}", get(get_asset).patch(update_asset))
        .route("/assets/export", get(export_assets))
        .route("/assets/import", post(import_assets))
        .route("/assets/{asset_id}/loans", get(asset_loans))
        .route("/network-identities", get(list_identities))
        .route("/reports/requests", get(request_report))
}

pub fn who(p: &Principal) -> Who {
    Who {
        user_id: p.id,
        role: p.role,
        school_id: p.school_id,
    }
}

/// `POST /api/v1/requests`
async fn create_request(
    State(state): State<AppState>,
    user: ApiUser,
    ApiJson(body): ApiJson<NewRequest>,
) -> ApiResult<impl IntoResponse> {
    let request = requests::create(
        &state.db,
        &state.desk,
        &user.actor,
        &who(&user.principal),
        body,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(request)))
}

/// `GET /api/v1/requests[?state=&kind=&school_id=&assignee_id=&requester_id=&before_id=&limit=]`
async fn list_requests(
    State(state): State<AppState>,
    user: ApiUser,
    uri: Uri,
    ApiQuery(filter): ApiQuery<requests::Filter>,
) -> ApiResult<impl IntoResponse> {
    let list = requests::list(&state.db, &state.desk, &who(&user.principal), &filter).await?;
    let next = next_page(
        "/api/v1/requests",
        &uri,
        filter.limit,
        list.len(),
        list.last().map(|r| r.id),
    );
    Ok((next, Json(list)))
}

/// A `Link: <...>; rel="next"` header when the page is full: the same query (the router has
/// taken `/api/v1` off `uri`, hence `path`) with `before_id` set to the page's last id (keyset paging, so a page costs the same however deep it is).
fn next_page(
    path: &str,
    uri: &Uri,
    limit: Option<i64>,
    len: usize,
    last_id: Option<i64>,
) -> Option<[(HeaderName, String); 1]> {
    let last = last_id?;
    if len as i64 != limit.unwrap_or(50) {
        return None;
    }
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("before_id="))
        .collect();
    let before = format!("before_id={last}");
    query.push(&before);
    Some([(
        header::LINK,
        format!("<{path}?{}>; rel=\"next\"", query.join("&")),
    )])
}

/// `GET /api/v1/requests/{id}`: with its assets and history.
async fn get_request(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<requests::Request>> {
    Ok(Json(
        requests::get(&state.db, &state.desk, &who(&user.principal), id).await?,
    ))
}

/// `POST /api/v1/requests/{id}/actions`
async fn act_on_request(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ActionBody>,
) -> ApiResult<Json<requests::Request>> {
    Ok(Json(
        requests::act(
            &state.db,
            &state.desk,
            &user.actor,
            &who(&user.principal),
            id,
            body,
        )
        .await?,
    ))
}

/// `POST /api/v1/assets`
async fn create_asset(
    State(state): State<AppState>,
    user: ApiUser,
    ApiJson(body): ApiJson<assets::NewAsset>,
) -> ApiResult<impl IntoResponse> {
    user.require(Permission::AssetsManage)?;
    let asset = assets::create(&state.db, &user.actor, body).await?;
    Ok((StatusCode::CREATED, Json(asset)))
}

/// `GET /api/v1/assets[?q=&school_id=&state=&category=&before_id=&limit=]`
async fn list_assets(
    State(state): State<AppState>,
    user: ApiUser,
    uri: Uri,
    ApiQuery(filter): ApiQuery<assets::Filter>,
) -> ApiResult<impl IntoResponse> {
    user.require(Permission::AssetsView)?;
    let list = assets::list(&state.db, &filter, user.school_scope()).await?;
    let next = next_page(
        "/api/v1/assets",
        &uri,
        filter.limit,
        list.len(),
        list.last().map(|a| a.id),
    );
    Ok((next, Json(list)))
}

/// `GET /api/v1/assets/{id}`: with its history and requests.
async fn get_asset(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<assets::AssetDetail>> {
    user.require(Permission::AssetsView)?;
    Ok(Json(assets::get(&state.db, id, user.school_scope()).await?))
}

/// `PATCH /api/v1/assets/{id}`: changes the fields given (room, custodian, state, a transfer to
/// another school, ...); each change goes into the asset's history.
async fn update_asset(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<assets::AssetPatch>,
) -> ApiResult<Json<assets::Asset>> {
    user.require(Permission::AssetsManage)?;
    Ok(Json(
        assets::update(&state.db, &user.actor, id, user.school_scope(), patch).await?,
    ))
}

/// `GET /api/v1/assets/{id}/loans`: the asset's loan calendar from today on.
async fn asset_loans(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<loans::Booking>>> {
    user.require(Permission::AssetsView)?;
    // Visibility as for the asset itself.
    assets::get(&state.db, id, user.school_scope()).await?;
    Ok(Json(
        loans::calendar(&state.db, id, now_ms() - 86_400_000).await?,
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityQuery {
    login: Option<String>,
    school_id: Option<i64>,
    before_id: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/network-identities[?login=&school_id=&before_id=&limit=]`: the network user
/// IDs approved account requests made (the collector attributes sessions to them).
async fn list_identities(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<IdentityQuery>,
) -> ApiResult<Json<Vec<requests::Identity>>> {
    user.require(Permission::RequestsWork)?;
    Ok(Json(
        requests::identities(
            &state.db,
            q.login.as_deref(),
            q.school_id,
            q.before_id,
            q.limit.unwrap_or(100),
        )
        .await?,
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// Buddhist-era fiscal year; the current one by default.
    fiscal_year: Option<i32>,
    school_id: Option<i64>,
    /// json (default) or csv.
    format: Option<String>,
}

/// `GET /api/v1/reports/requests[?fiscal_year=2570&school_id=&format=csv]`: the fiscal-year
/// summary by school, kind and state.
async fn request_report(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<axum::response::Response> {
    user.require(Permission::ReportsView)?;
    let year = q
        .fiscal_year
        .unwrap_or_else(|| reports::fiscal_year_of(now_ms()));
    let summary = reports::summary(&state.db, &state.desk, year, q.school_id).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(summary).into_response()),
        "csv" => Ok((
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/csv; charset=utf-8".to_owned(),
                ),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"khetnet-requests-{year}.csv\""),
                ),
            ],
            reports::csv(&summary),
        )
            .into_response()),
        "xlsx" => Ok(xlsx(
            &format!("khetnet-requests-{year}.xlsx"),
            crate::desk::workbook::table(
                &format!("ปีงบประมาณ {year}"),
                &reports::HEADINGS,
                summary.lines.iter().map(|l| reports::cells(&summary, l)),
                &[4, 5, 6, 7, 8, 9, 10],
            )?,
        )),
        _ => Err(super::error::ApiError::Invalid {
            field: "format".into(),
            message: "must be json, csv or xlsx".into(),
        }),
    }
}

/// `GET /api/v1/requests/{id}/quotes`: a purchase's quotes compared item by item.
async fn get_quotes(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<purchase::Comparison>> {
    Ok(Json(
        purchase::comparison(&state.db, &who(&user.principal), id).await?,
    ))
}

/// `POST /api/v1/requests/{id}/quotes`: a vendor's quote (technicians, after approval).
async fn add_quote(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(quote): ApiJson<purchase::Quote>,
) -> ApiResult<Json<purchase::Comparison>> {
    Ok(Json(
        purchase::add_quote(&state.db, &user.actor, &who(&user.principal), id, quote).await?,
    ))
}

/// `POST /api/v1/requests/{id}/receipt`: the received items become assets.
async fn receive(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(receipt): ApiJson<purchase::Receipt>,
) -> ApiResult<impl IntoResponse> {
    let created =
        purchase::receive(&state.db, &user.actor, &who(&user.principal), id, receipt).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    q: Option<String>,
    school_id: Option<i64>,
    state: Option<String>,
    category: Option<String>,
    /// csv (default) or xlsx.
    format: Option<String>,
}

/// An XLSX download.
fn xlsx(filename: &str, bytes: Vec<u8>) -> axum::response::Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /api/v1/assets/export[?q=&school_id=&state=&category=&format=csv|xlsx]`: the register.
async fn export_assets(
    State(state): State<AppState>,
    user: ApiUser,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<axum::response::Response> {
    user.require(Permission::AssetsView)?;
    let filter = assets::Filter {
        q: q.q,
        school_id: q.school_id,
        state: q.state,
        category: q.category,
        ..Default::default()
    };
    let rows = register::all(&state.db, &filter, user.school_scope()).await?;
    match q.format.as_deref().unwrap_or("csv") {
        "csv" => {}
        "xlsx" => {
            return Ok(xlsx(
                "khetnet-assets.xlsx",
                crate::desk::workbook::table(
                    "ครุภัณฑ์",
                    &register::COLUMNS,
                    rows.iter().map(|(a, code)| register::cells(a, code)),
                    &[5, 6],
                )?,
            ));
        }
        _ => {
            return Err(super::error::ApiError::Invalid {
                field: "format".into(),
                message: "must be csv or xlsx".into(),
            });
        }
    }
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"khetnet-assets.csv\"",
            ),
        ],
        register::to_csv(&rows),
    )
        .into_response())
}

/// `POST /api/v1/assets/import` with a CSV or XLSX body (told apart by its content): every row
/// or none; the first bad row is named.
async fn import_assets(
    State(state): State<AppState>,
    user: ApiUser,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    user.require(Permission::AssetsManage)?;
    let imported = register::import(&state.db, &user.actor, &body, user.school_scope()).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "imported": imported })),
    ))
}

/// The largest upload body: the file limit plus room for the multipart framing.
fn upload_body_limit(limits: &attachments::Limits) -> usize {
    usize::try_from(limits.max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024)
}

/// Routes that take or give files. They are merged outside `server.max_body_bytes`: uploads
/// have their own limit (`desk.attachment_max_bytes`), which the handlers check so that a
/// refusal names it.
pub fn file_routes(limits: &attachments::Limits) -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/requests/{request_id}/attachments",
            get(list_attachments).post(upload_attachments),
        )
        .route(
            "/api/v1/requests/{request_id}/attachments/{attachment_id}",
            get(download_attachment),
        )
        .merge(crate::web::desk::file_routes())
        .layer(axum::extract::DefaultBodyLimit::max(upload_body_limit(
            limits,
        )))
}

/// What a multipart form brought: its files (each with the name it was sent under, checked
/// and synced but not yet stored: see `attachments::attach`) and its text fields. An input
/// left empty in a browser form sends an empty part without a name: it is skipped.
pub struct Received {
    pub files: Vec<(String, attachments::Received)>,
    pub fields: std::collections::HashMap<String, String>,
}

/// Reads a multipart/form-data body, refusing at the first file the limits refuse.
///
/// # Errors
/// 413 naming the limit for a file (or body) over it; 422 for a type that is not allowed; 400
/// for a body that is not multipart.
pub async fn receive_form(
    headers: &axum::http::HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
    limits: &attachments::Limits,
) -> ApiResult<Received> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > upload_body_limit(limits)) {
        return Err(limits.too_large().into());
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::BadRequest(format!(
            "send the file as multipart/form-data in a field named file ({})",
            e.body_text()
        ))
    })?;
    let read_error = |e: axum::extract::multipart::MultipartError| -> ApiError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            limits.too_large().into()
        } else {
            ApiError::BadRequest(format!("the upload could not be read: {}", e.body_text()))
        }
    };
    let mut received = Received {
        files: Vec::new(),
        fields: std::collections::HashMap::new(),
    };
    while let Some(mut field) = multipart.next_field().await.map_err(read_error)? {
        let Some(name) = field.file_name().map(str::to_owned) else {
            let key = field.name().unwrap_or_default().to_owned();
            let value = field.text().await.map_err(read_error)?;
            received.fields.insert(key, value);
            continue;
        };
        let mut upload = attachments::Upload::begin(limits)?;
        while let Some(chunk) = field.chunk().await.map_err(read_error)? {
            upload.write(&chunk)?;
        }
        if name.is_empty() && upload.size() == 0 {
            continue;
        }
        let file = tokio::task::spawn_blocking(move || upload.finish())
            .await
            .map_err(|e| {
                ApiError::Internal(crate::Error::Io {
                    context: "receiving an attachment".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            })??;
        received.files.push((name, file));
    }
    Ok(received)
}

/// The download of an attachment: never shown inline as a page, never sniffed.
pub async fn attachment_response(
    state: &AppState,
    who: &Who,
    request_id: i64,
    attachment_id: i64,
) -> ApiResult<axum::response::Response> {
    use axum::http::header;
    let (attachment, path) = attachments::open(
        &state.db,
        &state.desk.attachments,
        who,
        request_id,
        attachment_id,
    )
    .await?;
    let bytes = tokio::fs::read(&path).await.map_err(|source| {
        ApiError::Internal(crate::Error::Io {
            context: format!("reading {}", path.display()),
            source,
        })
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, attachment.content_type.clone()),
            (
                header::CONTENT_DISPOSITION,
                attachments::content_disposition(&attachment.file_name),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_owned(),
            ),
            (header::CACHE_CONTROL, "private, no-cache".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /api/v1/requests/{id}/attachments`: multipart with one or more `file` parts.
async fn upload_attachments(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
    headers: axum::http::HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<impl IntoResponse> {
    let who = who(&user.principal);
    attachments::check_may_attach(&state.db, &who, id).await?;
    let files = receive_form(&headers, multipart, &state.desk.attachments)
        .await?
        .files;
    if files.is_empty() {
        return Err(ApiError::Invalid {
            field: "file".into(),
            message: "attach a file in a multipart/form-data field named file".into(),
        });
    }
    let mut created = Vec::new();
    for (name, file) in files {
        created.push(attachments::attach(&state.db, &user.actor, &who, id, &name, file).await?);
    }
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /api/v1/requests/{id}/attachments`
async fn list_attachments(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<attachments::Attachment>>> {
    let request = requests::get(&state.db, &state.desk, &who(&user.principal), id).await?;
    Ok(Json(request.attachments.unwrap_or_default()))
}

/// `GET /api/v1/requests/{id}/attachments/{attachment_id}`
async fn download_attachment(
    State(state): State<AppState>,
    user: ApiUser,
    ApiPath((id, attachment_id)): ApiPath<(i64, i64)>,
) -> ApiResult<axum::response::Response> {
    attachment_response(&state, &who(&user.principal), id, attachment_id).await
}
