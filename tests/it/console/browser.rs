//! The console in a real browser: Debian's chromium, headless, driven over the DevTools
//! protocol. It signs in, opens the rejects, sends one again, and sees its state change;
//! screenshots of the overview and of a table's page are kept under the target directory
//! (`console-screenshots/`).

use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;

use super::Scene;
use crate::common::{rejects, wait_for};

/// Where the screenshots go: beside the test binaries, kept after the run.
fn shots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

fn chromium() -> std::path::PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|c| crate::common::which(c).ok())
        .expect("chromium is not installed (scripts/test.sh installs it)")
}

/// The element `selector` once the page shows it (a navigation may still be under way).
async fn shown(page: &chromiumoxide::Page, selector: &str) -> chromiumoxide::Element {
    let start = std::time::Instant::now();
    loop {
        if let Ok(e) = page.find_element(selector).await {
            return e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{selector} never showed; the page is at {:?}",
            page.url().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of `selector` once the page shows it.
async fn text_of(page: &chromiumoxide::Page, selector: &str) -> String {
    shown(page, selector)
        .await
        .inner_text()
        .await
        .expect("text")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_person_signs_in_and_sends_a_reject_again_in_a_real_browser() {
    let s = Scene::new("console_browser", "").await;
    let daemon = s.start().await;
    let open = rejects(&s.agent, &["--state", "open"]);
    let id = open
        .iter()
        .find(|r| r["key"] == "3")
        .and_then(|r| r["id"].as_i64())
        .expect("reject of row 3");
    s.src
        .exec("UPDATE up_action SET uscc = '91350100M000100Y43' WHERE action_id = 3")
        .await;

    let profile = tempfile::tempdir().expect("profile");
    let config = BrowserConfig::builder()
        .chrome_executable(chromium())
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1280, 900)
        .arg("--disable-gpu")
        .build()
        .expect("browser config");
    let (mut browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let base = &s.console;
    let page = browser
        .new_page(format!("{base}/login"))
        .await
        .expect("the sign-in page");
    page.find_element("#name")
        .await
        .expect("name field")
        .click()
        .await
        .expect("click")
        .type_str("li")
        .await
        .expect("type");
    page.find_element("#password")
        .await
        .expect("password field")
        .click()
        .await
        .expect("click")
        .type_str("correct horse")
        .await
        .expect("type");
    page.find_element("#sign-in")
        .await
        .expect("button")
        .click()
        .await
        .expect("sign in");
    shown(&page, "#tables").await;
    // The browser asks for English; the person switches to Chinese, which stays chosen.
    assert_eq!(text_of(&page, "header nav a.here").await, "Overview");
    shown(&page, "#lang-zh").await.click().await.expect("中文");
    let start = std::time::Instant::now();
    while text_of(&page, "header nav a.here").await != "概览" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the page stays in English"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page.save_screenshot(
        ScreenshotParams::builder().full_page(true).build(),
        shots().join("overview.png"),
    )
    .await
    .expect("overview screenshot");

    page.goto(format!("{base}/rejects?state=open"))
        .await
        .expect("rejects");
    let state = format!("#reject-{id} .state");
    assert_eq!(
        text_of(&page, &state).await,
        "待处理",
        "the chosen language holds on the next page"
    );
    shown(&page, &format!("#pick-{id}"))
        .await
        .click()
        .await
        .expect("pick");
    shown(&page, "#resubmit")
        .await
        .click()
        .await
        .expect("resubmit");
    assert_eq!(text_of(&page, "#outcome").await, "正在重新提交");

    // The reject's own page shows it is no longer open, as `rejects list` says.
    wait_for(
        "the reject to leave open",
        Duration::from_secs(20),
        async || {
            rejects(&s.agent, &[])
                .iter()
                .any(|r| r["id"] == id && r["state"] != "open")
        },
    )
    .await;
    page.goto(format!("{base}/rejects/{id}"))
        .await
        .expect("the reject");
    let now = text_of(&page, "#state").await;
    assert!(
        now.trim() == "已重新提交" || now.trim() == "已解决",
        "state after resubmission: {now}"
    );
    let history = text_of(&page, "#history").await;
    assert!(history.contains("li (console)"), "{history}");
    assert_eq!(
        s.tgt
            .scalar_i64("SELECT count(*) FROM jg_action WHERE action_id = 3")
            .await,
        1
    );

    page.goto(format!("{base}/table/up_action?days=7"))
        .await
        .expect("table page");
    shown(&page, "svg.chart").await;
    page.save_screenshot(
        ScreenshotParams::builder().full_page(true).build(),
        shots().join("table.png"),
    )
    .await
    .expect("table screenshot");
    for f in ["overview.png", "table.png"] {
        let bytes = std::fs::read(shots().join(f)).expect("screenshot");
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{f}: {} bytes",
            bytes.len()
        );
    }
    browser.close().await.expect("close");
    let _ = browser.wait().await;
    events.abort();
    drop(daemon);
    s.drop().await;
}
