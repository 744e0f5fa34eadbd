//! Probes: ICMP echo (latency, loss), TCP connect, HTTP(S) GET, SNMP v2c (system group and
//! IF-MIB interface status and 64-bit traffic counters). Each turns one target into one
//! sample; a failure is a sample with `ok: false` and the reason, never an error.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One device to probe, as the server's configuration names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: i64,
    pub name: String,
    /// `icmp`, `tcp`, `http` or `snmp`.
    pub probe: String,
    pub address: String,
    pub port: Option<i64>,
    pub snmp_community: Option<String>,
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
}

/// Shared probing resources: the ICMP sockets (opened once) and the HTTP client.
pub struct Prober {
    icmp_v4: Option<surge_ping::Client>,
    icmp_v6: Option<surge_ping::Client>,
    icmp_error: Option<String>,
    http: reqwest::Client,
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
        };
        match result {
            Ok(m) => {
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
        let community = target.snmp_community.clone().unwrap_or_default();
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, snmp_poll(addr, community.as_bytes())).await {
            Ok(Ok(detail)) => {
                let mut m = Measured::up(start.elapsed());
                m.detail = Some(detail);
                Ok(m)
            }
            Ok(Err(e)) => Ok(Measured::down(format!("SNMP {addr}: {e}"))),
            Err(_) => Ok(Measured::down(format!(
                "SNMP {addr}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

struct Measured {
    ok: bool,
    latency_ms: Option<f64>,
    loss_percent: Option<f64>,
    error: Option<String>,
    detail: Option<Value>,
}

impl Measured {
    fn up(elapsed: Duration) -> Measured {
        Measured {
            ok: true,
            latency_ms: Some(elapsed.as_secs_f64() * 1000.0),
            loss_percent: Some(0.0),
            error: None,
            detail: None,
        }
    }

    fn down(error: String) -> Measured {
        Measured {
            ok: false,
            latency_ms: None,
            loss_percent: Some(100.0),
            error: Some(error),
            detail: None,
        }
    }
}

const SYS_DESCR: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
const SYS_UPTIME: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
const SYS_NAME: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
const IF_DESCR: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
const IF_OPER_STATUS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];
const IF_HC_IN_OCTETS: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6];
const IF_HC_OUT_OCTETS: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10];

/// Reads the system group and the interface table of one SNMP v2c agent.
async fn snmp_poll(addr: SocketAddr, community: &[u8]) -> Result<Value, String> {
    let mut session = snmp2::AsyncSession::new_v2c(addr, community, rand::random::<u16>().into())
        .await
        .map_err(|e| e.to_string())?;
    let oids: Vec<snmp2::Oid> = [SYS_DESCR, SYS_UPTIME, SYS_NAME]
        .iter()
        .map(|o| snmp2::Oid::from(o).expect("a valid OID"))
        .collect();
    let refs: Vec<&snmp2::Oid> = oids.iter().collect();
    let mut system = serde_json::Map::new();
    {
        let pdu = session
            .get_many(&refs)
            .await
            .map_err(|e| format!("{e:?}"))?;
        if pdu.error_status != 0 {
            return Err(format!("error status {}", pdu.error_status));
        }
        for (oid, value) in pdu.varbinds {
            let arcs = arcs(&oid);
            let key = if arcs == SYS_DESCR {
                "sys_descr"
            } else if arcs == SYS_UPTIME {
                "sys_uptime_secs"
            } else if arcs == SYS_NAME {
                "sys_name"
            } else {
                continue;
            };
            system.insert(key.into(), value_json(&value, key == "sys_uptime_secs"));
        }
    }
    let mut interfaces: std::collections::BTreeMap<u64, serde_json::Map<String, Value>> =
        Default::default();
    for (column, name) in [
        (IF_DESCR, "descr"),
        (IF_OPER_STATUS, "oper_status"),
        (IF_HC_IN_OCTETS, "in_octets"),
        (IF_HC_OUT_OCTETS, "out_octets"),
    ] {
        for (index, value) in walk(&mut session, column).await? {
            let value = if name == "oper_status" {
                match value.as_i64() {
                    Some(1) => json!("up"),
                    Some(2) => json!("down"),
                    Some(3) => json!("testing"),
                    Some(5) => json!("dormant"),
                    Some(7) => json!("lower_layer_down"),
                    _ => value,
                }
            } else {
                value
            };
            interfaces
                .entry(index)
                .or_default()
                .insert(name.into(), value);
        }
    }
    let interfaces: Vec<Value> = interfaces
        .into_iter()
        .map(|(index, mut fields)| {
            fields.insert("index".into(), json!(index));
            Value::Object(fields)
        })
        .collect();
    system.insert("interfaces".into(), Value::Array(interfaces));
    Ok(Value::Object(system))
}

/// Walks one table column with GETBULK; returns (row index, value). Bounded to 4096 rows.
async fn walk(
    session: &mut snmp2::AsyncSession,
    column: &[u64],
) -> Result<Vec<(u64, Value)>, String> {
    let mut rows = Vec::new();
    let mut next: Vec<u64> = column.to_vec();
    while rows.len() < 4096 {
        let oid = snmp2::Oid::from(&next).map_err(|e| format!("{e:?}"))?;
        let pdu = session
            .getbulk(&[&oid], 0, 32)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let mut advanced = false;
        let mut done = false;
        for (oid, value) in pdu.varbinds {
            let a = arcs(&oid);
            if !a.starts_with(column)
                || a.len() != column.len() + 1
                || matches!(value, snmp2::Value::EndOfMibView)
            {
                done = true;
                break;
            }
            rows.push((a[column.len()], value_json(&value, false)));
            next = a;
            advanced = true;
        }
        if done || !advanced {
            break;
        }
    }
    Ok(rows)
}

fn arcs(oid: &snmp2::Oid) -> Vec<u64> {
    oid.iter().map(|i| i.collect()).unwrap_or_default()
}

fn value_json(value: &snmp2::Value, ticks_as_secs: bool) -> Value {
    use snmp2::Value as V;
    match value {
        V::Integer(n) => json!(n),
        V::OctetString(s) => json!(String::from_utf8_lossy(s)),
        V::Counter32(n) | V::Unsigned32(n) => json!(n),
        V::Counter64(n) => json!(n),
        V::Timeticks(t) if ticks_as_secs => json!(f64::from(*t) / 100.0),
        V::Timeticks(t) => json!(t),
        V::IpAddress(a) => json!(std::net::Ipv4Addr::from(*a).to_string()),
        V::Boolean(b) => json!(b),
        _ => Value::Null,
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
