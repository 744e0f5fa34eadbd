//! The device-health pages over real HTTP: schools worst first with their open incidents,
//! one school's devices, in Thai and English, and a requester kept to their own school.

mod common;

use common::{ADMIN_PASSWORD, TestServer, databases};
use reqwest::StatusCode;
use serde_json::json;

async fn session(s: &TestServer, username: &str, password: &str) -> String {
    let resp = s
        .client
        .post(format!("{}/login", s.url))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers().get("set-cookie").unwrap().to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(s: &TestServer, cookie: &str, path: &str, lang: &str) -> (StatusCode, String) {
    let resp = s
        .client
        .get(format!("{}{path}", s.url))
        .header("cookie", cookie)
        .header("accept-language", lang)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn status_pages_show_the_worst_school_first() {
    let db = &databases()[0];
    let s = TestServer::start(db).await;
    let admin = s.admin().await;
    let calm = s.school(&admin, "1057010001").await;
    let broken = s.school(&admin, "1057010002").await;
    let (_, d) = s
        .post(&admin, "/api/v1/devices", json!({ "school_id": calm, "name": "calm-router", "probe": "icmp", "address": "192.0.2.1" }))
        .await;
    let calm_device = d["id"].as_i64().unwrap();
    let (_, d) = s
        .post(&admin, "/api/v1/devices", json!({ "school_id": broken, "name": "broken-router", "probe": "icmp", "address": "192.0.2.2", "down_after_minutes": 0 }))
        .await;
    let broken_device = d["id"].as_i64().unwrap();
    let (_, token) = s
        .post(
            &admin,
            "/api/v1/agents/enrollment-tokens",
            json!({ "school_id": calm }),
        )
        .await;
    let (_, calm_agent) = s
        .call(
            None,
            reqwest::Method::POST,
            "/api/v1/agents/enroll",
            Some(json!({ "token": token["token"], "name": "a" })),
        )
        .await;
    let (_, token) = s
        .post(
            &admin,
            "/api/v1/agents/enrollment-tokens",
            json!({ "school_id": broken }),
        )
        .await;
    let (_, broken_agent) = s
        .call(
            None,
            reqwest::Method::POST,
            "/api/v1/agents/enroll",
            Some(json!({ "token": token["token"], "name": "b" })),
        )
        .await;
    let now = jiff::Timestamp::now().to_string();
    let report = |device: i64, ok: bool| json!({ "batch_id": khetnet_server_uuid(), "samples": [{ "device_id": device, "at": now, "ok": ok, "latency_ms": if ok { json!(2.5) } else { json!(null) }, "error": if ok { json!(null) } else { json!("no reply") } }] });
    let (status, _) = s
        .post(
            calm_agent["credential"].as_str().unwrap(),
            "/api/v1/agent/reports",
            report(calm_device, true),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .post(
            broken_agent["credential"].as_str().unwrap(),
            "/api/v1/agent/reports",
            report(broken_device, false),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let cookie = session(&s, "admin", ADMIN_PASSWORD).await;
    let (status, html) = page(&s, &cookie, "/devices", "en").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (b, c) = (
        html.find("1057010002").unwrap(),
        html.find("1057010001").unwrap(),
    );
    assert!(b < c, "the school with a device down comes first: {html}");
    assert!(
        html.contains("broken-router down: no reply"),
        "the open incident is listed: {html}"
    );
    assert!(html.contains("href=\"/devices\""), "the menu links here");
    let (_, th) = page(&s, &cookie, "/devices", "th").await;
    assert!(
        th.contains("สถานะอุปกรณ์เครือข่าย") && th.contains("ขัดข้อง"),
        "{th}"
    );

    let (status, html) = page(&s, &cookie, &format!("/devices/schools/{calm}"), "en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("calm-router") && html.contains("2.5 ms") && html.contains("100.00%"),
        "{html}"
    );

    // A requester sees their own school only.
    s.user(&admin, "staff", "requester", Some(calm)).await;
    let staff = session(&s, "staff", "password-of-staff").await;
    let (status, html) = page(&s, &staff, "/devices", "en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("1057010001") && !html.contains("1057010002"),
        "{html}"
    );
    let (status, _) = page(&s, &staff, &format!("/devices/schools/{broken}"), "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A device's page: graphs drawn as SVG, uptime by month, the incident with its request.
    let (status, html) = page(
        &s,
        &cookie,
        &format!("/devices/{broken_device}?range=7d"),
        "en",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("<svg") && html.contains("Latency (ms)"),
        "{html}"
    );
    assert!(
        html.contains("Uptime by month") && html.contains("0.0%"),
        "{html}"
    );
    assert!(
        html.contains("href=\"/desk/requests/"),
        "the repair request is linked: {html}"
    );
    let (status, _) = page(&s, &staff, &format!("/devices/{broken_device}"), "en").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another school's device");
    let (status, html) = page(&s, &staff, &format!("/devices/{calm_device}"), "th").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("ใช้งานได้รายเดือน") && html.contains("100.0%"),
        "{html}"
    );

    // Discovered devices: technicians and admins only; accepting one from the page.
    let (status, html) = s
        .post(
            calm_agent["credential"].as_str().unwrap(),
            "/api/v1/agent/reports",
            json!({ "batch_id": khetnet_server_uuid(), "samples": [], "discovered": [{ "ip": "192.0.2.77", "mac": "aa:bb:cc:dd:ee:ff", "vendor": "Brother", "seen_at": now }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (status, _) = page(&s, &staff, "/devices/discovered", "en").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, html) = page(&s, &cookie, "/devices/discovered", "en").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("aa:bb:cc:dd:ee:ff") && html.contains("Brother"),
        "{html}"
    );
    let (_, found) = s.get(&admin, "/api/v1/discovered-devices").await;
    let id = found[0]["id"].as_i64().unwrap();
    let resp = s
        .client
        .post(format!("{}/devices/discovered/{id}", s.url))
        .header("cookie", &cookie)
        .form(&[
            ("action", "accept"),
            ("name", "office-printer"),
            ("probe", "icmp"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&s, &cookie, "/devices/discovered", "en").await;
    assert!(
        !html.contains("aa:bb:cc:dd:ee:ff"),
        "accepted: no longer listed"
    );
    let (_, html) = page(&s, &cookie, &format!("/devices/schools/{calm}"), "en").await;
    assert!(html.contains("office-printer"), "{html}");
    // Signed out: to the login page.
    let resp = s
        .client
        .get(format!("{}/devices", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    s.stop().await;
}

fn khetnet_server_uuid() -> String {
    let n: u128 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}
