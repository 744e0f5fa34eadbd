//! A person signs in with a real browser (headless Chromium) on a phone-sized window.

mod common;

use common::webdriver::Browser;
use common::{ADMIN_PASSWORD, Database, TestServer};

#[tokio::test]
async fn sign_in_on_a_phone_in_thai_then_switch_to_english() {
    let Some(browser) = Browser::phone("th").await else {
        return;
    };
    let s = TestServer::start(&Database::Sqlite).await;
    browser.goto(&format!("{}/", s.url)).await;
    assert!(
        browser.url().await.ends_with("/login"),
        "not signed in: sent to the login page"
    );
    browser.wait_for_text("เข้าสู่ระบบ").await;

    browser.fill("#username", "admin").await;
    browser.fill("#password", "not the password").await;
    browser.click("button.primary").await;
    browser.wait_for_text("ชื่อผู้ใช้หรือรหัสผ่านไม่ถูกต้อง").await; // a wrong password is said plainly

    browser.fill("#password", ADMIN_PASSWORD).await;
    browser.click("button.primary").await;
    browser.wait_for_text("ยินดีต้อนรับ").await;
    let fits = browser
        .script("return document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(
        fits, true,
        "the page fits a phone's width without sideways scrolling"
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    browser.screenshot(&dir.join("home-phone-th.png")).await;

    browser.click("button[lang=en]").await;
    browser.wait_for_text("Welcome, Administrator").await; // the language switch works
    s.stop().await;
}

/// Signs in through the login form.
async fn sign_in(browser: &Browser, url: &str, username: &str) {
    browser.goto(&format!("{url}/login")).await;
    browser.fill("#username", username).await;
    browser
        .fill("#password", &format!("password-of-{username}"))
        .await;
    browser.click("button.primary").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while browser.url().await.ends_with("/login") {
        assert!(
            std::time::Instant::now() < deadline,
            "{username} could not sign in"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits (up to 10 s) until the element shows `expected`.
async fn wait_until_shows(browser: &Browser, css: &str, expected: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let shown = browser.text_of(css).await;
        if shown.trim() == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} shows {shown:?}, not {expected:?}; the page: {}",
            browser.text().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Whether the first picture in the attachments has loaded (the browser decoded it).
async fn photo_shown(browser: &Browser) -> bool {
    browser
        .script(
            "const i = document.querySelector('#attachments img'); \
             return !!i && i.complete && i.naturalWidth > 0",
        )
        .await
        == serde_json::Value::Bool(true)
}

async fn wait_for_photo(browser: &Browser) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !photo_shown(browser).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the attached photo is not shown"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_repair_filed_on_a_phone_with_a_photo_is_resolved_then_rated() {
    let Some(requester) = Browser::phone("th").await else {
        return;
    };
    let s = TestServer::start(&Database::Sqlite).await;
    let admin = s.admin().await;
    let school = s.school(&admin, "A1001").await;
    s.user(&admin, "somsri", "requester", Some(school)).await;
    let tech_id = s.user(&admin, "somchai", "technician", None).await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));

    // The requester files a repair from her phone, in Thai.
    sign_in(&requester, &s.url, "somsri").await;
    requester.click("nav a[href='/desk']").await;
    requester.wait_for_text("+ ยื่นคำขอ").await;
    requester.click("a[href='/desk/new']").await;
    requester.wait_for_text("ยื่นคำขอ: แจ้งซ่อม").await;
    assert!(requester.fits_width().await, "the form fits a phone");
    requester.fill("#title", "โปรเจคเตอร์ห้อง 2 ไม่ติด").await;
    requester
        .fill("#problem", "เปิดเครื่องแล้วไฟกะพริบ ไม่มีภาพ")
        .await;
    requester.fill("#location", "อาคาร 1 ห้อง 2").await;
    // With a photo of the projector (here: a picture of her phone's screen).
    let photo = shots.join("projector-photo.png");
    requester.screenshot(&photo).await;
    requester.choose_file("#file", &photo).await;
    requester.click("form.card button.primary").await;
    wait_until_shows(&requester, "#state", "ยื่นแล้ว").await;
    let request_url = requester.url().await;
    let id: i64 = request_url
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("on the request's page");

    requester.wait_for_text("projector-photo.png").await;
    wait_for_photo(&requester).await;
    // And adds a second one from the request's page.
    let label = shots.join("projector-label.png");
    requester.screenshot(&label).await;
    requester.choose_file("#file", &label).await;
    requester.click("#attach").await;
    requester.wait_for_text("projector-label.png").await;
    assert!(
        requester.fits_width().await,
        "the request page fits a phone"
    );
    requester
        .screenshot(&shots.join("repair-filed-phone-th.png"))
        .await;
    requester
        .script("document.getElementById('attachments').scrollIntoView()")
        .await;
    requester
        .screenshot(&shots.join("repair-attachments-phone-th.png"))
        .await;

    // The technician, on his own phone and in English, finds it in the queue and resolves it.
    let tech = Browser::phone("en")
        .await
        .expect("a second browser session");
    sign_in(&tech, &s.url, "somchai").await;
    tech.click("nav a[href='/desk']").await;
    tech.wait_for_text("โปรเจคเตอร์ห้อง 2 ไม่ติด").await;
    assert!(tech.fits_width().await, "the queue fits a phone");
    tech.click(&format!("td a[href='/desk/requests/{id}']"))
        .await;
    wait_until_shows(&tech, "#state", "Submitted").await;
    wait_for_photo(&tech).await;
    tech.select("#action", "assign").await;
    tech.select("#assignee_id", &tech_id.to_string()).await;
    tech.click("#act button.primary").await;
    wait_until_shows(&tech, "#state", "Assigned").await;
    tech.select("#action", "start").await;
    tech.click("#act button.primary").await;
    wait_until_shows(&tech, "#state", "In progress").await;
    tech.select("#action", "resolve").await;
    tech.fill("#comment", "เปลี่ยนหลอดภาพแล้ว ใช้งานได้").await;
    tech.click("#act button.primary").await;
    wait_until_shows(&tech, "#state", "Resolved").await;
    assert!(tech.fits_width().await);
    tech.screenshot(&shots.join("repair-resolved-phone-en.png"))
        .await;

    // The requester sees it done, with the technician's note, and rates it.
    requester.goto(&request_url).await;
    wait_until_shows(&requester, "#state", "ดำเนินการเสร็จ").await;
    requester.wait_for_text("เปลี่ยนหลอดภาพแล้ว ใช้งานได้").await;
    requester.select("#action", "rate").await;
    requester.select("#rating_choice", "5").await;
    requester.fill("#comment", "ขอบคุณค่ะ รวดเร็วมาก").await;
    requester.click("#act button.primary").await;
    wait_until_shows(&requester, "#rating", "5").await;
    requester.wait_for_text("ขอบคุณค่ะ รวดเร็วมาก").await;
    assert!(requester.fits_width().await);
    requester
        .screenshot(&shots.join("repair-rated-phone-th.png"))
        .await;

    // The technician sees the rating on his phone too.
    tech.goto(&request_url).await;
    wait_until_shows(&tech, "#rating", "5").await;
    wait_until_shows(&tech, "#state", "Resolved").await;

    drop(tech);
    drop(requester);
    s.stop().await;
}
