//! Probes: ICMP echo (latency, loss), TCP connect, HTTP(S) GET, SNMP v2c/v3 ([`crate::snmp`]),
//! the agent's own host ([`crate::host`]) and LAN discovery ([`crate::discovery`]). Each
//! turns one target into one sample; a failure is a sample with `ok: false` and the reason,
//! never an error.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::discovery::{Discovered, Network};
use crate::host::Host;
use crate::snmp::{Credentials, SnmpV3};

/// One device to probe, as the server's configuration names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: i64,
    pub name: String,
    /// `icmp`, `tcp`, `http`, `snmp`, `host` or `discovery`.
    pub probe: String,
    /// Host name or IP address; the URL for `http`; the IPv4 network for `discovery`.
    pub address: String,
    pub port: Option<i64>,
    pub snmp_community: Option<String>,
    /// SNMPv3 credentials; when present the SNMP probe speaks v3 (authPriv) instead of v2c.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp_v3: Option<SnmpV3>,
    pub interval_secs: i64,
}

/// One measurement, as the server takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub device_id: i64,
    pub at: String,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub loss_percent: Option<f64>,
    pub error: Option<String>,
    pub detail: Option<Value>,
    /// What a `discovery` probe found: it travels in the report's `discovered` list, not in
    /// the sample.
    #[serde(skip)]
    pub discovered: Vec<Discovered>,
}

/// Shared probing resources: the ICMP sockets (opened once) and the HTTP client.
pub struct Prober {
    icmp_v4: Option<surge_ping::Client>,
    icmp_v6: Option<surge_ping::Client>,
    icmp_error: Option<String>,
    http: reqwest::Client,
    host: Host,
    pub timeout: Duration,
    /// ICMP echoes per probe.
    pub pings: u16,
}

impl Prober {
    pub fn new(timeout: Duration) -> Prober {
        let open =
            |kind| surge_ping::Client::new(&surge_ping::Config::builder().kind(kind).build());
        let (icmp_v4, e4) = match open(surge_ping::ICMP::V4) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let icmp_v6 = open(surge_ping::ICMP::V6).ok();
        let icmp_error = e4.map(|e| {
            format!("cannot open an ICMP socket ({e}): run as root, give the agent CAP_NET_RAW, or allow its group in net.ipv4.ping_group_range")
        });
        // Device web pages often carry self-signed certificates: the HTTP probe checks that
        // the service answers, not who it is.
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("khetnet-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP probe client builds");
        Prober {
            icmp_v4,
            icmp_v6,
            icmp_error,
            http,
            host: Host::new(),
            timeout,
            pings: 3,
        }
    }

    /// Probes one target once.
    pub async fn probe(&self, target: &Target) -> Sample {
        let at = jiff::Timestamp::now();
        let result = match target.probe.as_str() {
            "icmp" => self.icmp(target).await,
            "tcp" => self.tcp(target).await,
            "http" => self.http(target).await,
            "snmp" => self.snmp(target).await,
            "host" => self.host().await,
            "discovery" => self.discovery(target).await,
            other => Err(format!("unknown probe {other:?}; update the agent")),
        };
        let mut sample = Sample {
            device_id: target.id,
            at: at.to_string(),
            ok: false,
            latency_ms: None,
            loss_percent: None,
            error: None,
            detail: None,
            discovered: Vec::new(),
        };
        match result {
            Ok(m) => {
                sample.discovered = m.discovered;
                sample.ok = m.ok;
                sample.latency_ms = m.latency_ms;
                sample.loss_percent = m.loss_percent;
                sample.detail = m.detail;
                sample.error = m.error;
            }
            Err(e) => sample.error = Some(e),
        }
        sample
    }

    async fn resolve(&self, target: &Target, port: u16) -> Result<SocketAddr, String> {
        let host = target.address.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let found = tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| format!("resolving {host}: timed out"))?
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next();
        found.ok_or_else(|| format!("resolving {host}: no address"))
    }

    async fn icmp(&self, target: &Target) -> Result<Measured, String> {
        let addr = self.resolve(target, 0).await?.ip();
        let client = match addr {
            IpAddr::V4(_) => self.icmp_v4.as_ref(),
            IpAddr::V6(_) => self.icmp_v6.as_ref(),
        }
        .ok_or_else(|| {
            self.icmp_error
                .clone()
                .unwrap_or_else(|| "no ICMP socket".into())
        })?;
        let ident = surge_ping::PingIdentifier(rand::random());
        let mut pinger = client.pinger(addr, ident).await;
        pinger.timeout(self.timeout);
        let payload = [0u8; 56];
        let mut rtts = Vec::new();
        let mut last_error = None;
        for seq in 0..self.pings {
            match pinger.ping(surge_ping::PingSequence(seq), &payload).await {
                Ok((_, rtt)) => rtts.push(rtt.as_secs_f64() * 1000.0),
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        let loss = 100.0 * f64::from(self.pings - rtts.len() as u16) / f64::from(self.pings);
        let ok = !rtts.is_empty();
        Ok(Measured {
            ok,
            latency_ms: (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64),
            loss_percent: Some(loss),
            error: if ok {
                None
            } else {
                last_error.or(Some("no reply".into()))
            },
            detail: None,
            discovered: Vec::new(),
        })
    }

    async fn tcp(&self, target: &Target) -> Result<Measured, String> {
        let port = target
            .port
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("a tcp probe needs a port")?;
        let addr = self.resolve(target, port).await?;
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => Ok(Measured::up(start.elapsed())),
            Ok(Err(e)) => Ok(Measured::down(format!("connect {addr}: {e}"))),
            Err(_) => Ok(Measured::down(format!(
                "connect {addr}: timed out after {:?}",
                self.timeout
            ))),
        }
    }

    async fn http(&self, target: &Target) -> Result<Measured, String> {
        let start = Instant::now();
        match self.http.get(&target.address).send().await {
            Ok(resp) => {
                let status = resp.status();
                let mut m = Measured::up(start.elapsed());
                m.detail = Some(json!({ "status": status.as_u16() }));
                if status.is_server_error() || status.is_client_error() {
                    m.ok = false;
                    m.loss_percent = None;
                    m.error = Some(format!("HTTP {status}"));
                }
                Ok(m)
            }
            Err(e) => Ok(Measured::down(if e.is_timeout() {
                format!("timed out after {:?}", self.timeout)
            } else {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message.push_str(": ");
                    message.push_str(&s.to_string());
                    source = s.source();
                }
                message
            })),
        }
    }

    async fn snmp(&self, target: &Target) -> Result<Measured, String> {
        let port = target
            .port
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(161);
        let addr = self.resolve(target, port).await?;
        let credentials = match &target.snmp_v3 {
            Some(v3) => Credentials::V3(v3),
            None => Credentials::V2c {
                community: target.snmp_community.as_deref().unwrap_or_default(),
            },
        };
        let start = Instant::now();
        // A printer or UPS answers more tables than a switch: the whole poll gets twice the
        // probe timeout.
        match tokio::time::timeout(2 * self.timeout, crate::snmp::poll(addr, &credentials)).await {
            Ok(Ok(detail)) => {
                let mut m = Measured::up(start.elapsed());
                m.detail = Some(detail);
                Ok(m)
            }
            Ok(Err(e)) => Ok(Measured::down(format!("SNMP {addr}: {e}"))),
            Err(_) => Ok(Measured::down(format!(
                "SNMP {addr}: no answer within {:?}",
                2 * self.timeout
            ))),
        }
    }

    async fn host(&self) -> Result<Measured, String> {
        let start = Instant::now();
        let detail = self.host.measure().await?;
        let mut m = Measured::up(start.elapsed());
        m.latency_ms = None;
        m.loss_percent = None;
        m.detail = Some(detail);
        Ok(m)
    }

    /// An ARP sweep of the target's network (on a blocking thread: raw sockets block).
    async fn discovery(&self, target: &Target) -> Result<Measured, String> {
        let network: Network = target.address.parse()?;
        let start = Instant::now();
        let found = tokio::task::spawn_blocking(move || {
            crate::discovery::arp_sweep(network, Duration::from_secs(1))
        })
        .await
        .map_err(|e| format!("the sweep stopped: {e}"))??;
        let mut m = Measured::up(start.elapsed());
        m.loss_percent = None;
        m.detail = Some(json!({ "network": network.to_string(), "hosts_found": found.len() }));
        m.discovered = found;
        Ok(m)
    }
}

struct Measured {
    ok: bool,
    latency_ms: Option<f64>,
    loss_percent: Option<f64>,
    error: Option<String>,
    detail: Option<Value>,
    discovered: Vec<Discovered>,
}

impl Measured {
    fn up(elapsed: Duration) -> Measured {
        Measured {
            ok: true,
            latency_ms: Some(elapsed.as_secs_f64() * 1000.0),
            loss_percent: Some(0.0),
            error: None,
            detail: None,
            discovered: Vec::new(),
        }
    }

    fn down(error: String) -> Measured {
        Measured {
            ok: false,
            latency_ms: None,
            loss_percent: Some(100.0),
            error: Some(error),
            detail: None,
            discovered: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(probe: &str, address: &str, port: Option<i64>) -> Target {
        Target {
            id: 1,
            name: "t".into(),
            probe: probe.into(),
            address: address.into(),
            port,
            snmp_community: Some("public".into()),
            snmp_v3: None,
            interval_secs: 60,
        }
    }

    #[tokio::test]
    async fn tcp_up_and_down_on_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let prober = Prober::new(Duration::from_secs(2));
        let up = prober
            .probe(&target("tcp", "127.0.0.1", Some(port.into())))
            .await;
        assert!(up.ok, "{up:?}");
        assert!(up.latency_ms.unwrap() >= 0.0);
        drop(listener);
        let down = prober
            .probe(&target("tcp", "127.0.0.1", Some(port.into())))
            .await;
        assert!(!down.ok);
        assert!(down.error.unwrap().contains("refused"));
    }

    #[tokio::test]
    async fn unknown_probe_is_a_failed_sample() {
        let prober = Prober::new(Duration::from_secs(1));
        let s = prober.probe(&target("telnet", "127.0.0.1", None)).await;
        assert!(!s.ok);
        assert!(s.error.unwrap().contains("unknown probe"));
    }

    #[tokio::test]
    async fn icmp_loopback_when_permitted() {
        let prober = Prober::new(Duration::from_secs(1));
        let s = prober.probe(&target("icmp", "127.0.0.1", None)).await;
        if prober.icmp_v4.is_none() {
            eprintln!("ICMP skipped: {:?}", prober.icmp_error);
            return;
        }
        assert!(s.ok, "{s:?}");
        assert_eq!(s.loss_percent, Some(0.0));
    }
}
