//! Target definitions beyond v2c and ping, over real HTTP on SQLite and (when configured)
//! PostgreSQL: SNMPv3 credentials whose passphrases are write-only (given to the school's own
//! agent, never shown in the API or the audit trail), the `host` probe, and `discovery`
//! networks with their size limit.

mod common;

use common::{TestServer, databases};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const AUTH: &str = "auth-passphrase-2569";
const PRIV: &str = "priv-passphrase-2569";

async fn enroll(s: &TestServer, admin: &str, school: i64) -> String {
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
            Some(json!({ "token": token["token"], "name": "agent" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    enrolled["credential"].as_str().unwrap().to_owned()
}

fn v3(school: i64) -> Value {
    json!({ "school_id": school, "name": "core switch", "probe": "snmp", "address": "10.1.0.2",
            "snmp_version": "3", "snmp_user": "khetnet", "snmp_auth_protocol": "sha",
            "snmp_auth_passphrase": AUTH, "snmp_priv_protocol": "aes", "snmp_priv_passphrase": PRIV })
}

#[tokio::test]
async fn bad_targets_are_refused_naming_the_field() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let with = |changes: Value| {
            let mut body = v3(school);
            for (k, v) in changes.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        let cases: Vec<(Value, &str, &str)> = vec![
            (with(json!({ "snmp_user": null })), "snmp_user", "user name"),
            (
                with(json!({ "snmp_auth_protocol": "sha3" })),
                "snmp_auth_protocol",
                "sha256",
            ),
            (
                with(json!({ "snmp_priv_protocol": null })),
                "snmp_priv_protocol",
                "aes",
            ),
            (
                with(json!({ "snmp_auth_passphrase": "short" })),
                "snmp_auth_passphrase",
                "8 to 128",
            ),
            (
                with(json!({ "snmp_priv_passphrase": null })),
                "snmp_priv_passphrase",
                "8 to 128",
            ),
            (
                with(json!({ "snmp_version": "1" })),
                "snmp_version",
                "2c, 3",
            ),
            (
                json!({ "school_id": school, "name": "me", "probe": "host", "address": "10.1.0.9" }),
                "address",
                "localhost",
            ),
            (
                json!({ "school_id": school, "name": "lan", "probe": "discovery", "address": "10.1.0.0/16", "interval_secs": 3600 }),
                "address",
                "/22",
            ),
            (
                json!({ "school_id": school, "name": "lan", "probe": "discovery", "address": "10.1.0.7/24", "interval_secs": 3600 }),
                "address",
                "10.1.0.0/24",
            ),
            (
                json!({ "school_id": school, "name": "lan", "probe": "discovery", "address": "school-lan", "interval_secs": 3600 }),
                "address",
                "IPv4 network",
            ),
            (
                json!({ "school_id": school, "name": "lan", "probe": "discovery", "address": "10.1.0.0/24" }),
                "interval_secs",
                "300",
            ),
        ];
        for (body, field, says) in cases {
            let (status, answer) = s.post(&admin, "/api/v1/devices", body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{db:?} {body} -> {answer}"
            );
            assert_eq!(answer["field"], field, "{body} -> {answer}");
            assert!(answer.to_string().contains(says), "{body} -> {answer}");
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn snmp_v3_passphrases_are_write_only_and_reach_only_their_agent() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        let other = s.school(&admin, "1057010002").await;

        let (status, created) = s.post(&admin, "/api/v1/devices", v3(school)).await;
        assert_eq!(status, StatusCode::CREATED, "{db:?} {created}");
        let id = created["id"].as_i64().unwrap();
        assert_eq!(created["snmp_version"], "3");
        assert_eq!(created["snmp_user"], "khetnet");
        assert_eq!(created["snmp_auth_protocol"], "sha");
        assert_eq!(created["snmp_priv_protocol"], "aes");
        let (_, one) = s.get(&admin, &format!("/api/v1/devices/{id}")).await;
        let (_, all) = s.get(&admin, "/api/v1/devices").await;
        for shown in [&created, &one, &all] {
            let text = shown.to_string();
            assert!(!text.contains(AUTH) && !text.contains(PRIV), "{text}");
        }

        // The school's agent gets them, over its own authenticated connection.
        let agent = enroll(&s, &admin, school).await;
        let stranger = enroll(&s, &admin, other).await;
        let (status, config) = s.get(&agent, "/api/v1/agent/config").await;
        assert_eq!(status, StatusCode::OK, "{config}");
        assert_eq!(
            config["targets"][0]["snmp_v3"],
            json!({ "user": "khetnet", "auth_protocol": "sha", "auth_passphrase": AUTH,
                    "priv_protocol": "aes", "priv_passphrase": PRIV }),
            "{config}"
        );
        let (_, theirs) = s.get(&stranger, "/api/v1/agent/config").await;
        assert_eq!(
            theirs["targets"],
            json!([]),
            "another school's agent: {theirs}"
        );

        // A change that does not name a passphrase keeps it; one that does replaces it.
        let patch = |body: Value| {
            let s = &s;
            let admin = admin.clone();
            async move {
                s.call(
                    Some(&admin),
                    Method::PATCH,
                    &format!("/api/v1/devices/{id}"),
                    Some(body),
                )
                .await
            }
        };
        let (status, after) = patch(json!({ "interval_secs": 120 })).await;
        assert_eq!(status, StatusCode::OK, "{after}");
        let (_, config) = s.get(&agent, "/api/v1/agent/config").await;
        assert_eq!(config["targets"][0]["snmp_v3"]["auth_passphrase"], AUTH);
        let (status, after) = patch(json!({ "snmp_auth_passphrase": "a-new-passphrase" })).await;
        assert_eq!(status, StatusCode::OK, "{after}");
        assert!(!after.to_string().contains("a-new-passphrase"), "{after}");
        let (_, config) = s.get(&agent, "/api/v1/agent/config").await;
        assert_eq!(
            config["targets"][0]["snmp_v3"]["auth_passphrase"],
            "a-new-passphrase"
        );

        // Back to v2c: the v3 credentials are not kept.
        let (status, after) =
            patch(json!({ "snmp_version": "2c", "snmp_community": "c0mmunity" })).await;
        assert_eq!(status, StatusCode::OK, "{after}");
        assert_eq!(after["snmp_user"], Value::Null, "{after}");
        let (_, config) = s.get(&agent, "/api/v1/agent/config").await;
        assert!(config["targets"][0].get("snmp_v3").is_none(), "{config}");

        let (_, audit) = s
            .get(
                &admin,
                &format!("/api/v1/audit?entity=device&entity_id={id}"),
            )
            .await;
        assert_eq!(audit.as_array().unwrap().len(), 4, "{audit}");
        let text = audit.to_string();
        assert!(
            !text.contains(AUTH) && !text.contains(PRIV) && !text.contains("a-new-passphrase"),
            "no passphrase in the audit trail: {text}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn host_and_discovery_targets_reach_the_agent() {
    for db in databases() {
        let s = TestServer::start(&db).await;
        let admin = s.admin().await;
        let school = s.school(&admin, "1057010001").await;
        for body in [
            json!({ "school_id": school, "name": "agent box", "probe": "host", "address": "localhost" }),
            json!({ "school_id": school, "name": "school LAN", "probe": "discovery", "address": "192.168.10.0/23", "interval_secs": 900 }),
        ] {
            let (status, created) = s.post(&admin, "/api/v1/devices", body.clone()).await;
            assert_eq!(status, StatusCode::CREATED, "{db:?} {body} -> {created}");
        }
        let agent = enroll(&s, &admin, school).await;
        let (_, config) = s.get(&agent, "/api/v1/agent/config").await;
        let kinds: Vec<(&str, &str)> = config["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["probe"].as_str().unwrap(), t["address"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [("host", "localhost"), ("discovery", "192.168.10.0/23")],
            "{config}"
        );
        s.stop().await;
    }
}
