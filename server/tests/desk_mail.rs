//! E-mail notifications against a real SMTP server on loopback: Python's aiosmtpd, started by
//! the test, delivering into a Maildir. Skipped, saying so, when aiosmtpd is not installed
//! (`pip install aiosmtpd`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, databases};
use reqwest::StatusCode;
use serde_json::json;

/// The messages delivered so far: (To, Subject, body), decoded by Python's email package.
fn delivered(maildir: &Path) -> Vec<(String, String, String)> {
    let script = "import sys, mailbox, email.header\nfor m in mailbox.Maildir(sys.argv[1], create=False): print(m['To'] + '\\x1f' + str(email.header.make_header(email.header.decode_header(m['Subject']))) + '\\x1f' + m.get_payload(decode=True).decode().replace('\\n', ' ') + '\\x1e')";
    if !maildir.join("new").exists() {
        return Vec::new();
    }
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(maildir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\x1e')
        .filter_map(|m| {
            let mut parts = m.trim().split('\x1f');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
            ))
        })
        .collect()
}

/// Stops the SMTP server however the test ends.
struct Smtp(std::process::Child);

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for(maildir: &Path, n: usize) -> Vec<(String, String, String)> {
    for _ in 0..100 {
        let got = delivered(maildir);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    delivered(maildir)
}

#[tokio::test]
async fn requesters_and_approvers_are_told_by_e_mail() {
    let has_aiosmtpd = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_aiosmtpd {
        eprintln!(
            "SKIPPED: e-mail test needs Python's aiosmtpd as the SMTP server (pip install aiosmtpd)"
        );
        return;
    }
    for db in databases() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let _smtp = Smtp(
            std::process::Command::new("python3")
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("aiosmtpd starts"),
        );
        // Wait until it listens.
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let s = TestServer::start_with(&db, |c| {
            c.desk.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
            c.desk.mail_from = "ICT เขต <ict@district.example>".into();
            c.server.public_url = Some("https://ict.district.example".into());
        })
        .await;
        let admin = s.admin().await;
        let school = s.school(&admin, "A1001").await;
        let mk = |name: &'static str, role: &'static str, school: Option<i64>| {
            let (s, admin) = (&s, admin.clone());
            async move {
                let (status, body) = s
                    .post(
                        &admin,
                        "/api/v1/users",
                        json!({ "username": name, "display_name": name, "role": role,
                        "school_id": school, "email": format!("{name}@district.example"),
                        "password": format!("password-of-{name}") }),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                s.login(name, &format!("password-of-{name}")).await
            }
        };
        let kru = mk("kru", "requester", Some(school)).await;
        let appr = mk("appr", "approver", None).await;
        let (status, r) = s
            .post(
                &kru,
                "/api/v1/requests",
                json!({ "kind": "data_service", "title": "ข้อมูลนักเรียน",
                "fields": { "data": "จำนวนนักเรียน", "purpose": "รายงาน" } }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let id = r["id"].as_i64().unwrap();

        let mail = wait_for(&maildir, 1).await;
        assert_eq!(
            mail.len(),
            1,
            "{db:?}: only the approver is told of the new request: {mail:?}"
        );
        let (to, subject, body) = &mail[0];
        assert_eq!(to, "appr@district.example");
        assert!(
            subject.starts_with(&format!("[khetnet #{id}] approval needed")),
            "{subject}"
        );
        assert!(
            body.contains(&format!("https://ict.district.example/desk/requests/{id}")),
            "{body}"
        );

        let (status, _) = s
            .post(
                &appr,
                &format!("/api/v1/requests/{id}/actions"),
                json!({ "action": "approve" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let mail = wait_for(&maildir, 2).await;
        assert_eq!(mail.len(), 2, "{mail:?}");
        let to_kru: Vec<_> = mail
            .iter()
            .filter(|(to, _, _)| to == "kru@district.example")
            .collect();
        assert_eq!(to_kru.len(), 1, "{mail:?}");
        assert!(
            to_kru[0]
                .1
                .starts_with(&format!("[khetnet #{id}] approved")),
            "{:?}",
            to_kru[0]
        );
        // A comment changes no state: no mail.
        s.post(
            &kru,
            &format!("/api/v1/requests/{id}/actions"),
            json!({ "action": "comment", "comment": "ขอบคุณ" }),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(delivered(&maildir).len(), 2);
        s.stop().await;
    }
}
