//! The SNMP probe's reads: the system group, IF-MIB interface status and 64-bit traffic
//! counters, Printer-MIB supply levels and UPS-MIB battery state, over SNMP v2c or v3
//! (USM authPriv). Printer and UPS values appear only when the device has those MIBs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// SNMPv3 USM credentials of one device (authPriv only: the agent never sends v3 in clear).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SnmpV3 {
    pub user: String,
    /// `md5`, `sha` (SHA-1), `sha224`, `sha256`, `sha384` or `sha512`.
    pub auth_protocol: String,
    pub auth_passphrase: String,
    /// `des`, `aes` (AES-128), `aes192` or `aes256`.
    pub priv_protocol: String,
    pub priv_passphrase: String,
}

/// The passphrases never reach a log line.
impl fmt::Debug for SnmpV3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnmpV3")
            .field("user", &self.user)
            .field("auth_protocol", &self.auth_protocol)
            .field("priv_protocol", &self.priv_protocol)
            .finish_non_exhaustive()
    }
}

/// How to talk to one SNMP agent.
pub enum Credentials<'a> {
    V2c { community: &'a str },
    V3(&'a SnmpV3),
}

fn auth_protocol(name: &str) -> Result<snmp2::v3::AuthProtocol, String> {
    use snmp2::v3::AuthProtocol as A;
    Ok(match name {
        "md5" => A::Md5,
        "sha" => A::Sha1,
        "sha224" => A::Sha224,
        "sha256" => A::Sha256,
        "sha384" => A::Sha384,
        "sha512" => A::Sha512,
        other => return Err(format!("unknown SNMPv3 auth protocol {other:?}")),
    })
}

fn priv_protocol(name: &str) -> Result<snmp2::v3::Cipher, String> {
    use snmp2::v3::Cipher as C;
    Ok(match name {
        "des" => C::Des,
        "aes" => C::Aes128,
        "aes192" => C::Aes192,
        "aes256" => C::Aes256,
        other => return Err(format!("unknown SNMPv3 privacy protocol {other:?}")),
    })
}

/// A snmp2 error as an operator reads it.
fn describe(e: &snmp2::Error) -> String {
    match e {
        snmp2::Error::AuthFailure(kind) => format!(
            "SNMPv3 authentication failed ({kind}): check the user name, auth protocol and passphrases"
        ),
        snmp2::Error::CommunityMismatch => "SNMPv3 answer for another user".into(),
        other => other.to_string(),
    }
}

async fn open(
    addr: SocketAddr,
    credentials: &Credentials<'_>,
) -> Result<snmp2::AsyncSession, String> {
    let req_id = i32::from(rand::random::<u16>());
    match credentials {
        Credentials::V2c { community } => {
            snmp2::AsyncSession::new_v2c(addr, community.as_bytes(), req_id)
                .await
                .map_err(|e| e.to_string())
        }
        Credentials::V3(v3) => {
            let auth = auth_protocol(&v3.auth_protocol)?;
            let cipher = priv_protocol(&v3.priv_protocol)?;
            let mut security =
                snmp2::v3::Security::new(v3.user.as_bytes(), v3.auth_passphrase.as_bytes())
                    .with_auth_protocol(auth)
                    .with_auth(snmp2::v3::Auth::AuthPriv {
                        cipher,
                        privacy_password: v3.priv_passphrase.as_bytes().to_vec(),
                    });
            if cipher.priv_key_needs_extension(&auth) {
                // Net-SNMP's AES-192/AES-256 extend the key as Blumenthal's draft says.
                security = security.with_key_extension_method(snmp2::v3::KeyExtension::Blumenthal);
            }
            let mut session = snmp2::AsyncSession::new_v3(addr, req_id, security)
                .await
                .map_err(|e| e.to_string())?;
            // Engine discovery (RFC 3414 section 4): the agent's engine id, boots and time.
            session.init().await.map_err(|e| describe(&e))?;
            Ok(session)
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
/// Printer-MIB prtMarkerSuppliesTable columns (RFC 3805), indexed by (hrDeviceIndex, supply).
const PRT_SUPPLIES_DESCRIPTION: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 11, 1, 1, 6];
const PRT_SUPPLIES_MAX_CAPACITY: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 11, 1, 1, 8];
const PRT_SUPPLIES_LEVEL: &[u64] = &[1, 3, 6, 1, 2, 1, 43, 11, 1, 1, 9];
/// UPS-MIB scalars (RFC 1628).
const UPS_BATTERY_STATUS: &[u64] = &[1, 3, 6, 1, 2, 1, 33, 1, 2, 1, 0];
const UPS_MINUTES_REMAINING: &[u64] = &[1, 3, 6, 1, 2, 1, 33, 1, 2, 3, 0];
const UPS_CHARGE_REMAINING: &[u64] = &[1, 3, 6, 1, 2, 1, 33, 1, 2, 4, 0];
const UPS_OUTPUT_SOURCE: &[u64] = &[1, 3, 6, 1, 2, 1, 33, 1, 4, 1, 0];

/// GETs scalars; returns those the device has (no noSuchObject/noSuchInstance).
async fn get(
    session: &mut snmp2::AsyncSession,
    wanted: &[&[u64]],
) -> Result<BTreeMap<Vec<u64>, Value>, String> {
    let oids: Vec<snmp2::Oid> = wanted
        .iter()
        .map(|o| snmp2::Oid::from(o).expect("a valid OID"))
        .collect();
    let refs: Vec<&snmp2::Oid> = oids.iter().collect();
    let mut found = BTreeMap::new();
    // A v3 agent may have moved its engine time on since discovery: one retry with the
    // updated security state.
    for attempt in 0..2 {
        match session.get_many(&refs).await {
            Ok(pdu) => {
                if pdu.error_status != 0 {
                    return Err(format!("error status {}", pdu.error_status));
                }
                for (oid, value) in pdu.varbinds {
                    if matches!(
                        value,
                        snmp2::Value::NoSuchObject | snmp2::Value::NoSuchInstance
                    ) {
                        continue;
                    }
                    found.insert(arcs(&oid), value_json(&value, false));
                }
                return Ok(found);
            }
            Err(snmp2::Error::AuthUpdated) if attempt == 0 => continue,
            Err(e) => return Err(describe(&e)),
        }
    }
    Err("SNMPv3: the agent keeps changing its engine state".into())
}

/// Reads one SNMP agent: the system group, the interface table, and printer supplies and
/// UPS battery when the device has them.
pub async fn poll(addr: SocketAddr, credentials: &Credentials<'_>) -> Result<Value, String> {
    let mut session = open(addr, credentials).await?;
    let mut detail = Map::new();
    let system = get(&mut session, &[SYS_DESCR, SYS_UPTIME, SYS_NAME]).await?;
    if let Some(v) = system.get(SYS_DESCR) {
        detail.insert("sys_descr".into(), v.clone());
    }
    if let Some(v) = system.get(SYS_NAME) {
        detail.insert("sys_name".into(), v.clone());
    }
    if let Some(v) = system.get(SYS_UPTIME).and_then(Value::as_f64) {
        detail.insert("sys_uptime_secs".into(), json!(v / 100.0));
    }

    let mut interfaces: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    for (column, name) in [
        (IF_DESCR, "descr"),
        (IF_OPER_STATUS, "oper_status"),
        (IF_HC_IN_OCTETS, "in_octets"),
        (IF_HC_OUT_OCTETS, "out_octets"),
    ] {
        for (index, value) in walk(&mut session, column).await? {
            let [index] = index[..] else { continue };
            let value = if name == "oper_status" {
                oper_status(value)
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
    detail.insert("interfaces".into(), Value::Array(interfaces));

    let descriptions = walk(&mut session, PRT_SUPPLIES_DESCRIPTION).await?;
    if !descriptions.is_empty() {
        let max: BTreeMap<_, _> = walk(&mut session, PRT_SUPPLIES_MAX_CAPACITY)
            .await?
            .into_iter()
            .collect();
        let level: BTreeMap<_, _> = walk(&mut session, PRT_SUPPLIES_LEVEL)
            .await?
            .into_iter()
            .collect();
        let supplies: Vec<Value> = descriptions
            .into_iter()
            .map(|(index, description)| {
                let percent = supply_percent(
                    level.get(&index).and_then(Value::as_i64),
                    max.get(&index).and_then(Value::as_i64),
                );
                json!({ "description": description, "level_percent": percent })
            })
            .collect();
        detail.insert("supplies".into(), Value::Array(supplies));
    }

    let ups = get(
        &mut session,
        &[
            UPS_BATTERY_STATUS,
            UPS_MINUTES_REMAINING,
            UPS_CHARGE_REMAINING,
            UPS_OUTPUT_SOURCE,
        ],
    )
    .await?;
    if !ups.is_empty() {
        let int = |oid: &[u64]| ups.get(oid).and_then(Value::as_i64);
        detail.insert(
            "ups".into(),
            json!({
                // upsOutputSource battery(5).
                "on_battery": int(UPS_OUTPUT_SOURCE) == Some(5),
                "charge_percent": int(UPS_CHARGE_REMAINING).filter(|c| (0..=100).contains(c)),
                "minutes_remaining": int(UPS_MINUTES_REMAINING).filter(|m| *m >= 0),
                "battery_status": match int(UPS_BATTERY_STATUS) {
                    Some(2) => "normal",
                    Some(3) => "low",
                    Some(4) => "depleted",
                    _ => "unknown",
                },
            }),
        );
    }
    Ok(Value::Object(detail))
}

fn oper_status(value: Value) -> Value {
    match value.as_i64() {
        Some(1) => json!("up"),
        Some(2) => json!("down"),
        Some(3) => json!("testing"),
        Some(5) => json!("dormant"),
        Some(7) => json!("lower_layer_down"),
        _ => value,
    }
}

/// prtMarkerSuppliesLevel as a percentage of prtMarkerSuppliesMaxCapacity. The MIB's special
/// values (-1 other, -2 unknown, -3 "some remains") and an unknown capacity give no number.
pub fn supply_percent(level: Option<i64>, max: Option<i64>) -> Option<f64> {
    match (level, max) {
        (Some(level), Some(max)) if level >= 0 && max > 0 => {
            Some((100.0 * level as f64 / max as f64).clamp(0.0, 100.0))
        }
        _ => None,
    }
}

/// Walks one table column with GETBULK; returns (index arcs after the column, value).
/// Bounded to 4096 rows.
async fn walk(
    session: &mut snmp2::AsyncSession,
    column: &[u64],
) -> Result<Vec<(Vec<u64>, Value)>, String> {
    let mut rows = Vec::new();
    let mut next: Vec<u64> = column.to_vec();
    let mut retried = false;
    while rows.len() < 4096 {
        let oid = snmp2::Oid::from(&next).map_err(|e| format!("{e:?}"))?;
        let pdu = match session.getbulk(&[&oid], 0, 32).await {
            Ok(pdu) => pdu,
            Err(snmp2::Error::AuthUpdated) if !retried => {
                retried = true;
                continue;
            }
            Err(e) => return Err(describe(&e)),
        };
        let mut advanced = false;
        let mut done = false;
        for (oid, value) in pdu.varbinds {
            let a = arcs(&oid);
            if !a.starts_with(column)
                || a.len() <= column.len()
                || matches!(
                    value,
                    snmp2::Value::EndOfMibView
                        | snmp2::Value::NoSuchObject
                        | snmp2::Value::NoSuchInstance
                )
            {
                done = true;
                break;
            }
            rows.push((a[column.len()..].to_vec(), value_json(&value, false)));
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

    #[test]
    fn supply_levels() {
        let check = |level, max, expected: Option<f64>| {
            assert_eq!(supply_percent(level, max), expected, "{level:?}/{max:?}")
        };
        check(Some(50), Some(200), Some(25.0));
        check(Some(0), Some(100), Some(0.0));
        check(Some(100), Some(100), Some(100.0));
        check(Some(-3), Some(100), None); // some remaining, amount unknown
        check(Some(-2), Some(100), None); // unknown
        check(Some(-1), Some(100), None); // other
        check(Some(40), Some(-2), None); // capacity unknown
        check(Some(40), Some(0), None);
        check(Some(140), Some(100), Some(100.0));
        check(None, Some(100), None);
    }

    #[test]
    fn v3_secrets_stay_out_of_debug() {
        let v3 = SnmpV3 {
            user: "monitor".into(),
            auth_protocol: "sha".into(),
            auth_passphrase: "auth-secret-1".into(),
            priv_protocol: "aes".into(),
            priv_passphrase: "priv-secret-1".into(),
        };
        let shown = format!("{v3:?}");
        assert!(
            shown.contains("monitor") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
