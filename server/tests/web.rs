//! The web UI over real HTTP: Thai/English, the session cookie's flags, sign-in and out,
//! and TLS with the self-signed certificate.

mod common;

use common::{ADMIN_PASSWORD, Database, TestServer};
use reqwest::StatusCode;

fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("khetnet_session="))
}

#[tokio::test]
async fn login_page_speaks_the_browsers_language_and_sets_a_strict_cookie() {
    let s = TestServer::start(&Database::Sqlite).await;
    let page = |lang: &'static str| {
        let req = s
            .client
            .get(format!("{}/login", s.url))
            .header("accept-language", lang);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    assert!(page("th-TH,th;q=0.9").await.contains("เข้าสู่ระบบ"));
    assert!(page("en-GB,en;q=0.9").await.contains("Sign in"));
    let fallback = page("fr").await;
    assert!(
        fallback.contains("เข้าสู่ระบบ"),
        "Thai when the browser asks for neither"
    );
    assert!(fallback.contains("name=\"viewport\""), "usable on a phone");

    // Not signed in: pages send you to the login.
    let resp = s
        .client
        .get(format!("{}/schools", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/login");

    let bad = s
        .client
        .post(format!("{}/login", s.url))
        .header("accept-language", "en")
        .form(&[("username", "admin"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(session_cookie(&bad).is_none());
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("Wrong user name or password")
    );

    let ok = s
        .client
        .post(format!("{}/login", s.url))
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&ok).expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure flag over plain HTTP on loopback, or the browser drops it"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();

    let home = s
        .client
        .get(format!("{}/", s.url))
        .header("cookie", &pair)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    let html = home.text().await.unwrap();
    assert!(
        html.contains("Welcome, Administrator") && html.contains("href=\"/audit\""),
        "{html}"
    );

    // The user's own choice wins over the browser's, and sticks to the account.
    let switched = s
        .client
        .post(format!("{}/lang", s.url))
        .header("cookie", &pair)
        .header("referer", format!("{}/schools", s.url))
        .form(&[("lang", "th")])
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), StatusCode::SEE_OTHER);
    assert_eq!(switched.headers()["location"], "/schools");
    let html = s
        .client
        .get(format!("{}/schools", s.url))
        .header("cookie", &pair)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("โรงเรียนและหน่วยงาน"), "{html}");

    // Adding a school from the page, and a refusal shown on the page.
    let added = s
        .client
        .post(format!("{}/schools", s.url))
        .header("cookie", &pair)
        .form(&[
            ("code", "W001"),
            ("name_th", "โรงเรียนเว็บ"),
            ("name_en", "Web School"),
            ("district", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let again = s
        .client
        .post(format!("{}/schools", s.url))
        .header("cookie", &pair)
        .form(&[
            ("code", "W001"),
            ("name_th", "ซ้ำ"),
            ("name_en", ""),
            ("district", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.text().await.unwrap().contains("already exists"));

    let out = s
        .client
        .post(format!("{}/logout", s.url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = s
        .client
        .get(format!("{}/", s.url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::SEE_OTHER,
        "the old cookie no longer signs in"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_requester_sees_no_admin_pages() {
    let s = TestServer::start(&Database::Sqlite).await;
    let admin = s.admin().await;
    let school = s.school(&admin, "R001").await;
    s.user(&admin, "krusri", "requester", Some(school)).await;
    let ok = s
        .client
        .post(format!("{}/login", s.url))
        .form(&[("username", "krusri"), ("password", "password-of-krusri")])
        .send()
        .await
        .unwrap();
    let pair = session_cookie(&ok)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let home = s
        .client
        .get(format!("{}/", s.url))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("R001"), "their school is shown");
    assert!(
        !home.contains("href=\"/audit\"") && !home.contains("href=\"/users\""),
        "no links they cannot use"
    );
    for page in ["/audit", "/users"] {
        let resp = s
            .client
            .get(format!("{}{page}", s.url))
            .header("cookie", &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{page}");
    }
    s.stop().await;
}

#[tokio::test]
async fn https_with_the_self_signed_certificate() {
    let s = TestServer::start_with(&Database::Sqlite, |c| c.server.tls_self_signed = true).await;
    assert!(s.url.starts_with("https://"));
    let pem = std::fs::read(s.dir.path().join("tls/self-signed.crt"))
        .expect("certificate written to the data dir");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.dir.path().join("tls/self-signed.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        key_mode & 0o077,
        0,
        "the private key is readable by its owner only"
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = s.url.replace("127.0.0.1", "localhost");
    let resp = client
        .post(format!("{url}/login"))
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .expect("TLS handshake with the generated certificate");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        session_cookie(&resp).unwrap().contains("Secure"),
        "cookies are Secure under TLS"
    );
    s.stop().await;
}
