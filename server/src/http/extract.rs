//! Extractors: the signed-in user (bearer token for the API, session cookie for the web UI),
//! who is acting for the audit trail, and JSON bodies whose errors name the field to fix.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::audit::Actor;
use crate::auth::{self, Principal};
use crate::roles::Permission;

/// The name of the web session cookie.
pub const SESSION_COOKIE: &str = "khetnet_session";

/// A JSON body. Unreadable JSON is a 400; a missing or mistyped field is a 422 naming it.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::BadRequest(
                "send the body as JSON with Content-Type: application/json".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        // Most bodies are good: parsed without tracking the path, which costs a good part of
        // an agent report's parse; only a refused body is parsed again to name its field.
        if let Ok(value) = serde_json::from_slice::<T>(&bytes) {
            return Ok(ApiJson(value));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Ok(value) => Ok(ApiJson(value)),
            Err(err) => {
                let message = err.inner().to_string();
                if err.inner().is_syntax() || err.inner().is_eof() {
                    return Err(ApiError::BadRequest(format!(
                        "the body is not valid JSON: {message}"
                    )));
                }
                let path = err.path().to_string();
                let field = if path == "." {
                    // A missing or unknown field is reported at the parent; name it from the message.
                    message.split('`').nth(1).unwrap_or("body").to_owned()
                } else {
                    path
                };
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_owned();
                Err(ApiError::Invalid { field, message })
            }
        }
    }
}

/// The actor for the audit trail: who (when known), from which address, in which request.
fn actor_from(parts: &Parts, principal: Option<&Principal>) -> Actor {
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Actor {
        user_id: principal.map(|p| p.id),
        username: principal
            .map(|p| p.username.clone())
            .unwrap_or_else(|| "anonymous".into()),
        source_ip,
        request_id,
    }
}

/// Someone not (yet) signed in: the login endpoints use it for auditing and throttling.
pub struct Anonymous(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Anonymous {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Anonymous(actor_from(parts, None)))
    }
}

/// The signed-in user of an API request (`Authorization: Bearer TOKEN`).
pub struct ApiUser {
    pub principal: Principal,
    pub actor: Actor,
    pub token: String,
}

impl ApiUser {
    /// 403 unless the user's role has the permission.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.principal.role.may(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// The only school a school-bound user may see; `None` for district-wide roles.
    pub fn school_scope(&self) -> Option<i64> {
        if self.principal.role.school_bound() {
            self.principal.school_id.or(Some(-1))
        } else {
            None
        }
    }
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "sign in first: POST /api/v1/auth/login, then send Authorization: Bearer TOKEN"
                        .into(),
                )
            })?;
        let principal = auth::authenticate(&state.db, token).await?.ok_or_else(|| {
            ApiError::Unauthorized("the token is unknown, expired or revoked; sign in again".into())
        })?;
        let actor = actor_from(parts, Some(&principal));
        Ok(ApiUser {
            principal,
            actor,
            token: token.to_owned(),
        })
    }
}

/// Reads a cookie's value from the request headers.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in user of a web page (session cookie), or `None` when nobody is signed in.
pub struct WebUser {
    pub principal: Option<Principal>,
    pub actor: Actor,
    pub token: Option<String>,
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = cookie(parts, SESSION_COOKIE).map(str::to_owned);
        let principal = match &token {
            Some(t) => auth::authenticate(&state.db, t).await?,
            None => None,
        };
        let actor = actor_from(parts, principal.as_ref());
        Ok(WebUser {
            principal,
            actor,
            token,
        })
    }
}

/// Query parameters; a bad one is a problem+json 400 that names it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Path parameters; a malformed one (`/schools/abc`) is a problem+json 400.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}
