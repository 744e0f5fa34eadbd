//! Squid `access.log` in the native format (`logformat squid`), read from a file or sent with
//! `access_log syslog:...`:
//!
//! ```text
//! time.ms elapsed-ms client code/status bytes method URL user hierarchy/peer type
//! 1763697600.123    456 10.0.0.5 TCP_MISS/200 1234 GET http://example.com/ student1 HIER_DIRECT/93.184.216.34 text/html
//! ```
//!
//! Each line becomes a [`ProxyRequest`]: behind a proxy, this is what identifies the user.

use jiff::Timestamp;
use khetnet_retention::record::{Body, ProxyRequest};

use super::{Line, Parsed};

/// Recognises a native-format access.log line.
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    // The time first: most lines are not Squid's, and this rejects them without collecting.
    // A number starts with a digit or a sign: that much is checked without splitting the line
    // (every syslog message comes here, twice).
    let first = line.text.trim_start().bytes().next()?;
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return None;
    }
    let event_time = epoch_millis(line.text.split_whitespace().next()?)?;
    let f: Vec<&str> = line.text.split_whitespace().collect();
    if f.len() < 7 {
        return None;
    }
    let duration_ms = f[1].parse().ok()?;
    let client_ip = f[2].parse().ok()?;
    let (code, status) = f[3].split_once('/')?;
    if !code.chars().all(|c| c.is_ascii_uppercase() || c == '_') || code.is_empty() {
        return None;
    }
    let user = f.get(7).filter(|u| **u != "-").map(|u| (*u).to_owned());
    let server_ip = f
        .get(8)
        .and_then(|h| h.split_once('/'))
        .and_then(|(_, peer)| peer.parse().ok());
    Some(Parsed {
        body: Body::Proxy(ProxyRequest {
            client_ip,
            user,
            method: f[5].to_owned(),
            url: f[6].to_owned(),
            status: status.parse().ok(),
            bytes: f[4].parse().ok(),
            duration_ms: Some(duration_ms),
            server_ip,
        }),
        event_time: Some(event_time),
    })
}

/// `1763697600.123` (seconds since the epoch, milliseconds after the dot).
fn epoch_millis(text: &str) -> Option<Timestamp> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let nanos: i32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Timestamp::new(secs, nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    fn check(text: &str, expected: &str) {
        assert_eq!(
            run(super::parse, Some("squid"), text),
            expected,
            "text {text:?}"
        );
    }

    #[test]
    fn squid_fixtures() {
        check(
            "1763697600.123    456 10.0.0.5 TCP_MISS/200 1234 GET http://example.com/ student1 HIER_DIRECT/93.184.216.34 text/html",
            "proxy 10.0.0.5 user=student1 GET http://example.com/ status=200 bytes=1234 ms=456 server=93.184.216.34 @2025-11-21T04:00:00.123Z",
        );
        check(
            "1763697601.000      0 10.0.0.6 TCP_TUNNEL/200 5120 CONNECT www.google.com:443 - HIER_DIRECT/142.250.1.1 -",
            "proxy 10.0.0.6 user=- CONNECT www.google.com:443 status=200 bytes=5120 ms=0 server=142.250.1.1 @2025-11-21T04:00:01Z",
        );
        check(
            "1763697602.5 12 10.0.0.7 TCP_DENIED/403 3900 GET http://blocked.example/ - HIER_NONE/- text/html",
            "proxy 10.0.0.7 user=- GET http://blocked.example/ status=403 bytes=3900 ms=12 server=- @2025-11-21T04:00:02.5Z",
        );
        // Squid's own 000 status for aborted requests; a peer given by name.
        check(
            "1763697603.250 30001 10.0.0.8 TCP_MISS_ABORTED/000 0 GET http://slow.example/ ครูสมชาย FIRSTUP_PARENT/proxy.district.local -",
            "proxy 10.0.0.8 user=ครูสมชาย GET http://slow.example/ status=0 bytes=0 ms=30001 server=- @2025-11-21T04:00:03.25Z",
        );
    }

    #[test]
    fn squid_near_misses() {
        check("1763697600.123 456 10.0.0.5 TCP_MISS/200 1234 GET", "none");
        check(
            "yesterday 456 10.0.0.5 TCP_MISS/200 1234 GET http://example.com/ - HIER_DIRECT/1.2.3.4 -",
            "none",
        );
        check(
            "1763697600.123 456 10.0.0.5 200 1234 GET http://example.com/ - HIER_DIRECT/1.2.3.4 -",
            "none",
        );
        check(
            "1763697600.123 456 10.0.0.5 tcp_miss/200 1234 GET http://example.com/ - - -",
            "none",
        );
        check(
            "1763697600.1234567890 456 10.0.0.5 TCP_MISS/200 1234 GET http://example.com/ - - -",
            "none",
        );
    }
}
