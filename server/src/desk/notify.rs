//! E-mail notifications over SMTP (lettre, with rustls for STARTTLS and SMTPS): the requester
//! when their request changes state, the approvers when a request waits for them.
//!
//! Mail leaves after the change has committed, from a background task: a slow or absent mail
//! server never holds up or undoes a change. A failure is logged and counted
//! (`khetnet_desk_mail_total{outcome="failed"}`), never retried into a flood.

use std::sync::Arc;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::Any;

use super::requests::Request;
use crate::db::Db;

/// The SMTP connection settings and the sender.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    /// A mailer for `smtp://`, `smtp://...?tls=required` or `smtps://` URLs.
    ///
    /// # Errors
    /// The URL or the sender cannot be read; the message says which.
    pub fn new(url: &str, from: &str) -> Result<Mailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("desk.smtp_url: {e}"))?
            .build();
        let from = from.parse().map_err(|e| format!("desk.mail_from: {e}"))?;
        Ok(Mailer { transport, from })
    }

    async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("address {to:?}: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// One e-mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub to: String,
    pub subject: String,
    pub body: String,
}

fn link(public_url: Option<&str>, id: i64) -> String {
    match public_url {
        Some(base) => format!("{}/desk/requests/{id}", base.trim_end_matches('/')),
        None => format!("/desk/requests/{id}"),
    }
}

/// The notices a change calls for: the requester (unless they made it) when the state
/// changed, every approver with an address when the request now waits for approval.
pub fn notices(
    request: &Request,
    changed_state: bool,
    actor_id: Option<i64>,
    requester_email: Option<&str>,
    approver_emails: &[String],
    public_url: Option<&str>,
) -> Vec<Notice> {
    let mut out = Vec::new();
    let url = link(public_url, request.id);
    if changed_state
        && actor_id != Some(request.requester_id)
        && let Some(to) = requester_email.filter(|e| !e.is_empty())
    {
        out.push(Notice {
            to: to.to_owned(),
            subject: format!(
                "[khetnet #{}] {}: {}",
                request.id, request.state, request.title
            ),
            body: format!(
                "คำขอ #{} \"{}\" มีสถานะ {}\nRequest #{} \"{}\" is now {}.\n\n{url}\n",
                request.id, request.title, request.state, request.id, request.title, request.state
            ),
        });
    }
    if (changed_state || request.state == "pending_approval")
        && let Some(step) = &request.approvals.waiting_for
    {
        for to in approver_emails.iter().filter(|e| !e.is_empty()) {
            out.push(Notice {
                to: to.clone(),
                subject: format!(
                    "[khetnet #{}] approval needed / รออนุมัติ: {}",
                    request.id, request.title
                ),
                body: format!(
                    "คำขอ #{} \"{}\" ({}) รอการอนุมัติขั้น {step}\nRequest #{} \"{}\" ({}) waits for approval step {step}.\n\n{url}\n",
                    request.id,
                    request.title,
                    request.kind,
                    request.id,
                    request.title,
                    request.kind
                ),
            });
        }
    }
    out
}

/// Sends the notices a change calls for, in the background, when a mailer is configured.
pub fn after_change(
    db: &Db,
    mailer: Option<Arc<Mailer>>,
    public_url: Option<String>,
    request: Request,
    changed_state: bool,
    actor_id: Option<i64>,
) {
    let Some(mailer) = mailer else {
        return;
    };
    let db = db.clone();
    tokio::spawn(async move {
        let requester: Option<String> =
            sqlx::query_scalar::<Any, Option<String>>("SELECT email FROM users WHERE id = $1")
                .bind(request.requester_id)
                .fetch_optional(&db.pool)
                .await
                .ok()
                .flatten()
                .flatten();
        // A step that names its approver (`@username`) is mailed to that user alone.
        let named = request
            .approvals
            .waiting_for
            .as_deref()
            .and_then(super::named_approver);
        let approvers: Vec<String> = if request.approvals.waiting_for.is_some() {
            sqlx::query_scalar::<Any, String>(
                "SELECT email FROM users WHERE ($1 IS NULL AND role = 'approver' OR username = $1) \
                 AND active = 1 AND email IS NOT NULL ORDER BY id",
            )
            .bind(named)
            .fetch_all(&db.pool)
            .await
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        for notice in notices(
            &request,
            changed_state,
            actor_id,
            requester.as_deref(),
            &approvers,
            public_url.as_deref(),
        ) {
            match mailer.send(&notice.to, &notice.subject, notice.body).await {
                Ok(()) => {
                    metrics::counter!("khetnet_desk_mail_total", "outcome" => "sent").increment(1)
                }
                Err(error) => {
                    metrics::counter!("khetnet_desk_mail_total", "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(error = %error, to = %notice.to, request_id = request.id, "notification e-mail not sent");
                }
            }
        }
    });
}
