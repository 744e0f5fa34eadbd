//! The one workflow every request kind shares: its states, the actions, and the table of which
//! party may take which action in which state.
//!
//! [`RULES`] is the only place that says so; `docs/DESK-WORKFLOW.md` shows the same table and a
//! test fails when the two disagree. An action no rule gives to any of the user's parties is
//! refused with 403; one that a party may take, but not in the request's current state, with 409.

use serde::Serialize;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Submitted,
    PendingApproval,
    Approved,
    Rejected,
    Assigned,
    InProgress,
    Waiting,
    Resolved,
    Closed,
    Cancelled,
}

pub const STATES: [State; 10] = [
    State::Submitted,
    State::PendingApproval,
    State::Approved,
    State::Rejected,
    State::Assigned,
    State::InProgress,
    State::Waiting,
    State::Resolved,
    State::Closed,
    State::Cancelled,
];

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::PendingApproval => "pending_approval",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Assigned => "assigned",
            State::InProgress => "in_progress",
            State::Waiting => "waiting",
            State::Resolved => "resolved",
            State::Closed => "closed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        STATES.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the request is finished (nothing more to do but comment, rate or reopen).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Rejected | State::Resolved | State::Closed | State::Cancelled
        )
    }
}

/// What someone does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Approve,
    Reject,
    Assign,
    Start,
    Wait,
    Resolve,
    Close,
    Cancel,
    Reopen,
    Comment,
    Rate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Assign => "assign",
            Action::Start => "start",
            Action::Wait => "wait",
            Action::Resolve => "resolve",
            Action::Close => "close",
            Action::Cancel => "cancel",
            Action::Reopen => "reopen",
            Action::Comment => "comment",
            Action::Rate => "rate",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        RULES.iter().map(|r| r.action).find(|a| a.as_str() == s)
    }
}

/// How a user stands to one request. A user can be several at once (a technician who filed
/// a request is both its filer and a worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The user who filed the request.
    Filer,
    /// A user whose role may work the desk queue (`requests.work`).
    Worker,
    /// A user whose role may approve (`requests.approve`).
    Approver,
    /// Anyone who may see the request (a requester sees their own school's).
    Viewer,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Filer => "filer",
            Party::Worker => "worker",
            Party::Approver => "approver",
            Party::Viewer => "viewer",
        }
    }
}

/// Where an action leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// Always to this state.
    State(State),
    /// The state does not change (comment, rate).
    Same,
    /// `approved` after the last approval step, else stays `pending_approval`.
    NextApprovalStep,
    /// `assigned` when someone is assigned, else `submitted` (or `approved`).
    Reopened,
}

/// One row of the table.
pub struct Rule {
    pub action: Action,
    pub from: &'static [State],
    pub parties: &'static [Party],
    pub to: To,
    /// What the action means, for the documentation.
    pub note: &'static str,
}

use Party as P;
use State as S;

/// The table: for each action, the states it may be taken in, who may take it, and where it
/// leads.
pub const RULES: &[Rule] = &[
    Rule {
        action: Action::Approve,
        from: &[S::PendingApproval],
        parties: &[P::Approver],
        to: To::NextApprovalStep,
        note: "one approval step; each step by a different approver; a loan's reservations start to count",
    },
    Rule {
        action: Action::Reject,
        from: &[S::PendingApproval],
        parties: &[P::Approver],
        to: To::State(S::Rejected),
        note: "a comment saying why is required",
    },
    Rule {
        action: Action::Assign,
        from: &[S::Submitted, S::Approved, S::Assigned],
        parties: &[P::Worker],
        to: To::State(S::Assigned),
        note: "to a user who may work the queue (`assignee_id`); counts as the first response",
    },
    Rule {
        action: Action::Start,
        from: &[S::Assigned, S::Waiting],
        parties: &[P::Worker],
        to: To::State(S::InProgress),
        note: "work starts or resumes; for a loan: check-out, the comment notes the condition",
    },
    Rule {
        action: Action::Wait,
        from: &[S::InProgress],
        parties: &[P::Worker],
        to: To::State(S::Waiting),
        note: "`reason` parts, vendor or requester; waiting on the requester pauses the SLA clock",
    },
    Rule {
        action: Action::Resolve,
        from: &[S::InProgress, S::Waiting],
        parties: &[P::Worker],
        to: To::State(S::Resolved),
        note: "done; for a loan: check-in, the comment notes the condition",
    },
    Rule {
        action: Action::Close,
        from: &[S::Resolved],
        parties: &[P::Filer, P::Worker],
        to: To::State(S::Closed),
        note: "the filer confirms, or the desk closes",
    },
    Rule {
        action: Action::Cancel,
        from: &[S::Submitted, S::PendingApproval, S::Approved, S::Assigned],
        parties: &[P::Filer, P::Worker],
        to: To::State(S::Cancelled),
        note: "only before work starts; a loan's reservations are released",
    },
    Rule {
        action: Action::Reopen,
        from: &[S::Resolved, S::Closed],
        parties: &[P::Filer, P::Worker],
        to: To::Reopened,
        note: "within the reopen window after resolving (`desk.reopen_window_days`)",
    },
    Rule {
        action: Action::Comment,
        from: &STATES,
        parties: &[P::Filer, P::Worker, P::Approver, P::Viewer],
        to: To::Same,
        note: "a comment is required",
    },
    Rule {
        action: Action::Rate,
        from: &[S::Resolved, S::Closed],
        parties: &[P::Filer],
        to: To::Same,
        note: "`rating` 1-5 and an optional comment, once",
    },
];

/// The rule of an action.
pub fn rule(action: Action) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.action == action)
        .expect("every action has a rule")
}

/// Why an action is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// None of the user's parties may ever take it: 403.
    NotYours,
    /// Not in this state: 409.
    NotNow,
}

/// Whether a user standing as `parties` may take `action` on a request in `state`.
pub fn check(action: Action, state: State, parties: &[Party]) -> Result<&'static Rule, Refusal> {
    let rule = rule(action);
    if !rule.parties.iter().any(|p| parties.contains(p)) {
        return Err(Refusal::NotYours);
    }
    if !rule.from.contains(&state) {
        return Err(Refusal::NotNow);
    }
    Ok(rule)
}

/// The table as the Markdown that `docs/DESK-WORKFLOW.md` carries.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| action | from states | who | to | note |\n|---|---|---|---|---|\n");
    for r in RULES {
        let from = if r.from.len() == STATES.len() {
            "any".to_owned()
        } else {
            r.from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let who = r
            .parties
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let to = match r.to {
            To::State(s) => s.as_str().to_owned(),
            To::Same => "(unchanged)".to_owned(),
            To::NextApprovalStep => {
                "approved after the last step, else pending_approval".to_owned()
            }
            To::Reopened => "assigned (or submitted/approved when nobody is assigned)".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {from} | {who} | {to} | {} |\n",
            r.action.as_str(),
            r.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_table_matches_code() {
        let doc = include_str!("../../../docs/DESK-WORKFLOW.md");
        let table = markdown_table();
        assert!(
            doc.contains(&table),
            "docs/DESK-WORKFLOW.md is out of date; replace its table with:\n{table}"
        );
    }

    fn check_case(action: Action, state: State, parties: &[Party], expected: Result<(), Refusal>) {
        assert_eq!(
            check(action, state, parties).map(|_| ()),
            expected,
            "{action:?} in {state:?} by {parties:?}"
        );
    }

    #[test]
    fn who_may_do_what_when() {
        use Refusal::*;
        let filer = &[P::Filer, P::Viewer][..];
        let worker = &[P::Worker, P::Viewer][..];
        let approver = &[P::Approver, P::Viewer][..];
        check_case(Action::Approve, S::PendingApproval, approver, Ok(()));
        check_case(Action::Approve, S::PendingApproval, worker, Err(NotYours));
        check_case(Action::Approve, S::Submitted, approver, Err(NotNow));
        check_case(Action::Approve, S::PendingApproval, filer, Err(NotYours));
        check_case(Action::Cancel, S::Assigned, filer, Ok(()));
        check_case(Action::Cancel, S::InProgress, filer, Err(NotNow));
        check_case(Action::Cancel, S::Submitted, approver, Err(NotYours));
        check_case(Action::Start, S::Assigned, filer, Err(NotYours));
        check_case(Action::Start, S::Waiting, worker, Ok(()));
        check_case(Action::Resolve, S::Assigned, worker, Err(NotNow));
        check_case(Action::Rate, S::Closed, filer, Ok(()));
        check_case(Action::Rate, S::Closed, worker, Err(NotYours));
        check_case(Action::Rate, S::InProgress, filer, Err(NotNow));
        check_case(Action::Comment, S::Cancelled, &[P::Viewer], Ok(()));
        check_case(Action::Reopen, S::Closed, filer, Ok(()));
        check_case(Action::Reopen, S::Cancelled, filer, Err(NotNow));
    }

    #[test]
    fn names_round_trip() {
        for s in STATES {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        for r in RULES {
            assert_eq!(Action::parse(r.action.as_str()), Some(r.action));
        }
    }
}
