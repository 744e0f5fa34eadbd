//! The desk's web pages over real HTTP with session cookies, as a phone browser would use them:
//! a requester files a repair in Thai, a technician works it from the queue, the requester
//! rates it; a loan form that overlaps an approved loan shows why; assets and their calendar; a
//! technician changes an asset and imports a register from its pages.

mod common;

use common::{Database, TestServer, databases, multipart};
use reqwest::StatusCode;
use serde_json::json;

/// Signs in through the login form and returns the session cookie (`name=value`).
async fn web_login(s: &TestServer, username: &str) -> String {
    let resp = s
        .client
        .post(format!("{}/login", s.url))
        .form(&[
            ("username", username.to_owned()),
            ("password", format!("password-of-{username}")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{username} signs in");
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("khetnet_session="))
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .unwrap()
}

async fn page(s: &TestServer, cookie: &str, path: &str) -> (StatusCode, String) {
    let resp = s
        .client
        .get(format!("{}{path}", s.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Posts a form; returns the status, the redirect target and the body.
async fn submit(
    s: &TestServer,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let resp = s
        .client
        .post(format!("{}{path}", s.url))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, resp.text().await.unwrap())
}

#[tokio::test]
async fn a_repair_filed_worked_and_rated_through_the_pages() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        s.user(&admin, "kru", "requester", Some(school)).await;
        let tech_id = s.user(&admin, "tech", "technician", None).await;
        let kru = web_login(&s, "kru").await;
        let tech = web_login(&s, "tech").await;

        let (status, home) = page(&s, &kru, "/desk").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            home.contains("งานบริการ") && home.contains("ยื่นคำขอ"),
            "Thai by default"
        );
        let (_, form) = page(&s, &kru, "/desk/new?kind=repair").await;
        assert!(
            form.contains("name=\"problem\"") && form.contains("แจ้งซ่อม"),
            "{form}"
        );
        // Every kind has its form.
        for kind in [
            "loan",
            "purchase",
            "use_of_materials",
            "account",
            "system_access",
            "data_service",
            "general",
        ] {
            let (status, form) = page(&s, &kru, &format!("/desk/new?kind={kind}")).await;
            assert_eq!(status, StatusCode::OK);
            assert!(form.contains(&format!("value=\"{kind}\"")), "{kind}");
        }

        // A missing field is shown on the form, with what was typed kept.
        let (status, _, body) = submit(
            &s,
            &kru,
            "/desk/new",
            &[
                ("kind", "repair"),
                ("title", "ปริ้นเตอร์เสีย"),
                ("problem", " "),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body.contains("fields.problem") && body.contains("ปริ้นเตอร์เสีย"),
            "{body}"
        );

        let (status, location, _) = submit(
            &s,
            &kru,
            "/desk/new",
            &[
                ("kind", "repair"),
                ("title", "ปริ้นเตอร์เสีย"),
                ("problem", "กระดาษติด"),
                ("location", "ห้องธุรการ"),
                ("priority", "high"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let id: i64 = location.rsplit('/').next().unwrap().parse().unwrap();
        let (_, mine) = page(&s, &kru, &location).await;
        assert!(
            mine.contains("กระดาษติด") && mine.contains("ยื่นแล้ว"),
            "{mine}"
        );

        // The technician's queue shows it; they assign it to themselves and resolve it.
        let (_, queue) = page(&s, &tech, "/desk?state=submitted").await;
        assert!(queue.contains(&format!("/desk/requests/{id}")), "{queue}");
        let tech_str = tech_id.to_string();
        for form in [
            vec![("action", "assign"), ("assignee_id", tech_str.as_str())],
            vec![("action", "start")],
            vec![("action", "resolve"), ("comment", "เอากระดาษออกแล้ว")],
        ] {
            let (status, _, body) = submit(&s, &tech, &location, &form).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{form:?}: {body}");
        }
        // Not allowed now: the page says why.
        let (status, _, body) = submit(&s, &tech, &location, &[("action", "start")]).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            body.contains("cannot start a request that is resolved"),
            "{body}"
        );

        let (_, done) = page(&s, &kru, &location).await;
        assert!(
            done.contains("ดำเนินการเสร็จ") && done.contains("ประเมินความพึงพอใจ"),
            "{done}"
        );
        let (status, _, _) = submit(
            &s,
            &kru,
            &location,
            &[("action", "close"), ("rating", "5"), ("comment", "ขอบคุณค่ะ")],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (_, closed) = page(&s, &kru, &location).await;
        assert!(
            closed.contains("ปิดงาน") && closed.contains("<strong id=\"rating\">5</strong>"),
            "{closed}"
        );
        let (_, r) = s.get(&admin, &format!("/api/v1/requests/{id}")).await;
        assert_eq!(
            (r["state"].as_str(), r["rating"].as_i64()),
            (Some("closed"), Some(5))
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn english_pages_assets_and_the_loan_calendar() {
    let s = TestServer::start(&Database::Sqlite).await;
    let admin = s.admin().await;
    let office = s.school(&admin, "OFFICE").await;
    s.user(&admin, "tech", "technician", None).await;
    s.user(&admin, "appr", "approver", None).await;
    let (_, asset) = s
        .post(
            &admin,
            "/api/v1/assets",
            json!({ "asset_number": "PJ-0001", "category": "projector",
            "brand": "Epson", "school_id": office }),
        )
        .await;
    let asset_id = asset["id"].as_i64().unwrap();
    let tech = web_login(&s, "tech").await;
    let approver = web_login(&s, "appr").await;
    // English, remembered on the account.
    let (status, _, _) = submit(&s, &tech, "/lang", &[("lang", "en")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, list) = page(&s, &tech, "/assets?q=PJ").await;
    assert!(
        list.contains("PJ-0001") && list.contains("Asset number"),
        "{list}"
    );
    let ids = asset_id.to_string();
    let (status, location, body) = submit(
        &s,
        &tech,
        "/desk/new",
        &[
            ("kind", "loan"),
            ("title", "Training"),
            ("from", "2026-12-01"),
            ("to", "2026-12-02"),
            ("purpose", "training"),
            ("asset_ids", &ids),
            ("school_id", &office.to_string()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (_, inbox) = page(&s, &approver, "/desk?state=pending_approval").await;
    assert!(
        inbox.contains("Training") && inbox.contains(&location),
        "{inbox}"
    );
    let (status, _, _) = submit(&s, &approver, &location, &[("action", "approve")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, detail) = page(&s, &tech, &format!("/assets/{asset_id}")).await;
    assert!(
        detail.contains("Loan calendar")
            && detail.contains("2026-12-01T00:00:00+07:00")
            && detail.contains("approved"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("/desk/new?kind=repair&amp;asset_ids={asset_id}")),
        "report a repair"
    );
    // A printable label whose QR code opens the asset's page.
    let (status, label) = page(&s, &tech, &format!("/assets/{asset_id}/label")).await;
    assert_eq!(status, StatusCode::OK);
    let url = format!("{}/assets/{asset_id}", s.url);
    assert!(label.contains("PJ-0001") && label.contains(&url), "{label}");
    assert!(
        label.contains("<svg") && !label.contains("&lt;svg"),
        "the QR code is inline SVG"
    );
    assert!(
        label.contains(&khetnet_server::web::desk::qr_svg(&url)),
        "the QR code is that of the asset's address"
    );
    assert!(!label.contains(&khetnet_server::web::desk::qr_svg(&format!("{url}0"))));
    // An overlapping loan is refused on the form, naming the asset and the request.
    let (status, _, body) = submit(
        &s,
        &tech,
        "/desk/new",
        &[
            ("kind", "loan"),
            ("title", "Again"),
            ("from", "2026-12-02"),
            ("to", "2026-12-03"),
            ("purpose", "x"),
            ("asset_ids", &ids),
            ("school_id", &office.to_string()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let first = location.rsplit('/').next().unwrap();
    assert!(
        body.contains("PJ-0001") && body.contains(&format!("request {first}")),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_step_named_for_one_approver_is_offered_to_that_approver_only() {
    let s = TestServer::start_with(&Database::Sqlite, |c| {
        c.desk
            .approval_steps
            .insert("data_service".into(), vec!["@planning_director".into()]);
    })
    .await;
    let admin = s.admin().await;
    let school = s.school(&admin, "1057010001").await;
    s.user(&admin, "kru", "requester", Some(school)).await;
    s.user(&admin, "appr", "approver", None).await;
    s.user(&admin, "planning_director", "approver", None).await;
    let token = s.login("kru", "password-of-kru").await;
    let (status, r) = s
        .post(
            &token,
            "/api/v1/requests",
            json!({ "kind": "data_service", "title": "ข้อมูลนักเรียน",
                    "fields": { "data": "จำนวนนักเรียน", "purpose": "วางแผน" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let path = format!("/desk/requests/{}", r["id"]);
    let (_, other) = page(&s, &web_login(&s, "appr").await, &path).await;
    assert!(
        other.contains("@planning_director"),
        "the step shows whom it waits for"
    );
    assert!(
        !other.contains("value=\"approve\"") && !other.contains("value=\"reject\""),
        "another approver is not offered the step"
    );
    let (_, named) = page(&s, &web_login(&s, "planning_director").await, &path).await;
    assert!(named.contains("value=\"approve\"") && named.contains("value=\"reject\""));
    s.stop().await;
}

#[tokio::test]
async fn a_technician_changes_an_asset_and_imports_a_register_from_the_pages() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let other = s.school(&admin, "1057010002").await;
        s.user(&admin, "tech", "technician", None).await;
        s.user(&admin, "kru", "requester", Some(school)).await;
        let (_, asset) = s
            .post(
                &admin,
                "/api/v1/assets",
                json!({ "asset_number": "7440-001-0001/67", "category": "notebook",
                        "school_id": school, "room": "ห้องคอม 1", "state": "in_use" }),
            )
            .await;
        let id = asset["id"].as_i64().unwrap();
        let tech = web_login(&s, "tech").await;
        let kru = web_login(&s, "kru").await;

        // The change form is there for the technician, not for the requester.
        let (_, detail) = page(&s, &tech, &format!("/assets/{id}")).await;
        assert!(detail.contains("id=\"edit\""), "{detail}");
        let (_, seen) = page(&s, &kru, &format!("/assets/{id}")).await;
        assert!(
            !seen.contains("id=\"edit\""),
            "a requester gets no change form"
        );
        let (status, _, _) = submit(&s, &kru, &format!("/assets/{id}"), &[("room", "x")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Marked lost with a reason, in another room: the page shows it and its history.
        let path = format!("/assets/{id}");
        let school_text = school.to_string();
        let form = [
            ("state", "lost"),
            ("school_id", school_text.as_str()),
            ("room", "ห้องสมุด"),
            ("custodian", "ครูวิชัย"),
            ("notes", ""),
            ("comment", "แจ้งความแล้ว"),
        ];
        let (status, location, body) = submit(&s, &tech, &path, &form).await;
        assert_eq!(
            (status, location.as_str()),
            (StatusCode::SEE_OTHER, path.as_str()),
            "{db:?} {body}"
        );
        let (_, detail) = page(&s, &tech, &path).await;
        assert!(detail.contains("data-state=\"lost\">สูญหาย<"), "{detail}");
        assert!(detail.contains("room: ห้องคอม 1 → ห้องสมุด") && detail.contains("แจ้งความแล้ว"));

        // A state that requests own is refused on the form, which says why.
        let other_text = other.to_string();
        let form = [("state", "on_loan"), ("school_id", other_text.as_str())];
        let (status, _, body) = submit(&s, &tech, &path, &form).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body.contains("role=\"alert\">state: must be one of"),
            "{body}"
        );
        let (_, a) = s.get(&admin, &format!("/api/v1/assets/{id}")).await;
        assert_eq!(
            (a["state"].as_str(), a["school_id"].as_i64()),
            (Some("lost"), Some(school)),
            "nothing changed"
        );

        // The register's import form: a bad row is named and nothing is imported; a good file
        // is imported whole and the page says how many.
        let (_, list) = page(&s, &tech, "/assets").await;
        assert!(list.contains("action=\"/assets/import\""), "{list}");
        let (_, list) = page(&s, &kru, "/assets").await;
        assert!(!list.contains("action=\"/assets/import\""));
        let upload = |cookie: String, csv: &'static str| {
            let (client, url) = (s.client.clone(), format!("{}/assets/import", s.url));
            async move {
                let (content_type, body) =
                    multipart(&[("file", "register.csv", "text/csv", csv.as_bytes())]);
                let resp = client
                    .post(url)
                    .header("cookie", cookie)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (resp.status(), resp.text().await.unwrap())
            }
        };
        let (status, body) = upload(
            tech.clone(),
            "asset_number,category,school_code\r\n7440-002-0001/67,printer,1057010001\r\n7440-002-0002/67,printer,NOPE\r\n",
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.contains("row 3: school_code"), "{body}");
        let (_, none) = s.get(&admin, "/api/v1/assets?q=printer").await;
        assert_eq!(none, json!([]), "nothing half-imported");
        let (status, body) = upload(
            tech.clone(),
            "asset_number,category,school_code\r\n7440-002-0001/67,printer,1057010001\r\n7440-002-0002/67,printer,1057010002\r\n",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.contains("id=\"notice\">นำเข้าแล้ว (รายการ): 2<"),
            "{body}"
        );
        let (_, found) = s.get(&admin, "/api/v1/assets?q=printer").await;
        assert_eq!(found.as_array().unwrap().len(), 2);
        let (status, _) = upload(kru.clone(), "asset_number,category,school_code\r\n").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        s.stop().await;
    }
}
