//! The gallery in a real browser: Debian's `chromium`, headless, driven over WebDriver by the
//! system's `chromedriver` (started here on a free loopback port) through thirtyfour. Every
//! thumbnail must load, the search form must narrow the grid, a tile must open its image, the
//! duplicate and failure views must link what they list, and the browser's console must stay free
//! of errors; a generated crawl of 4,000 images pages 60 at a time to its last page; the dashboard
//! of a running crawl counts up on its own. A screenshot of each view is checked to be more than a blank page, and written to
//! `VIEW_SCREENSHOTS` (a directory) when that is set, else beside the crawl.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;
use thirtyfour::{ChromiumLikeCapabilities, LoggingPrefsLogLevel};

use crate::view::{crawled, crawled_site, Viewer};

/// The system's chromedriver on a free port of 127.0.0.1, stopped when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // In a process group of its own, with the browsers it starts: a test that fails before it
        // quits its session must not leave Chromium running.
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}): the browser tests need Debian's chromium \
                     and chromium-driver (`apt-get install chromium chromium-driver`; .ci/run does)"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        ChromeDriver { child, port }
    }

    /// A headless Chromium session (as root it needs --no-sandbox), its console log kept.
    async fn browser(&self) -> WebDriver {
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary("/usr/bin/chromium").unwrap();
        caps.set_headless().unwrap();
        caps.set_no_sandbox().unwrap();
        caps.set_disable_gpu().unwrap();
        caps.set_disable_dev_shm_usage().unwrap();
        for arg in [
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
        ] {
            caps.add_arg(arg).unwrap();
        }
        caps.set_logging_prefs("browser", LoggingPrefsLogLevel::All)
            .unwrap();
        WebDriver::new(format!("http://127.0.0.1:{}", self.port), caps)
            .await
            .expect("a chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // SAFETY: kill only signals the process group this test started (chromedriver's own).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Waits until every image of the page has loaded (scrolling to the ones not loaded yet: the
/// grid's thumbnails load lazily, as they come into view); answers how many there are.
async fn all_images_loaded(driver: &WebDriver) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = driver
            .execute(
                "const imgs = Array.from(document.images); \
                 const waiting = imgs.filter(i => !i.complete); \
                 if (waiting.length) waiting[0].scrollIntoView(); \
                 return [imgs.length, imgs.filter(i => i.complete && i.naturalWidth > 0).length, \
                         imgs.filter(i => i.complete && i.naturalWidth == 0).map(i => i.src)];",
                Vec::new(),
            )
            .await
            .unwrap();
        let v = state.json();
        let (n, loaded) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
        let broken = v[2].as_array().unwrap();
        assert!(broken.is_empty(), "images that did not load: {broken:?}");
        if n == loaded {
            return n as usize;
        }
        assert!(Instant::now() < deadline, "{loaded} of {n} images loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the browser to arrive where `there` says (a click navigates asynchronously);
/// answers the URL.
async fn navigated(driver: &WebDriver, there: impl Fn(&url::Url) -> bool) -> url::Url {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = driver.current_url().await.unwrap();
        if there(&url) {
            // And the page there is loaded.
            let ready = driver
                .execute("return document.readyState;", Vec::new())
                .await
                .unwrap();
            if ready.json() == "complete" {
                return url;
            }
        }
        assert!(Instant::now() < deadline, "still at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where screenshots go: `VIEW_SCREENSHOTS`, or `screenshots` in the test's directory `dir`.
fn shots_dir(dir: &Path) -> PathBuf {
    std::env::var_os("VIEW_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("screenshots"))
}

/// The text of the first element `css` selects.
async fn text_of(driver: &WebDriver, css: &str) -> String {
    driver
        .find(By::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Takes a screenshot, checks it is not blank (many colours, as thumbnails and text make), and
/// keeps it as `dir/name.png`.
async fn screenshot(driver: &WebDriver, dir: &Path, name: &str) {
    // From the top, as a person opening the view sees it.
    driver
        .execute("window.scrollTo(0, 0);", Vec::new())
        .await
        .unwrap();
    let png = driver.screenshot_as_png().await.unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    let mut colours = std::collections::HashSet::new();
    for p in img.pixels().step_by(97) {
        colours.insert(p.0);
    }
    assert!(
        colours.len() > 20,
        "{name}: {} colours, blank?",
        colours.len()
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Console entries at error level since the last look.
async fn console_errors(driver: &WebDriver) -> Vec<String> {
    driver
        .browser_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.level == "SEVERE")
        .map(|e| e.message)
        .collect()
}

#[actix_rt::test]
async fn the_gallery_works_in_chromium() {
    let (dir, out, _server) = crawled(12);
    let shots = shots_dir(dir.path());
    let view = Viewer::start(&out);
    let base = format!("http://{}", view.addr);
    let chrome = ChromeDriver::start();
    let driver = chrome.browser().await;

    // The grid: 60 thumbnails, every one loaded.
    driver.goto(format!("{base}/")).await.unwrap();
    assert_eq!(
        driver.find_all(By::Css(".tile img")).await.unwrap().len(),
        60
    );
    assert_eq!(all_images_loaded(&driver).await, 60);
    screenshot(&driver, &shots, "gallery").await;

    // The search form narrows it, and the result has a URL of its own.
    let caption = text_of(&driver, ".tile figcaption").await;
    let word = caption.split_whitespace().next().unwrap().to_string();
    let q = driver.find(By::Name("q")).await.unwrap();
    q.send_keys(&word).await.unwrap();
    driver
        .find(By::Css(".filters button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let url = navigated(&driver, |u| u.query().is_some_and(|q| q.contains("q="))).await;
    assert_eq!(url.query_pairs().find(|(k, _)| k == "q").unwrap().1, word);
    let found = driver.find_all(By::Css(".tile img")).await.unwrap().len();
    assert!((1..60).contains(&found), "{found} tiles for {word}");
    all_images_loaded(&driver).await;

    // A tile opens its image: the original shows.
    driver
        .find(By::Css(".tile a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    navigated(&driver, |u| u.path().starts_with("/image/")).await;
    assert_eq!(all_images_loaded(&driver).await, 1);
    screenshot(&driver, &shots, "image").await;

    // Duplicates: each group with its URLs, each linking to its image.
    driver.goto(format!("{base}/duplicates")).await.unwrap();
    let groups = driver.find_all(By::Css(".group")).await.unwrap();
    assert!(!groups.is_empty());
    let links = groups[0]
        .find_all(By::Css("li a[href^='/image/']"))
        .await
        .unwrap();
    assert!(links.len() >= 2, "a group of {} URLs", links.len());
    all_images_loaded(&driver).await;
    screenshot(&driver, &shots, "duplicates").await;

    // Failures: the three broken images, each with the page it was found on as a link.
    driver.goto(format!("{base}/errors")).await.unwrap();
    let rows = driver
        .find_all(By::Css("table tr td:last-child a"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for a in rows {
        let href = a.attr("href").await.unwrap().unwrap();
        assert!(href.starts_with("http://127.0.0.1:"), "{href}");
    }
    screenshot(&driver, &shots, "errors").await;

    // Nothing went wrong in the page: no failed request, no blocked resource, no script error.
    let errors = console_errors(&driver).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    driver.quit().await.unwrap();
}

/// The number in the dashboard's cell after the header `name`.
async fn cell(driver: &WebDriver, name: &str) -> u64 {
    let script = format!(
        "const th = Array.from(document.querySelectorAll('th')).find(t => t.textContent == '{name}'); \
         return th ? th.nextElementSibling.textContent : '';"
    );
    let v = driver.execute(&script, Vec::new()).await.unwrap();
    v.json().as_str().unwrap_or("").trim().parse().unwrap_or(0)
}

#[actix_rt::test]
async fn the_dashboard_follows_a_running_crawl_in_chromium() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let shots = shots_dir(dir.path());
    // Slow images, so that the crawl runs for a while.
    let site = imgcrawl::sample_site::SampleSite::default();
    let server = crate::support::TestServer::sample(site, |p| {
        p.starts_with("/img/").then_some(Duration::from_millis(150))
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgcrawl"))
        .args(["crawl", "--savers", "2", "--metrics", "127.0.0.1:0", "-o"])
        .arg(dir.path().join("out"))
        .args(crate::crawl::list_urls(&server, site))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    let base = lines
        .find_map(|l| {
            let (_, rest) = l.split_once("dashboard at http://")?;
            Some(format!("http://{}", rest.split('/').next()?))
        })
        .expect("the crawl says where its dashboard is");
    // Keep reading its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let chrome = ChromeDriver::start();
    let driver = chrome.browser().await;

    driver.goto(format!("{base}/")).await.unwrap();
    let first = cell(&driver, "images saved").await;
    // The page reloads itself (a refresh meta tag, no script): the count goes up on its own.
    let deadline = Instant::now() + Duration::from_secs(20);
    let later = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = cell(&driver, "images saved").await;
        if n > first
            && !driver
                .find_all(By::Css(".tile img"))
                .await
                .unwrap()
                .is_empty()
        {
            break n;
        }
        assert!(Instant::now() < deadline, "images saved stays at {first}");
    };
    assert!(later > first);
    assert!(driver.find(By::Css("svg.chart polyline")).await.is_ok());
    all_images_loaded(&driver).await;
    screenshot(&driver, &shots, "dashboard").await;
    let errors = console_errors(&driver).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    driver.quit().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

#[actix_rt::test]
async fn a_gallery_of_4000_images_pages_in_chromium() {
    let site = imgcrawl::sample_site::SampleSite {
        pages: 200,
        per_page: 20,
        page_kb: 0,
    };
    let (dir, out, _server) = crawled_site(site);
    let shots = shots_dir(dir.path());
    let saved = crate::support::manifest(&out).len();
    assert!(saved >= 4000, "{saved} saved");
    let view = Viewer::start(&out);
    let base = format!("http://{}", view.addr);
    let chrome = ChromeDriver::start();
    let driver = chrome.browser().await;

    // The first page: 60 thumbnails (made now), never the 4,000 at once.
    driver.goto(format!("{base}/")).await.unwrap();
    assert_eq!(all_images_loaded(&driver).await, 60);
    let count = text_of(&driver, ".count").await;
    let pages = saved.div_ceil(60);
    assert!(count.contains(&format!("page 1 of {pages}")), "{count}");
    // The pager's last link leads to the last page, with what is left.
    let last = driver.find_all(By::Css(".pager a")).await.unwrap();
    let to_last = last[last.len() - 2].clone();
    assert_eq!(to_last.text().await.unwrap(), pages.to_string());
    to_last.click().await.unwrap();
    navigated(&driver, |u| {
        u.query().is_some_and(|q| q.contains(&format!("p={pages}")))
    })
    .await;
    let left = saved - (pages - 1) * 60;
    assert_eq!(all_images_loaded(&driver).await, left);
    screenshot(&driver, &shots, "gallery-4000-last").await;
    // Filters narrow the 4,000: the small images only above 100 px wide.
    driver.goto(format!("{base}/?min_width=100")).await.unwrap();
    let count = text_of(&driver, ".count").await;
    let shown: usize = count.split_whitespace().next().unwrap().parse().unwrap();
    assert!(shown > 0 && shown < saved, "{count}");
    all_images_loaded(&driver).await;
    let errors = console_errors(&driver).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    driver.quit().await.unwrap();
}
