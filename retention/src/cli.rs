//! What the `khetnet-retention` binary needs beyond argument parsing: reading times the way
//! officers write them, naming the actor, and printing results for people.

use std::fmt::Write as _;

use jiff::Timestamp;

use crate::counters::Tally;
use crate::error::{Error, Result};
use crate::holds::{HoldState, PurgePlan};
use crate::query::{Attribution, Hit};
use crate::status::Status;
use crate::store::shown;
use crate::verify::Report;

/// Reads an RFC 3339 time with its offset (`2026-03-01T08:00:00+07:00`).
pub fn parse_time(s: &str) -> Result<Timestamp> {
    s.parse().map_err(|e| {
        Error::invalid(
            "time",
            format!("{s:?} ({e}); write RFC 3339 with an offset, e.g. 2026-03-01T08:00:00+07:00"),
        )
    })
}

/// Reads a hold's end: a time, or a date meaning the end of that day in Bangkok.
pub fn parse_until(s: &str) -> Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = s.parse().map_err(|e| {
        Error::invalid(
            "date",
            format!("{s:?} ({e}); write a date like 2027-06-30 or an RFC 3339 time"),
        )
    })?;
    let next = date
        .tomorrow()
        .map_err(|e| Error::invalid("date", e.to_string()))?;
    next.to_datetime(jiff::civil::Time::midnight())
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::Offset::constant(7)))
        .map(|z| z.timestamp())
        .map_err(|e| Error::invalid("date", e.to_string()))
}

/// The person acting: `--actor`, else the OS user.
pub fn actor(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .or_else(os_user)
        .unwrap_or_else(|| "unknown-os-user".into())
}

/// The name of this process's real uid, from /proc and /etc/passwd (no libc needed).
fn os_user() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid)
        .map(|f| f[0].to_string())
        .or(Some(format!("uid:{uid}")))
}

pub fn render_hit(h: &Hit) -> String {
    let r = &h.record;
    let body = serde_json::to_string(&r.body).unwrap_or_default();
    format!(
        "{}  #{:<8} {:<7} {:<6} {:<24} {}",
        shown(r.event_time),
        h.record_no,
        r.kind(),
        r.school.as_deref().unwrap_or("-"),
        r.source(),
        body
    )
}

pub fn render_attribution(a: &Attribution) -> String {
    let mut s = format!("{}\n", a.summary);
    let _ = writeln!(s, "\n1. NAT ({} records):", a.nat.len());
    if a.nat.is_empty() {
        s += "   no translation logged: the address is taken as the inside address\n";
    }
    for h in &a.nat {
        let _ = writeln!(s, "   {}", render_hit(h));
    }
    for i in &a.inside {
        let _ = writeln!(
            s,
            "\n2. inside {}: {} lease(s), {} session record(s)",
            i.ip,
            i.leases.len(),
            i.sessions.len()
        );
        for h in i.leases.iter().chain(&i.sessions) {
            let _ = writeln!(s, "   {}", render_hit(h));
        }
        let _ = writeln!(s, "3. MAC: {}", none_if_empty(&i.macs));
        for h in &i.by_mac {
            let _ = writeln!(s, "   {}", render_hit(h));
        }
        let _ = writeln!(s, "4. user: {}", none_if_empty(&i.users));
    }
    let _ = writeln!(
        s,
        "\n(read {} of {} segments, {} blocks)",
        a.scanned.segments_read, a.scanned.segments, a.scanned.blocks_read
    );
    s
}

fn none_if_empty(v: &[String]) -> String {
    if v.is_empty() {
        "not found".into()
    } else {
        v.join(", ")
    }
}

pub fn render_report(r: &Report) -> String {
    let mut s = String::new();
    if r.intact {
        let _ = writeln!(
            s,
            "INTACT: {} segments, {} batches, {} records verified",
            r.segments, r.batches, r.records
        );
    } else {
        let _ = writeln!(s, "NOT INTACT: {} problem(s)", r.problems.len());
        for p in &r.problems {
            let _ = writeln!(s, "  {:?}: {}: {}", p.kind, p.place, p.detail);
        }
    }
    if let Some((seq, hash)) = &r.head {
        let _ = writeln!(s, "head: batch {seq} {hash}");
    }
    match r.last_signature {
        Some((seq, at)) => {
            let _ = writeln!(
                s,
                "last signature: batch {seq} at {} ({} batches after it unsigned)",
                shown(at),
                r.unsigned_batches
            );
        }
        None => s += "no signature yet\n",
    }
    for p in &r.purged {
        let _ = writeln!(
            s,
            "lawfully purged: {} (batches {}..={}, {} records) at {} by {}",
            p.segment,
            p.batches.0,
            p.batches.1,
            p.records,
            shown(p.purged_at),
            p.actor
        );
    }
    if r.write_in_progress {
        s += "a batch is being written by the running writer\n";
    }
    let _ = writeln!(s, "public key: {}", r.public_key);
    s
}

pub fn render_status(st: &Status) -> String {
    let t = |x: Option<Timestamp>| x.map_or("-".into(), shown);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "records: {} in {} segments and {} live batches",
        st.records, st.segments, st.live_batches
    );
    let _ = writeln!(
        s,
        "oldest record: {} (received {})",
        t(st.event.min),
        t(st.receive.min)
    );
    let _ = writeln!(
        s,
        "newest record: {} (received {})",
        t(st.event.max),
        t(st.receive.max)
    );
    let _ = writeln!(
        s,
        "days covered: {:.1} (retention {} days)",
        st.days_covered, st.retention_days
    );
    let _ = writeln!(
        s,
        "collector (writer) running: {}; last signature: {}; inbox waiting: {}",
        st.writer_running,
        t(st.last_signature),
        st.inbox_waiting
    );
    let _ = writeln!(s, "segments purgeable now: {}", st.purgeable_segments);
    s += "sources:\n";
    for src in &st.sources {
        let _ = writeln!(
            s,
            "  {:<28} {:>10} records, last {}, {} gap(s)",
            src.source,
            src.records,
            t(src.last),
            src.gaps.len()
        );
        for (a, b) in &src.gaps {
            let _ = writeln!(s, "      gap {} .. {}", shown(*a), shown(*b));
        }
    }
    s += &render_holds(&st.holds);
    s += &render_collector(st);
    s
}

/// A counters snapshot older than this while the collector is not marked stopped is stale:
/// the collector writes one every few seconds.
const STALE_SECS: f64 = 60.0;

fn render_collector(st: &Status) -> String {
    let mut s = String::new();
    if let Some(problem) = &st.collector_problem {
        let _ = writeln!(s, "collector counters: unreadable ({problem})");
        return s;
    }
    let Some(c) = &st.collector else {
        s += "collector counters: none (no collector has run on this store)\n";
        return s;
    };
    let age = st.collector_age_secs.unwrap_or(0.0);
    let when = if c.stopped {
        "written when it stopped".to_string()
    } else if age > STALE_SECS {
        "STALE: the collector stopped without a clean shutdown, or is stuck".to_string()
    } else {
        "running".to_string()
    };
    let _ = writeln!(
        s,
        "collector counters ({}; {}, {:.0} s ago; {}):",
        c.writer,
        c.written_at.map_or("-".into(), shown),
        age,
        when
    );
    let _ = writeln!(
        s,
        "  {:<22} {:>9} {:>11} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8}  state",
        "input", "received", "bytes", "stored", "parsed", "raw", "malformed", "dropped", "refused"
    );
    for i in &c.inputs {
        let t = &i.tally;
        if i.state == "off" && *t == Tally::default() {
            continue;
        }
        let _ = writeln!(
            s,
            "  {:<22} {:>9} {:>11} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8}  {}",
            i.input,
            t.received,
            t.bytes,
            t.stored,
            t.parsed(),
            t.raw,
            t.malformed,
            t.dropped,
            t.refused,
            i.state
        );
    }
    if !c.sources.is_empty() {
        s += "  per source:\n";
    }
    for src in &c.sources {
        let t = &src.tally;
        let name = format!("{}/{}", src.input, src.source);
        let _ = writeln!(
            s,
            "  {:<22} {:>9} {:>11} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8}  school {}, last heard {}",
            name,
            t.received,
            t.bytes,
            t.stored,
            t.parsed(),
            t.raw,
            t.malformed,
            t.dropped,
            "-",
            src.school.as_deref().unwrap_or("-"),
            src.last_heard.map_or("-".into(), shown)
        );
    }
    for r in &c.refused {
        let _ = writeln!(
            s,
            "  refused {}/{}: {} time(s), last {} (not in collector.allow, or a RADIUS client without a secret)",
            r.input,
            r.source,
            r.count,
            r.last.map_or("-".into(), shown)
        );
    }
    for k in &c.clock {
        match (k.offset_ms, &k.error) {
            (Some(ms), _) => {
                let verdict = if k.over_limit {
                    "OVER the law's 10 ms: synchronise this machine's clock"
                } else {
                    "within 10 ms"
                };
                let _ = writeln!(
                    s,
                    "clock: offset to {} {:+.1} ms at {} ({verdict})",
                    k.server,
                    ms,
                    shown(k.at)
                );
            }
            (None, error) => {
                let _ = writeln!(
                    s,
                    "clock: check against {} FAILED at {}: {}",
                    k.server,
                    shown(k.at),
                    error.as_deref().unwrap_or("no answer")
                );
            }
        }
    }
    s
}

pub fn render_holds(holds: &[HoldState]) -> String {
    let mut s = format!("holds: {}\n", holds.len());
    for h in holds {
        let state = if h.active {
            "active"
        } else if h.released.is_some() {
            "released"
        } else {
            "expired"
        };
        let _ = writeln!(
            s,
            "  {} case {} [{}] {} .. {}{}{} until {} by {}: {}",
            h.hold.id,
            h.hold.case,
            state,
            shown(h.hold.from),
            shown(h.hold.to),
            h.hold.ip.map_or(String::new(), |i| format!(" ip {i}")),
            h.hold
                .user
                .as_ref()
                .map_or(String::new(), |u| format!(" user {u}")),
            shown(h.hold.until),
            h.hold.actor,
            h.hold.reason
        );
    }
    s
}

pub fn render_purge(p: &PurgePlan, dry_run: bool) -> String {
    let mut s = format!(
        "{} {} segment(s) (cutoff {})\n",
        if dry_run { "would purge" } else { "purged" },
        p.purge.len(),
        p.cutoff.map_or("-".into(), shown)
    );
    for i in &p.purge {
        let _ = writeln!(s, "  - {} ({} records)", i.segment, i.records);
    }
    for k in &p.kept {
        let _ = writeln!(s, "  kept {}: {}", k.segment, k.why);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_dates_are_read_in_bangkok() {
        let check = |input: &str, expected: Option<&str>| {
            let got = parse_until(input).ok().map(|t| t.to_string());
            assert_eq!(got.as_deref(), expected, "{input}");
        };
        check("2027-06-30", Some("2027-06-30T17:00:00Z"));
        check("2027-06-30T08:00:00+07:00", Some("2027-06-30T01:00:00Z"));
        check("30/06/2027", None);
        assert!(parse_time("2026-01-01 08:00").is_err());
        assert_eq!(
            shown("2026-01-01T01:00:00Z".parse().unwrap()),
            "2026-01-01T08:00:00+07:00"
        );
    }
}
