//! The agent's HTTP(S) client to the district server: rustls, trusting either a pinned CA file
//! (the server's self-signed certificate, or the district's own CA) or the system's roots.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::probe::Sample;
use crate::state::AgentConfig;
use crate::{Error, Result};

/// A report batch as the server takes it (`POST /api/v1/agent/reports`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub batch_id: String,
    pub agent_version: String,
    /// Samples dropped from the full spool since the last delivered report.
    pub samples_lost: i64,
    pub samples: Vec<Sample>,
    /// Devices that discovery sweeps saw on the school LAN, for the inventory. Left out when
    /// empty, so a server that predates discovery takes the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovered: Vec<crate::discovery::Discovered>,
}

/// What became of a report the agent sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Stored now, or stored before (a replay): either way the spool may drop it.
    Acknowledged { duplicate: bool },
    /// The server will never take this batch as it is (4xx other than 401/408/429): it is
    /// kept aside so the operator can see why, and the spool moves on.
    Rejected { status: u16, detail: String },
    /// The credential was refused: nothing can be sent until the agent is enrolled again.
    Unauthorized,
    /// Not delivered (network, timeout, 5xx): try again later.
    Unavailable(String),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credential: Option<String>,
}

impl Client {
    /// A client for `server_url`. With `ca_cert`, only that CA is trusted (pinned).
    ///
    /// # Errors
    /// The CA file cannot be read or holds no PEM certificate.
    pub fn new(
        server_url: &str,
        ca_cert: Option<&Path>,
        credential: Option<String>,
    ) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("khetnet-agent/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .map_err(Error::io(format!("reading the CA file {}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Tls(format!("{}: not a PEM certificate: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(Error::Tls(format!(
                    "{}: holds no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Tls(format!("building the HTTPS client: {e}")))?;
        Ok(Client {
            http,
            base: server_url.trim_end_matches('/').to_owned(),
            credential,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn server_error(&self, message: impl std::fmt::Display) -> Error {
        Error::Server {
            url: self.base.clone(),
            message: message.to_string(),
        }
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credential {
            Some(c) => req.bearer_auth(c),
            None => req,
        }
    }

    /// `POST /api/v1/agents/enroll`.
    pub async fn enroll(&self, token: &str, name: &str) -> Result<Enrolled> {
        let resp = self
            .http
            .post(self.url("/agents/enroll"))
            .json(&serde_json::json!({ "token": token, "name": name, "version": crate::VERSION }))
            .send()
            .await
            .map_err(|e| self.server_error(describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(|e| self.server_error(e));
        }
        let detail = problem_detail(resp).await;
        Err(self.server_error(format!("enrollment refused ({status}): {detail}")))
    }

    /// `GET /api/v1/agent/config`.
    pub async fn config(&self) -> Result<AgentConfig> {
        let resp = self
            .authorized(self.http.get(self.url("/agent/config")))
            .send()
            .await
            .map_err(|e| self.server_error(describe(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized);
        }
        if !status.is_success() {
            let detail = problem_detail(resp).await;
            return Err(self.server_error(format!("{status}: {detail}")));
        }
        resp.json().await.map_err(|e| self.server_error(e))
    }

    /// `POST /api/v1/agent/reports`: sends `body` (a serialized [`Report`]).
    pub async fn report(&self, body: Vec<u8>) -> Delivery {
        let sent = self
            .authorized(self.http.post(self.url("/agent/reports")))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Delivery::Unavailable(describe(&e)),
        };
        let status = resp.status();
        if status.is_success() {
            #[derive(Deserialize)]
            struct Outcome {
                outcome: String,
            }
            return match resp.json::<Outcome>().await {
                Ok(o) => Delivery::Acknowledged {
                    duplicate: o.outcome == "duplicate",
                },
                // The status says committed; the body was lost on the way.
                Err(_) => Delivery::Acknowledged { duplicate: false },
            };
        }
        match status.as_u16() {
            401 => Delivery::Unauthorized,
            408 | 429 => Delivery::Unavailable(status.to_string()),
            s if status.is_client_error() => Delivery::Rejected {
                status: s,
                detail: problem_detail(resp).await,
            },
            _ => Delivery::Unavailable(format!("{status}: {}", problem_detail(resp).await)),
        }
    }
}

/// The answer to an enrollment.
#[derive(Debug, Deserialize)]
pub struct Enrolled {
    pub agent_id: i64,
    pub school_id: i64,
    pub credential: String,
}

/// The human message of a problem+json answer, or the body.
async fn problem_detail(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or(text)
}

/// A transport error with its causes, which is where rustls says what is wrong.
fn describe(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
