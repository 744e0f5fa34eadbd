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
        let s = TestServer::start(&db).await;
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
        assert_eq!(open[0]["request_id"], Value::Null);

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
        let (status, _) = report(
            &s,
            &credential,
            json!({ "batch_id": batch_id(), "samples": [] }),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, open) = s.get(&admin, "/api/v1/incidents?open=true").await;
        assert!(open.as_array().unwrap().is_empty(), "{open}");
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
