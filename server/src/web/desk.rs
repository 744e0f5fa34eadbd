//! The desk's web pages: file a request of any kind from a phone, follow and rate it; the
//! technician queue and the approver inbox (filters of one list); the asset register with each
//! asset's history and loan calendar. They call the same `crate::desk` functions as the API, so
//! the workflow table and the audit trail are the same.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::i18n::Text;
use super::{Page, PageLang, message, render};
use crate::db::now_ms;
use crate::desk::kinds::{KINDS, Kind};
use crate::desk::requests::{self, ActionBody, NewRequest, Who};
use crate::desk::workflow::{self, Action, Party, RULES, STATES, State as RState};
use crate::desk::{assets, loans};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::WebUser;
use crate::http::see_other;
use crate::roles::Permission;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/desk", get(queue))
        .route("/desk/new", get(new_form))
        .route("/desk/requests/{id}", get(request_page).post(request_act))
        .route("/assets", get(assets_page))
        .route("/assets/{id}", get(asset_page).post(asset_edit))
        .route("/assets/{id}/label", get(asset_label))
}

/// The pages that take or give files; `crate::http::desk::file_routes` merges them with the
/// upload limit instead of `server.max_body_bytes`.
pub fn file_routes() -> Router<AppState> {
    Router::new()
        .route("/desk/new", axum::routing::post(new_submit))
        .route(
            "/desk/requests/{id}/attachments",
            axum::routing::post(attachment_upload),
        )
        .route(
            "/desk/requests/{id}/attachments/{attachment_id}",
            get(attachment_download),
        )
        .route("/assets/import", axum::routing::post(import_upload))
}

/// The desk's words in Thai and English (a field of [`Text`], so both languages are checked).
pub struct DeskText {
    pub desk: &'static str,
    pub assets: &'static str,
    pub new_request: &'static str,
    pub kind: &'static str,
    pub state: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub priority: &'static str,
    pub priorities: [&'static str; 4],
    /// In the order of `desk::kinds::KINDS`.
    pub kinds: [&'static str; 8],
    /// In the order of `desk::workflow::STATES`.
    pub states: [&'static str; 10],
    /// In the order of `desk::workflow::RULES`.
    pub actions: [&'static str; 11],
    pub all: &'static str,
    pub assigned_to_me: &'static str,
    pub filter: &'static str,
    pub submit: &'static str,
    pub history: &'static str,
    pub comment: &'static str,
    pub assignee: &'static str,
    pub wait_reason: &'static str,
    pub reasons: [&'static str; 3],
    pub rating: &'static str,
    pub act: &'static str,
    pub sla: &'static str,
    pub breached: &'static str,
    pub paused: &'static str,
    pub overdue: &'static str,
    pub waiting_for: &'static str,
    pub minutes: &'static str,
    pub search: &'static str,
    pub asset_number: &'static str,
    pub category: &'static str,
    pub brand_model: &'static str,
    pub serial: &'static str,
    pub room: &'static str,
    pub custodian: &'static str,
    pub budget_year: &'static str,
    pub price: &'static str,
    pub warranty_end: &'static str,
    pub loans: &'static str,
    pub report_repair: &'static str,
    pub next_page: &'static str,
    pub approved: &'static str,
    pub due: &'static str,
    pub attachments: &'static str,
    pub attach: &'static str,
    pub choose_file: &'static str,
    pub take_photo: &'static str,
    pub max_size: &'static str,
    /// In the order of `desk::assets::STATES`.
    pub asset_states: [&'static str; 6],
    pub notes: &'static str,
    pub edit_asset: &'static str,
    pub save: &'static str,
    pub import_register: &'static str,
    pub import_hint: &'static str,
    pub imported: &'static str,
    /// Form fields, by the names of the kinds' forms.
    pub f_problem: &'static str,
    pub f_location: &'static str,
    pub f_from: &'static str,
    pub f_to: &'static str,
    pub f_purpose: &'static str,
    pub f_place: &'static str,
    pub f_asset_ids: &'static str,
    pub f_category: &'static str,
    pub f_items_purchase: &'static str,
    pub f_items_materials: &'static str,
    pub f_login: &'static str,
    pub f_full_name: &'static str,
    pub f_position: &'static str,
    pub f_email: &'static str,
    pub f_system: &'static str,
    pub f_access_level: &'static str,
    pub f_reason: &'static str,
    pub f_data: &'static str,
    pub f_format: &'static str,
    pub f_task: &'static str,
}

pub static TH: DeskText = DeskText {
    desk: "งานบริการ",
    assets: "ครุภัณฑ์",
    new_request: "ยื่นคำขอ",
    kind: "ประเภท",
    state: "สถานะ",
    title: "เรื่อง",
    description: "รายละเอียด",
    priority: "ความเร่งด่วน",
    priorities: ["ต่ำ", "ปกติ", "สูง", "ด่วนมาก"],
    kinds: [
        "แจ้งซ่อม",
        "ขอยืมวัสดุอุปกรณ์",
        "ขอจัดซื้อ",
        "ขอใช้วัสดุอุปกรณ์",
        "ขอบัญชีผู้ใช้เครือข่าย",
        "ขอเข้าถึงระบบสารสนเทศ",
        "ขอใช้บริการข้อมูล",
        "ขอให้ดำเนินการ",
    ],
    states: [
        "ยื่นแล้ว",
        "รออนุมัติ",
        "อนุมัติแล้ว",
        "ไม่อนุมัติ",
        "มอบหมายแล้ว",
        "กำลังดำเนินการ",
        "รอ",
        "ดำเนินการเสร็จ",
        "ปิดงาน",
        "ยกเลิก",
    ],
    actions: [
        "อนุมัติ",
        "ไม่อนุมัติ",
        "มอบหมาย",
        "เริ่มดำเนินการ / ส่งมอบ",
        "รอ",
        "เสร็จสิ้น / รับคืน",
        "ปิดงาน",
        "ยกเลิก",
        "เปิดใหม่",
        "แสดงความเห็น",
        "ประเมินความพึงพอใจ",
    ],
    all: "ทั้งหมด",
    assigned_to_me: "งานของฉัน",
    filter: "กรอง",
    submit: "ส่งคำขอ",
    history: "ประวัติ",
    comment: "ความเห็น / หมายเหตุ",
    assignee: "ผู้รับผิดชอบ",
    wait_reason: "รอเพราะ",
    reasons: ["รออะไหล่", "รอผู้ขาย", "รอผู้ขอ"],
    rating: "ความพึงพอใจ (1-5)",
    act: "ดำเนินการ",
    sla: "ข้อตกลงระดับบริการ",
    breached: "เกินกำหนด",
    paused: "หยุดนับเวลา",
    overdue: "เกินกำหนดคืน",
    waiting_for: "รอการอนุมัติขั้น",
    minutes: "นาทีทำการ",
    search: "ค้นหาเลขครุภัณฑ์หรือหมายเลขเครื่อง",
    asset_number: "เลขครุภัณฑ์",
    category: "ประเภท",
    brand_model: "ยี่ห้อ/รุ่น",
    serial: "หมายเลขเครื่อง",
    room: "ห้อง",
    custodian: "ผู้รับผิดชอบ",
    budget_year: "ปีงบประมาณ",
    price: "ราคา (บาท)",
    warranty_end: "หมดประกัน",
    loans: "ปฏิทินการยืม",
    report_repair: "แจ้งซ่อมเครื่องนี้",
    next_page: "หน้าถัดไป",
    approved: "อนุมัติแล้ว",
    due: "กำหนดเสร็จ",
    attachments: "ไฟล์แนบ",
    attach: "แนบไฟล์",
    choose_file: "เลือกไฟล์ (รูปภาพหรือ PDF)",
    take_photo: "ถ่ายรูปด้วยกล้อง",
    max_size: "ขนาดไม่เกิน",
    asset_states: ["ในคลัง", "ใช้งาน", "ถูกยืม", "ส่งซ่อม", "สูญหาย", "จำหน่ายแล้ว"],
    notes: "หมายเหตุ",
    edit_asset: "แก้ไขข้อมูลครุภัณฑ์",
    save: "บันทึก",
    import_register: "นำเข้าทะเบียนครุภัณฑ์",
    import_hint: "ไฟล์ Excel (.xlsx) หรือ CSV ที่มีหัวคอลัมน์เหมือนไฟล์ส่งออก นำเข้าทั้งไฟล์หรือไม่นำเข้าเลย",
    imported: "นำเข้าแล้ว (รายการ)",
    f_problem: "อาการเสีย",
    f_location: "สถานที่",
    f_from: "ยืมตั้งแต่วันที่",
    f_to: "ถึงวันที่",
    f_purpose: "วัตถุประสงค์",
    f_place: "สถานที่ใช้งาน",
    f_asset_ids: "รหัสครุภัณฑ์ในระบบ (คั่นด้วยจุลภาค)",
    f_category: "ประเภทการจัดซื้อ (materials, internet, website)",
    f_items_purchase: "รายการ บรรทัดละรายการ: คุณลักษณะ | จำนวน | หน่วย | ราคาประมาณ | ราคากลาง",
    f_items_materials: "รายการ บรรทัดละรายการ: ชื่อ | จำนวน | หน่วย",
    f_login: "ชื่อผู้ใช้เครือข่ายที่ขอ",
    f_full_name: "ชื่อ-นามสกุล",
    f_position: "ตำแหน่ง",
    f_email: "อีเมล",
    f_system: "ระบบสารสนเทศ",
    f_access_level: "ระดับสิทธิ์ (read, write, admin)",
    f_reason: "เหตุผล",
    f_data: "ข้อมูลที่ขอ",
    f_format: "รูปแบบ",
    f_task: "สิ่งที่ขอให้ดำเนินการ",
};

pub static EN: DeskText = DeskText {
    desk: "Desk",
    assets: "Assets",
    new_request: "New request",
    kind: "Kind",
    state: "State",
    title: "Title",
    description: "Description",
    priority: "Priority",
    priorities: ["Low", "Normal", "High", "Urgent"],
    kinds: [
        "Repair",
        "Loan",
        "Purchase",
        "Use of materials",
        "Network account",
        "System access",
        "Data service",
        "General",
    ],
    states: [
        "Submitted",
        "Pending approval",
        "Approved",
        "Rejected",
        "Assigned",
        "In progress",
        "Waiting",
        "Resolved",
        "Closed",
        "Cancelled",
    ],
    actions: [
        "Approve",
        "Reject",
        "Assign",
        "Start / check out",
        "Wait",
        "Resolve / check in",
        "Close",
        "Cancel",
        "Reopen",
        "Comment",
        "Rate",
    ],
    all: "All",
    assigned_to_me: "Assigned to me",
    filter: "Filter",
    submit: "Submit",
    history: "History",
    comment: "Comment / note",
    assignee: "Assignee",
    wait_reason: "Waiting for",
    reasons: ["Parts", "Vendor", "Requester"],
    rating: "Satisfaction (1-5)",
    act: "Do it",
    sla: "Service level",
    breached: "breached",
    paused: "paused",
    overdue: "overdue",
    waiting_for: "Waiting for approval step",
    minutes: "working minutes",
    search: "Search asset or serial number",
    asset_number: "Asset number",
    category: "Category",
    brand_model: "Brand/model",
    serial: "Serial",
    room: "Room",
    custodian: "Custodian",
    budget_year: "Budget year",
    price: "Price (baht)",
    warranty_end: "Warranty until",
    loans: "Loan calendar",
    report_repair: "Report a repair of this asset",
    next_page: "Next page",
    approved: "approved",
    due: "Due",
    attachments: "Attachments",
    attach: "Attach",
    choose_file: "Choose a file (picture or PDF)",
    take_photo: "Take a photo with the camera",
    max_size: "Up to",
    asset_states: [
        "In stock",
        "In use",
        "On loan",
        "In repair",
        "Lost",
        "Disposed",
    ],
    notes: "Notes",
    edit_asset: "Change this asset",
    save: "Save",
    import_register: "Import the asset register",
    import_hint: "An Excel (.xlsx) or CSV file with the export's column headings; the whole file or nothing is imported",
    imported: "Assets imported",
    f_problem: "Problem",
    f_location: "Location",
    f_from: "From",
    f_to: "To",
    f_purpose: "Purpose",
    f_place: "Where used",
    f_asset_ids: "Asset ids (comma-separated)",
    f_category: "Purchase category (materials, internet, website)",
    f_items_purchase: "Items, one a line: spec | quantity | unit | estimated price | reference price",
    f_items_materials: "Items, one a line: name | quantity | unit",
    f_login: "Network user ID asked for",
    f_full_name: "Full name",
    f_position: "Position",
    f_email: "E-mail",
    f_system: "Information system",
    f_access_level: "Access level (read, write, admin)",
    f_reason: "Reason",
    f_data: "Data asked for",
    f_format: "Format",
    f_task: "What to do",
};

fn kind_label(t: &Text, kind: &str) -> &'static str {
    KINDS
        .iter()
        .position(|k| k.as_str() == kind)
        .map(|i| t.desk.kinds[i])
        .unwrap_or("?")
}

fn state_label(t: &Text, state: &str) -> &'static str {
    STATES
        .iter()
        .position(|s| s.as_str() == state)
        .map(|i| t.desk.states[i])
        .unwrap_or("?")
}

fn who(user: &WebUser) -> Option<Who> {
    user.principal.as_ref().map(crate::http::desk::who)
}

/// A line of the queue.
struct QueueRow {
    id: i64,
    title: String,
    kind: &'static str,
    state: &'static str,
    school_id: i64,
    created_at: String,
    breached: bool,
    paused: bool,
    overdue: bool,
}

#[derive(Template)]
#[template(path = "desk_queue.html")]
struct QueuePage {
    p: Page,
    rows: Vec<QueueRow>,
    kinds: Vec<(&'static str, &'static str)>,
    states: Vec<(&'static str, &'static str)>,
    state: String,
    kind: String,
    mine: bool,
    next: Option<String>,
}

fn blank_none(s: Option<&String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `GET /desk`: the queue (technicians), the inbox (`?state=pending_approval`), or a
/// requester's own school's requests.
async fn queue(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(w) = who(&user) else {
        return see_other("/login");
    };
    let mine = q.get("mine").is_some_and(|v| v == "1");
    let filter = requests::Filter {
        state: blank_none(q.get("state")),
        kind: blank_none(q.get("kind")),
        assignee_id: mine.then_some(w.user_id),
        before_id: q.get("before_id").and_then(|v| v.parse().ok()),
        limit: Some(50),
        ..Default::default()
    };
    let list = match requests::list(&state.db, &state.desk, &w, &filter).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let page = Page::new(&user, lang);
    let t = page.t;
    let next = (list.len() == 50).then(|| {
        format!(
            "/desk?state={}&kind={}&mine={}&before_id={}",
            filter.state.clone().unwrap_or_default(),
            filter.kind.clone().unwrap_or_default(),
            u8::from(mine),
            list.last().map(|r| r.id).unwrap_or_default()
        )
    });
    let rows = list
        .into_iter()
        .map(|r| QueueRow {
            id: r.id,
            kind: kind_label(t, &r.kind),
            state: state_label(t, &r.state),
            school_id: r.school_id,
            created_at: r.created_at,
            breached: r.sla.response_breached || r.sla.resolution_breached,
            paused: r.sla.paused,
            overdue: r.overdue,
            title: r.title,
        })
        .collect();
    render(
        StatusCode::OK,
        &QueuePage {
            rows,
            kinds: KINDS
                .iter()
                .map(|k| (k.as_str(), kind_label(t, k.as_str())))
                .collect(),
            states: STATES
                .iter()
                .map(|s| (s.as_str(), state_label(t, s.as_str())))
                .collect(),
            state: filter.state.unwrap_or_default(),
            kind: filter.kind.unwrap_or_default(),
            mine,
            next,
            p: page,
        },
    )
}

/// One input of a kind's form.
struct Input {
    name: &'static str,
    label: &'static str,
    /// text, date, textarea, email
    kind: &'static str,
    required: bool,
    value: String,
}

fn inputs(t: &Text, kind: Kind) -> Vec<Input> {
    let d = t.desk;
    let i = |name, label, kind, required| Input {
        name,
        label,
        kind,
        required,
        value: String::new(),
    };
    match kind {
        Kind::Repair => vec![
            i("problem", d.f_problem, "textarea", true),
            i("location", d.f_location, "text", false),
            i("asset_ids", d.f_asset_ids, "text", false),
        ],
        Kind::Loan => vec![
            i("from", d.f_from, "date", true),
            i("to", d.f_to, "date", true),
            i("purpose", d.f_purpose, "text", true),
            i("place", d.f_place, "text", false),
            i("asset_ids", d.f_asset_ids, "text", true),
        ],
        Kind::Purchase => vec![
            i("category", d.f_category, "text", true),
            i("purpose", d.f_purpose, "text", true),
            i("items", d.f_items_purchase, "textarea", true),
        ],
        Kind::UseOfMaterials => vec![
            i("purpose", d.f_purpose, "text", true),
            i("items", d.f_items_materials, "textarea", true),
        ],
        Kind::Account => vec![
            i("login", d.f_login, "text", true),
            i("full_name", d.f_full_name, "text", true),
            i("position", d.f_position, "text", false),
            i("email", d.f_email, "email", false),
        ],
        Kind::SystemAccess => vec![
            i("system", d.f_system, "text", true),
            i("access_level", d.f_access_level, "text", true),
            i("reason", d.f_reason, "textarea", true),
        ],
        Kind::DataService => vec![
            i("data", d.f_data, "textarea", true),
            i("purpose", d.f_purpose, "text", true),
            i("format", d.f_format, "text", false),
        ],
        Kind::General => vec![i("task", d.f_task, "textarea", true)],
    }
}

#[derive(Template)]
#[template(path = "desk_new.html")]
struct NewPage {
    p: Page,
    kinds: Vec<(&'static str, &'static str)>,
    kind: &'static str,
    kind_label: &'static str,
    inputs: Vec<Input>,
    priorities: Vec<(&'static str, &'static str)>,
    title: String,
    description: String,
    /// Schools to choose from, for users not bound to one.
    schools: Vec<(i64, String)>,
    school_id: String,
    error: Option<String>,
    /// The photo inputs' `accept` and the size limit.
    accept: String,
    max_size: String,
}

async fn new_page(
    state: &AppState,
    user: &WebUser,
    page: Page,
    kind: Kind,
    values: &HashMap<String, String>,
    error: Option<String>,
) -> Response {
    let t = page.t;
    let schools = match &user.principal {
        Some(p) if !p.role.school_bound() => crate::schools::list(&state.db, None)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.id, format!("{} {}", s.code, s.name_th)))
            .collect(),
        _ => Vec::new(),
    };
    let mut inputs = inputs(t, kind);
    for input in &mut inputs {
        input.value = values.get(input.name).cloned().unwrap_or_default();
    }
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &NewPage {
            accept: state.desk.attachments.accept(),
            max_size: state.desk.attachments.max_size_text(),
            kinds: KINDS
                .iter()
                .map(|k| (k.as_str(), kind_label(t, k.as_str())))
                .collect(),
            kind: kind.as_str(),
            kind_label: kind_label(t, kind.as_str()),
            inputs,
            priorities: requests::PRIORITIES
                .iter()
                .zip(t.desk.priorities)
                .map(|(v, l)| (*v, l))
                .collect(),
            title: values.get("title").cloned().unwrap_or_default(),
            description: values.get("description").cloned().unwrap_or_default(),
            schools,
            school_id: values.get("school_id").cloned().unwrap_or_default(),
            error,
            p: page,
        },
    )
}

/// `GET /desk/new?kind=repair[&asset_ids=7]`
async fn new_form(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(p) = &user.principal else {
        return see_other("/login");
    };
    if !p.role.may(Permission::RequestsFile) {
        return ApiError::Forbidden.into_response();
    }
    let kind = q
        .get("kind")
        .and_then(|k| Kind::parse(k))
        .unwrap_or(Kind::Repair);
    new_page(&state, &user, Page::new(&user, lang), kind, &q, None).await
}

/// Turns the form's inputs into the kind's `fields` and the asset ids.
fn fields_from_form(kind: Kind, form: &HashMap<String, String>) -> (Value, Vec<i64>) {
    let get = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let assets: Vec<i64> = get("asset_ids")
        .split([',', ' '])
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let lines = |k: &str| -> Vec<Vec<String>> {
        get(k)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
            .collect()
    };
    let num = |s: Option<&String>| -> Value {
        s.and_then(|s| s.replace(',', "").parse::<f64>().ok())
            .map(Value::from)
            .unwrap_or(Value::Null)
    };
    let int = |s: Option<&String>| -> Value {
        s.and_then(|s| s.parse::<u32>().ok())
            .map(Value::from)
            .unwrap_or(Value::Null)
    };
    let fields = match kind {
        Kind::Repair => json!({ "problem": get("problem"), "location": get("location") }),
        Kind::Loan => {
            json!({ "from": get("from"), "to": get("to"), "purpose": get("purpose"), "place": get("place") })
        }
        Kind::Purchase => json!({ "category": get("category"), "purpose": get("purpose"),
            "items": lines("items").iter().map(|c| {
                let mut item = json!({ "spec": c.first().cloned().unwrap_or_default(), "quantity": int(c.get(1)),
                    "unit": c.get(2).cloned().unwrap_or_default(), "estimated_price": num(c.get(3)) });
                if let Some(r) = c.get(4).filter(|r| !r.is_empty()) {
                    item["reference_price"] = num(Some(r));
                }
                item
            }).collect::<Vec<_>>() }),
        Kind::UseOfMaterials => json!({ "purpose": get("purpose"),
            "items": lines("items").iter().map(|c| json!({ "name": c.first().cloned().unwrap_or_default(),
                "quantity": int(c.get(1)), "unit": c.get(2).cloned().unwrap_or_default() })).collect::<Vec<_>>() }),
        Kind::Account => json!({ "login": get("login"), "full_name": get("full_name"),
            "position": get("position"), "email": get("email") }),
        Kind::SystemAccess => {
            json!({ "system": get("system"), "access_level": get("access_level"), "reason": get("reason") })
        }
        Kind::DataService => {
            json!({ "data": get("data"), "purpose": get("purpose"), "format": get("format") })
        }
        Kind::General => json!({ "task": get("task") }),
    };
    (fields, assets)
}

/// `POST /desk/new`: the form, with photos (multipart, as the page sends it) or without
/// (urlencoded). The photos are kept only when the request is filed.
async fn new_submit(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    request: axum::extract::Request,
) -> Response {
    use axum::extract::FromRequest;
    let Some(w) = who(&user) else {
        return see_other("/login");
    };
    if !w.role.may(Permission::RequestsFile) {
        return ApiError::Forbidden.into_response();
    }
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (form, files) = if multipart {
        let headers = request.headers().clone();
        let body = axum::extract::Multipart::from_request(request, &state).await;
        match crate::http::desk::receive_form(&headers, body, &state.desk.attachments).await {
            Ok(received) => (received.fields, received.files),
            Err(e) => {
                let status = e.status();
                let page = Page::new(&user, lang);
                let empty = HashMap::new();
                let mut response =
                    new_page(&state, &user, page, Kind::Repair, &empty, Some(message(e))).await;
                *response.status_mut() = status;
                return response;
            }
        }
    } else {
        match Form::<HashMap<String, String>>::from_request(request, &state).await {
            Ok(Form(form)) => (form, Vec::new()),
            Err(e) => return ApiError::BadRequest(e.body_text()).into_response(),
        }
    };
    let Some(kind) = form.get("kind").and_then(|k| Kind::parse(k)) else {
        return ApiError::Invalid {
            field: "kind".into(),
            message: "unknown kind".into(),
        }
        .into_response();
    };
    let (fields, asset_ids) = fields_from_form(kind, &form);
    let new = NewRequest {
        kind: kind.as_str().to_owned(),
        title: form.get("title").cloned().unwrap_or_default(),
        description: form.get("description").cloned().unwrap_or_default(),
        priority: form
            .get("priority")
            .cloned()
            .unwrap_or_else(|| "normal".into()),
        school_id: form.get("school_id").and_then(|s| s.parse().ok()),
        fields,
        asset_ids,
    };
    match requests::create(&state.db, &state.desk, &user.actor, &w, new).await {
        Ok(r) => {
            for (name, file) in files {
                let attached =
                    crate::desk::attachments::attach(&state.db, &user.actor, &w, r.id, &name, file)
                        .await;
                if let Err(e) = attached {
                    // Filed, but the photo was not kept: say so where it can be sent again.
                    let e = ApiError::from(e);
                    let error = (e.status(), format!("{name}: {}", message(e)));
                    return request_view(&state, &user, lang, r.id, Some(error)).await;
                }
            }
            see_other(&format!("/desk/requests/{}", r.id))
        }
        Err(e) => {
            new_page(
                &state,
                &user,
                Page::new(&user, lang),
                kind,
                &form,
                Some(message(e.into())),
            )
            .await
        }
    }
}

struct FieldLine {
    name: String,
    value: String,
}

struct HistoryLine {
    at: String,
    actor: String,
    action: String,
    to_state: &'static str,
    comment: String,
}

#[derive(Template)]
#[template(path = "desk_request.html")]
struct RequestPage {
    p: Page,
    r: requests::Request,
    kind: &'static str,
    state: &'static str,
    fields: Vec<FieldLine>,
    history: Vec<HistoryLine>,
    actions: Vec<(&'static str, &'static str)>,
    may_assign: bool,
    may_wait: bool,
    may_rate: bool,
    technicians: Vec<(i64, String)>,
    reasons: Vec<(&'static str, &'static str)>,
    error: Option<String>,
    files: Vec<FileLine>,
    may_attach: bool,
    accept: String,
    max_size: String,
}

/// An attached file as the request page lists it.
struct FileLine {
    url: String,
    name: String,
    size_kib: u64,
    uploader: String,
    at: String,
    picture: bool,
}

async fn request_view(
    state: &AppState,
    user: &WebUser,
    lang: PageLang,
    id: i64,
    error: Option<(StatusCode, String)>,
) -> Response {
    let Some(w) = who(user) else {
        return see_other("/login");
    };
    let r = match requests::get(&state.db, &state.desk, &w, id).await {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let page = Page::new(user, lang);
    let t = page.t;
    let current = RState::parse(&r.state).unwrap_or(RState::Submitted);
    let mut parties = vec![Party::Viewer];
    if r.requester_id == w.user_id && w.role.may(Permission::RequestsFile) {
        parties.push(Party::Filer);
    }
    if w.role.may(Permission::RequestsWork) {
        parties.push(Party::Worker);
    }
    if w.role.may(Permission::RequestsApprove) {
        parties.push(Party::Approver);
    }
    let allowed: Vec<Action> = RULES
        .iter()
        .map(|rule| rule.action)
        .filter(|a| workflow::check(*a, current, &parties).is_ok())
        .filter(|a| !(*a == Action::Rate && r.rating.is_some()))
        .filter(|a| {
            // A step that names its approver is offered to that user only.
            let named = r
                .approvals
                .waiting_for
                .as_deref()
                .and_then(crate::desk::named_approver);
            let me = user.principal.as_ref().map(|p| p.username.as_str());
            !(matches!(a, Action::Approve | Action::Reject) && named.is_some_and(|n| Some(n) != me))
        })
        .collect();
    let actions = allowed
        .iter()
        .map(|a| {
            let i = RULES.iter().position(|rule| rule.action == *a).unwrap_or(0);
            (a.as_str(), t.desk.actions[i])
        })
        .collect();
    let technicians = if allowed.contains(&Action::Assign) {
        crate::users::list(&state.db, None)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|u| u.role.may(Permission::RequestsWork) && u.active)
            .map(|u| (u.id, u.display_name))
            .collect()
    } else {
        Vec::new()
    };
    // Fields under the labels of the kind's form, in the reader's language.
    let labels: HashMap<&str, &str> = inputs(t, Kind::parse(&r.kind).unwrap_or(Kind::General))
        .iter()
        .map(|i| (i.name, i.label))
        .collect();
    let fields = r
        .fields
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| FieldLine {
                    name: labels
                        .get(k.as_str())
                        .map_or_else(|| k.clone(), |l| (*l).to_owned()),
                    value: match v {
                        Value::String(s) => s.clone(),
                        Value::Array(items) => items
                            .iter()
                            .map(|i| match i {
                                Value::Object(o) => o
                                    .values()
                                    .map(|v| v.to_string().trim_matches('"').to_owned())
                                    .collect::<Vec<_>>()
                                    .join(" | "),
                                other => other.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join("\n"),
                        other => other.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let history = r
        .history
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| HistoryLine {
            at: e.at,
            actor: e.actor,
            to_state: state_label(t, &e.to_state),
            action: e.action,
            comment: e.comment.unwrap_or_default(),
        })
        .collect();
    let files = r
        .attachments
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| FileLine {
            url: format!("/desk/requests/{}/attachments/{}", r.id, a.id),
            picture: a.file_type().is_some_and(|t| t.is_picture()),
            size_kib: (a.size as u64).div_ceil(1024),
            name: a.file_name,
            uploader: a.uploader,
            at: a.uploaded_at,
        })
        .collect();
    let status = match &error {
        Some((status, _)) => *status,
        None => StatusCode::OK,
    };
    let error = error.map(|(_, message)| message);
    render(
        status,
        &RequestPage {
            files,
            may_attach: allowed.contains(&Action::Comment),
            accept: state.desk.attachments.accept(),
            max_size: state.desk.attachments.max_size_text(),
            kind: kind_label(t, &r.kind),
            state: state_label(t, &r.state),
            fields,
            history,
            actions,
            may_assign: allowed.contains(&Action::Assign),
            may_wait: allowed.contains(&Action::Wait),
            may_rate: allowed.contains(&Action::Rate) || allowed.contains(&Action::Close),
            technicians,
            reasons: ["parts", "vendor", "requester"]
                .into_iter()
                .zip(t.desk.reasons)
                .collect(),
            error,
            r,
            p: page,
        },
    )
}

/// `GET /desk/requests/{id}`
async fn request_page(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Path(id): Path<i64>,
) -> Response {
    request_view(&state, &user, lang, id, None).await
}

/// `POST /desk/requests/{id}`: takes the chosen action.
async fn request_act(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(w) = who(&user) else {
        return see_other("/login");
    };
    let action = form.get("action").cloned().unwrap_or_default();
    let body = ActionBody {
        comment: blank_none(form.get("comment")),
        assignee_id: form
            .get("assignee_id")
            .filter(|_| action == "assign")
            .and_then(|s| s.parse().ok()),
        reason: blank_none(form.get("reason")).filter(|_| action == "wait"),
        rating: form
            .get("rating")
            .filter(|_| action == "rate" || action == "close")
            .and_then(|s| s.parse().ok()),
        action,
    };
    match requests::act(&state.db, &state.desk, &user.actor, &w, id, body).await {
        Ok(_) => see_other(&format!("/desk/requests/{id}")),
        Err(crate::Error::NotFound) => ApiError::NotFound.into_response(),
        Err(e) => {
            let error = (StatusCode::CONFLICT, message(e.into()));
            request_view(&state, &user, lang, id, Some(error)).await
        }
    }
}

/// `POST /desk/requests/{id}/attachments`: the request page's file form (a phone's camera or
/// gallery); back to the request, or the request with the refusal shown.
async fn attachment_upload(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Path(id): Path<i64>,
    headers: axum::http::HeaderMap,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let Some(w) = who(&user) else {
        return see_other("/login");
    };
    let stored = async {
        crate::desk::attachments::check_may_attach(&state.db, &w, id).await?;
        let files = crate::http::desk::receive_form(&headers, multipart, &state.desk.attachments)
            .await?
            .files;
        if files.is_empty() {
            return Err(ApiError::Invalid {
                field: "file".into(),
                message: "choose a file or take a photo first".into(),
            });
        }
        for (name, file) in files {
            crate::desk::attachments::attach(&state.db, &user.actor, &w, id, &name, file).await?;
        }
        Ok::<(), ApiError>(())
    }
    .await;
    match stored {
        Ok(()) => see_other(&format!("/desk/requests/{id}")),
        Err(ApiError::NotFound) => ApiError::NotFound.into_response(),
        Err(e) => {
            let status = e.status();
            request_view(&state, &user, lang, id, Some((status, message(e)))).await
        }
    }
}

/// `GET /desk/requests/{id}/attachments/{attachment_id}`
async fn attachment_download(
    State(state): State<AppState>,
    user: WebUser,
    Path((id, attachment_id)): Path<(i64, i64)>,
) -> Response {
    let Some(w) = who(&user) else {
        return see_other("/login");
    };
    crate::http::desk::attachment_response(&state, &w, id, attachment_id)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Template)]
#[template(path = "desk_assets.html")]
struct AssetsPage {
    p: Page,
    assets: Vec<assets::Asset>,
    q: String,
    next: Option<String>,
    may_manage: bool,
    /// The outcome of an import: (is an error, message).
    notice: Option<(bool, String)>,
}

impl AssetsPage {
    fn state_name(&self, state: &str) -> &'static str {
        asset_state_name(self.p.t.desk, state)
    }
}

/// Why a page is not shown: nobody is signed in, or the user may not.
enum Refused {
    SignIn,
    Forbidden,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => see_other("/login"),
            Refused::Forbidden => ApiError::Forbidden.into_response(),
        }
    }
}

/// The signed-in user and the school their view is bound to (none for district staff), when
/// they hold `permission`.
fn permitted(
    user: &WebUser,
    permission: Permission,
) -> Result<(&crate::auth::Principal, Option<i64>), Refused> {
    let p = user.principal.as_ref().ok_or(Refused::SignIn)?;
    if !p.role.may(permission) {
        return Err(Refused::Forbidden);
    }
    Ok((
        p,
        p.role.school_bound().then_some(p.school_id.unwrap_or(-1)),
    ))
}

/// An asset state's name in the page's language.
fn asset_state_name(t: &DeskText, state: &str) -> &'static str {
    assets::STATES
        .iter()
        .position(|s| *s == state)
        .map_or("?", |i| t.asset_states[i])
}

/// `GET /assets[?q=&before_id=]`
async fn assets_page(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    assets_view(&state, &user, lang, &q, None).await
}

async fn assets_view(
    state: &AppState,
    user: &WebUser,
    lang: PageLang,
    q: &HashMap<String, String>,
    notice: Option<(StatusCode, bool, String)>,
) -> Response {
    let (p, scope) = match permitted(user, Permission::AssetsView) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let filter = assets::Filter {
        q: blank_none(q.get("q")),
        before_id: q.get("before_id").and_then(|v| v.parse().ok()),
        limit: Some(50),
        ..Default::default()
    };
    let list = match assets::list(&state.db, &filter, scope).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let next = (list.len() == 50).then(|| {
        let before = list.last().map(|a| a.id).unwrap_or_default().to_string();
        let query = [
            ("q", filter.q.as_deref().unwrap_or_default()),
            ("before_id", before.as_str()),
        ];
        format!(
            "/assets?{}",
            serde_urlencoded::to_string(query).unwrap_or_default()
        )
    });
    let (status, notice) = match notice {
        Some((status, error, message)) => (status, Some((error, message))),
        None => (StatusCode::OK, None),
    };
    render(
        status,
        &AssetsPage {
            p: Page::new(user, lang),
            assets: list,
            q: filter.q.unwrap_or_default(),
            next,
            may_manage: p.role.may(Permission::AssetsManage),
            notice,
        },
    )
}

/// `POST /assets/import`: the assets page's import form (an XLSX workbook or a CSV file);
/// back to the page with how many were imported, or with the first bad row named.
async fn import_upload(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let (_, scope) = match permitted(&user, Permission::AssetsManage) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let imported = async {
        let mut multipart = multipart.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let mut file = None;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?
        {
            if field.name() == Some("file") {
                file = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| ApiError::BadRequest(e.body_text()))?,
                );
            }
        }
        let file = file.filter(|f| !f.is_empty()).ok_or(ApiError::Invalid {
            field: "file".into(),
            message: "choose the register's .xlsx or .csv file first".into(),
        })?;
        Ok::<usize, ApiError>(
            crate::desk::register::import(&state.db, &user.actor, &file, scope).await?,
        )
    }
    .await;
    let notice = match imported {
        Ok(n) => (StatusCode::OK, false, n.to_string()),
        Err(e) => (e.status(), true, message(e)),
    };
    assets_view(&state, &user, lang, &HashMap::new(), Some(notice)).await
}

#[derive(Template)]
#[template(path = "desk_asset.html")]
struct AssetPage {
    p: Page,
    a: assets::AssetDetail,
    bookings: Vec<loans::Booking>,
    may_file: bool,
    /// The change form: the states one may set, and the schools one may move the asset to.
    may_manage: bool,
    manual_states: Vec<(&'static str, &'static str)>,
    schools: Vec<(i64, String)>,
    error: Option<String>,
}

impl AssetPage {
    fn state_name(&self, state: &str) -> &'static str {
        asset_state_name(self.p.t.desk, state)
    }
}

/// `GET /assets/{id}`: the asset, its history and its loan calendar; "report a repair"; the
/// change form for those who keep the register.
async fn asset_page(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Path(id): Path<i64>,
) -> Response {
    asset_view(&state, &user, lang, id, None).await
}

async fn asset_view(
    state: &AppState,
    user: &WebUser,
    lang: PageLang,
    id: i64,
    error: Option<(StatusCode, String)>,
) -> Response {
    let (p, scope) = match permitted(user, Permission::AssetsView) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let a = match assets::get(&state.db, id, scope).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let bookings = loans::calendar(&state.db, id, now_ms() - 86_400_000)
        .await
        .unwrap_or_default();
    let page = Page::new(user, lang);
    let may_manage = p.role.may(Permission::AssetsManage);
    let schools = if may_manage {
        crate::schools::list(&state.db, scope)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let name = match page.lang {
                    super::i18n::Lang::En => s.name_en,
                    super::i18n::Lang::Th => s.name_th,
                };
                (s.id, format!("{} {name}", s.code))
            })
            .collect()
    } else {
        Vec::new()
    };
    let manual_states = assets::MANUAL_STATES
        .iter()
        .map(|s| (*s, asset_state_name(page.t.desk, s)))
        .collect();
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    render(
        status,
        &AssetPage {
            may_file: p.role.may(Permission::RequestsFile),
            p: page,
            a,
            bookings,
            may_manage,
            manual_states,
            schools,
            error,
        },
    )
}

/// `POST /assets/{id}`: the asset page's change form; back to the asset, or the asset with the
/// refusal shown.
async fn asset_edit(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, scope) = match permitted(&user, Permission::AssetsManage) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let text = |name: &str| form.get(name).map(|v| v.trim().to_owned());
    let patch = assets::AssetPatch {
        state: text("state"),
        school_id: match form.get("school_id").map(|v| v.parse::<i64>()) {
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                let error = (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "school_id: choose a school".into(),
                );
                return asset_view(&state, &user, lang, id, Some(error)).await;
            }
            None => None,
        },
        room: text("room"),
        custodian: text("custodian"),
        notes: text("notes"),
        comment: text("comment"),
        ..Default::default()
    };
    match assets::update(&state.db, &user.actor, id, scope, patch).await {
        Ok(_) => see_other(&format!("/assets/{id}")),
        Err(crate::Error::NotFound) => ApiError::NotFound.into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            let error = (e.status(), message(e));
            asset_view(&state, &user, lang, id, Some(error)).await
        }
    }
}

#[derive(Template)]
#[template(path = "desk_label.html")]
struct LabelPage {
    p: Page,
    a: assets::Asset,
    url: String,
    qr_svg: String,
}

/// The QR code (SVG) of a link.
pub fn qr_svg(link: &str) -> String {
    match qrcode::QrCode::new(link.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(160, 160)
                .build();
            // Inline in the page: without the XML declaration.
            match svg.find("<svg") {
                Some(i) => svg[i..].to_owned(),
                None => svg,
            }
        }
        Err(_) => String::new(),
    }
}

/// `GET /assets/{id}/label`: a printable label with a QR code that opens the asset's page (and
/// from there "report a repair").
async fn asset_label(
    State(state): State<AppState>,
    user: WebUser,
    lang: PageLang,
    headers: axum::http::HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let (_, scope) = match permitted(&user, Permission::AssetsView) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let a = match assets::get(&state.db, id, scope).await {
        Ok(a) => a.asset,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.tls { "https" } else { "http" };
    let url = format!("{scheme}://{host}/assets/{id}");
    render(
        StatusCode::OK,
        &LabelPage {
            p: Page::new(&user, lang),
            qr_svg: qr_svg(&url),
            url,
            a,
        },
    )
}
