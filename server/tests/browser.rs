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
