//! The web UI: server-rendered pages (askama) in Thai and English, usable on a phone.
//! Sessions are an HttpOnly, SameSite=Strict cookie (Secure under TLS); the pages call the same
//! domain modules as the API, so permissions and audit are the same.

pub mod desk;
pub mod devices;
pub mod i18n;

use askama::Template;
use axum::extract::{Form, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, extract::FromRequestParts};
use serde::Deserialize;

use crate::audit;
use crate::auth::{self, Principal, TokenKind};
use crate::http::error::ApiError;
use crate::http::extract::{SESSION_COOKIE, WebUser, cookie};
use crate::http::{AppState, see_other};
use crate::roles::{Permission, ROLES};
use crate::schools::{self, NewSchool};
use crate::users::{self, NewUser};
use i18n::{Lang, Text};

const LANG_COOKIE: &str = "khetnet_lang";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/lang", post(set_language))
        .route("/schools", get(schools_page).post(schools_submit))
        .route("/users", get(users_page).post(users_submit))
        .route("/audit", get(audit_page))
        .route("/account", get(account_page))
        .route("/account/password", post(password_submit))
        .merge(desk::routes())
        .merge(devices::routes())
}

/// What every page's frame needs: language, words, who is signed in and which links to show.
pub struct Page {
    pub lang: Lang,
    pub t: &'static Text,
    pub user: Option<Principal>,
    pub show_users: bool,
    pub show_audit: bool,
    pub show_desk: bool,
    pub show_assets: bool,
}

/// The page language: the signed-in user's choice, then the language cookie, then the
/// browser's Accept-Language, then Thai.
pub struct PageLang(pub Lang);

impl<S: Send + Sync> FromRequestParts<S> for PageLang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let lang = cookie(parts, LANG_COOKIE)
            .and_then(Lang::parse)
            .or_else(|| Lang::from_accept_language(&parts.headers))
            .unwrap_or(Lang::Th);
        Ok(PageLang(lang))
    }
}

impl Page {
    fn new(user: &WebUser, PageLang(lang): PageLang) -> Page {
        let principal = user.principal.clone();
        let lang = principal
            .as_ref()
            .and_then(|p| p.language.as_deref())
            .and_then(Lang::parse)
            .unwrap_or(lang);
        let may = |perm| principal.as_ref().is_some_and(|p| p.role.may(perm));
        Page {
            lang,
            t: lang.text(),
            show_users: may(Permission::UsersView),
            show_audit: may(Permission::AuditRead),
            show_desk: may(Permission::RequestsFile)
                || may(Permission::RequestsWork)
                || may(Permission::RequestsApprove),
            show_assets: may(Permission::AssetsView),
            user: principal,
        }
    }
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The message of a domain error, for showing on a page.
fn message(e: ApiError) -> String {
    match e {
        ApiError::Invalid { field, message } => format!("{field}: {message}"),
        ApiError::Conflict(m)
        | ApiError::BadRequest(m)
        | ApiError::Unauthorized(m)
        | ApiError::TooLarge(m) => m,
        ApiError::Forbidden => "forbidden".into(),
        ApiError::NotFound => "not found".into(),
        ApiError::TooManyRequests { retry_after_secs } => {
            format!("try again in {retry_after_secs} s")
        }
        ApiError::Internal(_) => "internal error; see the server log".into(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    p: Page,
    error: Option<String>,
    username: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    p: Page,
    school_name: Option<String>,
}

async fn home(State(state): State<AppState>, user: WebUser, lang: PageLang) -> Response {
    let Some(principal) = &user.principal else {
        return see_other("/login");
    };
    let school_name = match principal.school_id {
        Some(id) => schools::get(&state.db, id)
            .await
            .ok()
            .map(|s| format!("{} {}", s.code, s.name_th)),
        None => None,
    };
    render(
        StatusCode::OK,
        &HomePage {
            p: Page::new(&user, lang),
            school_name,
        },
    )
}

async fn login_page(user: WebUser, lang: PageLang) -> Response {
    if user.principal.is_some() {
        return see_other("/");
    }
    render(
        StatusCode::OK,
        &LoginPage {
            p: Page::new(&user, lang),
            error: None,
            username: String::new(),
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login_submit(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Form(form): Form<LoginForm>,
) -> Response {
    match state
        .login(
            &user.actor,
            &form.username,
            &form.password,
            TokenKind::Session,
        )
        .await
    {
        Ok((token, _)) => {
            let mut cookie = format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                state.policy.session.as_secs()
            );
            if state.tls {
                cookie.push_str("; Secure");
            }
            let mut response = see_other("/");
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.parse().expect("cookie header"));
            response
        }
        Err(e) => {
            let page = Page::new(&user, lang);
            let (status, error) = match e {
                ApiError::Unauthorized(m) if m.contains("locked") => {
                    (StatusCode::UNAUTHORIZED, page.t.locked)
                }
                ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, page.t.bad_login),
                ApiError::TooManyRequests { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, page.t.too_many)
                }
                other => return other.into_response(),
            };
            render(
                status,
                &LoginPage {
                    p: page,
                    error: Some(error.into()),
                    username: form.username,
                },
            )
        }
    }
}

async fn logout(State(state): State<AppState>, user: WebUser) -> Response {
    if let Some(token) = &user.token
        && let Err(e) = auth::logout(&state.db, token).await
    {
        return ApiError::from(e).into_response();
    }
    let mut response = see_other("/login");
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear.parse().expect("cookie header"));
    response
}

#[derive(Deserialize)]
struct LangForm {
    lang: String,
}

/// Switches the language: remembered in a cookie, and on the account when signed in.
async fn set_language(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Form(form): Form<LangForm>,
) -> Response {
    let Some(lang) = Lang::parse(&form.lang) else {
        return ApiError::Invalid {
            field: "lang".into(),
            message: "must be th or en".into(),
        }
        .into_response();
    };
    if let Some(p) = &user.principal
        && let Err(e) = users::set_language(&state.db, p.id, lang.code()).await
    {
        return ApiError::from(e).into_response();
    }
    // Back to the page the switch was on, when it was one of ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").map(|i| &r[i + 3..]))
        .and_then(|rest| rest.find('/').map(|i| rest[i..].to_owned()))
        .filter(|path| path.starts_with('/') && !path.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    let mut response = see_other(&back);
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000",
        lang.code()
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookie.parse().expect("cookie header"));
    response
}

#[derive(Template)]
#[template(path = "schools.html")]
struct SchoolsPage {
    p: Page,
    schools: Vec<schools::School>,
    can_manage: bool,
    error: Option<String>,
}

async fn schools_view(
    state: &AppState,
    user: &WebUser,
    lang: PageLang,
    error: Option<String>,
) -> Response {
    let Some(principal) = &user.principal else {
        return see_other("/login");
    };
    if !principal.role.may(Permission::SchoolsView) {
        return ApiError::Forbidden.into_response();
    }
    let scope = principal
        .role
        .school_bound()
        .then_some(principal.school_id.unwrap_or(-1));
    let list = match schools::list(&state.db, scope).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let can_manage = principal.role.may(Permission::SchoolsManage);
    render(
        status,
        &SchoolsPage {
            p: Page::new(user, lang),
            schools: list,
            can_manage,
            error,
        },
    )
}

async fn schools_page(State(state): State<AppState>, user: WebUser, lang: PageLang) -> Response {
    schools_view(&state, &user, lang, None).await
}

#[derive(Deserialize)]
struct SchoolForm {
    code: String,
    name_th: String,
    #[serde(default)]
    name_en: String,
    #[serde(default)]
    district: String,
}

async fn schools_submit(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Form(f): Form<SchoolForm>,
) -> Response {
    let Some(principal) = &user.principal else {
        return see_other("/login");
    };
    if !principal.role.may(Permission::SchoolsManage) {
        return ApiError::Forbidden.into_response();
    }
    let new = NewSchool {
        code: f.code,
        kind: "school".into(),
        name_th: f.name_th,
        name_en: f.name_en,
        district: f.district,
        address: String::new(),
        latitude: None,
        longitude: None,
    };
    match schools::create(&state.db, &user.actor, new).await {
        Ok(_) => see_other("/schools"),
        Err(e) => schools_view(&state, &user, lang, Some(message(e.into()))).await,
    }
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    p: Page,
    users: Vec<users::User>,
    schools: Vec<schools::School>,
    roles: Vec<&'static str>,
    can_manage: bool,
    error: Option<String>,
}

async fn users_view(
    state: &AppState,
    user: &WebUser,
    lang: PageLang,
    error: Option<String>,
) -> Response {
    let Some(principal) = &user.principal else {
        return see_other("/login");
    };
    if !principal.role.may(Permission::UsersView) {
        return ApiError::Forbidden.into_response();
    }
    let (list, schools) = match (
        users::list(&state.db, None).await,
        schools::list(&state.db, None).await,
    ) {
        (Ok(u), Ok(s)) => (u, s),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = UsersPage {
        p: Page::new(user, lang),
        users: list,
        schools,
        roles: ROLES.iter().map(|r| r.as_str()).collect(),
        can_manage: principal.role.may(Permission::UsersManage),
        error,
    };
    render(status, &page)
}

async fn users_page(State(state): State<AppState>, user: WebUser, lang: PageLang) -> Response {
    users_view(&state, &user, lang, None).await
}

#[derive(Deserialize)]
struct UserForm {
    username: String,
    display_name: String,
    role: String,
    school_id: String,
    password: String,
}

async fn users_submit(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Form(f): Form<UserForm>,
) -> Response {
    let Some(principal) = &user.principal else {
        return see_other("/login");
    };
    if !principal.role.may(Permission::UsersManage) {
        return ApiError::Forbidden.into_response();
    }
    let Some(role) = crate::roles::Role::parse(&f.role) else {
        return users_view(
            &state,
            &user,
            lang,
            Some(format!("role: unknown role {:?}", f.role)),
        )
        .await;
    };
    let new = NewUser {
        username: f.username,
        display_name: f.display_name,
        email: None,
        role,
        school_id: f.school_id.parse().ok(),
        password: f.password,
    };
    match users::create(
        &state.db,
        &user.actor,
        new,
        state.policy.min_password_length,
    )
    .await
    {
        Ok(_) => see_other("/users"),
        Err(e) => users_view(&state, &user, lang, Some(message(e.into()))).await,
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    p: Page,
    entries: Vec<audit::Entry>,
}

async fn audit_page(State(state): State<AppState>, user: WebUser, lang: PageLang) -> Response {
    let Some(principal) = &user.principal else {
        return see_other("/login");
    };
    if !principal.role.may(Permission::AuditRead) {
        return ApiError::Forbidden.into_response();
    }
    let filter = audit::Filter {
        limit: 200,
        ..Default::default()
    };
    match audit::list(&state.db, &filter).await {
        Ok(entries) => render(
            StatusCode::OK,
            &AuditPage {
                p: Page::new(&user, lang),
                entries,
            },
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    p: Page,
    error: Option<String>,
    notice: Option<String>,
}

async fn account_page(user: WebUser, lang: PageLang) -> Response {
    if user.principal.is_none() {
        return see_other("/login");
    }
    render(
        StatusCode::OK,
        &AccountPage {
            p: Page::new(&user, lang),
            error: None,
            notice: None,
        },
    )
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn password_submit(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Form(f): Form<PasswordForm>,
) -> Response {
    let (Some(principal), Some(token)) = (&user.principal, &user.token) else {
        return see_other("/login");
    };
    let result = auth::change_password(
        &state.db,
        &state.policy,
        &user.actor,
        principal.id,
        &f.current_password,
        &f.new_password,
        token,
    )
    .await;
    let page = Page::new(&user, lang);
    match result {
        Ok(()) => {
            let notice = Some(page.t.password_changed.to_owned());
            render(
                StatusCode::OK,
                &AccountPage {
                    p: page,
                    error: None,
                    notice,
                },
            )
        }
        Err(e) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &AccountPage {
                p: page,
                error: Some(message(e.into())),
                notice: None,
            },
        ),
    }
}
