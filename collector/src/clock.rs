//! SNTP (RFC 4330) client messages: the request and the offset and delay computed from the
//! answer. Pure functions over bytes; [`crate::net::clock`] sends them.
//!
//! The Computer Crime Act asks for clocks within 10 ms of a reference ([`LEGAL_LIMIT`]).

use jiff::{SignedDuration, Timestamp};

/// The law's limit on the clock's offset to reference time.
pub const LEGAL_LIMIT: SignedDuration = SignedDuration::from_millis(10);

/// Seconds from the NTP era (1900-01-01) to the Unix epoch.
const NTP_UNIX: i64 = 2_208_988_800;

/// One measurement against one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// How far the server's clock is ahead of ours (negative: ours is ahead).
    pub offset: SignedDuration,
    /// The round trip, less the server's own processing time.
    pub delay: SignedDuration,
    pub stratum: u8,
}

impl Measurement {
    /// True when the offset is over the law's 10 ms.
    pub fn over_limit(&self) -> bool {
        self.offset.abs() > LEGAL_LIMIT
    }
}

/// A 64-bit NTP timestamp.
pub fn to_ntp(t: Timestamp) -> [u8; 8] {
    let secs = (t.as_second() + NTP_UNIX) as u32;
    let frac = ((u64::from(t.subsec_nanosecond() as u32) << 32) / 1_000_000_000) as u32;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&secs.to_be_bytes());
    out[4..].copy_from_slice(&frac.to_be_bytes());
    out
}

/// The time of a 64-bit NTP timestamp (era 0; valid until 2036).
pub fn from_ntp(b: &[u8]) -> Option<Timestamp> {
    let secs = i64::from(u32::from_be_bytes(b.get(..4)?.try_into().ok()?));
    let frac = u64::from(u32::from_be_bytes(b.get(4..8)?.try_into().ok()?));
    let nanos = ((frac * 1_000_000_000) >> 32) as i32;
    Timestamp::new(secs - NTP_UNIX, nanos).ok()
}

/// A client request (version 4, mode 3) sent at `sent`; the server echoes `sent` back as the
/// originate timestamp.
pub fn request(sent: Timestamp) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = (4 << 3) | 3;
    p[40..48].copy_from_slice(&to_ntp(sent));
    p
}

/// Reads a server's answer to the request sent at `sent`, received at `received`.
///
/// # Errors
/// Why the answer cannot be used: too short, not a server reply, a kiss-o'-death (stratum 0),
/// an unsynchronised server, or not the answer to our request.
pub fn response(p: &[u8], sent: Timestamp, received: Timestamp) -> Result<Measurement, String> {
    if p.len() < 48 {
        return Err(format!("{} bytes; an NTP reply has at least 48", p.len()));
    }
    let leap = p[0] >> 6;
    let mode = p[0] & 7;
    if mode != 4 && mode != 5 {
        return Err(format!("mode {mode}, not a server reply"));
    }
    let stratum = p[1];
    if stratum == 0 {
        let code = String::from_utf8_lossy(&p[12..16]).into_owned();
        return Err(format!("kiss-o'-death {code:?}"));
    }
    if leap == 3 {
        return Err("the server says its clock is not synchronised".into());
    }
    if p[24..32] != to_ntp(sent) {
        return Err("the originate timestamp is not ours (a stray or forged reply)".into());
    }
    let t2 = from_ntp(&p[32..40]).ok_or("bad receive timestamp")?;
    let t3 = from_ntp(&p[40..48]).ok_or("bad transmit timestamp")?;
    let (t1, t4) = (sent, received);
    let offset = ((t2.duration_since(t1)) + (t3.duration_since(t4))) / 2;
    let delay = t4.duration_since(t1) - t3.duration_since(t2);
    Ok(Measurement {
        offset,
        delay,
        stratum,
    })
}

/// A server's reply to `request` received at `t2` and sent at `t3` (for tests and the local
/// responder).
pub fn reply(request: &[u8; 48], t2: Timestamp, t3: Timestamp, stratum: u8) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = (4 << 3) | 4;
    p[1] = stratum;
    p[24..32].copy_from_slice(&request[40..48]);
    p[32..40].copy_from_slice(&to_ntp(t2));
    p[40..48].copy_from_slice(&to_ntp(t3));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn ntp_timestamps_round_trip_to_the_nanosecond_scale() {
        let at = t("2026-11-21T04:00:00.123456789Z");
        let back = from_ntp(&to_ntp(at)).unwrap();
        assert!(
            back.duration_since(at).abs() < SignedDuration::from_nanos(2),
            "{back}"
        );
        // RFC 5905's example: the Unix epoch is NTP second 2208988800.
        assert_eq!(
            &to_ntp(t("1970-01-01T00:00:00Z"))[..4],
            &2_208_988_800u32.to_be_bytes()
        );
    }

    fn check(t1: &str, t2: &str, t3: &str, t4: &str, offset_ms: i64, delay_ms: i64) {
        let req = request(t(t1));
        let m = response(&reply(&req, t(t2), t(t3), 2), t(t1), t(t4)).unwrap();
        assert_eq!(
            (
                (m.offset.as_secs_f64() * 1e3).round() as i64,
                (m.delay.as_secs_f64() * 1e3).round() as i64
            ),
            (offset_ms, delay_ms),
            "{t1} {t2} {t3} {t4}"
        );
    }

    #[test]
    fn offset_and_delay() {
        // In sync, 20 ms each way, 1 ms at the server.
        check(
            "2026-11-21T04:00:00.000Z",
            "2026-11-21T04:00:00.020Z",
            "2026-11-21T04:00:00.021Z",
            "2026-11-21T04:00:00.041Z",
            0,
            40,
        );
        // The server is 50 ms ahead.
        check(
            "2026-11-21T04:00:00.000Z",
            "2026-11-21T04:00:00.070Z",
            "2026-11-21T04:00:00.071Z",
            "2026-11-21T04:00:00.041Z",
            50,
            40,
        );
        // Ours is 15 ms ahead.
        check(
            "2026-11-21T04:00:00.000Z",
            "2026-11-21T04:00:00.005Z",
            "2026-11-21T04:00:00.006Z",
            "2026-11-21T04:00:00.041Z",
            -15,
            40,
        );
    }

    #[test]
    fn unusable_replies() {
        let sent = t("2026-11-21T04:00:00Z");
        let req = request(sent);
        let good = reply(&req, sent, sent, 2);
        let err = |p: &[u8]| response(p, sent, sent).unwrap_err();
        assert!(err(&good[..47]).contains("48"));
        let mut client = good;
        client[0] = (4 << 3) | 3;
        assert!(err(&client).contains("mode 3"));
        let mut kod = good;
        kod[1] = 0;
        kod[12..16].copy_from_slice(b"RATE");
        assert!(err(&kod).contains("RATE"));
        let mut unsync = good;
        unsync[0] |= 3 << 6;
        assert!(err(&unsync).contains("not synchronised"));
        let other = reply(&request(t("2026-11-21T04:00:01Z")), sent, sent, 2);
        assert!(err(&other).contains("originate"));
        assert!(response(&good, sent, sent).is_ok());
        assert!(!response(&good, sent, sent).unwrap().over_limit());
    }
}
