//! Device-health pages: every school at a glance, worst first, with the open incidents; and
//! one school's devices with their status, latency, loss and uptime over the last 30 days.
//! They call the same `crate::devices` functions as the API, with the same school scoping.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Page, PageLang, render};
use crate::db::now_ms;
use crate::devices::alerts::{self, Incident};
use crate::devices::discovered::{self, Accept, AcceptAsset, Discovered};
use crate::devices::graphs::{self, MonthUptime};
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
        .route("/devices/{id}", get(device_page))
        .route("/devices/discovered", get(discovered_page))
        .route("/devices/discovered/{id}", post(discovered_submit))
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
    pub latency_ms: &'static str,
    pub loss_percent: &'static str,
    pub traffic: &'static str,
    pub inbound: &'static str,
    pub outbound: &'static str,
    pub average: &'static str,
    pub maximum: &'static str,
    pub uptime_by_month: &'static str,
    pub month: &'static str,
    pub uptime: &'static str,
    pub samples: &'static str,
    /// For the graph ranges 24 hours, 7 days, 30 days, 1 year.
    pub ranges: [&'static str; 4],
    pub repair_request: &'static str,
    pub discovered: &'static str,
    pub discovered_intro: &'static str,
    pub mac: &'static str,
    pub vendor: &'static str,
    pub first_seen: &'static str,
    pub last_seen: &'static str,
    pub name: &'static str,
    pub asset_number: &'static str,
    pub category: &'static str,
    pub accept: &'static str,
    pub ignore: &'static str,
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
    latency_ms: "เวลาตอบสนอง (มิลลิวินาที)",
    loss_percent: "แพ็กเก็ตสูญหาย (%)",
    traffic: "ปริมาณข้อมูลผ่านพอร์ต (บิต/วินาที)",
    inbound: "เข้า",
    outbound: "ออก",
    average: "เฉลี่ย",
    maximum: "สูงสุด",
    uptime_by_month: "ใช้งานได้รายเดือน",
    month: "เดือน",
    uptime: "ใช้งานได้",
    samples: "จำนวนครั้งที่ตรวจ",
    ranges: ["24 ชั่วโมง", "7 วัน", "30 วัน", "1 ปี"],
    repair_request: "คำขอซ่อม",
    discovered: "อุปกรณ์ที่พบในเครือข่าย",
    discovered_intro: "อุปกรณ์ที่เอเจนต์ของโรงเรียนพบในเครือข่ายแต่ยังไม่อยู่ในทะเบียน รับเข้าเพื่อเฝ้าดู (และลงทะเบียนครุภัณฑ์) หรือซ่อนไว้",
    mac: "MAC",
    vendor: "ผู้ผลิต",
    first_seen: "พบครั้งแรก",
    last_seen: "พบล่าสุด",
    name: "ชื่อ",
    asset_number: "เลขครุภัณฑ์ (ไม่บังคับ)",
    category: "ประเภทครุภัณฑ์",
    accept: "รับเข้าทะเบียน",
    ignore: "ซ่อน",
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
    latency_ms: "Latency (ms)",
    loss_percent: "Packet loss (%)",
    traffic: "Interface traffic (bit/s)",
    inbound: "in",
    outbound: "out",
    average: "average",
    maximum: "max",
    uptime_by_month: "Uptime by month",
    month: "Month",
    uptime: "Uptime",
    samples: "Samples",
    ranges: ["24 hours", "7 days", "30 days", "1 year"],
    repair_request: "Repair request",
    discovered: "Discovered devices",
    discovered_intro: "Devices the school agents saw on their networks that are not in the inventory. Accept one to monitor it (and register it as an asset), or ignore it.",
    mac: "MAC",
    vendor: "Vendor",
    first_seen: "First seen",
    last_seen: "Last seen",
    name: "Name",
    asset_number: "Asset number (optional)",
    category: "Asset category",
    accept: "Accept",
    ignore: "Ignore",
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
    /// Whether to link the discovered devices.
    can_manage: bool,
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
                can_manage: user
                    .principal
                    .as_ref()
                    .is_some_and(|p| p.role.may(Permission::DevicesManage)),
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

/// The graph ranges a device page offers: (query value, milliseconds).
const RANGES: [(&str, i64); 4] = [
    ("1d", 86_400_000),
    ("7d", 7 * 86_400_000),
    ("30d", 30 * 86_400_000),
    ("1y", 365 * 86_400_000),
];

#[derive(Template)]
#[template(path = "devices_device.html")]
struct DevicePage {
    p: Page,
    d: Device,
    ranges: Vec<RangeLink>,
    latency_svg: String,
    loss_svg: String,
    traffic_svg: Option<String>,
    months: Vec<MonthUptime>,
    incidents: Vec<Incident>,
}

/// A link to the same page over another range.
struct RangeLink {
    value: &'static str,
    label: &'static str,
    current: bool,
}

#[derive(Deserialize)]
struct RangeQuery {
    range: Option<String>,
}

async fn device_page(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Path(id): Path<i64>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let only = match scope(&user) {
        Ok(only) => only,
        Err(denied) => return denied.into_response(),
    };
    let (range, span) = RANGES
        .into_iter()
        .find(|(r, _)| Some(*r) == q.range.as_deref())
        .unwrap_or(RANGES[0]);
    let now = now_ms();
    let since = now - span;
    let loaded = async {
        let d = targets::get(&state.db, id).await?;
        let series = graphs::series(&state.db, id, since, now, 288).await?;
        let months = graphs::monthly_uptime(&state.db, id).await?;
        let incidents = alerts::list(&state.db, Some(d.school_id), false, 500).await?;
        Ok::<_, crate::Error>((d, series, months, incidents))
    };
    let (mut d, series, months, incidents) = match loaded.await {
        Ok(loaded) => loaded,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    if only.is_some_and(|own| own != d.school_id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !user
        .principal
        .as_ref()
        .is_some_and(|p| p.role.may(Permission::DevicesManage))
    {
        d.snmp_community = None;
    }
    let p = Page::new(&user, lang);
    let t = p.t.devices;
    let xs: Vec<i64> = series.iter().map(|p| p.at).collect();
    let pick = |f: fn(&graphs::Point) -> Option<f64>| series.iter().map(f).collect::<Vec<_>>();
    let latency_svg = graphs::svg(
        t.latency_ms,
        "ms",
        since,
        now,
        &xs,
        &[
            (t.average, "#1565c0", pick(|p| p.aggregate.latency_avg_ms)),
            (t.maximum, "#90caf9", pick(|p| p.aggregate.latency_max_ms)),
        ],
    );
    let loss_svg = graphs::svg(
        t.loss_percent,
        "%",
        since,
        now,
        &xs,
        &[
            (t.average, "#c62828", pick(|p| p.aggregate.loss_avg_percent)),
            (t.maximum, "#ef9a9a", pick(|p| p.aggregate.loss_max_percent)),
        ],
    );
    let traffic_svg = series
        .iter()
        .any(|p| p.aggregate.in_bps.is_some())
        .then(|| {
            graphs::svg(
                t.traffic,
                "bit/s",
                since,
                now,
                &xs,
                &[
                    (t.inbound, "#2e7d32", pick(|p| p.aggregate.in_bps)),
                    (t.outbound, "#6a1b9a", pick(|p| p.aggregate.out_bps)),
                ],
            )
        });
    let incidents = incidents
        .into_iter()
        .filter(|i| i.device_id == Some(id))
        .take(50)
        .collect();
    render(
        StatusCode::OK,
        &DevicePage {
            p,
            d,
            ranges: RANGES
                .iter()
                .zip(t.ranges)
                .map(|((value, _), label)| RangeLink {
                    value,
                    label,
                    current: *value == range,
                })
                .collect(),
            latency_svg,
            loss_svg,
            traffic_svg,
            months,
            incidents,
        },
    )
}

#[derive(Template)]
#[template(path = "devices_discovered.html")]
struct DiscoveredPage {
    p: Page,
    found: Vec<Discovered>,
    error: Option<String>,
}

/// Only users who manage devices see discovered devices; `Some(id)` limits to a school.
fn manage_scope(user: &WebUser) -> Result<Option<i64>, Denied> {
    let only = scope(user)?;
    if !user
        .principal
        .as_ref()
        .is_some_and(|p| p.role.may(Permission::DevicesManage))
    {
        return Err(Denied::Forbidden);
    }
    Ok(only)
}

async fn discovered_view(
    state: &AppState,
    user: &WebUser,
    lang: PageLang,
    error: Option<String>,
) -> Response {
    let only = match manage_scope(user) {
        Ok(only) => only,
        Err(denied) => return denied.into_response(),
    };
    match discovered::list(&state.db, only, false).await {
        Ok(found) => render(
            if error.is_some() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            },
            &DiscoveredPage {
                p: Page::new(user, lang),
                found,
                error,
            },
        ),
        Err(e) => crate::http::error::ApiError::from(e).into_response(),
    }
}

async fn discovered_page(State(state): State<AppState>, user: WebUser, lang: PageLang) -> Response {
    discovered_view(&state, &user, lang, None).await
}

#[derive(Deserialize)]
struct DiscoveredForm {
    /// `accept` or `ignore`.
    action: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    probe: String,
    #[serde(default)]
    asset_number: String,
    #[serde(default)]
    category: String,
}

async fn discovered_submit(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Path(id): Path<i64>,
    Form(f): Form<DiscoveredForm>,
) -> Response {
    let only = match manage_scope(&user) {
        Ok(only) => only,
        Err(denied) => return denied.into_response(),
    };
    let found = match discovered::get(&state.db, id).await {
        Ok(found) if only.is_none_or(|own| own == found.school_id) => found,
        Ok(_) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let done = if f.action == "ignore" {
        discovered::ignore(&state.db, &user.actor, found.id).await
    } else {
        let asset = (!f.asset_number.trim().is_empty()).then(|| AcceptAsset {
            asset_number: f.asset_number.clone(),
            category: f.category.clone(),
            brand: found.vendor.clone().unwrap_or_default(),
            model: String::new(),
            room: String::new(),
        });
        let accept = Accept {
            name: f.name.clone(),
            probe: if f.probe.is_empty() {
                "icmp".into()
            } else {
                f.probe.clone()
            },
            port: None,
            snmp_community: None,
            asset,
        };
        discovered::accept(&state.db, &user.actor, found.id, accept).await
    };
    match done {
        Ok(_) => see_other("/devices/discovered"),
        Err(e) => discovered_view(&state, &user, lang, Some(super::message(e.into()))).await,
    }
}
