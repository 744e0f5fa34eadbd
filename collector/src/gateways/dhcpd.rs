//! ISC dhcpd (ISC DHCP server) lease messages:
//!
//! ```text
//! DHCPACK on 10.0.0.5 to aa:bb:cc:dd:ee:ff (student-pc) via eth1
//! DHCPRELEASE of 10.0.0.5 from aa:bb:cc:dd:ee:ff (student-pc) via eth1 (found)
//! ```
//!
//! An ACK is an assignment starting at the line's time (dhcpd does not log the lease length);
//! a RELEASE ends the lease at the line's time. `DHCPACK to IP (MAC)` answers an INFORM and
//! grants no lease, so it is not one.

use khetnet_retention::record::{Body, Lease, LeaseAction};

use super::{Line, Needle, Parsed};
use crate::mac;

static DHCPACK_ON: Needle = Needle::new("DHCPACK on ");
static DHCPRELEASE_OF: Needle = Needle::new("DHCPRELEASE of ");

/// Recognises a dhcpd DHCPACK or DHCPRELEASE line.
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    let (action, rest) = if let Some(at) = DHCPACK_ON.find(line.text) {
        (LeaseAction::Assign, &line.text[at + "DHCPACK on ".len()..])
    } else if let Some(at) = DHCPRELEASE_OF.find(line.text) {
        (
            LeaseAction::Release,
            &line.text[at + "DHCPRELEASE of ".len()..],
        )
    } else {
        return None;
    };
    let mut words = rest.split_whitespace();
    let ip = words.next()?.parse().ok()?;
    let joiner = words.next()?;
    if joiner != "to" && joiner != "from" {
        return None;
    }
    let mac = mac::normalise(words.next()?)?;
    let hostname = words
        .next()
        .and_then(|w| w.strip_prefix('(')?.strip_suffix(')'))
        .map(str::to_owned);
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
            run(super::parse, Some("dhcpd"), text),
            expected,
            "text {text:?}"
        );
    }

    #[test]
    fn dhcpd_fixtures() {
        check(
            "DHCPACK on 10.0.0.5 to aa:bb:cc:dd:ee:ff (student-pc) via eth1",
            "lease assign 10.0.0.5 aa:bb:cc:dd:ee:ff host=student-pc start=2026-11-21T04:00:00Z end=- server=gw",
        );
        check(
            "DHCPACK on 10.0.0.6 to 00:1A:2B:3C:4D:5E via 10.0.0.1",
            "lease assign 10.0.0.6 00:1a:2b:3c:4d:5e host=- start=2026-11-21T04:00:00Z end=- server=gw",
        );
        check(
            "DHCPRELEASE of 10.0.0.5 from aa:bb:cc:dd:ee:ff (student-pc) via eth1 (found)",
            "lease release 10.0.0.5 aa:bb:cc:dd:ee:ff host=student-pc start=- end=2026-11-21T04:00:00Z server=gw",
        );
        check(
            "DHCPRELEASE of 10.0.0.5 from aa:bb:cc:dd:ee:ff via eth1 (not found)",
            "lease release 10.0.0.5 aa:bb:cc:dd:ee:ff host=- start=- end=2026-11-21T04:00:00Z server=gw",
        );
    }

    #[test]
    fn dhcpd_near_misses() {
        check("DHCPACK to 10.0.0.5 (aa:bb:cc:dd:ee:ff) via eth1", "none");
        check(
            "DHCPREQUEST for 10.0.0.5 from aa:bb:cc:dd:ee:ff via eth1",
            "none",
        );
        check("DHCPACK on 10.0.0.5 to not-a-mac via eth1", "none");
        check("DHCPACK on 10.0.0.5 at aa:bb:cc:dd:ee:ff via eth1", "none");
        check("DHCPACK on 10.0.0.5", "none");
    }
}
