//! FortiGate (FortiOS) traffic logs: `key=value` pairs, values with spaces in double quotes
//! (Fortinet's "Log Message Reference", type `traffic`).
//!
//! ```text
//! date=2026-11-21 time=10:59:50 devname="FGT60F-SCHOOL" logid="0000000013" type="traffic" subtype="forward" srcip=10.0.0.5 srcport=51234 dstip=1.2.3.4 dstport=443 proto=6 action="close" trandisp="snat" transip=203.0.113.9 transport=40001 duration=10 sentbyte=1234 rcvdbyte=5678 sentpkt=10 rcvdpkt=12 user="student1" tz="+0700"
//! ```
//!
//! Each line becomes a [`Flow`] with the post-NAT source (`transip`/`transport`), both
//! directions' bytes and packets added, and the session's start and end when `duration` is
//! given (FortiOS logs a session when it closes). `date`/`time`/`tz` give the event time; a line
//! without `tz` is read as Bangkok time.
//!
//! Not kept: the `user` field; [`Flow`] has no place for it yet (reported to the retention
//! crate's owner).

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::record::{Body, Flow};

use super::{Line, Needle, Parsed, key_values, lookup};

static SRCIP: Needle = Needle::new("srcip=");

/// Recognises a FortiGate traffic log line.
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    let text = line.text;
    SRCIP.find(text)?;
    let pairs = key_values(text);
    if lookup(&pairs, "type").is_some_and(|t| t != "traffic") {
        return None;
    }
    let num = |key| lookup(&pairs, key).and_then(|v| v.parse::<u64>().ok());
    let port = |key| lookup(&pairs, key).and_then(|v| v.parse::<u16>().ok());
    let src_ip = lookup(&pairs, "srcip")?.parse().ok()?;
    let dst_ip = lookup(&pairs, "dstip")?.parse().ok()?;
    let protocol = lookup(&pairs, "proto")?.parse().ok()?;
    let nat_src_ip = lookup(&pairs, "transip")
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_unspecified());
    let sum = |a, b| match (num(a), num(b)) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0).saturating_add(y.unwrap_or(0))),
    };
    let event_time = event_time(&pairs);
    let end = event_time.filter(|_| num("duration").is_some());
    let start = end.and_then(|end| {
        let secs = i64::try_from(num("duration")?).ok()?;
        end.checked_sub(SignedDuration::from_secs(secs)).ok()
    });
    Some(Parsed {
        body: Body::Flow(Flow {
            protocol,
            src_ip,
            src_port: port("srcport"),
            dst_ip,
            dst_port: port("dstport"),
            bytes: sum("sentbyte", "rcvdbyte"),
            packets: sum("sentpkt", "rcvdpkt"),
            start,
            end,
            exporter: None,
            nat_src_ip,
            nat_src_port: nat_src_ip.and(port("transport")),
            action: lookup(&pairs, "action").map(str::to_owned),
            user: lookup(&pairs, "user")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
        }),
        event_time,
    })
}

/// `date=YYYY-MM-DD time=HH:MM:SS tz="+HHMM"`.
fn event_time(pairs: &[(&str, &str)]) -> Option<Timestamp> {
    let date = lookup(pairs, "date")?;
    let time = lookup(pairs, "time")?;
    let tz = match lookup(pairs, "tz") {
        Some(tz)
            if tz.len() == 5
                && (tz.starts_with('+') || tz.starts_with('-'))
                && tz[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{}:{}", &tz[..3], &tz[3..])
        }
        Some(tz) => tz.to_owned(),
        None => "+07:00".to_owned(),
    };
    format!("{date}T{time}{tz}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    fn check(text: &str, expected: &str) {
        assert_eq!(run(super::parse, None, text), expected, "text {text:?}");
    }

    #[test]
    fn fortigate_fixtures() {
        check(
            r#"date=2026-11-21 time=10:59:50 devname="FGT60F-SCHOOL" devid="FGT60FTK20000001" logid="0000000013" type="traffic" subtype="forward" level="notice" vd="root" eventtime=1763697590000000000 tz="+0700" srcip=10.0.0.5 srcport=51234 srcintf="internal" dstip=1.2.3.4 dstport=443 dstintf="wan1" proto=6 action="close" policyid=1 service="HTTPS" trandisp="snat" transip=203.0.113.9 transport=40001 duration=10 sentbyte=1234 rcvdbyte=5678 sentpkt=10 rcvdpkt=12 user="student1""#,
            "flow p=6 10.0.0.5:51234>1.2.3.4:443 bytes=6912 pkts=22 nat=203.0.113.9:40001 act=close start=2026-11-21T03:59:40Z end=2026-11-21T03:59:50Z exp=- @2026-11-21T03:59:50Z",
        );
        // No NAT (transip 0.0.0.0 / absent), no tz (Bangkok), no duration, UDP.
        check(
            r#"date=2026-11-21 time=11:00:00 type="traffic" srcip=10.0.0.7 srcport=5353 dstip=8.8.8.8 dstport=53 proto=17 action="accept" transip=0.0.0.0 transport=0 sentbyte=72"#,
            "flow p=17 10.0.0.7:5353>8.8.8.8:53 bytes=72 pkts=- nat=- act=accept start=- end=- exp=- @2026-11-21T04:00:00Z",
        );
        // Without date: no event time of its own.
        check(
            r#"type=traffic srcip=10.0.0.7 dstip=8.8.8.8 proto=1 action=deny"#,
            "flow p=1 10.0.0.7>8.8.8.8 bytes=- pkts=- nat=- act=deny start=- end=- exp=-",
        );
    }

    #[test]
    fn fortigate_keeps_the_user() {
        let user = |text: &str| match super::parse(&crate::gateways::Line {
            time: "2026-11-21T04:00:00Z".parse().unwrap(),
            host: None,
            app: None,
            text,
        }) {
            Some(super::Parsed {
                body: khetnet_retention::record::Body::Flow(flow),
                ..
            }) => flow.user,
            other => panic!("not a flow: {other:?}"),
        };
        let line = r#"type="traffic" srcip=10.0.0.5 dstip=1.2.3.4 proto=6"#;
        assert_eq!(
            user(&format!("{line} user=\"student1\"")).as_deref(),
            Some("student1")
        );
        assert_eq!(user(&format!("{line} user=\"\"")), None);
        assert_eq!(user(line), None);
    }

    #[test]
    fn fortigate_odd_zones() {
        // A zone that is not +HHMM is passed to the timestamp parser as is, or yields no time.
        check(
            r#"date=2026-11-21 time=11:00:00 tz="+07:00" type=traffic srcip=10.0.0.7 dstip=8.8.8.8 proto=1"#,
            "flow p=1 10.0.0.7>8.8.8.8 bytes=- pkts=- nat=- act=- start=- end=- exp=- @2026-11-21T04:00:00Z",
        );
        check(
            r#"date=2026-11-21 time=11:00:00 tz="+กx" type=traffic srcip=10.0.0.7 dstip=8.8.8.8 proto=1"#,
            "flow p=1 10.0.0.7>8.8.8.8 bytes=- pkts=- nat=- act=- start=- end=- exp=-",
        );
    }

    #[test]
    fn fortigate_near_misses() {
        check(
            r#"type="event" subtype="user" srcip=10.0.0.5 dstip=1.2.3.4 proto=6"#,
            "none",
        );
        check(r#"type="traffic" srcip=10.0.0.5 dstip=1.2.3.4"#, "none");
        check(
            r#"type="traffic" srcip=10.0.0.5 dstip=host proto=6"#,
            "none",
        );
    }
}
