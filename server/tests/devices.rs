//! Device health over real HTTP, on SQLite and (when configured) PostgreSQL: enrollment
//! tokens and agents, report ingestion (dedup, malformed and forged reports), device status,
//! incidents, and who may see what.

mod common;

use common::{TestServer, databases};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A fresh batch id (UUID v4 text form).
fn batch_id() -> String {
    let n: u128 = rand_u128();
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

fn rand_u128() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t ^ (u128::from(N.fetch_add(1, Ordering::SeqCst)) << 64)
}

/// RFC 3339 for `secs_ago` seconds before now.
fn ago(secs_ago: i64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs_ago);
    t.to_string()
}

/// Enrolls an agent for `school` and returns its credential.
async fn enroll(s: &TestServer, admin: &str, school: i64, name: &str) -> String {
    let (status, token) = s
        .post(
            admin,
            "/api/v1/agents/enrollment-tokens",
            json!({ "school_id": school }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let (status, enrolled) = s
        .call(
            None,
            Method::POST,
            "/api/v1/agents/enroll",
            Some(json!({ "token": token["token"], "name": name })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    enrolled["credential"].as_str().unwrap().to_owned()
}

async fn device(s: &TestServer, admin: &str, school: i64, name: &str, extra: Value) -> i64 {
    let mut body =
        json!({ "school_id": school, "name": name, "probe": "icmp", "address": "192.0.2.10" });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, d) = s.post(admin, "/api/v1/devices", body).await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    d["id"].as_i64().unwrap()
}

/// Changes a device through the API, which must accept the change.
async fn change_device(s: &TestServer, admin: &str, id: i64, change: Value) {
    let (status, body) = s
        .call(
            Some(admin),
            Method::PATCH,
            &format!("/api/v1/devices/{id}"),
            Some(change),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn report(s: &TestServer, credential: &str, body: Value) -> (StatusCode, Value) {
    s.post(credential, "/api/v1/agent/reports", body).await
}

fn sample(device: i64, secs_ago: i64, ok: bool) -> Value {
    json!({ "device_id": device, "at": ago(secs_ago), "ok": ok,
            "latency_ms": if ok { json!(1.5) } else { Value::Null },
            "loss_percent": if ok { 0.0 } else { 100.0 },
            "error": if ok { Value::Null } else { json!("no reply") } })
}

async fn samples_of(s: &TestServer, admin: &str, device: i64) -> Vec<Value> {
    let (status, body) = s
        .get(admin, &format!("/api/v1/devices/{device}/samples"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

#[tokio::test]
async fn enrollment_is_one_time_and_revocable() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        s.user(&admin, "somchai", "technician", None).await;
        s.user(&admin, "staff", "requester", Some(school)).await;
        let tech = s.login("somchai", "password-of-somchai").await;
        let staff = s.login("staff", "password-of-staff").await;

        // Who may create tokens.
        let (status, _) = s
            .post(
                &staff,
                "/api/v1/agents/enrollment-tokens",
                json!({ "school_id": school }),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{db:?}");
        let (status, body) = s
            .post(
                &tech,
                "/api/v1/agents/enrollment-tokens",
                json!({ "school_id": 999 }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["field"], "school_id");
        let (status, body) = s
            .post(
                &tech,
                "/api/v1/agents/enrollment-tokens",
                json!({ "school_id": school, "valid_hours": 0 }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["field"], "valid_hours");
        let (status, token) = s
            .post(
                &tech,
                "/api/v1/agents/enrollment-tokens",
                json!({ "school_id": school, "note": "server room" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{token}");
        assert!(token["expires_at"].as_str().unwrap().ends_with("+07:00"));
        let secret = token["token"].as_str().unwrap().to_owned();

        // The token works once.
        let enroll_with = |t: String| {
            let s = &s;
            async move {
                s.call(
                    None,
                    Method::POST,
                    "/api/v1/agents/enroll",
                    Some(json!({ "token": t, "name": "agent-1", "version": "0.1.0" })),
                )
                .await
            }
        };
        let (status, enrolled) = enroll_with(secret.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{enrolled}");
        assert_eq!(enrolled["school_id"], school);
        let credential = enrolled["credential"].as_str().unwrap().to_owned();
        let (status, body) = enroll_with(secret.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a used token is refused: {body}"
        );
        let (status, _) = enroll_with("khe_forged".into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // The credential is stored only as a hash.
        let db_handle = khetnet_server::db::Db::connect(&s.database_url, 1)
            .await
            .unwrap();
        let hashes: Vec<String> = sqlx::query_scalar::<sqlx::Any, String>(
            "SELECT credential_hash FROM agents UNION ALL SELECT token_hash FROM agent_enrollment_tokens",
        )
        .fetch_all(&db_handle.pool)
        .await
        .unwrap();
        assert_eq!(hashes.len(), 2);
        assert!(
            hashes
                .iter()
                .all(|h| h != &credential && h != &secret && h.len() == 64)
        );
        db_handle.pool.close().await;

        // The agent pulls its configuration; a user token is not an agent credential.
        let (status, config) = s.get(&credential, "/api/v1/agent/config").await;
        assert_eq!(status, StatusCode::OK, "{config}");
        assert_eq!(config["school_id"], school);
        assert_eq!(config["report_interval_secs"], 60);
        let (status, _) = s.get(&admin, "/api/v1/agent/config").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (status, agents) = s
            .get(&tech, &format!("/api/v1/agents?school_id={school}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(agents[0]["name"], "agent-1");
        assert_eq!(agents[0]["state"], "online");
        let id = agents[0]["id"].as_i64().unwrap();
        let (status, _) = s.get(&staff, "/api/v1/agents").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Revoked: the credential stops working at once.
        let (status, revoked) = s
            .call(
                Some(&tech),
                Method::POST,
                &format!("/api/v1/agents/{id}/revoke"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{revoked}");
        assert_eq!(revoked["state"], "revoked");
        let (status, _) = s.get(&credential, "/api/v1/agent/config").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, audit) = s.get(&admin, "/api/v1/audit?entity=agent").await;
        assert_eq!(status, StatusCode::OK);
        let actions: Vec<&str> = audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["agent.revoke", "agent.enroll"]);
        s.stop().await;
    }
}

#[tokio::test]
async fn reports_are_stored_once_and_bad_ones_change_nothing() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let other = s.school(&admin, "1057010002").await;
        let router = device(&s, &admin, school, "router", json!({})).await;
        let foreign = device(&s, &admin, other, "router", json!({})).await;
        let credential = enroll(&s, &admin, school, "agent-1").await;

        let batch = json!({ "batch_id": batch_id(), "agent_version": "0.1.0",
                            "samples": [sample(router, 20, true), sample(router, 10, true)] });
        let (status, body) = report(&s, &credential, batch.clone()).await;
        assert_eq!(status, StatusCode::OK, "{db:?} {body}");
        assert_eq!(body, json!({ "outcome": "stored", "samples": 2 }));
        // A replay (lost acknowledgement, spool replay) is acknowledged and not stored again.
        let (status, body) = report(&s, &credential, batch.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["outcome"], "duplicate");
        assert_eq!(samples_of(&s, &admin, router).await.len(), 2);

        // Each bad report: (body, status, the field the answer names). None stores anything.
        let good = sample(router, 5, true);
        let cases: Vec<(Value, StatusCode, &str)> = vec![
            (
                json!({ "batch_id": "not-a-uuid", "samples": [good] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "batch_id",
            ),
            (
                json!({ "batch_id": batch_id() }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "samples",
            ),
            (
                json!({ "batch_id": batch_id(), "samples": [good, sample(foreign, 5, true)] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "samples[1].device_id",
            ),
            (
                json!({ "batch_id": batch_id(), "samples": [good, { "device_id": router, "at": "yesterday", "ok": true }] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "samples[1].at",
            ),
            (
                json!({ "batch_id": batch_id(), "samples": [{ "device_id": router, "at": ago(1), "ok": true, "loss_percent": 150.0 }] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "samples[0].loss_percent",
            ),
            (
                json!({ "batch_id": batch_id(), "samples": [{ "device_id": router, "at": ago(-3600), "ok": true }] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "samples[0].at",
            ),
            (
                json!({ "batch_id": batch_id(), "samples": [good], "colour": "red" }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "colour",
            ),
            (
                json!({ "batch_id": batch_id(), "samples_lost": -1, "samples": [good] }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "samples_lost",
            ),
        ];
        for (body, expected, field) in cases {
            let (status, answer) = report(&s, &credential, body.clone()).await;
            assert_eq!(status, expected, "{body} -> {answer}");
            assert_eq!(answer["field"], field, "{body} -> {answer}");
        }
        let resp = s
            .client
            .post(format!("{}/api/v1/agent/reports", s.url))
            .bearer_auth(&credential)
            .header("content-type", "application/json")
            .body("{\"batch_id\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        // Forged or missing credential.
        let fresh = json!({ "batch_id": batch_id(), "samples": [sample(router, 1, true)] });
        let (status, _) = report(&s, "kha_forged", fresh.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = s
            .call(None, Method::POST, "/api/v1/agent/reports", Some(fresh))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            samples_of(&s, &admin, router).await.len(),
            2,
            "nothing more was stored"
        );
        assert!(samples_of(&s, &admin, foreign).await.is_empty());

        // Loss the agent reports is counted on the agent.
        let (status, _) = report(
            &s,
            &credential,
            json!({ "batch_id": batch_id(), "samples_lost": 7, "samples": [] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, agents) = s.get(&admin, "/api/v1/agents").await;
        assert_eq!(agents[0]["samples_lost"], 7);
        assert_eq!(agents[0]["samples_received"], 2);
        s.stop().await;
    }
}

#[tokio::test]
async fn status_and_one_incident_per_outage() {
    for db in databases() {
        // The printer's 40% loss is degraded but stays under the loss alert.
        let s = TestServer::start_with(&db, |c| c.devices.loss_alert_percent = 50).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let quiet = s.school(&admin, "1057010002").await;
        let router = device(
            &s,
            &admin,
            school,
            "router",
            json!({ "down_after_minutes": 1 }),
        )
        .await;
        let printer = device(
            &s,
            &admin,
            school,
            "printer",
            json!({ "probe": "tcp", "address": "192.0.2.20", "port": 9100 }),
        )
        .await;
        device(&s, &admin, quiet, "router", json!({})).await;
        let credential = enroll(&s, &admin, school, "agent-1").await;
        let send = |samples: Vec<Value>| {
            let s = &s;
            let credential = credential.clone();
            async move {
                let (status, body) = report(
                    s,
                    &credential,
                    json!({ "batch_id": batch_id(), "samples": samples }),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        };
        let status_of = |id: i64| {
            let s = &s;
            let admin = admin.clone();
            async move {
                s.get(&admin, &format!("/api/v1/devices/{id}")).await.1["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        };
        let open_incidents = || {
            let s = &s;
            let admin = admin.clone();
            async move {
                s.get(&admin, "/api/v1/incidents?open=true")
                    .await
                    .1
                    .as_array()
                    .unwrap()
                    .clone()
            }
        };
        assert_eq!(status_of(router).await, "unknown");

        send(vec![sample(router, 300, true), sample(printer, 300, true)]).await;
        assert_eq!(status_of(router).await, "up");
        // Loss over the device's threshold is degraded.
        send(vec![
            json!({ "device_id": printer, "at": ago(290), "ok": true, "loss_percent": 40.0 }),
        ])
        .await;
        assert_eq!(status_of(printer).await, "degraded");

        // Down, but not yet for as long as the rule allows: no incident.
        send(vec![sample(router, 200, false)]).await;
        assert_eq!(status_of(router).await, "down");
        assert!(open_incidents().await.is_empty());
        // Down for longer than a minute: one incident, however many reports follow.
        send(vec![sample(router, 120, false)]).await;
        send(vec![sample(router, 60, false)]).await;
        let open = open_incidents().await;
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0]["kind"], "device_down");
        assert_eq!(open[0]["device_id"], router);
        assert!(open[0]["summary"].as_str().unwrap().contains("no reply"));
        assert!(open[0]["request_id"].is_i64(), "a repair request: {open:?}");

        // Worst school first.
        let (status, health) = s.get(&admin, "/api/v1/devices/status").await;
        assert_eq!(status, StatusCode::OK, "{health}");
        assert_eq!(health[0]["school_id"], school);
        assert_eq!(health[0]["status"], "down");
        assert_eq!(health[0]["down"], 1);
        assert_eq!(health[0]["degraded"], 1);
        assert_eq!(health[0]["open_incidents"], 1);
        assert_eq!(health[1]["status"], "unknown");

        // An older sample replayed late does not change the status.
        send(vec![sample(router, 250, true)]).await;
        assert_eq!(status_of(router).await, "down");
        // Recovery resolves the incident; the next outage is a new one.
        send(vec![sample(router, 30, true)]).await;
        assert_eq!(status_of(router).await, "up");
        assert!(open_incidents().await.is_empty());
        let (_, all) = s.get(&admin, "/api/v1/incidents").await;
        assert_eq!(all.as_array().unwrap().len(), 1);
        assert!(all[0]["resolved_at"].as_str().unwrap().ends_with("+07:00"));

        // Devices listed worst first, with their status.
        let (_, devices) = s
            .get(&admin, &format!("/api/v1/devices?school_id={school}"))
            .await;
        let names: Vec<(&str, &str)> = devices
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["name"].as_str().unwrap(), d["status"].as_str().unwrap()))
            .collect();
        assert_eq!(names, [("printer", "degraded"), ("router", "up")]);
        s.stop().await;
    }
}

#[tokio::test]
async fn a_silent_agent_opens_one_incident_until_it_reports() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let credential = enroll(&s, &admin, school, "agent-1").await;
        let handle = khetnet_server::db::Db::connect(&s.database_url, 2)
            .await
            .unwrap();
        let settings = khetnet_server::devices::Settings::default();
        let now = khetnet_server::db::now_ms();
        use khetnet_server::devices::alerts::sweep;
        assert_eq!(
            sweep(&handle, &settings, now).await.unwrap(),
            0,
            "just enrolled"
        );
        // Three report intervals (3 minutes) later it is silent: one incident, not two.
        let later = now + 3 * 60_000 + 1_000;
        assert_eq!(sweep(&handle, &settings, later).await.unwrap(), 1);
        assert_eq!(sweep(&handle, &settings, later + 60_000).await.unwrap(), 0);
        let (_, open) = s.get(&admin, "/api/v1/incidents?open=true").await;
        assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
        assert_eq!(open[0]["kind"], "agent_silent");
        let silent_request = open[0]["request_id"].as_i64().expect("a repair request");
        let (status, _) = report(
            &s,
            &credential,
            json!({ "batch_id": batch_id(), "samples": [] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, open) = s.get(&admin, "/api/v1/incidents?open=true").await;
        assert!(open.as_array().unwrap().is_empty(), "{open}");
        let (_, request) = s
            .get(&admin, &format!("/api/v1/requests/{silent_request}"))
            .await;
        assert_eq!(request["state"], "resolved", "{request}");
        handle.pool.close().await;
        s.stop().await;
    }
}

#[tokio::test]
async fn devices_crud_and_who_sees_what() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let other = s.school(&admin, "1057010002").await;
        s.user(&admin, "staff", "requester", Some(school)).await;
        let staff = s.login("staff", "password-of-staff").await;
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({ "school_id": school, "name": "x", "probe": "telnet", "address": "h" }),
                "probe",
            ),
            (
                json!({ "school_id": school, "name": "", "probe": "icmp", "address": "h" }),
                "name",
            ),
            (
                json!({ "school_id": school, "name": "x", "probe": "tcp", "address": "h" }),
                "port",
            ),
            (
                json!({ "school_id": school, "name": "x", "probe": "http", "address": "h" }),
                "address",
            ),
            (
                json!({ "school_id": school, "name": "x", "probe": "snmp", "address": "h" }),
                "snmp_community",
            ),
            (
                json!({ "school_id": school, "name": "x", "probe": "icmp", "address": "h", "interval_secs": 0 }),
                "interval_secs",
            ),
            (
                json!({ "school_id": 999, "name": "x", "probe": "icmp", "address": "h" }),
                "school_id",
            ),
        ];
        for (body, field) in cases {
            let (status, answer) = s.post(&admin, "/api/v1/devices", body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{db:?} {body} -> {answer}"
            );
            assert_eq!(answer["field"], field, "{body} -> {answer}");
        }
        let mine = device(
            &s,
            &admin,
            school,
            "switch",
            json!({ "probe": "snmp", "snmp_community": "secret" }),
        )
        .await;
        let theirs = device(&s, &admin, other, "switch", json!({})).await;
        let (status, _) = s
            .post(
                &admin,
                "/api/v1/devices",
                json!({ "school_id": school, "name": "switch", "probe": "icmp", "address": "h" }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = s
            .post(
                &staff,
                "/api/v1/devices",
                json!({ "school_id": school, "name": "y", "probe": "icmp", "address": "h" }),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // A requester sees their own school's devices, without secrets; others are 404.
        let (status, list) = s.get(&staff, "/api/v1/devices").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["snmp_community"], Value::Null);
        let (status, _) = s.get(&staff, &format!("/api/v1/devices/{theirs}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s
            .get(&staff, &format!("/api/v1/devices?school_id={other}"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, got) = s.get(&admin, &format!("/api/v1/devices/{mine}")).await;
        assert_eq!(got["snmp_community"], "secret");

        let (status, patched) = s
            .call(
                Some(&admin),
                Method::PATCH,
                &format!("/api/v1/devices/{mine}"),
                Some(json!({ "interval_secs": 30, "enabled": false })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{patched}");
        assert_eq!(patched["interval_secs"], 30);
        assert_eq!(patched["enabled"], false);
        let (status, _) = s
            .call(
                Some(&admin),
                Method::PATCH,
                &format!("/api/v1/devices/{mine}"),
                Some(json!({ "port": 70000 })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        // A disabled device is not sent to the agent.
        let credential = enroll(&s, &admin, school, "agent-1").await;
        let (_, config) = s.get(&credential, "/api/v1/agent/config").await;
        assert_eq!(config["targets"], json!([]));
        let (status, _) = s
            .call(
                Some(&admin),
                Method::DELETE,
                &format!("/api/v1/devices/{mine}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = s.get(&admin, &format!("/api/v1/devices/{mine}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, audit) = s
            .get(
                &admin,
                &format!("/api/v1/audit?entity=device&entity_id={mine}"),
            )
            .await;
        let actions: Vec<&str> = audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["device.delete", "device.update", "device.create"]);
        assert!(
            !audit.to_string().contains("secret"),
            "the community is not in the audit trail"
        );
        s.stop().await;
    }
}

/// The open incidents of one kind.
async fn open_of(s: &TestServer, admin: &str, kind: &str) -> Vec<Value> {
    let (status, open) = s.get(admin, "/api/v1/incidents?open=true").await;
    assert_eq!(status, StatusCode::OK, "{open}");
    open.as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == kind)
        .cloned()
        .collect()
}

async fn repair_requests(s: &TestServer, token: &str) -> Vec<Value> {
    let (status, list) = s.get(token, "/api/v1/requests?kind=repair").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array().unwrap().clone()
}

#[tokio::test]
async fn an_incident_files_one_repair_request_and_resolves_it() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let other = s.school(&admin, "1057010002").await;
        s.user(&admin, "somchai", "technician", None).await;
        s.user(&admin, "staff", "requester", Some(other)).await;
        let tech = s.login("somchai", "password-of-somchai").await;
        let staff = s.login("staff", "password-of-staff").await;
        let router = device(
            &s,
            &admin,
            school,
            "router-a",
            json!({ "down_after_minutes": 1 }),
        )
        .await;
        let credential = enroll(&s, &admin, school, "agent-1").await;
        let send = |samples: Vec<Value>| {
            let s = &s;
            let credential = credential.clone();
            async move {
                let (status, body) = report(
                    s,
                    &credential,
                    json!({ "batch_id": batch_id(), "samples": samples }),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        };

        // Down for two minutes: one incident and one repair request for the device's school.
        send(vec![sample(router, 120, false)]).await;
        assert!(open_of(&s, &admin, "device_down").await.is_empty());
        send(vec![sample(router, 0, false)]).await;
        let open = open_of(&s, &admin, "device_down").await;
        assert_eq!(open.len(), 1, "{db:?}: {open:?}");
        let request_id = open[0]["request_id"].as_i64().expect("a repair request");
        let (status, request) = s
            .get(&tech, &format!("/api/v1/requests/{request_id}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{request}");
        assert_eq!(request["kind"], "repair");
        assert_eq!(request["state"], "submitted");
        assert_eq!(request["school_id"], school);
        assert!(
            request["title"].as_str().unwrap().contains("router-a"),
            "{request}"
        );
        assert!(
            request["fields"]["problem"]
                .as_str()
                .unwrap()
                .contains("router-a"),
            "{request}"
        );
        assert_eq!(request["history"][0]["actor"], "system");

        // Reports keep coming, several at once: still one request.
        tokio::join!(
            send(vec![sample(router, 0, false)]),
            send(vec![sample(router, 0, false)]),
            send(vec![sample(router, 0, false)]),
            send(vec![sample(router, 0, false)]),
        );
        assert_eq!(repair_requests(&s, &tech).await.len(), 1, "{db:?}");
        assert_eq!(open_of(&s, &admin, "device_down").await.len(), 1);

        // The technicians' queue shows it; another school's requester does not see it.
        let (_, queue) = s.get(&tech, "/api/v1/requests?state=submitted").await;
        assert!(
            queue
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == request_id),
            "{queue}"
        );
        assert!(repair_requests(&s, &staff).await.is_empty());

        // The system user cannot sign in.
        let (status, _) = s.try_login("system", "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Nor can an admin give it a password or activate it.
        let (_, users) = s.get(&admin, "/api/v1/users").await;
        let system = users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "system")
            .expect("the built-in system user")["id"]
            .as_i64()
            .unwrap();
        let (status, body) = s
            .call(
                Some(&admin),
                reqwest::Method::PATCH,
                &format!("/api/v1/users/{system}"),
                Some(json!({ "active": true, "password": "a-long-enough-password" })),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        // Recovery resolves the incident and the request, with a comment.
        send(vec![sample(router, 0, true)]).await;
        assert!(open_of(&s, &admin, "device_down").await.is_empty());
        let (_, request) = s
            .get(&tech, &format!("/api/v1/requests/{request_id}"))
            .await;
        assert_eq!(request["state"], "resolved", "{request}");
        let last = request["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["action"], "resolve");
        assert_eq!(last["actor"], "system");
        assert!(
            last["comment"].as_str().unwrap().contains("answers again"),
            "{last}"
        );

        // Down again soon after (flapping): the same request reopens with a comment.
        send(vec![sample(router, 0, false)]).await;
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
        let (status, body) = report(
            &s,
            &credential,
            json!({ "batch_id": batch_id(), "samples": [{ "device_id": router, "at": later.to_string(), "ok": false, "error": "no reply" }] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let requests = repair_requests(&s, &tech).await;
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0]["state"], "submitted");
        let (_, request) = s
            .get(&tech, &format!("/api/v1/requests/{request_id}"))
            .await;
        let last = request["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["action"], "reopen", "{request}");
        assert_eq!(open_of(&s, &admin, "device_down").await.len(), 1);

        // The audit trail names the system as the actor.
        let (status, audit) = s
            .get(
                &admin,
                &format!("/api/v1/audit?entity=request&entity_id={request_id}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{audit}");
        let entries = audit.as_array().unwrap();
        assert!(
            entries
                .iter()
                .any(|e| e["actor"] == "system" && e["action"] == "request.create"),
            "{audit}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn loss_toner_and_disk_rules_open_and_resolve_their_own_requests() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let printer = device(
            &s,
            &admin,
            school,
            "printer-1",
            json!({ "probe": "snmp", "snmp_community": "public", "address": "192.0.2.30", "degraded_loss_percent": 50 }),
        )
        .await;
        let host = device(
            &s,
            &admin,
            school,
            "agent-host",
            json!({ "address": "127.0.0.1" }),
        )
        .await;
        let credential = enroll(&s, &admin, school, "agent-1").await;
        let send = |samples: Vec<Value>| {
            let s = &s;
            let credential = credential.clone();
            async move {
                let (status, body) = report(
                    s,
                    &credential,
                    json!({ "batch_id": batch_id(), "samples": samples }),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        };
        let printer_sample = |loss: f64, black: Option<f64>| {
            json!({ "device_id": printer, "at": ago(0), "ok": true, "latency_ms": 3.0, "loss_percent": loss,
                    "detail": { "supplies": [
                        { "description": "Black Toner", "level_percent": black },
                        { "description": "Waste Toner Box", "level_percent": null } ] } })
        };
        let host_sample = |used: f64| {
            json!({ "device_id": host, "at": ago(0), "ok": true, "latency_ms": 0.1, "loss_percent": 0.0,
                    "detail": { "cpu_percent": 12.5, "memory_percent": 40.0,
                                "disks": [{ "mount": "/", "used_percent": 40.0 }, { "mount": "/var", "used_percent": used }] } })
        };

        // Defaults: loss 20%, toner 10%, disk 90%.
        send(vec![printer_sample(30.0, Some(50.0)), host_sample(50.0)]).await;
        let loss = open_of(&s, &admin, "loss_high").await;
        assert_eq!(loss.len(), 1, "{db:?} {loss:?}");
        assert!(open_of(&s, &admin, "toner_low").await.is_empty());
        assert!(open_of(&s, &admin, "disk_full").await.is_empty());

        // Loss worsens by 10 points or more: one comment on the request; a small change: none.
        let loss_request = loss[0]["request_id"].as_i64().unwrap();
        send(vec![printer_sample(35.0, Some(50.0))]).await;
        send(vec![printer_sample(45.0, Some(50.0))]).await;
        let (_, request) = s
            .get(&admin, &format!("/api/v1/requests/{loss_request}"))
            .await;
        let comments: Vec<&Value> = request["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "comment")
            .collect();
        assert_eq!(comments.len(), 1, "{request}");
        assert!(
            comments[0]["comment"].as_str().unwrap().contains("45%"),
            "{request}"
        );

        // Toner low and a full disk: each its own incident and request.
        send(vec![printer_sample(0.0, Some(4.0)), host_sample(95.5)]).await;
        assert!(
            open_of(&s, &admin, "loss_high").await.is_empty(),
            "loss recovered"
        );
        let (_, request) = s
            .get(&admin, &format!("/api/v1/requests/{loss_request}"))
            .await;
        assert_eq!(request["state"], "resolved");
        let toner = open_of(&s, &admin, "toner_low").await;
        assert_eq!(toner.len(), 1);
        assert!(
            toner[0]["summary"]
                .as_str()
                .unwrap()
                .contains("Black Toner"),
            "{toner:?}"
        );
        let disk = open_of(&s, &admin, "disk_full").await;
        assert_eq!(disk.len(), 1);
        assert!(
            disk[0]["summary"].as_str().unwrap().contains("/var"),
            "{disk:?}"
        );
        let requests = repair_requests(&s, &admin).await;
        assert_eq!(requests.len(), 3, "{requests:?}");

        // A sample without supplies says nothing about toner: the incident stays open.
        send(vec![json!({ "device_id": printer, "at": ago(0), "ok": true, "latency_ms": 2.0, "loss_percent": 0.0 })]).await;
        assert_eq!(open_of(&s, &admin, "toner_low").await.len(), 1);

        // A new cartridge and a cleaned disk resolve both.
        send(vec![printer_sample(0.0, Some(100.0)), host_sample(60.0)]).await;
        assert!(open_of(&s, &admin, "toner_low").await.is_empty());
        assert!(open_of(&s, &admin, "disk_full").await.is_empty());
        let requests = repair_requests(&s, &admin).await;
        assert!(
            requests.iter().all(|r| r["state"] == "resolved"),
            "{requests:?}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn alert_thresholds_come_from_the_configuration() {
    let db = &databases()[0];
    let s = TestServer::start_with(db, |c| c.devices.loss_alert_percent = 60).await;
    let admin = s.admin().await;
    let school = s.school(&admin, "1057010001").await;
    let router = device(&s, &admin, school, "router", json!({})).await;
    let credential = enroll(&s, &admin, school, "agent-1").await;
    for loss in [50.0, 70.0] {
        let (status, body) = report(
            &s,
            &credential,
            json!({ "batch_id": batch_id(), "samples": [{ "device_id": router, "at": ago(0), "ok": true, "latency_ms": 1.0, "loss_percent": loss }] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let open = open_of(&s, &admin, "loss_high").await;
        assert_eq!(
            open.len(),
            usize::from(loss > 60.0),
            "loss {loss}: {open:?}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn old_samples_become_five_minute_aggregates() {
    for db in databases() {
        // The server's own sweep runs every half report interval; a day's interval keeps it
        // to its one run at start.
        let s = TestServer::start_with(&db, |c| c.devices.report_interval_secs = 86_400).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let switch = device(
            &s,
            &admin,
            school,
            "switch",
            json!({ "probe": "snmp", "snmp_community": "public" }),
        )
        .await;
        let credential = enroll(&s, &admin, school, "agent-1").await;
        // Eight days ago, aligned to a 5-minute bucket: four samples a minute apart, and one
        // recent sample that stays raw.
        let bucket = (khetnet_server::db::now_ms() - 8 * 86_400_000) / 300_000 * 300_000;
        let at = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
        let octets = |i: i64, o: i64| json!({ "interfaces": [{ "index": 1, "in_octets": i, "out_octets": o }] });
        let samples = json!([
            { "device_id": switch, "at": at(bucket), "ok": true, "latency_ms": 2.0, "loss_percent": 0.0, "detail": octets(0, 0) },
            { "device_id": switch, "at": at(bucket + 60_000), "ok": true, "latency_ms": 4.0, "loss_percent": 20.0, "detail": octets(600_000, 60_000) },
            { "device_id": switch, "at": at(bucket + 120_000), "ok": false, "loss_percent": 100.0, "error": "timeout" },
            { "device_id": switch, "at": at(bucket + 180_000), "ok": true, "latency_ms": 9.0, "loss_percent": 0.0, "detail": octets(1_200_000, 120_000) },
            { "device_id": switch, "at": ago(0), "ok": true, "latency_ms": 1.0, "loss_percent": 0.0 },
        ]);
        let (status, body) = report(
            &s,
            &credential,
            json!({ "batch_id": batch_id(), "samples": samples }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let handle = khetnet_server::db::Db::connect(&s.database_url, 2)
            .await
            .unwrap();
        let settings = khetnet_server::devices::Settings::default();
        let now = khetnet_server::db::now_ms();
        let done = khetnet_server::devices::rollup::maintain(&handle, &settings, now)
            .await
            .unwrap();
        // The server's own sweep runs once at start; on a slow machine that run may come
        // after the report and do the rollup itself. Either way it is done exactly once.
        assert!(
            [(1, 4), (0, 0)].contains(&(done.buckets_written, done.raw_deleted)),
            "{db:?}: {done:?}"
        );
        // Only the recent sample is left raw.
        assert_eq!(samples_of(&s, &admin, switch).await.len(), 1);
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT bucket_at, samples, up_samples, latency_min_ms, latency_avg_ms, latency_max_ms, \
             loss_avg_percent, loss_max_percent, in_bps, out_bps FROM device_aggregates WHERE device_id = $1",
        )
        .bind(switch)
        .fetch_one(&handle.pool)
        .await
        .unwrap();
        assert_eq!(row.get::<i64, _>("bucket_at"), bucket);
        assert_eq!(row.get::<i64, _>("samples"), 4);
        assert_eq!(row.get::<i64, _>("up_samples"), 3);
        assert_eq!(row.get::<f64, _>("latency_min_ms"), 2.0);
        assert_eq!(row.get::<f64, _>("latency_avg_ms"), 5.0);
        assert_eq!(row.get::<f64, _>("latency_max_ms"), 9.0);
        assert_eq!(row.get::<f64, _>("loss_avg_percent"), 30.0);
        assert_eq!(row.get::<f64, _>("loss_max_percent"), 100.0);
        // 1,200,000 octets in 180 s (the sample without counters is skipped): 53,333 bit/s.
        assert!((row.get::<f64, _>("in_bps") - 1_200_000.0 * 8.0 / 180.0).abs() < 0.01);
        assert!((row.get::<f64, _>("out_bps") - 120_000.0 * 8.0 / 180.0).abs() < 0.01);

        // A second run finds nothing more; the 30-day uptime still counts the rolled-up bucket.
        let again = khetnet_server::devices::rollup::maintain(&handle, &settings, now)
            .await
            .unwrap();
        assert_eq!(again.buckets_written, 0);
        // Past the aggregate window the aggregate goes too.
        let far = now + 400 * 86_400_000;
        let gone = khetnet_server::devices::rollup::maintain(&handle, &settings, far)
            .await
            .unwrap();
        assert!(gone.aggregates_deleted >= 1, "{gone:?}");
        handle.pool.close().await;
        s.stop().await;
    }
}

#[tokio::test]
async fn a_new_device_does_not_inherit_the_samples_of_a_deleted_one() {
    for db in databases() {
        let s = TestServer::start_with(&db, |c| c.devices.report_interval_secs = 86_400).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let old = device(&s, &admin, school, "old-printer", json!({})).await;
        let credential = enroll(&s, &admin, school, "agent-1").await;
        let samples = json!([
            sample(old, 120, false),
            sample(old, 60, false),
            sample(old, 30, true)
        ]);
        let (status, body) = report(
            &s,
            &credential,
            json!({ "batch_id": batch_id(), "samples": samples }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(samples_of(&s, &admin, old).await.len(), 3);

        let (status, body) = s
            .call(
                Some(&admin),
                Method::DELETE,
                &format!("/api/v1/devices/{old}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let new = device(&s, &admin, school, "new-printer", json!({})).await;
        if matches!(db, common::Database::Sqlite) {
            // SQLite gives the largest id again after it was deleted: the case at hand.
            assert_eq!(
                new, old,
                "SQLite no longer reuses the id; the test proves less"
            );
        }
        assert!(samples_of(&s, &admin, new).await.is_empty(), "{db:?}");
        let handle = khetnet_server::db::Db::connect(&s.database_url, 2)
            .await
            .unwrap();
        let uptime = khetnet_server::devices::samples::uptime(&handle, school, 0)
            .await
            .unwrap();
        assert_eq!(uptime.get(&new), None, "{db:?}: {uptime:?}");
        let months = khetnet_server::devices::graphs::monthly_uptime(&handle, new)
            .await
            .unwrap();
        assert!(months.is_empty(), "{db:?}: {months:?}");

        // Its own samples are its own.
        let (status, body) = report(
            &s,
            &credential,
            json!({ "batch_id": batch_id(), "samples": [sample(new, 10, true)] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(samples_of(&s, &admin, new).await.len(), 1);
        let uptime = khetnet_server::devices::samples::uptime(&handle, school, 0)
            .await
            .unwrap();
        assert_eq!(uptime.get(&new), Some(&(1, 1)), "{db:?}");

        // Past the raw window both reports roll up: the deleted device's samples leave no
        // aggregate behind, the new one's make one sample's worth.
        let settings = khetnet_server::devices::Settings::default();
        let later = khetnet_server::db::now_ms() + 8 * 86_400_000;
        let done = khetnet_server::devices::rollup::maintain(&handle, &settings, later)
            .await
            .unwrap();
        assert_eq!(done.raw_deleted, 4, "{db:?}: {done:?}");
        let uptime = khetnet_server::devices::samples::uptime(&handle, school, 0)
            .await
            .unwrap();
        assert_eq!(uptime.get(&new), Some(&(1, 1)), "{db:?}");
        handle.pool.close().await;
        s.stop().await;
    }
}

#[tokio::test]
async fn a_device_edit_counts_at_once_and_a_burst_leaves_each_row_with_its_newest_sample() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let router = device(
            &s,
            &admin,
            school,
            "router",
            json!({ "degraded_loss_percent": 50 }),
        )
        .await;
        let credential = enroll(&s, &admin, school, "agent-1").await;
        let loss = |secs_ago: i64, loss: f64| json!({ "batch_id": batch_id(), "samples": [{ "device_id": router, "at": ago(secs_ago), "ok": true, "latency_ms": 1.0, "loss_percent": loss }] });
        let (status, body) = report(&s, &credential, loss(100, 30.0)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, got) = s.get(&admin, &format!("/api/v1/devices/{router}")).await;
        assert_eq!(got["status"], "up", "{db:?}: {got}");
        // The writer remembers the device; the new threshold must reach it before the next report.
        change_device(&s, &admin, router, json!({ "degraded_loss_percent": 20 })).await;
        let (status, body) = report(&s, &credential, loss(90, 30.0)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, got) = s.get(&admin, &format!("/api/v1/devices/{router}")).await;
        assert_eq!(got["status"], "degraded", "{db:?}: {got}");

        // A burst from many clients at once: groups of reports, rows written when the writer
        // catches up (a moment after the last report). Then each row holds its device's newest
        // sample.
        let mut printers = Vec::new();
        for i in 0..8 {
            printers.push(device(&s, &admin, school, &format!("printer-{i}"), json!({})).await);
        }
        let newest = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(10);
        let sends = (0..80_i64).map(|n| {
            let s = &s;
            let credential = credential.clone();
            let printers = printers.clone();
            async move {
                // Report n carries the samples of second n before the newest; they arrive in any order.
                let at = (newest - jiff::SignedDuration::from_secs(79 - n)).to_string();
                let samples: Vec<Value> = printers
                    .iter()
                    .map(|p| json!({ "device_id": p, "at": at, "ok": true, "latency_ms": n as f64, "loss_percent": 0.0 }))
                    .collect();
                let (status, body) = report(s, &credential, json!({ "batch_id": batch_id(), "samples": samples })).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        });
        futures_util::future::join_all(sends).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        for p in &printers {
            let got = loop {
                let (_, got) = s.get(&admin, &format!("/api/v1/devices/{p}")).await;
                if got["last_latency_ms"] == 79.0 || std::time::Instant::now() > deadline {
                    break got;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            };
            assert_eq!(got["status"], "up", "{db:?}: {got}");
            assert_eq!(got["last_latency_ms"], 79.0, "{db:?}: {got}");
            let at: jiff::Timestamp = got["last_sample_at"].as_str().unwrap().parse().unwrap();
            assert_eq!(at.as_second(), newest.as_second(), "{db:?}: {got}");
        }
        s.stop().await;
    }
}

/// Two server instances on one PostgreSQL database: whatever one changes of a school's devices
/// and incidents (an edit, a status, an incident opened) the other's report writer sees at its
/// next report, although it remembers the school's devices between reports.
#[tokio::test]
async fn two_server_instances_on_one_database_see_each_others_changes() {
    for db in databases() {
        if !matches!(db, common::Database::Postgres(_)) {
            continue;
        }
        // The router's 30% loss stays under the loss alert.
        let a = TestServer::start_with(&db, |c| c.devices.loss_alert_percent = 50).await;
        // B joins A's database (started as SQLite only so that no fresh database is made).
        let b = TestServer::start_with(&common::Database::Sqlite, |c| {
            c.database.url = Some(a.database_url.clone());
            c.devices.loss_alert_percent = 50;
        })
        .await;
        let admin = a.admin().await;
        let school = a.school(&admin, "1057010001").await;
        let router = device(
            &a,
            &admin,
            school,
            "router",
            json!({ "degraded_loss_percent": 50, "down_after_minutes": 1 }),
        )
        .await;
        let credential = enroll(&a, &admin, school, "agent-1").await;
        let send = async |s: &TestServer, sample: Value| {
            let body = json!({ "batch_id": batch_id(), "samples": [sample] });
            let (status, body) = report(s, &credential, body).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        };
        let router_now = async || a.get(&admin, &format!("/api/v1/devices/{router}")).await.1;
        let loss = |secs_ago: i64| json!({ "device_id": router, "at": ago(secs_ago), "ok": true, "latency_ms": 1.0, "loss_percent": 30.0 });

        // A remembers the router at 50% from this report on; B lowers it to 20%.
        send(&a, loss(400)).await;
        assert_eq!(router_now().await["status"], "up");
        change_device(&b, &admin, router, json!({ "degraded_loss_percent": 20 })).await;
        send(&a, loss(390)).await;
        assert_eq!(
            router_now().await["status"],
            "degraded",
            "A used B's threshold"
        );

        // B sees the router go down; A's next sample continues that outage, since B's sample.
        send(&b, sample(router, 300, false)).await;
        send(&a, sample(router, 200, false)).await;
        let got = router_now().await;
        assert_eq!(got["status"], "down", "{got}");
        let since: jiff::Timestamp = got["status_since"].as_str().unwrap().parse().unwrap();
        let down_at: jiff::Timestamp = ago(300).parse().unwrap();
        assert!(
            (since.as_second() - down_at.as_second()).abs() <= 2,
            "the outage began with B's sample: {got}"
        );
        // Down for over a minute: A opened one incident. B's next report keeps it, not a second.
        assert_eq!(open_of(&a, &admin, "device_down").await.len(), 1);
        send(&b, sample(router, 100, false)).await;
        assert_eq!(open_of(&a, &admin, "device_down").await.len(), 1);
        assert_eq!(repair_requests(&a, &admin).await.len(), 1);
        // The router recovers in a report to B, which resolves the incident A opened.
        send(&b, sample(router, 50, true)).await;
        assert_eq!(router_now().await["status"], "up");
        assert!(open_of(&a, &admin, "device_down").await.is_empty());

        b.stop().await;
        a.stop().await;
    }
}

#[tokio::test]
async fn samples_kept_one_row_each_move_into_stored_reports() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let switch = device(&s, &admin, school, "switch", json!({})).await;
        enroll(&s, &admin, school, "agent-1").await;
        let handle = khetnet_server::db::Db::connect(&s.database_url, 2)
            .await
            .unwrap();
        // Samples as the server stored them before migration 10: a row each.
        let now = khetnet_server::db::now_ms();
        for (i, (ok, detail)) in [
            (true, Some(r#"{"uptime_secs":5}"#)),
            (false, None),
            (true, None),
        ]
        .into_iter()
        .enumerate()
        {
            sqlx::query(
                "INSERT INTO device_samples (device_id, agent_id, at, ok, latency_ms, loss_percent, error, detail_json) \
                 VALUES ($1, (SELECT MIN(id) FROM agents), $2, $3, NULL, $4, $5, $6)",
            )
            .bind(switch)
            .bind(now - 60_000 * (3 - i as i64))
            .bind(i64::from(ok))
            .bind(if ok { 0_i64 } else { 100 })
            .bind((!ok).then_some("no reply"))
            .bind(detail)
            .execute(&handle.pool)
            .await
            .unwrap();
        }
        let moved = khetnet_server::devices::raw::move_sample_rows(&handle)
            .await
            .unwrap();
        assert_eq!(moved, 3, "{db:?}");
        let listed = samples_of(&s, &admin, switch).await;
        assert_eq!(listed.len(), 3, "{db:?}: {listed:?}");
        assert_eq!(listed[0]["detail"]["uptime_secs"], 5, "{listed:?}");
        assert_eq!(listed[1]["ok"], false, "{listed:?}");
        assert_eq!(listed[1]["error"], "no reply", "{listed:?}");
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_samples")
            .fetch_one(&handle.pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
        assert_eq!(
            khetnet_server::devices::raw::move_sample_rows(&handle)
                .await
                .unwrap(),
            0
        );
        handle.pool.close().await;
        s.stop().await;
    }
}

#[tokio::test]
async fn discovered_devices_are_listed_per_school_until_accepted_or_ignored() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let other = s.school(&admin, "1057010002").await;
        s.user(&admin, "somchai", "technician", None).await;
        s.user(&admin, "staff", "requester", Some(school)).await;
        let tech = s.login("somchai", "password-of-somchai").await;
        let staff = s.login("staff", "password-of-staff").await;
        device(
            &s,
            &admin,
            school,
            "router",
            json!({ "address": "10.1.0.1" }),
        )
        .await;
        let a = enroll(&s, &admin, school, "agent-a").await;
        let b = enroll(&s, &admin, other, "agent-b").await;
        let seen = |ip: &str, mac: &str, secs_ago: i64| json!({ "ip": ip, "mac": mac, "vendor": "HP", "seen_at": ago(secs_ago) });
        let (status, body) = report(
            &s,
            &a,
            json!({ "batch_id": batch_id(), "samples": [], "discovered": [
                seen("10.1.0.1", "00:11:22:33:44:55", 60),
                seen("10.1.0.20", "AA-BB-CC-00-00-01", 60),
                seen("10.1.0.21", "aa:bb:cc:00:00:02", 60) ] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = report(
            &s,
            &b,
            json!({ "batch_id": batch_id(), "samples": [], "discovered": [seen("10.2.0.5", "aa:bb:cc:00:00:09", 0)] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Seen again with a new address: one row, updated.
        let (status, _) = report(
            &s,
            &a,
            json!({ "batch_id": batch_id(), "samples": [], "discovered": [seen("10.1.0.22", "aabbcc000002", 0)] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);

        let list = |token: String, query: String| {
            let s = &s;
            async move {
                let (status, body) = s
                    .get(&token, &format!("/api/v1/discovered-devices{query}"))
                    .await;
                (status, body)
            }
        };
        // The router's address is in the inventory already: not listed.
        let (status, found) = list(tech.clone(), format!("?school_id={school}")).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        let found = found.as_array().unwrap().clone();
        let macs: Vec<&str> = found.iter().map(|f| f["mac"].as_str().unwrap()).collect();
        assert_eq!(macs, ["aa:bb:cc:00:00:02", "aa:bb:cc:00:00:01"], "{db:?}");
        assert_eq!(found[0]["ip"], "10.1.0.22");
        let (_, theirs) = list(tech.clone(), format!("?school_id={other}")).await;
        assert_eq!(theirs.as_array().unwrap().len(), 1);
        assert_eq!(theirs[0]["mac"], "aa:bb:cc:00:00:09");
        let (status, _) = list(staff.clone(), String::new()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Bad sightings are refused whole, naming the field.
        let (status, body) = report(
            &s,
            &a,
            json!({ "batch_id": batch_id(), "samples": [], "discovered": [seen("10.1.0.30", "not-a-mac", 0)] }),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("discovered[0].mac"),
            "{body}"
        );

        // Accept one into the inventory (device and asset), ignore the other. A refusal (the
        // asset number is taken) leaves no device behind, and the sighting can be accepted.
        let printer_id = found[0]["id"].as_i64().unwrap();
        let (status, taken) = s
            .post(
                &tech,
                "/api/v1/assets",
                json!({ "asset_number": "TAKEN-0001", "category": "printer", "school_id": school }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{taken}");
        let (status, refused) = s
            .post(
                &tech,
                &format!("/api/v1/discovered-devices/{printer_id}/accept"),
                json!({ "name": "printer-2", "probe": "snmp", "snmp_community": "public", "asset": { "asset_number": "TAKEN-0001", "category": "printer" } }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        let (_, devices) = s
            .get(&tech, &format!("/api/v1/devices?school_id={school}"))
            .await;
        assert!(
            devices
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["name"] != "printer-2"),
            "no device left by the refused acceptance: {devices}"
        );
        let (status, accepted) = s
            .post(
                &tech,
                &format!("/api/v1/discovered-devices/{printer_id}/accept"),
                json!({ "name": "printer-2", "probe": "snmp", "snmp_community": "public", "asset": { "asset_number": "7440-001-0001/67", "category": "printer" } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{accepted}");
        assert_eq!(accepted["state"], "accepted");
        let device_id = accepted["device_id"].as_i64().unwrap();
        let (_, device) = s.get(&tech, &format!("/api/v1/devices/{device_id}")).await;
        assert_eq!(device["address"], "10.1.0.22");
        assert_eq!(device["school_id"], school);
        let asset_id = accepted["asset_id"].as_i64().unwrap();
        let (status, asset) = s.get(&tech, &format!("/api/v1/assets/{asset_id}")).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        let (status, again) = s
            .post(
                &tech,
                &format!("/api/v1/discovered-devices/{printer_id}/accept"),
                json!({ "name": "x" }),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{again}");
        let other_id = found[1]["id"].as_i64().unwrap();
        let (status, _) = s
            .post(
                &tech,
                &format!("/api/v1/discovered-devices/{other_id}/ignore"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, left) = list(tech.clone(), format!("?school_id={school}")).await;
        assert!(left.as_array().unwrap().is_empty(), "{left}");
        let (_, all) = list(tech.clone(), format!("?school_id={school}&all=true")).await;
        assert_eq!(all.as_array().unwrap().len(), 3);
        let (_, audit) = s
            .get(
                &admin,
                &format!("/api/v1/audit?entity=discovered_device&entity_id={printer_id}"),
            )
            .await;
        assert_eq!(audit[0]["action"], "discovered_device.accept", "{audit}");
        assert_eq!(audit[0]["actor"], "somchai");
        s.stop().await;
    }
}
