//! Test support: a real server on a loopback port over each database the machine offers.
//! SQLite always; PostgreSQL when `KHETNET_TEST_DATABASE_URL` is set (a fresh database per
//! test, dropped afterwards).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use khetnet_config::Config;
use khetnet_server::{RunningServer, StartOptions};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Executor;

pub mod webdriver;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Which database a test runs on.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite,
    Postgres(String),
}

/// The databases to run each test on. Says once why PostgreSQL is skipped.
pub fn databases() -> Vec<Database> {
    let mut dbs = vec![Database::Sqlite];
    match std::env::var("KHETNET_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => dbs.push(Database::Postgres(url)),
        _ => eprintln!(
            "PostgreSQL skipped: set KHETNET_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run these tests on it too"
        ),
    }
    dbs
}

pub struct TestServer {
    pub server: RunningServer,
    pub url: String,
    pub client: Client,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    pg_drop: Option<(String, String)>,
}

/// Makes a fresh, empty PostgreSQL database next to the one in `admin_url`.
async fn fresh_postgres(admin_url: &str) -> (String, String) {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    sqlx::any::install_default_drivers();
    let name = format!(
        "khetnet_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        rand_suffix()
    );
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url)
        .await
        .expect("connecting to KHETNET_TEST_DATABASE_URL");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("creating a test database");
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let prefix = &base[..base.rfind('/').expect("database URL has a /database")];
    (format!("{prefix}/{name}{query}"), name)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

impl TestServer {
    pub async fn start(db: &Database) -> TestServer {
        Self::start_with(db, |_| {}).await
    }

    /// Starts a server on 127.0.0.1 port 0 with its own data directory, after `adjust` has
    /// changed the configuration.
    pub async fn start_with(db: &Database, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        let pg_drop = match db {
            Database::Sqlite => None,
            Database::Postgres(admin) => {
                let (url, name) = fresh_postgres(admin).await;
                config.database.url = Some(url);
                Some((admin.clone(), name))
            }
        };
        adjust(&mut config);
        let database_url = config.database_url();
        let options = StartOptions {
            admin_password: Some(ADMIN_PASSWORD.into()),
        };
        let server = khetnet_server::start(&config, options)
            .await
            .expect("server starts");
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestServer {
            url: server.url(),
            server,
            client,
            database_url,
            dir,
            pg_drop,
        }
    }

    pub async fn stop(self) {
        self.server.shutdown().await.expect("clean shutdown");
        if let Some((admin, name)) = self.pg_drop {
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap();
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }

    /// Sends a JSON request with an optional bearer token; returns the status and the body
    /// (JSON, or `null` when empty). Asserts errors are problem+json.
    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                content_type, "application/problem+json",
                "{path}: error body is not problem+json: {text}"
            );
        }
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Some(token), Method::GET, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Some(token), Method::POST, path, Some(body)).await
    }

    /// Signs in and returns the bearer token; panics with the server's answer otherwise.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self.try_login(username, password).await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn try_login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.call(
            None,
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({ "username": username, "password": password })),
        )
        .await
    }

    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates a school and returns its id.
    pub async fn school(&self, admin: &str, code: &str) -> i64 {
        let (status, body) = self
            .post(admin, "/api/v1/schools", json!({ "code": code, "name_th": format!("โรงเรียน {code}"), "name_en": format!("School {code}") }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Creates a user and returns its id; its password is `password-of-<username>`.
    pub async fn user(
        &self,
        admin: &str,
        username: &str,
        role: &str,
        school_id: Option<i64>,
    ) -> i64 {
        let (status, body) = self
            .post(
                admin,
                "/api/v1/users",
                json!({ "username": username, "display_name": format!("คุณ {username}"), "role": role,
                        "school_id": school_id, "password": format!("password-of-{username}") }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    }
}

/// A multipart/form-data body of `(field, file name, content type, bytes)` parts.
pub fn multipart(parts: &[(&str, &str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----khetnet-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (field, name, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
