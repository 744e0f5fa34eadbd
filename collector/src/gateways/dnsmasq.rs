//! dnsmasq DHCP messages (tag `dnsmasq-dhcp`):
//!
//! ```text
//! DHCPACK(br0) 10.0.0.5 aa:bb:cc:dd:ee:ff student-pc
//! DHCPRELEASE(br0) 10.0.0.5 aa:bb:cc:dd:ee:ff
//! ```
//!
//! With `log-dhcp` a transaction number comes first (`1234567 DHCPACK(br0) ...`); it is skipped.
//! An ACK is an assignment from the line's time; a RELEASE ends the lease then.

use khetnet_retention::record::{Body, Lease, LeaseAction};

use super::{Line, Needle, Parsed};
use crate::mac;

static DHCPACK: Needle = Needle::new("DHCPACK(");
static DHCPRELEASE: Needle = Needle::new("DHCPRELEASE(");

/// Recognises a dnsmasq DHCPACK or DHCPRELEASE line.
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    let text = line.text;
    let (action, at) = if let Some(at) = DHCPACK.find(text) {
        (LeaseAction::Assign, at)
    } else if let Some(at) = DHCPRELEASE.find(text) {
        (LeaseAction::Release, at)
    } else {
        return None;
    };
    let rest = text[at..].split_once(") ")?.1;
    let mut words = rest.split_whitespace();
    let ip = words.next()?.parse().ok()?;
    let mac = mac::normalise(words.next()?)?;
    let hostname = words.next().map(str::to_owned);
    let (start, end) = match action {
        LeaseAction::Assign => (Some(line.time), None),
        _ => (None, Some(line.time)),
    };
    Some(Parsed::new(Body::Lease(Lease {
        action,
        ip,
        mac,
        hostname,
        start,
        end,
        server: line.host.map(str::to_owned),
    })))
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    fn check(text: &str, expected: &str) {
        assert_eq!(
            run(super::parse, Some("dnsmasq-dhcp"), text),
            expected,
            "text {text:?}"
        );
    }

    #[test]
    fn dnsmasq_fixtures() {
        check(
            "DHCPACK(br0) 10.0.0.5 aa:bb:cc:dd:ee:ff student-pc",
            "lease assign 10.0.0.5 aa:bb:cc:dd:ee:ff host=student-pc start=2026-11-21T04:00:00Z end=- server=gw",
        );
        check(
            "1234567 DHCPACK(eth0) 192.168.88.20 00:1A:2B:3C:4D:5E",
            "lease assign 192.168.88.20 00:1a:2b:3c:4d:5e host=- start=2026-11-21T04:00:00Z end=- server=gw",
        );
        check(
            "DHCPRELEASE(br0) 10.0.0.5 aa:bb:cc:dd:ee:ff",
            "lease release 10.0.0.5 aa:bb:cc:dd:ee:ff host=- start=- end=2026-11-21T04:00:00Z server=gw",
        );
    }

    #[test]
    fn dnsmasq_near_misses() {
        check("DHCPREQUEST(br0) 10.0.0.5 aa:bb:cc:dd:ee:ff", "none");
        check("DHCPACK(br0) 10.0.0.5", "none");
        check("DHCPACK(br0) 10.0.0.5 01:aa:bb:cc:dd:ee:ff", "none");
        check("DHCPACK(br0)", "none");
    }
}
