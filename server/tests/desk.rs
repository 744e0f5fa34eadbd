//! The service desk end-to-end over real HTTP, on SQLite and (when configured) PostgreSQL:
//! each kind's happy path, the workflow's refusals (403, 404, 409, 422), sequential approvals,
//! loans that never double-book an asset (also under simultaneous approvals), the asset
//! register, and account requests that make network identities.

mod common;

use std::str::FromStr;

use common::{TestServer, databases};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A district with two schools and one user of each desk role.
struct Desk {
    admin: String,
    school_a: i64,
    school_b: i64,
    /// Requester at school A, and their user id.
    ra: String,
    ra_id: i64,
    /// Requester at school B.
    rb: String,
    tech: String,
    tech_id: i64,
    approver: String,
    approver2: String,
    compliance: String,
}

async fn desk(s: &TestServer) -> Desk {
    let admin = s.admin().await;
    let school_a = s.school(&admin, "A1001").await;
    let school_b = s.school(&admin, "B2002").await;
    let ra_id = s.user(&admin, "ra", "requester", Some(school_a)).await;
    s.user(&admin, "rb", "requester", Some(school_b)).await;
    let tech_id = s.user(&admin, "tech", "technician", None).await;
    s.user(&admin, "appr", "approver", None).await;
    s.user(&admin, "appr2", "approver", None).await;
    s.user(&admin, "comp", "compliance", None).await;
    let login = |u: &'static str| async move { s.login(u, &format!("password-of-{u}")).await };
    Desk {
        ra: login("ra").await,
        rb: login("rb").await,
        tech: login("tech").await,
        approver: login("appr").await,
        approver2: login("appr2").await,
        compliance: login("comp").await,
        admin,
        school_a,
        school_b,
        ra_id,
        tech_id,
    }
}

async fn asset(s: &TestServer, admin: &str, number: &str, school_id: i64) -> i64 {
    let (status, body) = s
        .post(
            admin,
            "/api/v1/assets",
            json!({ "asset_number": number, "category": "notebook", "brand": "Lenovo", "model": "ThinkPad E14",
                    "serial": format!("SN-{number}"), "budget_year": 2567, "price": 21500.5,
                    "funding_source": "งบประมาณ", "school_id": school_id, "room": "ห้องคอม 1",
                    "custodian": "ครูสมศรี", "state": "in_stock", "warranty_end": "2029-09-30" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

async fn act(s: &TestServer, token: &str, id: i64, body: Value) -> (StatusCode, Value) {
    s.post(token, &format!("/api/v1/requests/{id}/actions"), body)
        .await
}

/// Takes an action that must succeed and returns the request after it.
async fn ok(s: &TestServer, token: &str, id: i64, body: Value) -> Value {
    let (status, request) = act(s, token, id, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body} -> {request}");
    request
}

async fn file(s: &TestServer, token: &str, body: Value) -> Value {
    let (status, request) = s.post(token, "/api/v1/requests", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body} -> {request}");
    request
}

fn actions(request: &Value) -> Vec<String> {
    request["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn repair_from_filing_to_rating_with_refusals() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let pc = asset(&s, &d.admin, "7440-001-0001/67", d.school_a).await;
        let r = file(
            &s,
            &d.ra,
            json!({ "kind": "repair", "title": "คอมห้องสมุดเปิดไม่ติด", "priority": "high",
                    "fields": { "problem": "กดปุ่มแล้วไม่มีไฟ", "location": "ห้องสมุด" }, "asset_ids": [pc] }),
        )
        .await;
        let id = r["id"].as_i64().unwrap();
        assert_eq!(r["state"], "submitted", "{db:?} {r}");
        assert_eq!(
            r["school_id"], d.school_a,
            "a requester files for their own school"
        );
        assert_eq!(r["asset_ids"], json!([pc]));
        assert_eq!(r["sla"]["response_target_minutes"], 60);
        assert!(r["created_at"].as_str().unwrap().ends_with("+07:00"));

        // Another school's requester does not see it at all.
        let (status, _) = s.get(&d.rb, &format!("/api/v1/requests/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = act(
            &s,
            &d.rb,
            id,
            json!({ "action": "comment", "comment": "x" }),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, list) = s.get(&d.rb, "/api/v1/requests").await;
        assert_eq!(list, json!([]), "school B's list is empty");
        let (status, _) = s.get(&d.compliance, "/api/v1/requests").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "compliance has no desk");

        // Who may not: a requester cannot assign or approve; an approver cannot start.
        let (status, _) = act(
            &s,
            &d.ra,
            id,
            json!({ "action": "assign", "assignee_id": d.tech_id }),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = act(&s, &d.approver, id, json!({ "action": "start" })).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Not now: nothing to approve on a repair; cannot resolve before work starts.
        let (status, problem) = act(&s, &d.tech, id, json!({ "action": "resolve" })).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            problem["detail"].as_str().unwrap().contains("submitted"),
            "{problem}"
        );
        // Bad input names the field.
        let (status, problem) = act(
            &s,
            &d.tech,
            id,
            json!({ "action": "assign", "assignee_id": d.ra_id }),
        )
        .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("assignee_id"))
        );
        let (status, problem) = act(&s, &d.tech, id, json!({ "action": "fix" })).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("action"))
        );

        let r = ok(
            &s,
            &d.tech,
            id,
            json!({ "action": "assign", "assignee_id": d.tech_id }),
        )
        .await;
        assert_eq!(
            (r["state"].as_str(), r["assignee_id"].as_i64()),
            (Some("assigned"), Some(d.tech_id))
        );
        let (_, queue) = s
            .get(
                &d.tech,
                &format!("/api/v1/requests?assignee_id={}&state=assigned", d.tech_id),
            )
            .await;
        assert_eq!(queue.as_array().unwrap().len(), 1, "{queue}");
        ok(
            &s,
            &d.tech,
            id,
            json!({ "action": "start", "comment": "รับเครื่องมาตรวจ" }),
        )
        .await;
        let (_, a) = s.get(&d.ra, &format!("/api/v1/assets/{pc}")).await;
        assert_eq!(a["state"], "in_repair", "{a}");
        let (status, _) = act(&s, &d.ra, id, json!({ "action": "cancel" })).await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "no cancelling once work started"
        );
        let (status, problem) = act(&s, &d.tech, id, json!({ "action": "wait" })).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("reason"))
        );
        let r = ok(
            &s,
            &d.tech,
            id,
            json!({ "action": "wait", "reason": "requester", "comment": "ขอรหัสผ่านเครื่อง" }),
        )
        .await;
        assert_eq!(
            (r["state"].as_str(), r["wait_reason"].as_str()),
            (Some("waiting"), Some("requester"))
        );
        assert_eq!(r["sla"]["paused"], true, "{r}");
        ok(
            &s,
            &d.ra,
            id,
            json!({ "action": "comment", "comment": "รหัส 1234" }),
        )
        .await;
        ok(&s, &d.tech, id, json!({ "action": "start" })).await;
        let r = ok(
            &s,
            &d.tech,
            id,
            json!({ "action": "resolve", "comment": "เปลี่ยน PSU" }),
        )
        .await;
        assert_eq!(r["state"], "resolved");
        assert!(r["resolved_at"].is_string());
        let (_, a) = s.get(&d.ra, &format!("/api/v1/assets/{pc}")).await;
        assert_eq!(a["state"], "in_stock", "back to where it was: {a}");
        let history: Vec<&str> = a["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(history, ["register", "repair_start", "repair_done"]);
        assert_eq!(a["requests"][0]["request_id"], id);

        // Only the filer rates, 1 to 5, once.
        let (status, _) = act(&s, &d.tech, id, json!({ "action": "rate", "rating": 5 })).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, problem) = act(&s, &d.ra, id, json!({ "action": "close", "rating": 6 })).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("rating"))
        );
        let r = ok(
            &s,
            &d.ra,
            id,
            json!({ "action": "close", "rating": 4, "comment": "เร็วดี" }),
        )
        .await;
        assert_eq!(
            (r["state"].as_str(), r["rating"].as_i64()),
            (Some("closed"), Some(4))
        );
        assert_eq!(r["rating_comment"], "เร็วดี");
        let (status, _) = act(&s, &d.ra, id, json!({ "action": "rate", "rating": 5 })).await;
        assert_eq!(status, StatusCode::CONFLICT, "rated once only");

        // Reopen within the window goes back to the technician.
        let r = ok(
            &s,
            &d.ra,
            id,
            json!({ "action": "reopen", "comment": "เปิดไม่ติดอีก" }),
        )
        .await;
        assert_eq!(r["state"], "assigned");
        assert!(r["resolved_at"].is_null());
        let (status, full) = s.get(&d.ra, &format!("/api/v1/requests/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            actions(&full),
            [
                "submit", "assign", "start", "wait", "comment", "start", "resolve", "close",
                "reopen"
            ]
        );
        let wait = &full["history"][3];
        assert_eq!(
            (wait["actor"].as_str(), wait["comment"].as_str()),
            (Some("tech"), Some("ขอรหัสผ่านเครื่อง"))
        );
        assert_eq!(wait["detail"]["reason"], "requester");
        assert_eq!(full["history"][4]["actor"], "ra");

        // The audit trail has every step.
        let (_, audit) = s
            .get(
                &d.admin,
                &format!("/api/v1/audit?entity=request&entity_id={id}"),
            )
            .await;
        assert_eq!(audit.as_array().unwrap().len(), 9, "{audit}");
        s.stop().await;
    }
}

/// A valid form of each kind that needs approval.
fn approval_kinds() -> Vec<(&'static str, Value)> {
    vec![
        (
            "purchase",
            json!({ "category": "materials", "purpose": "ห้องคอมพิวเตอร์",
            "items": [{ "spec": "Notebook Core i5 RAM 16GB", "quantity": 2, "unit": "เครื่อง",
                        "estimated_price": 22000, "reference_price": 21000 }] }),
        ),
        (
            "use_of_materials",
            json!({ "purpose": "อบรมครู", "items": [{ "name": "กระดาษ A4", "quantity": 5, "unit": "รีม" }] }),
        ),
        (
            "account",
            json!({ "login": "somchai.k", "full_name": "นายสมชาย ขยัน", "position": "ครู" }),
        ),
        (
            "system_access",
            json!({ "system": "DMC", "access_level": "write", "reason": "งานทะเบียนนักเรียน" }),
        ),
        (
            "data_service",
            json!({ "data": "จำนวนนักเรียนรายโรงเรียน 2567", "purpose": "ทำแผน", "format": "xlsx" }),
        ),
    ]
}

#[tokio::test]
async fn every_kind_through_its_approvals_and_to_closed() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let mut kinds = approval_kinds();
        kinds.push(("general", json!({ "task": "ติดตั้งโปรเจคเตอร์ห้องประชุม" })));
        for (kind, fields) in kinds {
            let r = file(
                &s,
                &d.ra,
                json!({ "kind": kind, "title": format!("ขอ {kind}"), "fields": fields }),
            )
            .await;
            let id = r["id"].as_i64().unwrap();
            let steps = r["approvals"]["steps"].as_array().unwrap().len();
            if kind == "general" {
                assert_eq!((r["state"].as_str(), steps), (Some("submitted"), 0));
            } else {
                assert_eq!(r["state"], "pending_approval", "{kind}: {r}");
                assert_eq!(
                    r["sla"]["running"], false,
                    "{kind}: the clock waits for approval"
                );
                let (status, _) = act(&s, &d.tech, id, json!({ "action": "approve" })).await;
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{kind}: a technician does not approve"
                );
                let (status, _) = act(&s, &d.ra, id, json!({ "action": "approve" })).await;
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{kind}: nor does the requester"
                );
                let (status, _) = act(
                    &s,
                    &d.tech,
                    id,
                    json!({ "action": "assign", "assignee_id": d.tech_id }),
                )
                .await;
                assert_eq!(
                    status,
                    StatusCode::CONFLICT,
                    "{kind}: no work before approval"
                );
                let (_, inbox) = s
                    .get(&d.approver, "/api/v1/requests?state=pending_approval")
                    .await;
                assert!(
                    inbox.as_array().unwrap().iter().any(|x| x["id"] == id),
                    "{kind} in the approver's inbox"
                );
                let r = ok(
                    &s,
                    &d.approver,
                    id,
                    json!({ "action": "approve", "comment": "อนุมัติ" }),
                )
                .await;
                if steps == 2 {
                    assert_eq!(
                        r["state"], "pending_approval",
                        "{kind}: a second step waits"
                    );
                    assert_eq!(r["approvals"]["waiting_for"], "district_director");
                    let (status, problem) =
                        act(&s, &d.approver, id, json!({ "action": "approve" })).await;
                    assert_eq!(
                        status,
                        StatusCode::CONFLICT,
                        "{kind}: the same approver twice: {problem}"
                    );
                    let r = ok(&s, &d.approver2, id, json!({ "action": "approve" })).await;
                    assert_eq!(r["state"], "approved");
                } else {
                    assert_eq!(r["state"], "approved", "{kind}: {r}");
                }
            }
            ok(
                &s,
                &d.tech,
                id,
                json!({ "action": "assign", "assignee_id": d.tech_id }),
            )
            .await;
            ok(&s, &d.tech, id, json!({ "action": "start" })).await;
            ok(&s, &d.tech, id, json!({ "action": "resolve" })).await;
            let r = ok(&s, &d.ra, id, json!({ "action": "close", "rating": 5 })).await;
            assert_eq!(r["state"], "closed", "{kind}");
            assert_eq!(r["sla"]["resolution_breached"], false, "{kind}: {r}");
        }

        // Rejection needs a reason and ends the request; the requester may cancel before work.
        let (_, fields) = &approval_kinds()[4];
        let r = file(
            &s,
            &d.ra,
            json!({ "kind": "data_service", "title": "ข้อมูล", "fields": fields }),
        )
        .await;
        let id = r["id"].as_i64().unwrap();
        let (status, problem) = act(&s, &d.approver, id, json!({ "action": "reject" })).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("comment"))
        );
        let r = ok(
            &s,
            &d.approver,
            id,
            json!({ "action": "reject", "comment": "ข้อมูลส่วนบุคคล" }),
        )
        .await;
        assert_eq!(r["state"], "rejected");
        let (status, _) = act(&s, &d.approver, id, json!({ "action": "approve" })).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let r = file(
            &s,
            &d.ra,
            json!({ "kind": "general", "title": "x", "fields": { "task": "y" } }),
        )
        .await;
        let r = ok(
            &s,
            &d.ra,
            r["id"].as_i64().unwrap(),
            json!({ "action": "cancel" }),
        )
        .await;
        assert_eq!(r["state"], "cancelled");

        // The fiscal-year report counts them by school, kind and state.
        let director = {
            s.user(&d.admin, "director", "director", None).await;
            s.login("director", "password-of-director").await
        };
        let (status, report) = s.get(&director, "/api/v1/reports/requests").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        let year = report["fiscal_year"].as_i64().unwrap();
        assert!(year > 2500, "a Buddhist-era year: {year}");
        let line = |kind: &str, state: &str| -> Value {
            report["lines"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["kind"] == kind && l["state"] == state && l["school_id"] == d.school_a)
                .cloned()
                .unwrap_or_else(|| panic!("no {kind}/{state} line in {report}"))
        };
        let purchase = line("purchase", "closed");
        assert_eq!(
            (
                purchase["count"].as_i64(),
                purchase["resolved"].as_i64(),
                purchase["sla_met"].as_i64()
            ),
            (Some(1), Some(1), Some(1))
        );
        assert_eq!(purchase["mean_rating"], 5.0);
        assert_eq!(purchase["school_code"], "A1001");
        assert_eq!(line("data_service", "rejected")["count"], 1);
        assert_eq!(line("general", "cancelled")["count"], 1);
        let resp = s
            .client
            .get(format!(
                "{}/api/v1/reports/requests?fiscal_year={year}&format=csv",
                s.url
            ))
            .bearer_auth(&director)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
        let csv = resp.text().await.unwrap();
        assert!(csv.starts_with("\u{feff}รหัสโรงเรียน school_code,"), "{csv}");
        assert!(
            csv.contains("A1001,โรงเรียน A1001,purchase,closed,1,1,")
                && csv.contains(&format!(",5,{year}\r\n")),
            "{csv}"
        );
        let resp = s
            .client
            .get(format!(
                "{}/api/v1/reports/requests?fiscal_year={year}&format=xlsx",
                s.url
            ))
            .bearer_auth(&director)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["content-type"],
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        );
        let xlsx = resp.bytes().await.unwrap();
        let strings = xlsx_strings(&xlsx);
        assert!(
            strings.contains("A1001")
                && strings.contains("purchase")
                && strings.contains("ปีงบประมาณ"),
            "{strings}"
        );
        let (status, _) = s.get(&d.ra, "/api/v1/reports/requests").await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "requesters do not read reports"
        );
        let (status, problem) = s
            .get(&director, "/api/v1/reports/requests?fiscal_year=2026")
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("fiscal_year"))
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn filing_refusals_name_the_field() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let cases: &[(Value, StatusCode, &str)] = &[
            (
                json!({ "kind": "fax", "title": "x", "fields": {} }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "kind",
            ),
            (
                json!({ "kind": "repair", "title": " ", "fields": { "problem": "x" } }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "title",
            ),
            (
                json!({ "kind": "repair", "title": "x", "fields": {} }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "fields.problem",
            ),
            (
                json!({ "kind": "repair", "title": "x", "priority": "asap", "fields": { "problem": "x" } }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "priority",
            ),
            (
                json!({ "kind": "repair", "title": "x", "fields": { "problem": "x" }, "asset_ids": [999] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "asset_ids[0]",
            ),
            (
                json!({ "kind": "loan", "title": "x", "fields": { "from": "2026-12-01", "to": "2026-12-02", "purpose": "x" } }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "asset_ids",
            ),
            (
                json!({ "kind": "general", "title": "x", "fields": { "task": "y" }, "school_id": d.school_b }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "school_id",
            ),
            (
                json!({ "kind": "general", "title": "x", "fields": { "task": "y" }, "asset_ids": [1] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "asset_ids",
            ),
            (
                json!({ "kind": "purchase", "title": "x", "fields": { "category": "materials", "purpose": "p",
                "items": [{ "spec": "s", "quantity": 0, "unit": "u", "estimated_price": 1 }] } }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "fields.items[0].quantity",
            ),
            (
                json!({ "kind": "general", "title": "x", "fields": { "task": "y" }, "colour": "red" }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "colour",
            ),
        ];
        for (body, expected, field) in cases {
            let (status, problem) = s.post(&d.ra, "/api/v1/requests", body.clone()).await;
            assert_eq!(status, *expected, "{db:?} {body} -> {problem}");
            assert_eq!(
                problem["field"].as_str(),
                Some(*field),
                "{body} -> {problem}"
            );
        }
        let (status, _) = s
            .post(
                &d.compliance,
                "/api/v1/requests",
                json!({ "kind": "general", "title": "x", "fields": { "task": "y" } }),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, problem) = s.get(&d.tech, "/api/v1/requests?state=lost").await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("state"))
        );
        // A technician files for a school they name.
        let (status, problem) = s
            .post(
                &d.tech,
                "/api/v1/requests",
                json!({ "kind": "general", "title": "x", "fields": { "task": "y" } }),
            )
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("school_id"))
        );
        let r = file(&s, &d.tech, json!({ "kind": "general", "title": "x", "fields": { "task": "y" }, "school_id": d.school_b })).await;
        let (status, _) = s.get(&d.rb, &format!("/api/v1/requests/{}", r["id"])).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "school B sees the request filed for it"
        );
        let (status, _) = s.get(&d.ra, &format!("/api/v1/requests/{}", r["id"])).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        s.stop().await;
    }
}

#[tokio::test]
async fn account_approval_makes_a_network_identity() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let fields = json!({ "login": "somsri.j", "full_name": "นางสมศรี ใจดี" });
        let r = file(
            &s,
            &d.ra,
            json!({ "kind": "account", "title": "บัญชีเน็ตครูใหม่", "fields": fields }),
        )
        .await;
        let id = r["id"].as_i64().unwrap();
        let (status, none) = s
            .get(&d.tech, "/api/v1/network-identities?login=somsri.j")
            .await;
        assert_eq!(
            (status, none),
            (StatusCode::OK, json!([])),
            "not before approval"
        );
        // A second request for the same user ID may be filed while the first waits ...
        let r2 = file(
            &s,
            &d.ra,
            json!({ "kind": "account", "title": "ซ้ำ", "fields": fields }),
        )
        .await;
        ok(&s, &d.approver, id, json!({ "action": "approve" })).await;
        let (status, found) = s
            .get(&d.tech, "/api/v1/network-identities?login=somsri.j")
            .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        let identity = &found[0];
        assert_eq!(identity["full_name"], "นางสมศรี ใจดี");
        assert_eq!(
            (
                identity["school_id"].as_i64(),
                identity["request_id"].as_i64()
            ),
            (Some(d.school_a), Some(id))
        );
        // ... but not approved: the user ID is taken now, and nothing changed.
        let (status, problem) = act(
            &s,
            &d.approver,
            r2["id"].as_i64().unwrap(),
            json!({ "action": "approve" }),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            problem["detail"].as_str().unwrap().contains("somsri.j"),
            "{problem}"
        );
        let (_, r2) = s
            .get(&d.ra, &format!("/api/v1/requests/{}", r2["id"]))
            .await;
        assert_eq!(r2["state"], "pending_approval");
        let (status, problem) = s
            .post(
                &d.ra,
                "/api/v1/requests",
                json!({ "kind": "account", "title": "ซ้ำ", "fields": fields }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        let (status, _) = s
            .get(&d.ra, "/api/v1/network-identities?login=somsri.j")
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "requesters do not look up identities"
        );
        s.stop().await;
    }
}

fn loan(asset_ids: &[i64], from: &str, to: &str) -> Value {
    json!({ "kind": "loan", "title": format!("ยืม {from}"), "asset_ids": asset_ids,
            "fields": { "from": from, "to": to, "purpose": "อบรมครู", "place": "หอประชุม" } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loans_never_double_book_an_asset() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let office = s.school(&d.admin, "OFFICE").await;
        let projector = asset(&s, &d.admin, "PJ-0001", office).await;
        let notebook = asset(&s, &d.admin, "NB-0002", office).await;

        // Approved for 1-3 Dec; 3-5 Dec overlaps on the 3rd and is refused on filing.
        let first = file(
            &s,
            &d.ra,
            loan(&[projector, notebook], "2026-12-01", "2026-12-03"),
        )
        .await;
        let first_id = first["id"].as_i64().unwrap();
        ok(&s, &d.approver, first_id, json!({ "action": "approve" })).await;
        let (status, problem) = s
            .post(
                &d.rb,
                "/api/v1/requests",
                loan(&[notebook], "2026-12-03", "2026-12-05"),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{db:?} {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("NB-0002") && detail.contains(&format!("request {first_id}")),
            "{detail}"
        );
        file(&s, &d.rb, loan(&[notebook], "2026-12-04", "2026-12-05")).await;
        let (_, calendar) = s
            .get(&d.tech, &format!("/api/v1/assets/{notebook}/loans"))
            .await;
        let booked: Vec<(bool, &str)> = calendar
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["approved"].as_bool().unwrap(),
                    b["from"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            booked,
            [
                (true, "2026-12-01T00:00:00+07:00"),
                (false, "2026-12-04T00:00:00+07:00")
            ]
        );

        // Eight overlapping requests filed while none is approved, then approved all at once:
        // exactly one wins, on either engine.
        let mut ids = Vec::new();
        for day in 10..18 {
            let r = file(
                &s,
                if day % 2 == 0 { &d.ra } else { &d.rb },
                loan(&[projector], &format!("2026-12-{day}"), "2026-12-20"),
            )
            .await;
            ids.push(r["id"].as_i64().unwrap());
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(ids.len()));
        let mut tasks = Vec::new();
        for &id in &ids {
            let (client, barrier) = (s.client.clone(), barrier.clone());
            let url = format!("{}/api/v1/requests/{id}/actions", s.url);
            let token = d.approver.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let resp = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "action": "approve" }))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                (status, resp.json::<Value>().await.unwrap())
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        let winners: Vec<i64> = ids
            .iter()
            .zip(&results)
            .filter(|(_, (st, _))| *st == StatusCode::OK)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(winners.len(), 1, "{db:?}: {results:?}");
        for (id, (status, body)) in ids.iter().zip(&results) {
            if *id != winners[0] {
                assert_eq!(*status, StatusCode::CONFLICT, "{body}");
                let detail = body["detail"].as_str().unwrap();
                assert!(detail.contains("PJ-0001"), "{detail}");
            }
        }
        let (_, pending) = s
            .get(
                &d.approver,
                "/api/v1/requests?state=pending_approval&kind=loan",
            )
            .await;
        assert_eq!(
            pending.as_array().unwrap().len(),
            8,
            "the 7 losers still wait, plus the 4-5 Dec loan"
        );

        // Cancelling the winner frees the period for another.
        ok(
            &s,
            &d.tech,
            winners[0],
            json!({ "action": "cancel", "comment": "งานเลื่อน" }),
        )
        .await;
        let other = *ids.iter().find(|&&id| id != winners[0]).unwrap();
        ok(&s, &d.approver, other, json!({ "action": "approve" })).await;

        // Check-out and check-in with condition notes.
        ok(
            &s,
            &d.tech,
            first_id,
            json!({ "action": "assign", "assignee_id": d.tech_id }),
        )
        .await;
        ok(
            &s,
            &d.tech,
            first_id,
            json!({ "action": "start", "comment": "สภาพดี มีสาย HDMI" }),
        )
        .await;
        let (_, a) = s.get(&d.tech, &format!("/api/v1/assets/{projector}")).await;
        assert_eq!(a["state"], "on_loan");
        let r = ok(
            &s,
            &d.tech,
            first_id,
            json!({ "action": "resolve", "comment": "คืนครบ สภาพดี" }),
        )
        .await;
        assert_eq!(r["overdue"], false);
        let (_, a) = s.get(&d.tech, &format!("/api/v1/assets/{projector}")).await;
        assert_eq!(a["state"], "in_stock");
        let notes: Vec<&str> = a["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["detail"].as_str().unwrap())
            .collect();
        assert_eq!(notes, ["in_stock", "สภาพดี มีสาย HDMI", "คืนครบ สภาพดี"]);

        // A loan out past its period is overdue.
        let late = file(&s, &d.ra, loan(&[notebook], "2020-01-06", "2020-01-07")).await;
        let late_id = late["id"].as_i64().unwrap();
        ok(&s, &d.approver, late_id, json!({ "action": "approve" })).await;
        ok(
            &s,
            &d.tech,
            late_id,
            json!({ "action": "assign", "assignee_id": d.tech_id }),
        )
        .await;
        let r = ok(&s, &d.tech, late_id, json!({ "action": "start" })).await;
        assert_eq!(r["overdue"], true, "{r}");
        s.stop().await;
    }
}

#[tokio::test]
async fn asset_register_search_and_isolation() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        for i in 0..5 {
            asset(&s, &d.admin, &format!("7440-001-000{i}/67"), d.school_a).await;
        }
        let b = asset(&s, &d.admin, "7440-002-0001/66", d.school_b).await;
        let (status, problem) = s
            .post(
                &d.admin,
                "/api/v1/assets",
                json!({ "asset_number": "7440-002-0001/66",
            "category": "x", "school_id": d.school_b }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("7440-002-0001/66")
        );
        let cases: &[(Value, &str)] = &[
            (
                json!({ "asset_number": "n1", "category": "x", "school_id": d.school_a, "budget_year": 2024 }),
                "budget_year",
            ),
            (
                json!({ "asset_number": "n1", "category": "x", "school_id": d.school_a, "state": "broken" }),
                "state",
            ),
            (
                json!({ "asset_number": "n1", "category": "x", "school_id": d.school_a, "warranty_end": "soon" }),
                "warranty_end",
            ),
            (
                json!({ "asset_number": "n1", "category": "x", "school_id": 9999 }),
                "school_id",
            ),
            (
                json!({ "asset_number": "", "category": "x", "school_id": d.school_a }),
                "asset_number",
            ),
        ];
        for (body, field) in cases {
            let (status, problem) = s.post(&d.admin, "/api/v1/assets", body.clone()).await;
            assert_eq!(
                (status, problem["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(*field)),
                "{body}"
            );
        }
        let (status, _) = s
            .post(
                &d.ra,
                "/api/v1/assets",
                json!({ "asset_number": "n2", "category": "x", "school_id": d.school_a }),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let numbers = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|a| a["asset_number"].as_str().unwrap().to_owned())
                .collect()
        };
        let (_, found) = s.get(&d.tech, "/api/v1/assets?q=7440-001").await;
        assert_eq!(found.as_array().unwrap().len(), 5);
        let (_, found) = s.get(&d.tech, "/api/v1/assets?q=SN-7440-002").await;
        assert_eq!(numbers(&found), ["7440-002-0001/66"], "by serial");
        let (_, page1) = s.get(&d.tech, "/api/v1/assets?limit=4").await;
        assert_eq!(page1.as_array().unwrap().len(), 4);
        let last = page1[3]["id"].as_i64().unwrap();
        let (_, page2) = s
            .get(&d.tech, &format!("/api/v1/assets?limit=4&before_id={last}"))
            .await;
        assert_eq!(page2.as_array().unwrap().len(), 2, "6 assets in two pages");
        let (_, own) = s.get(&d.ra, "/api/v1/assets").await;
        assert_eq!(
            own.as_array().unwrap().len(),
            5,
            "a requester sees their school's"
        );
        let (status, _) = s.get(&d.ra, &format!("/api/v1/assets/{b}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, a) = s.get(&d.rb, &format!("/api/v1/assets/{b}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (a["price"].as_f64(), a["budget_year"].as_i64()),
            (Some(21500.5), Some(2567))
        );
        let (status, _) = s.get(&d.compliance, "/api/v1/assets").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        s.stop().await;
    }
}

async fn patch(s: &TestServer, token: &str, id: i64, body: Value) -> (StatusCode, Value) {
    s.call(
        Some(token),
        reqwest::Method::PATCH,
        &format!("/api/v1/assets/{id}"),
        Some(body),
    )
    .await
}

fn asset_numbers(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a["asset_number"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn asset_changes_are_kept_in_its_history_and_found_by_search() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let pc = asset(&s, &d.admin, "7440-001-0001/67", d.school_a).await;
        let other = asset(&s, &d.admin, "7440-001-0002/67", d.school_a).await;

        // Moved to another room with a new custodian, found by the new room's word at once and
        // no longer by the old one; the category is searchable too.
        let (status, a) = patch(
            &s,
            &d.tech,
            pc,
            json!({ "room": "ห้องสมุด ชั้น 2", "custodian": "ครูวิชัย", "state": "in_use",
                    "comment": "ย้ายตามคำสั่งที่ 12/2569" }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{db:?} {a}");
        assert_eq!(
            (
                a["room"].as_str(),
                a["custodian"].as_str(),
                a["state"].as_str()
            ),
            (Some("ห้องสมุด ชั้น 2"), Some("ครูวิชัย"), Some("in_use"))
        );
        let (_, found) = s.get(&d.tech, "/api/v1/assets?q=ห้องสมุด").await;
        assert_eq!(asset_numbers(&found), ["7440-001-0001/67"], "{db:?}");
        let (_, found) = s.get(&d.tech, "/api/v1/assets?q=ห้องคอม").await;
        assert_eq!(asset_numbers(&found), ["7440-001-0002/67"]);
        let (_, found) = s.get(&d.tech, "/api/v1/assets?q=Notebook%20ThinkPad").await;
        assert_eq!(found.as_array().unwrap().len(), 2, "by category and model");
        let (status, a) = patch(&s, &d.tech, other, json!({ "category": "tablet" })).await;
        assert_eq!(status, StatusCode::OK, "{a}");
        let (_, found) = s.get(&d.tech, "/api/v1/assets?q=notebook").await;
        assert_eq!(asset_numbers(&found), ["7440-001-0001/67"]);

        // The history says what changed from what to what, and why; the audit has it too.
        let (_, detail) = s.get(&d.tech, &format!("/api/v1/assets/{pc}")).await;
        let last = detail["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["action"], "in_use", "{last}");
        assert_eq!(last["actor"], "tech");
        let text = last["detail"].as_str().unwrap();
        for part in [
            "room: ห้องคอม 1 → ห้องสมุด ชั้น 2",
            "custodian: ครูสมศรี → ครูวิชัย",
            "state: in_stock → in_use",
            "(ย้ายตามคำสั่งที่ 12/2569)",
        ] {
            assert!(text.contains(part), "{part:?} in {text:?}");
        }
        let (_, audit) = s
            .get(
                &d.admin,
                &format!("/api/v1/audit?entity=asset&entity_id={pc}"),
            )
            .await;
        let actions: Vec<&str> = audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert!(actions.contains(&"asset.update"), "{audit}");

        // Nothing given changes nothing: no history entry.
        let before = detail["history"].as_array().unwrap().len();
        let (status, _) = patch(&s, &d.tech, pc, json!({ "room": "ห้องสมุด ชั้น 2" })).await;
        assert_eq!(status, StatusCode::OK);
        let (_, detail) = s.get(&d.tech, &format!("/api/v1/assets/{pc}")).await;
        assert_eq!(detail["history"].as_array().unwrap().len(), before);

        // Nullable fields are cleared by null; a transfer moves it out of a requester's sight.
        let (_, a) = patch(
            &s,
            &d.tech,
            pc,
            json!({ "warranty_end": null, "price": null }),
        )
        .await;
        assert_eq!(
            (a["warranty_end"].clone(), a["price"].clone()),
            (Value::Null, Value::Null)
        );
        let (status, a) = patch(&s, &d.tech, other, json!({ "school_id": d.school_b })).await;
        assert_eq!(
            (status, a["school_id"].as_i64()),
            (StatusCode::OK, Some(d.school_b))
        );
        let (status, _) = s.get(&d.ra, &format!("/api/v1/assets/{other}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "school A no longer sees it");
        let (status, _) = s.get(&d.rb, &format!("/api/v1/assets/{other}")).await;
        assert_eq!(status, StatusCode::OK, "school B does");

        // Refusals: who may, which fields, which states.
        let (status, _) = patch(&s, &d.ra, pc, json!({ "room": "x" })).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "a requester may not change the register"
        );
        let cases: &[(Value, &str)] = &[
            (json!({ "state": "on_loan" }), "state"),
            (json!({ "state": "broken" }), "state"),
            (json!({ "budget_year": 2024 }), "budget_year"),
            (json!({ "school_id": 9999 }), "school_id"),
            (json!({ "warranty_end": "soon" }), "warranty_end"),
            (json!({ "asset_number": " " }), "asset_number"),
        ];
        for (body, field) in cases {
            let (status, problem) = patch(&s, &d.tech, pc, body.clone()).await;
            assert_eq!(
                (status, problem["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(*field)),
                "{body} -> {problem}"
            );
        }
        let (status, _) = patch(&s, &d.tech, pc, json!({ "colour": "red" })).await;
        assert!(status.is_client_error(), "an unknown field is refused");
        let (status, problem) = patch(
            &s,
            &d.tech,
            pc,
            json!({ "asset_number": "7440-001-0002/67" }),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        let (status, _) = patch(&s, &d.tech, 999_999, json!({ "room": "x" })).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // In repair, its state follows the repair request, which the refusal names.
        let r = file(
            &s,
            &d.ra,
            json!({ "kind": "repair", "title": "จอไม่ติด", "priority": "normal",
                    "fields": { "problem": "จอดับ", "location": "ห้องสมุด" }, "asset_ids": [pc] }),
        )
        .await;
        let rid = r["id"].as_i64().unwrap();
        ok(
            &s,
            &d.tech,
            rid,
            json!({ "action": "assign", "assignee_id": d.tech_id }),
        )
        .await;
        ok(&s, &d.tech, rid, json!({ "action": "start" })).await;
        let (status, problem) = patch(&s, &d.tech, pc, json!({ "state": "lost" })).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("request #{rid}")), "{detail}");
        let (status, _) = patch(&s, &d.tech, pc, json!({ "custodian": "ครูมานี" })).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "other fields may change while in repair"
        );
        ok(
            &s,
            &d.tech,
            rid,
            json!({ "action": "resolve", "comment": "เปลี่ยนสายจอ" }),
        )
        .await;
        let (_, a) = s.get(&d.tech, &format!("/api/v1/assets/{pc}")).await;
        assert_eq!(a["state"], "in_use", "back to the state it had");

        // Disposed is final: only the notes may change.
        let (status, a) = patch(
            &s,
            &d.tech,
            pc,
            json!({ "state": "disposed", "comment": "จำหน่ายตามหนังสือ ศธ 0001/123" }),
        )
        .await;
        assert_eq!(
            (status, a["state"].as_str()),
            (StatusCode::OK, Some("disposed"))
        );
        let (status, problem) = patch(&s, &d.tech, pc, json!({ "state": "in_use" })).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        let (status, _) = patch(&s, &d.tech, pc, json!({ "room": "คลัง" })).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, a) = patch(&s, &d.tech, pc, json!({ "notes": "ขายทอดตลาดแล้ว" })).await;
        assert_eq!(
            (status, a["notes"].as_str()),
            (StatusCode::OK, Some("ขายทอดตลาดแล้ว"))
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn purchase_from_quotes_to_received_assets() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let fields = json!({ "category": "materials", "purpose": "ห้องคอมพิวเตอร์",
            "items": [{ "spec": "Notebook Core i5 RAM 16GB", "quantity": 2, "unit": "เครื่อง", "estimated_price": 22000, "reference_price": 21000 },
                      { "spec": "Laser printer A4", "quantity": 1, "unit": "เครื่อง", "estimated_price": 6000 }] });
        let r = file(
            &s,
            &d.ra,
            json!({ "kind": "purchase", "title": "จัดซื้อคอมพิวเตอร์", "fields": fields }),
        )
        .await;
        let id = r["id"].as_i64().unwrap();
        let quotes = format!("/api/v1/requests/{id}/quotes");
        let quote_a = json!({ "vendor": "ร้าน A", "items": [{ "item": 0, "unit_price": 20500, "meets_spec": true },
                                                          { "item": 1, "unit_price": 5500, "meets_spec": true }] });
        let (status, _) = s.post(&d.tech, &quotes, quote_a.clone()).await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "{db:?}: no quotes before approval"
        );
        ok(&s, &d.approver, id, json!({ "action": "approve" })).await;
        ok(&s, &d.approver2, id, json!({ "action": "approve" })).await;

        let (status, _) = s.post(&d.tech, &quotes, quote_a).await;
        assert_eq!(status, StatusCode::OK);
        s.post(&d.tech, &quotes, json!({ "vendor": "ร้าน B", "items": [{ "item": 0, "unit_price": 18000, "meets_spec": false, "note": "RAM 8GB" },
                                                                    { "item": 1, "unit_price": 5000, "meets_spec": true }] })).await;
        let (_, cmp) = s.post(&d.tech, &quotes, json!({ "vendor": "ร้าน C", "items": [{ "item": 0, "unit_price": 21500, "meets_spec": true },
                                                                    { "item": 1, "unit_price": 4800, "meets_spec": true }] })).await;
        assert_eq!(
            cmp["items"][0]["best_vendor"], "ร้าน A",
            "B misses the spec, C is over ราคากลาง: {cmp}"
        );
        assert_eq!(cmp["items"][1]["best_vendor"], "ร้าน C");
        assert_eq!(cmp["recommended_vendor"], "ร้าน A");
        let (status, seen) = s.get(&d.ra, &quotes).await;
        assert_eq!(
            (status, &seen["recommended_vendor"]),
            (StatusCode::OK, &json!("ร้าน A")),
            "the requester follows it"
        );
        let (status, _) = s.post(&d.ra, &quotes, json!({ "vendor": "x", "items": [{ "item": 0, "unit_price": 1, "meets_spec": true }] })).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, problem) = s.post(&d.tech, &quotes, json!({ "vendor": "x", "items": [{ "item": 5, "unit_price": 1, "meets_spec": true }] })).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("items[0].item"))
        );

        ok(
            &s,
            &d.tech,
            id,
            json!({ "action": "assign", "assignee_id": d.tech_id }),
        )
        .await;
        ok(&s, &d.tech, id, json!({ "action": "start" })).await;
        let receipt = format!("/api/v1/requests/{id}/receipt");
        let existing = asset(&s, &d.admin, "7440-001-0099/68", d.school_a).await;
        let nb = |n: &str| json!({ "item": 0, "asset_number": n, "brand": "Acer", "serial": format!("S{n}") });
        // Nothing is half-registered: a taken number fails the whole receipt ...
        let (status, problem) = s
            .post(
                &d.tech,
                &receipt,
                json!({ "vendor": "ร้าน A",
            "assets": [nb("7440-001-0101/69"), nb("7440-001-0099/68")] }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("7440-001-0099/68")
        );
        // ... and so does receiving more than was ordered.
        let (status, problem) = s
            .post(
                &d.tech,
                &receipt,
                json!({ "vendor": "ร้าน A",
            "assets": [nb("N1"), nb("N2"), nb("N3")] }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            problem["detail"].as_str().unwrap().contains("ordered 2"),
            "{problem}"
        );
        let (_, none) = s.get(&d.tech, "/api/v1/assets?q=7440-001-0101").await;
        assert_eq!(none, json!([]), "nothing from the failed receipts");
        let (_, none) = s.get(&d.tech, "/api/v1/assets?q=N1").await;
        assert_eq!(none, json!([]));

        let (status, created) = s.post(&d.tech, &receipt, json!({ "vendor": "ร้าน A", "funding_source": "เงินอุดหนุน",
            "assets": [nb("7440-001-0101/69"), nb("7440-001-0102/69"),
                       { "item": 1, "asset_number": "7430-002-0001/69", "category": "printer", "room": "ธุรการ" }] })).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let created = created.as_array().unwrap();
        assert_eq!(created.len(), 3);
        assert_eq!(
            (created[0]["price"].as_f64(), created[2]["price"].as_f64()),
            (Some(20500.0), Some(5500.0)),
            "prices of the vendor's quote"
        );
        assert!(
            created
                .iter()
                .all(|a| a["school_id"] == d.school_a && a["state"] == "in_stock")
        );
        assert_eq!(created[0]["category"], "materials");
        assert_eq!(created[2]["category"], "printer");
        assert!(
            created[0]["budget_year"].as_i64().unwrap() > 2560,
            "Buddhist-era budget year"
        );
        let first = created[0]["id"].as_i64().unwrap();
        let (_, a) = s.get(&d.ra, &format!("/api/v1/assets/{first}")).await;
        assert_eq!(a["history"][0]["request_id"], id);
        assert_eq!(a["requests"][0]["request_id"], id);
        let (_, r) = s.get(&d.ra, &format!("/api/v1/requests/{id}")).await;
        let mut linked: Vec<i64> = r["asset_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        linked.sort();
        let mut expected: Vec<i64> = created.iter().map(|a| a["id"].as_i64().unwrap()).collect();
        expected.sort();
        assert_eq!(linked, expected);
        assert!(!linked.contains(&existing));
        assert!(
            actions(&r).ends_with(&[
                "quote".into(),
                "quote".into(),
                "quote".into(),
                "assign".into(),
                "start".into(),
                "receive".into()
            ]),
            "{r}"
        );
        // The one remaining notebook cannot be received twice over.
        let (status, _) = s
            .post(&d.tech, &receipt, json!({ "assets": [nb("N9")] }))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        ok(&s, &d.tech, id, json!({ "action": "resolve" })).await;
        s.stop().await;
    }
}

#[tokio::test]
async fn the_database_itself_refuses_overlapping_approved_loans() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let projector = asset(&s, &d.admin, "PJ-0009", d.school_a).await;
        let a = file(&s, &d.ra, loan(&[projector], "2026-12-01", "2026-12-03")).await;
        let b = file(&s, &d.ra, loan(&[projector], "2026-12-03", "2026-12-04")).await;
        let c = file(&s, &d.ra, loan(&[projector], "2026-12-04", "2026-12-05")).await;
        ok(
            &s,
            &d.approver,
            a["id"].as_i64().unwrap(),
            json!({ "action": "approve" }),
        )
        .await;
        // Bypassing the application: the trigger (SQLite) or the exclusion constraint
        // (PostgreSQL) refuses the overlapping one, and lets the adjacent one through.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&s.database_url).await.unwrap();
        let approve = |id: i64| {
            let pool = pool.clone();
            async move {
                sqlx::query("UPDATE desk_request_assets SET approved = 1 WHERE request_id = $1")
                    .bind(id)
                    .execute(&pool)
                    .await
            }
        };
        let err = approve(b["id"].as_i64().unwrap())
            .await
            .expect_err("overlap refused");
        assert!(
            err.to_string().contains("desk_loan_overlap")
                || err.to_string().contains("desk_loan_no_overlap"),
            "{db:?}: {err}"
        );
        approve(c["id"].as_i64().unwrap())
            .await
            .expect("4-5 Dec touches but does not overlap 1-3 Dec");
        pool.close().await;
        s.stop().await;
    }
}

#[tokio::test]
async fn configured_approval_steps_and_reopen_window() {
    for db in databases() {
        let s = TestServer::start_with(&db, |c| {
            c.desk.approval_steps.insert("loan".into(), vec![]);
            c.desk.approval_steps.insert(
                "general".into(),
                vec!["head_of_school".into(), "group_director".into()],
            );
            c.desk.reopen_window_days = 0;
        })
        .await;
        let d = desk(&s).await;
        let projector = asset(&s, &d.admin, "PJ-0100", d.school_a).await;
        let r = file(&s, &d.ra, loan(&[projector], "2026-12-01", "2026-12-02")).await;
        assert_eq!(
            r["state"], "submitted",
            "{db:?}: loans need no approval here: {r}"
        );
        let r = file(
            &s,
            &d.ra,
            json!({ "kind": "general", "title": "x", "fields": { "task": "y" } }),
        )
        .await;
        assert_eq!(r["state"], "pending_approval");
        assert_eq!(r["approvals"]["waiting_for"], "head_of_school");
        let id = r["id"].as_i64().unwrap();
        let r = ok(&s, &d.approver, id, json!({ "action": "approve" })).await;
        assert_eq!(r["approvals"]["waiting_for"], "group_director");
        ok(&s, &d.approver2, id, json!({ "action": "approve" })).await;
        ok(
            &s,
            &d.tech,
            id,
            json!({ "action": "assign", "assignee_id": d.tech_id }),
        )
        .await;
        ok(&s, &d.tech, id, json!({ "action": "start" })).await;
        ok(&s, &d.tech, id, json!({ "action": "resolve" })).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let (status, problem) = act(&s, &d.ra, id, json!({ "action": "reopen" })).await;
        assert_eq!(status, StatusCode::CONFLICT, "the window is 0 days");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("file a new one"),
            "{problem}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn configured_service_level_targets_change_the_due_time() {
    for db in databases() {
        let s = TestServer::start_with(&db, |c| {
            c.desk
                .sla_targets
                .entry("repair".into())
                .or_default()
                .insert(
                    "urgent".into(),
                    khetnet_config::SlaTarget {
                        response_minutes: Some(15),
                        resolution_minutes: Some(60),
                    },
                );
        })
        .await;
        let d = desk(&s).await;
        let urgent = |kind: &str, fields: Value| json!({ "kind": kind, "title": "เครือข่ายล่มทั้งโรงเรียน", "priority": "urgent", "fields": fields });
        let repair = file(
            &s,
            &d.ra,
            urgent("repair", json!({ "problem": "ไม่มีอินเทอร์เน็ต" })),
        )
        .await;
        let general = file(
            &s,
            &d.ra,
            urgent("general", json!({ "task": "ตรวจสอบเครือข่าย" })),
        )
        .await;
        // The configured repair targets; the general request keeps the defaults.
        assert_eq!(
            (
                repair["sla"]["response_target_minutes"].as_i64(),
                repair["sla"]["resolution_target_minutes"].as_i64()
            ),
            (Some(15), Some(60)),
            "{db:?} {repair}"
        );
        assert_eq!(general["sla"]["resolution_target_minutes"], 240);
        let due = |r: &Value, key: &str| {
            jiff::Timestamp::from_str(r["sla"][key].as_str().unwrap()).unwrap()
        };
        let filed = jiff::Timestamp::from_str(repair["created_at"].as_str().unwrap()).unwrap();
        assert!(filed < due(&repair, "response_due_at"));
        assert!(due(&repair, "response_due_at") < due(&repair, "resolution_due_at"));
        assert!(
            due(&repair, "resolution_due_at") < due(&general, "resolution_due_at"),
            "a 60-minute target is due before a 240-minute one: {repair} {general}"
        );
        // Once resolved, nothing is due any more.
        let id = repair["id"].as_i64().unwrap();
        ok(
            &s,
            &d.tech,
            id,
            json!({ "action": "assign", "assignee_id": d.tech_id }),
        )
        .await;
        ok(&s, &d.tech, id, json!({ "action": "start" })).await;
        let done = ok(&s, &d.tech, id, json!({ "action": "resolve" })).await;
        assert_eq!(done["sla"]["response_due_at"], Value::Null);
        assert_eq!(done["sla"]["resolution_due_at"], Value::Null);
        s.stop().await;
    }
}

#[tokio::test]
async fn an_approval_step_can_name_the_one_user_who_takes_it() {
    for db in databases() {
        let s = TestServer::start_with(&db, |c| {
            c.desk.approval_steps.insert(
                "data_service".into(),
                vec!["@planning_director".into(), "group_director".into()],
            );
        })
        .await;
        let d = desk(&s).await;
        s.user(&d.admin, "planning_director", "approver", None)
            .await;
        let director = s
            .login("planning_director", "password-of-planning_director")
            .await;
        let r = file(
            &s,
            &d.ra,
            json!({ "kind": "data_service", "title": "ข้อมูลนักเรียนรายโรงเรียน",
                    "fields": { "data": "จำนวนนักเรียน ปีการศึกษา 2569", "purpose": "วางแผน" } }),
        )
        .await;
        assert_eq!(
            r["approvals"]["waiting_for"], "@planning_director",
            "{db:?} {r}"
        );
        let id = r["id"].as_i64().unwrap();
        // Any other approver may neither approve nor reject this step.
        for action in [
            json!({ "action": "approve" }),
            json!({ "action": "reject", "comment": "ไม่" }),
        ] {
            let (status, problem) = act(&s, &d.approver, id, action).await;
            assert_eq!(status, StatusCode::CONFLICT, "{problem}");
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("planning_director"),
                "{problem}"
            );
        }
        let r = ok(&s, &director, id, json!({ "action": "approve" })).await;
        assert_eq!(r["approvals"]["waiting_for"], "group_director");
        let r = ok(&s, &d.approver, id, json!({ "action": "approve" })).await;
        assert_eq!(r["state"], "approved");
        s.stop().await;
    }
}

#[tokio::test]
async fn asset_register_import_is_all_or_nothing_and_exports_back() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        let import = |token: String, csv: String| {
            let (client, url) = (s.client.clone(), format!("{}/api/v1/assets/import", s.url));
            async move {
                let resp = client
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "text/csv")
                    .body(csv)
                    .send()
                    .await
                    .unwrap();
                (resp.status(), resp.json::<Value>().await.unwrap())
            }
        };
        let heading = "asset_number,category,brand,model,serial,budget_year,price,school_code,room,state,warranty_end\r\n";
        let good = "7440-001-0001/60,คอมพิวเตอร์,Dell,Optiplex,SN1,2560,\"18,500.00\",A1001,ห้องคอม,in_use,2023-09-30\r\n\
                    7440-001-0002/60,คอมพิวเตอร์,Dell,Optiplex,SN2,2560,18500,A1001,ห้องคอม,,\r\n";
        // Row 4 names an unknown school: nothing of rows 2-3 is imported either.
        let (status, problem) = import(
            d.admin.clone(),
            format!("{heading}{good}7440-001-0003/60,x,,,,,,ZZZ,,,\r\n"),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{db:?} {problem}");
        assert_eq!(problem["field"], "row 4: school_code");
        let (_, none) = s.get(&d.tech, "/api/v1/assets?q=7440-001-000").await;
        assert_eq!(none, json!([]), "nothing half-imported");
        let cases: &[(&str, &str)] = &[
            (
                "7440-001-0009/60,x,,,,1999,,A1001,,,\r\n",
                "row 2: budget_year",
            ),
            ("7440-001-0009/60,x,,,,,cheap,A1001,,,\r\n", "row 2: price"),
            ("7440-001-0009/60,x,,,,,,A1001,,broken,\r\n", "row 2: state"),
            (
                "7440-001-0009/60,x,,,,,,A1001,,,31/12/2570\r\n",
                "row 2: warranty_end",
            ),
        ];
        for (row, field) in cases {
            let (status, problem) = import(d.admin.clone(), format!("{heading}{row}")).await;
            assert_eq!(
                (status, problem["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(*field)),
                "{row}"
            );
        }
        let (status, problem) = import(d.admin.clone(), "number,category\r\n".into()).await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("row 1"))
        );
        let (status, _) = import(d.ra.clone(), format!("{heading}{good}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (status, body) = import(d.admin.clone(), format!("{heading}{good}")).await;
        assert_eq!(
            (status, body["imported"].as_i64()),
            (StatusCode::CREATED, Some(2)),
            "{body}"
        );
        // The same numbers again: row 2 is named, and nothing more is added.
        let (status, problem) = import(
            d.admin.clone(),
            format!("{heading}7440-001-0005/60,x,,,,,,A1001,,,\r\n{good}"),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            problem["detail"].as_str().unwrap().starts_with("row 3:"),
            "{problem}"
        );
        let (_, found) = s.get(&d.tech, "/api/v1/assets?q=7440-001-000").await;
        assert_eq!(found.as_array().unwrap().len(), 2);
        assert_eq!(found[1]["price"], 18500.0);
        assert_eq!(found[1]["warranty_end"], "2023-09-30");
        assert_eq!(found[0]["state"], "in_use", "a blank state is in use");

        let resp = s
            .client
            .get(format!("{}/api/v1/assets/export", s.url))
            .bearer_auth(&d.ra)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
        let csv = resp.text().await.unwrap();
        let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
        assert_eq!(lines.len(), 3, "{csv}");
        assert!(lines[0].starts_with("\u{feff}asset_number,category,"));
        assert!(lines.iter().any(|l| l.starts_with("7440-001-0001/60,คอมพิวเตอร์,Dell,Optiplex,SN1,2560,18500,,A1001,ห้องคอม,,in_use,2023-09-30,")), "{csv}");
        // What was exported imports again elsewhere (after a number change), unchanged.
        let again = csv.replace("/60,", "/61,");
        let (status, body) = import(d.admin.clone(), again).await;
        assert_eq!(
            (status, body["imported"].as_i64()),
            (StatusCode::CREATED, Some(2)),
            "{body}"
        );
        let xlsx = s
            .client
            .get(format!("{}/api/v1/assets/export?format=xlsx", s.url))
            .bearer_auth(&d.tech)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let strings = xlsx_strings(&xlsx);
        assert!(
            strings.contains("7440-001-0001/61") && strings.contains("คอมพิวเตอร์"),
            "{strings}"
        );
        let (_, rb) = s.get(&d.rb, "/api/v1/assets/export").await;
        assert_eq!(
            rb.as_str().unwrap().trim_end().split("\r\n").count(),
            1,
            "school B exports only its own (none)"
        );
        s.stop().await;
    }
}

/// The text of an XLSX workbook (its shared strings and sheet names), read with Python's
/// zipfile, which the CI machine has.
fn xlsx_strings(bytes: &[u8]) -> String {
    assert_eq!(&bytes[..4], b"PK\x03\x04", "an XLSX is a zip");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("book.xlsx");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(z.read('xl/sharedStrings.xml').decode() + z.read('xl/workbook.xml').decode())",
        ])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Ids of every page of `path` (which has `limit=`), following `before_id` to the end; checks
/// each page is newest first and that a full page says where the next one is (`Link`).
async fn every_page(s: &TestServer, token: &str, path: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = Vec::new();
    let mut next = path.to_owned();
    loop {
        let response = s
            .client
            .get(format!("{}{next}", s.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{next}");
        let link = response
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Value = response.json().await.unwrap();
        let page: Vec<i64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        assert!(
            page.windows(2).all(|w| w[0] > w[1]),
            "newest first: {page:?}"
        );
        ids.extend(&page);
        match link {
            Some(link) => {
                let last = page.last().unwrap();
                assert!(
                    link.ends_with(&format!("before_id={last}>; rel=\"next\"")),
                    "{link}"
                );
                next = link[1..link.find('>').unwrap()].to_owned();
            }
            None => return ids,
        }
    }
}

/// Ids the database holds for `sql`, newest first.
async fn ids_of(s: &TestServer, sql: &str) -> Vec<i64> {
    let db = khetnet_server::db::Db::connect(&s.database_url, 1)
        .await
        .unwrap();
    let ids = sqlx::query_scalar::<sqlx::Any, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&db.pool)
        .await
        .unwrap();
    db.pool.close().await;
    ids
}

#[tokio::test]
async fn asset_search_by_word_and_paging_through_a_large_register() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        // A register larger than the newest assets a search reads first, so that searches
        // also go through the word index below them.
        let pool = khetnet_server::db::Db::connect(&s.database_url, 2)
            .await
            .unwrap();
        khetnet_server::desk::sample::seed(
            &pool,
            "sample-password",
            5000,
            300,
            khetnet_server::db::now_ms(),
        )
        .await
        .unwrap();
        let tech = s.login("tech", "sample-password").await;
        let teacher = s.login("teacher", "sample-password").await;

        // A word of the model, in any case, found wherever it is in the register.
        let cisco = every_page(&s, &tech, "/api/v1/assets?q=CBS350&limit=7").await;
        let expected = ids_of(
            &s,
            "SELECT id FROM assets WHERE model LIKE 'CBS350%' ORDER BY id DESC",
        )
        .await;
        assert!(expected.len() > 50, "the sample has Cisco switches");
        assert_eq!(cisco, expected, "each matching asset once, newest first");
        // A part of a model word ("E14-G2"), two words that must both match, a Thai room.
        let both = every_page(&s, &tech, "/api/v1/assets?q=lenovo%20e14&limit=50").await;
        assert_eq!(
            both,
            ids_of(
                &s,
                "SELECT id FROM assets WHERE brand = 'Lenovo' AND model = 'ThinkPad E14-G2' ORDER BY id DESC"
            )
            .await
        );
        let library = every_page(
            &s,
            &tech,
            "/api/v1/assets?q=%E0%B8%AB%E0%B9%89%E0%B8%AD%E0%B8%87%E0%B8%AA%E0%B8%A1%E0%B8%B8%E0%B8%94&limit=100",
        )
        .await;
        assert_eq!(
            library,
            ids_of(
                &s,
                "SELECT id FROM assets WHERE room LIKE 'ห้องสมุด%' ORDER BY id DESC"
            )
            .await
        );
        // The oldest asset, far below the newest, by its serial and by its asset number.
        let oldest = ids_of(&s, "SELECT MIN(id) FROM assets").await[0];
        let (_, a) = s.get(&tech, &format!("/api/v1/assets/{oldest}")).await;
        for q in [
            a["serial"].as_str().unwrap().to_lowercase(),
            a["asset_number"].as_str().unwrap()[..14].to_owned(),
        ] {
            let (_, found) = s.get(&tech, &format!("/api/v1/assets?q={q}")).await;
            assert!(
                found.as_array().unwrap().iter().any(|f| f["id"] == oldest),
                "{q} finds asset {oldest}"
            );
        }
        // A new asset is found by a word of its model at once.
        let (status, new) = s
            .post(
                &tech,
                "/api/v1/assets",
                json!({ "asset_number": "7440-002-9999999/2569", "category": "notebook", "brand": "Acer",
                        "model": "Chromebook Spin 511", "serial": "NXA-123", "school_id": 1, "room": "ห้องสมุด ชั้น 2" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{new}");
        let (_, found) = s.get(&tech, "/api/v1/assets?q=chromebook").await;
        assert_eq!(found.as_array().unwrap().len(), 1);
        assert_eq!(found[0]["id"], new["id"]);

        // Every asset exactly once when paging through the register, and through a filter.
        let all = every_page(&s, &tech, "/api/v1/assets?limit=500").await;
        assert_eq!(
            all,
            ids_of(&s, "SELECT id FROM assets ORDER BY id DESC").await
        );
        assert_eq!(all.len(), 5001);
        let school = every_page(&s, &tech, "/api/v1/assets?school_id=2&state=in_use&limit=9").await;
        assert_eq!(
            school,
            ids_of(
                &s,
                "SELECT id FROM assets WHERE school_id = 2 AND state = 'in_use' ORDER BY id DESC"
            )
            .await
        );
        // A requester's search stays in their school.
        let own = every_page(&s, &teacher, "/api/v1/assets?q=dell&limit=20").await;
        assert_eq!(
            own,
            ids_of(
                &s,
                "SELECT id FROM assets WHERE school_id = 1 AND brand = 'Dell' ORDER BY id DESC"
            )
            .await
        );

        // The queue pages the same way under its filters.
        let queue = every_page(
            &s,
            &tech,
            "/api/v1/requests?state=closed&kind=repair&limit=13",
        )
        .await;
        assert_eq!(
            queue,
            ids_of(
                &s,
                "SELECT id FROM desk_requests WHERE state = 'closed' AND kind = 'repair' ORDER BY id DESC"
            )
            .await
        );
        let mine = every_page(&s, &teacher, "/api/v1/requests?limit=10").await;
        assert_eq!(
            mine,
            ids_of(
                &s,
                "SELECT id FROM desk_requests WHERE school_id = 1 ORDER BY id DESC"
            )
            .await
        );

        // Assets registered before search by word existed are indexed when the server starts.
        sqlx::query("DELETE FROM asset_words WHERE asset_id = $1")
            .bind(oldest)
            .execute(&pool.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE assets SET words = NULL WHERE id = $1")
            .bind(oldest)
            .execute(&pool.pool)
            .await
            .unwrap();
        let serial = a["serial"].as_str().unwrap();
        let (_, found) = s.get(&tech, &format!("/api/v1/assets?q={serial}")).await;
        assert_eq!(found, json!([]), "not indexed");
        assert_eq!(
            khetnet_server::desk::assets::index_pending_words(&pool)
                .await
                .unwrap(),
            1
        );
        let (_, found) = s.get(&tech, &format!("/api/v1/assets?q={serial}")).await;
        assert_eq!(found[0]["id"], oldest);

        // A search too long to be one is refused with what to do.
        let (status, problem) = s
            .get(&tech, &format!("/api/v1/assets?q={}", "a".repeat(101)))
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("q"))
        );
        pool.pool.close().await;
        s.stop().await;
    }
}

#[tokio::test]
async fn a_common_word_only_in_older_assets_is_found_page_by_page() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let d = desk(&s).await;
        // 2,100 old notebooks of one model, then 2,000 newer assets without it: the newest
        // assets a search reads first hold none, and the word starts too many words for the
        // word index to be the quick way.
        let mut csv = String::from("asset_number,category,brand,model,school_code,room\r\n");
        for i in 0..2100 {
            csv.push_str(&format!(
                "OLD-{i:05},notebook,Acer,Legacy {i},A1001,ห้องเรียน {}\r\n",
                i % 7
            ));
        }
        for i in 0..2000 {
            csv.push_str(&format!(
                "NEW-{i:05},desktop,Dell,OptiPlex 7090,A1001,ห้องคอม\r\n"
            ));
        }
        let resp = s
            .client
            .post(format!("{}/api/v1/assets/import", s.url))
            .bearer_auth(&d.admin)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{db:?}");

        let legacy = every_page(&s, &d.tech, "/api/v1/assets?q=legacy&limit=50").await;
        let expected = ids_of(
            &s,
            "SELECT id FROM assets WHERE model LIKE 'Legacy %' ORDER BY id DESC",
        )
        .await;
        assert_eq!(expected.len(), 2100);
        assert_eq!(
            legacy, expected,
            "{db:?}: each old notebook once, newest first"
        );
        // Two common words whose pairing is rarer, and one of them with a filter.
        let pair = every_page(&s, &d.tech, "/api/v1/assets?q=legacy%20acer&limit=500").await;
        assert_eq!(pair, expected);
        let room = every_page(
            &s,
            &d.tech,
            &format!("/api/v1/assets?q=legacy%20%E0%B8%AB%E0%B9%89%E0%B8%AD%E0%B8%87&school_id={}&limit=100", d.school_a),
        )
        .await;
        assert_eq!(room, expected);
        s.stop().await;
    }
}
