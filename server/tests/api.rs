//! End-to-end over real HTTP, on SQLite and (when configured) PostgreSQL: login, schools and
//! users, what each role may do, lock-out, clear 4xx for bad input, and the audit trail.

mod common;

use common::{TestServer, databases};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn login_me_and_logout() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let (status, body) = s.try_login("admin", "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{db:?}");
        assert_eq!(body["detail"], "wrong user name or password");
        let (status, _) = s.try_login("nobody", "whatever").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let token = s.admin().await;
        let (status, me) = s.get(&token, "/api/v1/me").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["username"], "admin");
        assert_eq!(me["role"], "admin");
        assert!(me.get("password_hash").is_none(), "hash leaked: {me}");
        assert!(
            me["created_at"].as_str().unwrap().ends_with("+07:00"),
            "times in Bangkok: {me}"
        );

        let (status, _) = s
            .call(Some(&token), Method::POST, "/api/v1/auth/logout", None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = s.get(&token, "/api/v1/me").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a revoked token is refused"
        );
        assert!(body["detail"].as_str().unwrap().contains("sign in again"));
        let (status, _) = s.call(None, Method::GET, "/api/v1/me", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        s.stop().await;
    }
}

#[tokio::test]
async fn schools_and_malformed_input() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let (status, school) = s
            .post(&admin, "/api/v1/schools", json!({ "code": "1057010001", "name_th": "โรงเรียนบ้านหนองบัว",
                "name_en": "Ban Nong Bua School", "district": "เมือง", "latitude": 16.43, "longitude": 102.83 }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{db:?} {school}");
        assert_eq!(school["name_th"], "โรงเรียนบ้านหนองบัว");
        let id = school["id"].as_i64().unwrap();
        let (status, got) = s.get(&admin, &format!("/api/v1/schools/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["code"], "1057010001");
        assert_eq!(got["latitude"], 16.43);

        // Each malformed request: (body, expected status, the field or words the answer must name).
        let cases: &[(Value, StatusCode, &str)] = &[
            (
                json!({ "code": "1057010001", "name_th": "ซ้ำ" }),
                StatusCode::CONFLICT,
                "1057010001",
            ),
            (
                json!({ "code": "x1" }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "name_th",
            ),
            (
                json!({ "code": "x2", "name_th": "ก", "colour": "red" }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "colour",
            ),
            (
                json!({ "code": "x3", "name_th": 5 }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "name_th",
            ),
            (
                json!({ "code": "x4", "name_th": "ก", "latitude": 123.0, "longitude": 100.0 }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "latitude",
            ),
            (
                json!({ "code": "x5", "name_th": "ก", "latitude": 13.7 }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "longitude",
            ),
            (
                json!({ "code": "bad code!", "name_th": "ก" }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "code",
            ),
            (
                json!({ "code": "x6", "name_th": "  " }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "name_th",
            ),
        ];
        for (body, expected, names) in cases {
            let (status, problem) = s.post(&admin, "/api/v1/schools", body.clone()).await;
            assert_eq!(status, *expected, "{body} -> {problem}");
            assert!(
                problem["detail"].as_str().unwrap().contains(names),
                "{body}: {problem} should name {names}"
            );
        }
        let (_, problem) = s
            .post(&admin, "/api/v1/schools", json!({ "code": "x1" }))
            .await;
        assert_eq!(problem["field"], "name_th");

        // Not JSON at all, and the wrong content type: 400 saying what to send.
        let resp = s
            .client
            .post(format!("{}/api/v1/schools", s.url))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.text().await.unwrap().contains("not valid JSON"));
        let resp = s
            .client
            .post(format!("{}/api/v1/schools", s.url))
            .bearer_auth(&admin)
            .body("code=1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.text().await.unwrap().contains("application/json"));

        let (status, _) = s.get(&admin, "/api/v1/schools/abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = s.get(&admin, "/api/v1/schools/999999").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = s.get(&admin, "/api/v1/no-such-thing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, list) = s.get(&admin, "/api/v1/schools").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            list.as_array().unwrap().len(),
            1,
            "refused requests created nothing: {list}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn each_role_is_limited_as_the_table_says() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school_a = s.school(&admin, "A001").await;
        let school_b = s.school(&admin, "B001").await;
        let roles = [
            "technician",
            "approver",
            "requester",
            "compliance",
            "director",
        ];
        let mut tokens = vec![("admin", admin.clone())];
        for role in roles {
            let school = (role == "requester").then_some(school_a);
            s.user(&admin, role, role, school).await;
            tokens.push((role, s.login(role, &format!("password-of-{role}")).await));
        }
        // (method, path, body, roles that succeed, the status the others get)
        let b = format!("/api/v1/schools/{school_b}");
        #[allow(clippy::type_complexity)]
        let table: Vec<(Method, String, Option<Value>, &[&str], StatusCode)> = vec![
            (
                Method::GET,
                "/api/v1/schools".into(),
                None,
                &[
                    "admin",
                    "technician",
                    "approver",
                    "requester",
                    "compliance",
                    "director",
                ],
                StatusCode::FORBIDDEN,
            ),
            (
                Method::GET,
                b.clone(),
                None,
                &["admin", "technician", "approver", "compliance", "director"],
                StatusCode::NOT_FOUND,
            ),
            (
                Method::POST,
                "/api/v1/schools".into(),
                Some(json!({ "code": "NEW", "name_th": "ใหม่" })),
                &["admin"],
                StatusCode::FORBIDDEN,
            ),
            (
                Method::GET,
                "/api/v1/users".into(),
                None,
                &["admin", "technician", "approver"],
                StatusCode::FORBIDDEN,
            ),
            (
                Method::POST,
                "/api/v1/users".into(),
                Some(
                    json!({ "username": "new", "display_name": "ใหม่", "role": "director", "password": "long enough password" }),
                ),
                &["admin"],
                StatusCode::FORBIDDEN,
            ),
            (
                Method::GET,
                "/api/v1/audit".into(),
                None,
                &["admin"],
                StatusCode::FORBIDDEN,
            ),
            (
                Method::GET,
                "/api/v1/me".into(),
                None,
                &[
                    "admin",
                    "technician",
                    "approver",
                    "requester",
                    "compliance",
                    "director",
                ],
                StatusCode::FORBIDDEN,
            ),
        ];
        for (method, path, body, allowed, refused) in &table {
            for (role, token) in &tokens {
                let (status, answer) = s
                    .call(Some(token), method.clone(), path, body.clone())
                    .await;
                if allowed.contains(role) {
                    assert!(
                        status.is_success(),
                        "{db:?}: {role} {method} {path} -> {status} {answer}"
                    );
                } else {
                    assert_eq!(
                        status, *refused,
                        "{db:?}: {role} {method} {path} -> {answer}"
                    );
                }
            }
        }
        // A requester's list holds only their own school.
        let requester = &tokens.iter().find(|(r, _)| *r == "requester").unwrap().1;
        let (_, list) = s.get(requester, "/api/v1/schools").await;
        let codes: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["A001"]);
        let (status, _) = s
            .get(requester, &format!("/api/v1/schools/{school_a}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        // A requester must belong to a school that exists.
        let (status, problem) = s.post(&admin, "/api/v1/users", json!({ "username": "r2", "display_name": "r", "role": "requester", "password": "long enough password" })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["field"], "school_id");
        let (status, problem) = s.post(&admin, "/api/v1/users", json!({ "username": "r3", "display_name": "r", "role": "requester", "school_id": 424242, "password": "long enough password" })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        let (status, problem) = s.post(&admin, "/api/v1/users", json!({ "username": "r4", "display_name": "r", "role": "janitor", "password": "long enough password" })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["field"], "role", "{problem}");
        s.stop().await;
    }
}

#[tokio::test]
async fn lock_out_after_five_failures_until_an_admin_unlocks() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let id = s.user(&admin, "somchai", "technician", None).await;
        for attempt in 1..=5 {
            let (status, body) = s.try_login("somchai", "not the password").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
            assert_eq!(
                body["detail"].as_str().unwrap().contains("locked"),
                attempt == 5,
                "attempt {attempt}: {body}"
            );
        }
        let (status, body) = s.try_login("somchai", "password-of-somchai").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{db:?}: the right password does not open a locked account"
        );
        assert!(body["detail"].as_str().unwrap().contains("locked"));
        let (_, user) = s.get(&admin, &format!("/api/v1/users/{id}")).await;
        assert!(user["locked_until"].is_string(), "{user}");

        let (status, _) = s
            .call(
                Some(&admin),
                Method::POST,
                &format!("/api/v1/users/{id}/unlock"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        s.login("somchai", "password-of-somchai").await;

        // Failures that do not reach the limit are forgotten after a success.
        for _ in 0..4 {
            s.try_login("somchai", "wrong").await;
        }
        s.login("somchai", "password-of-somchai").await;
        for _ in 0..4 {
            s.try_login("somchai", "wrong").await;
        }
        s.login("somchai", "password-of-somchai").await;

        let (_, audit) = s
            .get(
                &admin,
                &format!("/api/v1/audit?entity=user&entity_id={id}&limit=1000"),
            )
            .await;
        let actions: Vec<&str> = audit
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert!(actions.contains(&"user.locked"), "{actions:?}");
        assert!(actions.contains(&"user.unlock"), "{actions:?}");
        assert!(
            actions
                .iter()
                .filter(|a| **a == "auth.login_failed")
                .count()
                >= 13,
            "{actions:?}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn password_change_and_reset() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let id = s.user(&admin, "malee", "approver", None).await;
        let first = s.login("malee", "password-of-malee").await;
        let second = s.login("malee", "password-of-malee").await;
        let change =
            |current: &str, new: &str| json!({ "current_password": current, "new_password": new });
        let (status, problem) = s
            .post(
                &first,
                "/api/v1/me/password",
                change("wrong", "a new long password"),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["field"], "current_password");
        let (status, problem) = s
            .post(
                &first,
                "/api/v1/me/password",
                change("password-of-malee", "short"),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            problem["detail"].as_str().unwrap().contains("at least 10"),
            "{problem}"
        );
        let (status, _) = s
            .post(
                &first,
                "/api/v1/me/password",
                change("password-of-malee", "a new long password"),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{db:?}");
        assert_eq!(
            s.try_login("malee", "password-of-malee").await.0,
            StatusCode::UNAUTHORIZED
        );
        s.login("malee", "a new long password").await;
        assert_eq!(
            s.get(&first, "/api/v1/me").await.0,
            StatusCode::OK,
            "the session that changed it stays"
        );
        assert_eq!(
            s.get(&second, "/api/v1/me").await.0,
            StatusCode::UNAUTHORIZED,
            "other sessions end"
        );

        // An admin's reset, and deactivation.
        let (status, _) = s
            .call(
                Some(&admin),
                Method::PATCH,
                &format!("/api/v1/users/{id}"),
                Some(json!({ "password": "reset by the admin" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        s.login("malee", "reset by the admin").await;
        let (status, _) = s
            .call(
                Some(&admin),
                Method::PATCH,
                &format!("/api/v1/users/{id}"),
                Some(json!({ "active": false })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            s.try_login("malee", "reset by the admin").await.0,
            StatusCode::UNAUTHORIZED
        );
        // The admin cannot lock themselves out.
        let (_, me) = s.get(&admin, "/api/v1/me").await;
        let (status, _) = s
            .call(
                Some(&admin),
                Method::PATCH,
                &format!("/api/v1/users/{}", me["id"]),
                Some(json!({ "active": false })),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        s.stop().await;
    }
}

#[tokio::test]
async fn every_change_is_audited_and_the_trail_cannot_be_edited() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "AUD1").await;
        let user = s.user(&admin, "audited", "requester", Some(school)).await;
        let (status, _) = s
            .call(
                Some(&admin),
                Method::PATCH,
                &format!("/api/v1/users/{user}"),
                Some(json!({ "display_name": "ชื่อใหม่" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        let (status, entries) = s.get(&admin, "/api/v1/audit").await;
        assert_eq!(status, StatusCode::OK);
        let entries = entries.as_array().unwrap();
        let find = |action: &str| {
            entries
                .iter()
                .find(|e| e["action"] == action)
                .unwrap_or_else(|| panic!("{action} not audited: {entries:?}"))
                .clone()
        };
        let created = find("school.create");
        assert_eq!(created["actor"], "admin");
        assert_eq!(created["source_ip"], "127.0.0.1");
        assert!(created["request_id"].is_string());
        assert_eq!(created["after"]["code"], "AUD1");
        assert!(created["before"].is_null());
        let updated = find("user.update");
        assert_eq!(updated["before"]["display_name"], "คุณ audited");
        assert_eq!(updated["after"]["display_name"], "ชื่อใหม่");
        find("user.create");
        find("auth.login");
        let text = serde_json::to_string(entries).unwrap();
        assert!(!text.contains("argon2"), "no password hash in the trail");
        assert!(
            !text.contains("password-of-audited"),
            "no password in the trail"
        );

        // Not even direct SQL can change or remove an entry.
        let db_handle = khetnet_server::db::Db::connect(&s.database_url, 1)
            .await
            .unwrap();
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
        ] {
            let result = sqlx::query(sql).execute(&db_handle.pool).await;
            let err = result.expect_err(sql).to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
        let (_, after) = s.get(&admin, "/api/v1/audit").await;
        assert_eq!(
            after.as_array().unwrap(),
            entries,
            "the refused statements changed nothing"
        );
        db_handle.pool.close().await;
        s.stop().await;
    }
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let s = TestServer::start(&common::Database::Sqlite).await;
    let admin = s.admin().await;
    let (status, health) = s.call(None, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["database"], "ok");
    let metrics = s
        .client
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("khetnet_http_requests_total"), "{metrics}");
    assert!(metrics.contains("khetnet_logins_total"), "{metrics}");

    // Every documented operation is routed (answers something other than 404/405).
    let (status, doc) = s
        .call(None, Method::GET, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
        {
            let url = format!("/api/v1{}", path.replace("{id}", "1"));
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = s
                .client
                .request(m, format!("{}{url}", s.url))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let st = resp.status();
            assert!(
                st != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {url} is documented but not routed"
            );
            if path != "/schools/{id}" && path != "/users/{id}" && !path.contains("unlock") {
                assert!(
                    st != StatusCode::NOT_FOUND,
                    "{method} {url} is documented but not routed"
                );
            }
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_network_is_refused_without_consent() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = khetnet_config::Config::default();
    config.server.data_dir = dir.path().to_owned();
    config.server.listen = "0.0.0.0:0".parse().unwrap();
    let err = khetnet_server::start(&config, Default::default())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("allow_plain_http") && err.contains("--tls-self-signed"),
        "{err}"
    );
}
