//! What `/healthz` reports: the database, and each part started beside the web server
//! (the embedded collector's inputs) with what is wrong and how to fix it.

use std::sync::Mutex;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

/// The state of one part, as `/healthz` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub name: String,
    /// `ok`, `degraded` (works, but something needs fixing: the clock is off by more than the
    /// law allows), `down` or `disabled`.
    pub status: String,
    /// What is wrong and how to fix it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Parts register here as they start; the web server keeps serving whatever their state.
#[derive(Debug, Default)]
pub struct Health {
    components: Mutex<Vec<Component>>,
}

impl Health {
    /// Records (or replaces) the state of a part.
    pub fn set(&self, name: &str, status: &str, detail: Option<String>) {
        let mut components = self.components.lock().expect("health lock");
        components.retain(|c| c.name != name);
        components.push(Component {
            name: name.to_owned(),
            status: status.to_owned(),
            detail,
        });
        components.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// 200 with `ok` when everything enabled works; 200 with `degraded` when only a side part
    /// is down (the desk still works); 503 when the database does not answer.
    pub fn report(&self, database_ok: bool) -> (StatusCode, Value) {
        let components = self.components.lock().expect("health lock").clone();
        let degraded = components
            .iter()
            .any(|c| c.status == "down" || c.status == "degraded");
        let (code, status) = match (database_ok, degraded) {
            (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "down"),
            (true, true) => (StatusCode::OK, "degraded"),
            (true, false) => (StatusCode::OK, "ok"),
        };
        let body = json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "database": if database_ok { "ok" } else { "down" },
            "components": components,
        });
        (code, body)
    }
}
