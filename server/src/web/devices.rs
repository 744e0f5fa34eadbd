//! Device-health pages: every school at a glance, worst first, with the open incidents; and
//! one school's devices with their status, latency, loss and uptime over the last 30 days.
//! They call the same `crate::devices` functions as the API, with the same school scoping.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Page, PageLang, render};
use crate::db::now_ms;
use crate::devices::alerts::{self, Incident};
use crate::devices::samples;
use crate::devices::targets::{self, Device, SchoolHealth};
use crate::http::AppState;
use crate::http::extract::WebUser;
use crate::http::see_other;
use crate::roles::Permission;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices", get(status_page))
        .route("/devices/schools/{id}", get(school_page))
}

/// The device-health words in Thai and English (a field of `Text`).
pub struct DevicesText {
    pub health: &'static str,
    pub device: &'static str,
    pub devices: &'static str,
    pub probe: &'static str,
    pub address: &'static str,
    pub status: &'static str,
    pub since: &'static str,
    pub latency: &'static str,
    pub loss: &'static str,
    pub uptime_30d: &'static str,
    pub last_error: &'static str,
    pub open_incidents: &'static str,
    pub incident: &'static str,
    pub opened: &'static str,
    /// For `up`, `degraded`, `down`, `unknown`, `none`.
    pub statuses: [&'static str; 5],
}

pub static TH: DevicesText = DevicesText {
    health: "สถานะอุปกรณ์เครือข่าย",
    device: "อุปกรณ์",
    devices: "อุปกรณ์",
    probe: "วิธีตรวจ",
    address: "ที่อยู่",
    status: "สถานะ",
    since: "ตั้งแต่",
    latency: "เวลาตอบสนอง",
    loss: "แพ็กเก็ตสูญหาย",
    uptime_30d: "ใช้งานได้ (30 วัน)",
    last_error: "ข้อผิดพลาดล่าสุด",
    open_incidents: "เหตุขัดข้องที่ยังไม่แก้",
    incident: "เหตุขัดข้อง",
    opened: "เปิดเมื่อ",
    statuses: ["ปกติ", "ช้า/สูญหายบางส่วน", "ขัดข้อง", "ยังไม่ทราบ", "ไม่มีอุปกรณ์"],
};

pub static EN: DevicesText = DevicesText {
    health: "Device health",
    device: "Device",
    devices: "Devices",
    probe: "Probe",
    address: "Address",
    status: "Status",
    since: "Since",
    latency: "Latency",
    loss: "Loss",
    uptime_30d: "Uptime (30 days)",
    last_error: "Last error",
    open_incidents: "Open incidents",
    incident: "Incident",
    opened: "Opened",
    statuses: ["up", "degraded", "down", "unknown", "no devices"],
};

impl DevicesText {
    /// The word for a status (`up`, `degraded`, `down`, `unknown`, `none`).
    pub fn status_word(&self, status: &str) -> &'static str {
        match status {
            "up" => self.statuses[0],
            "degraded" => self.statuses[1],
            "down" => self.statuses[2],
            "unknown" => self.statuses[3],
            _ => self.statuses[4],
        }
    }
}

#[derive(Template)]
#[template(path = "devices_status.html")]
struct StatusPage {
    p: Page,
    schools: Vec<SchoolHealth>,
    incidents: Vec<Incident>,
}

#[derive(Template)]
#[template(path = "devices_school.html")]
struct SchoolPage {
    p: Page,
    school: SchoolHealth,
    rows: Vec<DeviceRow>,
}

struct DeviceRow {
    d: Device,
    latency: String,
    loss: String,
    uptime: String,
}

/// Why a page is not shown.
enum Denied {
    SignIn,
    Forbidden,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::SignIn => see_other("/login"),
            Denied::Forbidden => StatusCode::FORBIDDEN.into_response(),
        }
    }
}

/// Which school a user may see: `None` all of them, `Some(id)` only their own.
fn scope(user: &WebUser) -> Result<Option<i64>, Denied> {
    let Some(principal) = &user.principal else {
        return Err(Denied::SignIn);
    };
    if !principal.role.may(Permission::SchoolsView) {
        return Err(Denied::Forbidden);
    }
    Ok(if principal.role.school_bound() {
        Some(principal.school_id.unwrap_or(-1))
    } else {
        None
    })
}

async fn status_page(State(state): State<AppState>, user: WebUser, lang: PageLang) -> Response {
    let only = match scope(&user) {
        Ok(only) => only,
        Err(denied) => return denied.into_response(),
    };
    let schools = targets::school_health(&state.db, only).await;
    let incidents = alerts::list(&state.db, only, true, 200).await;
    match (schools, incidents) {
        (Ok(schools), Ok(incidents)) => render(
            StatusCode::OK,
            &StatusPage {
                p: Page::new(&user, lang),
                schools,
                incidents,
            },
        ),
        (Err(e), _) | (_, Err(e)) => crate::http::error::ApiError::from(e).into_response(),
    }
}

async fn school_page(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Path(id): Path<i64>,
) -> Response {
    let only = match scope(&user) {
        Ok(only) => only,
        Err(denied) => return denied.into_response(),
    };
    if only.is_some_and(|own| own != id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let loaded = async {
        let school = targets::school_health(&state.db, Some(id)).await?.pop();
        let devices = targets::list(&state.db, Some(id)).await?;
        let uptime = samples::uptime(&state.db, id, now_ms() - 30 * 86_400_000).await?;
        Ok::<_, crate::Error>((school, devices, uptime))
    };
    let (school, devices, uptime) = match loaded.await {
        Ok((Some(school), devices, uptime)) => (school, devices, uptime),
        Ok((None, _, _)) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let rows = devices
        .into_iter()
        .map(|d| DeviceRow {
            latency: d
                .last_latency_ms
                .map_or("-".into(), |l| format!("{l:.1} ms")),
            loss: d
                .last_loss_percent
                .map_or("-".into(), |l| format!("{l:.0}%")),
            uptime: uptime_text(&uptime, d.id),
            d,
        })
        .collect();
    render(
        StatusCode::OK,
        &SchoolPage {
            p: Page::new(&user, lang),
            school,
            rows,
        },
    )
}

fn uptime_text(uptime: &HashMap<i64, (i64, i64)>, device: i64) -> String {
    match uptime.get(&device) {
        Some(&(ok, total)) if total > 0 => format!("{:.2}%", 100.0 * ok as f64 / total as f64),
        _ => "-".into(),
    }
}
