//! Legal holds and purge.
//!
//! Purge removes only whole segments whose every record (and batch) is past retention and that
//! no active hold may touch; before a file goes, a signed tombstone for it is made durable, so
//! verification tells this lawful purge from a deletion.

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::batch::{Content, Hold, HoldRelease, Tombstone};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::record::Term;
use crate::segment::{self, SegmentIndex};
use crate::store::{SegmentRef, Store, View};

/// How far ahead a hold may reach: two years, as the Computer Crime Act allows an order to.
pub const MAX_HOLD: SignedDuration = SignedDuration::from_hours(24 * 730);

/// A hold as asked for on the command line.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub case: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub ip: Option<IpAddr>,
    pub user: Option<String>,
    pub until: Timestamp,
    pub reason: String,
}

/// A hold and its state.
#[derive(Debug, Clone, Serialize)]
pub struct HoldState {
    pub hold: Hold,
    pub released: Option<HoldRelease>,
    /// In force now: not released and `until` not passed.
    pub active: bool,
}

/// Every hold ever placed, in the order placed.
pub fn holds(view: &View, now: Timestamp) -> Vec<HoldState> {
    let mut out: Vec<HoldState> = Vec::new();
    for c in view.controls() {
        match c {
            Content::HoldAdd(h) if !out.iter().any(|s| s.hold.id == h.id) => out.push(HoldState {
                hold: h,
                released: None,
                active: false,
            }),
            Content::HoldRelease(r) => {
                if let Some(s) = out.iter_mut().find(|s| s.hold.id == r.id) {
                    s.released.get_or_insert(r);
                }
            }
            _ => {}
        }
    }
    for s in &mut out {
        s.active = s.released.is_none() && s.hold.until > now;
    }
    out.sort_by_key(|s| s.hold.created);
    out
}

impl Store {
    /// Places a hold; it is in the chain (or the inbox) when this returns.
    ///
    /// # Errors
    /// An empty case or reason, `from` after `to`, or `until` in the past or more than two
    /// years ahead.
    pub fn hold_add(&self, actor: &str, req: HoldRequest) -> Result<Hold> {
        let now = self.now();
        if req.case.trim().is_empty() {
            return Err(Error::invalid(
                "hold",
                "give the case or order number with --case",
            ));
        }
        if req.reason.trim().is_empty() {
            return Err(Error::invalid(
                "hold",
                "give the reason (the order) with --reason",
            ));
        }
        if req.from > req.to {
            return Err(Error::invalid("hold", "--from is after --to"));
        }
        if req.until <= now {
            return Err(Error::invalid(
                "hold",
                "--until is in the past; a hold must end in the future",
            ));
        }
        if req.until > now + MAX_HOLD {
            return Err(Error::invalid(
                "hold",
                format!(
                    "--until {} is more than two years ahead; the law allows holds of at most two years, so end it by {}",
                    req.until,
                    now + MAX_HOLD
                ),
            ));
        }
        let digest = Sha256::digest(format!("{}\0{}\0{}", req.case, now, rand::random::<u64>()));
        let hold = Hold {
            id: format!("H-{}", &hex::encode(digest)[..10]),
            case: req.case,
            from: req.from,
            to: req.to,
            ip: req.ip,
            user: req.user,
            until: req.until,
            reason: req.reason,
            actor: actor.into(),
            created: now,
        };
        self.log_access(
            actor,
            "hold_add",
            &serde_json::to_string(&hold).unwrap_or_default(),
        )?;
        self.write_content(Content::HoldAdd(hold.clone()))?;
        Ok(hold)
    }

    /// Releases a hold before its end.
    pub fn hold_release(&self, actor: &str, id: &str, reason: &str) -> Result<HoldRelease> {
        let view = self.view()?;
        let now = self.now();
        if !holds(&view, now)
            .iter()
            .any(|s| s.hold.id == id && s.released.is_none())
        {
            return Err(Error::NoSuchHold(id.into()));
        }
        let release = HoldRelease {
            id: id.into(),
            actor: actor.into(),
            reason: reason.into(),
            released_at: now,
        };
        self.log_access(actor, "hold_release", &format!("{id}: {reason}"))?;
        self.write_content(Content::HoldRelease(release.clone()))?;
        Ok(release)
    }

    /// Works out which segments may be purged now and why the others are kept; with `dry_run`
    /// false, purges them (tombstone first, then the file).
    pub fn purge(&self, actor: &str, dry_run: bool) -> Result<PurgePlan> {
        let view = self.view()?;
        let now = self.now();
        let plan = plan_purge(&view, now, self.options().retention_days);
        let action = if dry_run { "purge_dry_run" } else { "purge" };
        self.log_access(
            actor,
            action,
            &format!("{} segments eligible", plan.purge.len()),
        )?;
        if dry_run {
            return Ok(plan);
        }
        for item in &plan.purge {
            let Some(seg) = view
                .segments
                .iter()
                .find(|s| s.path.ends_with(&item.segment))
            else {
                continue;
            };
            if !item.already_tombstoned {
                let mut t = tombstone(seg, now, actor, self.options().retention_days);
                t.sig = self.keys().sign_hex(&t.message());
                self.write_content(Content::Tombstone(t))?;
            }
            match std::fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&seg.path, e)),
            }
            fsutil::sync_dir(seg.path.parent().unwrap_or(self.dir()))?;
        }
        Ok(plan)
    }
}

/// The segment's file name, as the tombstone and the plan name it.
fn seg_name(seg: &SegmentRef) -> String {
    seg.path.file_name().map_or_else(
        || segment::index_file_name(&seg.index),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn tombstone(seg: &SegmentRef, now: Timestamp, actor: &str, retention_days: u32) -> Tombstone {
    let i = &seg.index;
    Tombstone {
        segment: seg_name(seg),
        first_seq: i.first_seq,
        last_seq: i.last_seq,
        prev: i.prev,
        last_hash: i.last_hash,
        records: i.records,
        min_receive: i.receive.min,
        max_receive: i.receive.max,
        retention_days,
        purged_at: now,
        actor: actor.into(),
        carried: i.controls.clone(),
        sig: String::new(),
    }
}

/// What purge does or would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PurgePlan {
    pub cutoff: Option<Timestamp>,
    pub purge: Vec<PurgeItem>,
    pub kept: Vec<Kept>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PurgeItem {
    pub segment: String,
    pub records: u64,
    pub newest_receive: Option<Timestamp>,
    pub already_tombstoned: bool,
}

/// A segment purge keeps, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub segment: String,
    pub why: String,
}

/// Decides, segment by segment, what may go.
pub fn plan_purge(view: &View, now: Timestamp, retention_days: u32) -> PurgePlan {
    let cutoff = now - SignedDuration::from_hours(24 * i64::from(retention_days));
    let all_holds = holds(view, now);
    let active: Vec<&Hold> = all_holds
        .iter()
        .filter(|s| s.active)
        .map(|s| &s.hold)
        .collect();
    let tombstoned: Vec<u64> = view
        .controls()
        .iter()
        .filter_map(|c| match c {
            Content::Tombstone(t) => Some(t.first_seq),
            _ => None,
        })
        .collect();
    let mut plan = PurgePlan {
        cutoff: Some(cutoff),
        ..PurgePlan::default()
    };
    let newest = view.segments.last().map(|s| s.index.first_seq);
    for s in &view.segments {
        let name = seg_name(s);
        if Some(s.index.first_seq) == newest {
            plan.kept.push(Kept {
                segment: name,
                why: "the newest segment anchors the chain head".into(),
            });
            continue;
        }
        let keep = |why: String| Kept {
            segment: name.clone(),
            why,
        };
        let newest = newest_time(&s.index);
        match newest {
            Some(t) if t < cutoff => {}
            _ => {
                plan.kept.push(keep(format!(
                    "holds data received after {cutoff} (within {retention_days} days)"
                )));
                continue;
            }
        }
        // Unloadable filters answer "maybe": the segment is kept.
        let index = s.with_filters().unwrap_or_else(|_| s.index.clone());
        if let Some(h) = active.iter().find(|h| hold_touches(h, &index)) {
            plan.kept.push(keep(format!(
                "under hold {} (case {}) until {}",
                h.id, h.case, h.until
            )));
            continue;
        }
        plan.purge.push(PurgeItem {
            segment: name,
            records: s.index.records,
            newest_receive: s.index.receive.max,
            already_tombstoned: tombstoned.contains(&s.index.first_seq),
        });
    }
    plan
}

/// The newest receive time of a segment's records, or of its batches when it holds none; None
/// when nothing in it tells a time.
fn newest_time(i: &SegmentIndex) -> Option<Timestamp> {
    let batches = i.controls.iter().map(|b| b.written_at).max();
    match (i.receive.max, batches) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// True when the hold's range and filters may cover some record of the segment (Bloom false
/// positives keep more, never less).
fn hold_touches(h: &Hold, i: &SegmentIndex) -> bool {
    let in_time = i.event.overlaps(h.from, h.to) || i.receive.overlaps(h.from, h.to);
    let ip =
        h.ip.is_none_or(|ip| i.filter.may_contain(&segment::term_key(Term::Ip(ip))));
    let user = h
        .user
        .as_deref()
        .is_none_or(|u| i.filter.may_contain(&segment::term_key(Term::User(u))));
    in_time && ip && user
}
