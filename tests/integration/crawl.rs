//! End-to-end crawls of the sample gallery and of small hand-made sites.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use imgcrawl::actors::Crash;
use imgcrawl::paths::sanitize_component;
use imgcrawl::sample_site::{SampleSite, BROKEN_IMAGES};
use imgcrawl::{Crawl, Outcome};

use crate::support::{
    errors, image_files, manifest, run_crawl, settings, sha256_hex, temp_files, Reply, TestServer,
};

pub(crate) fn list_urls(server: &TestServer, site: SampleSite) -> Vec<String> {
    (1..=site.pages)
        .map(|n| server.url(&format!("/list/{n}.html")))
        .collect()
}

/// Checks that every good image of `site` is in the manifest once, with a file holding exactly the
/// bytes served, named after its caption; duplicates point at the file with the same bytes.
pub(crate) fn assert_all_images_saved(
    site: SampleSite,
    server: &TestServer,
    out: &std::path::Path,
) {
    let rows = manifest(out);
    let by_url: HashMap<&str, _> = rows.iter().map(|r| (r.url.as_str(), r)).collect();
    assert_eq!(
        by_url.len(),
        rows.len(),
        "a URL appears twice in the manifest"
    );
    assert_eq!(rows.len() as u64, site.image_count(), "manifest rows");
    let mut files = HashSet::new();
    let images = site.images();
    for img in images.iter().filter(|i| i.bytes.is_some()) {
        let url = server.url(&img.path);
        let row = by_url
            .get(url.as_str())
            .unwrap_or_else(|| panic!("{url} not in manifest"));
        let on_disk = std::fs::read(out.join(&row.path)).unwrap();
        assert_eq!(Some(on_disk), img.bytes, "bytes of {url} at {:?}", row.path);
        assert_eq!(row.name, img.caption);
        let stem = row.path.file_stem().unwrap().to_string_lossy().into_owned();
        if row.duplicate_of.is_none() {
            // The file is named after the first image that brought these bytes, which may be
            // a byte-identical copy under another URL.
            let named_after = |i: &imgcrawl::sample_site::SampleImage| {
                let wanted = sanitize_component(&i.caption);
                i.bytes == img.bytes && (stem == wanted || stem.starts_with(&format!("{wanted}-")))
            };
            assert!(images.iter().any(named_after), "{stem} for {}", img.caption);
            assert!(
                files.insert(row.path.clone()),
                "two URLs claim {:?}",
                row.path
            );
        } else {
            assert_eq!(row.duplicate_of.as_ref(), Some(&row.path));
        }
        assert_eq!(row.content_type, "image/png");
        assert!(row.width.is_some() && row.height.is_some());
    }
    assert_eq!(image_files(out).len(), files.len(), "files on disk");
    assert_eq!(temp_files(out), 0, "temporary files left");
}

#[actix_rt::test]
async fn sample_gallery_crawl_saves_every_image_once_with_exact_bytes() {
    let site = SampleSite {
        pages: 4,
        per_page: 10,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    let s = settings(
        &list_urls(&server, site),
        out.path(),
        "[http]\nretries = 1\n",
    );
    let report = Crawl::start(s).await.unwrap().wait().await.unwrap();

    assert_all_images_saved(site, &server, out.path());
    let st = &report.stats;
    assert_eq!(st.pages_fetched, 4 + 40, "list pages and detail pages");
    assert_eq!(st.duplicates, 2, "items 20 and 40 copy 19 and 39");
    assert_eq!(st.images_saved, 38);
    assert_eq!(st.images_failed, 3);
    assert_eq!(report.exit_code(), 3, "some images failed");
    let mut errs: Vec<_> = errors(out.path())
        .into_iter()
        .map(|e| (e.url, e.error, e.attempts))
        .collect();
    errs.sort();
    assert_eq!(
        errs,
        [
            (
                server.url(BROKEN_IMAGES[2]),
                "truncated body".to_string(),
                2
            ),
            (server.url(BROKEN_IMAGES[1]), "not an image".to_string(), 1),
            (server.url(BROKEN_IMAGES[0]), "status 404".to_string(), 1),
        ]
    );
    // No URL requested twice, except the cut-off image, which is retried.
    for (path, n) in server.hits() {
        let expected = if path == BROKEN_IMAGES[2] { 2 } else { 1 };
        assert_eq!(n, expected, "{path} requested {n} times");
    }
    assert!(
        server.hits().keys().all(|p| p != "/static/loading.gif"),
        "placeholder src fetched"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["images_saved"], 38);
    assert_eq!(stats["pages_fetched"], 44);
}

#[actix_rt::test]
async fn images_arriving_in_many_pieces_or_over_a_mebibyte_are_stored_byte_for_byte() {
    // 16 KiB per write: many chunks per image, and the large one spills to its temporary file
    // (past 1 MiB held) three times before it is complete.
    let large = imgcrawl::sample_site::png(11, 1100, 1000);
    let small = imgcrawl::sample_site::png(12, 120, 130);
    assert!(large.len() > 3 << 20 && small.len() > 32 * 1024);
    let pace = Duration::from_millis(1);
    let served = [("/large.png", large.clone()), ("/small.png", small.clone())];
    let server = TestServer::start(move |path| match path {
        "/" => Reply::Ok(
            "text/html",
            b"<img src='/large.png' alt='large'><img src='/small.png' alt='small'>".to_vec(),
        ),
        "/large.png" => Reply::Paced("image/png", large.clone(), pace),
        "/small.png" => Reply::Paced("image/png", small.clone(), pace),
        _ => Reply::Status(404),
    });
    let out = tempfile::tempdir().unwrap();
    let (report, _) = run_crawl(&[server.url("/")], out.path(), "").await;
    assert_eq!(report.stats.images_saved, 2, "{:?}", errors(out.path()));
    let rows = manifest(out.path());
    for ((path, bytes), (w, h)) in served.iter().zip([(1100, 1000), (120, 130)]) {
        let row = rows
            .iter()
            .find(|r| r.url == server.url(path))
            .unwrap_or_else(|| panic!("{path} not in the manifest"));
        let on_disk = std::fs::read(out.path().join(&row.path)).unwrap();
        assert!(
            on_disk == *bytes,
            "{path}: the file differs from what was served"
        );
        assert_eq!(row.bytes, bytes.len() as u64);
        assert_eq!(row.sha256, sha256_hex(bytes));
        assert_eq!((row.width, row.height), (Some(w), Some(h)), "{path}");
    }
    assert_eq!(temp_files(out.path()), 0);
}

#[actix_rt::test]
async fn a_frontier_of_three_spills_to_the_state_database_and_loses_nothing() {
    let site = SampleSite {
        pages: 6,
        per_page: 10,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    // 66 pages and 63 images pass through a frontier that holds 3 of each.
    let s = settings(
        &list_urls(&server, site),
        out.path(),
        "frontier_in_memory = 3\n[http]\nretries = 1\n",
    );
    let crawl = Crawl::start(s).await.unwrap();
    let (mut most_spilled, mut most_in_memory) = (0, 0);
    let report = loop {
        tokio::select! {
            report = crawl.wait() => break report.unwrap(),
            _ = tokio::time::sleep(std::time::Duration::from_millis(2)) => {
                if let Ok(q) = crawl.queues().await {
                    most_spilled = most_spilled.max(q.pages_spilled + q.images_spilled);
                    most_in_memory = most_in_memory.max(q.images_waiting - q.images_spilled);
                }
            }
        }
    };
    assert!(
        most_spilled > 10,
        "jobs waited in the database: {most_spilled}"
    );
    assert!(
        most_in_memory <= 3 + 1,
        "images in memory: {most_in_memory}"
    );

    assert_all_images_saved(site, &server, out.path());
    assert_eq!(report.stats.pages_fetched, 6 + 60);
    assert_eq!(report.stats.images_saved + report.stats.duplicates, 60);
    for (path, n) in server.hits() {
        let expected = if path == BROKEN_IMAGES[2] { 2 } else { 1 };
        assert_eq!(n, expected, "{path} requested {n} times");
    }
}

#[actix_rt::test]
async fn running_the_same_crawl_again_downloads_nothing_already_saved() {
    let site = SampleSite {
        pages: 2,
        per_page: 10,
        page_kb: 0,
    };
    let server = TestServer::sample(site, |_| None);
    let out = tempfile::tempdir().unwrap();
    let toml = "[http]\nretries = 0\n";
    let run = |fresh: bool| {
        let settings = settings(&list_urls(&server, site), out.path(), toml);
        async move {
            Crawl::builder(settings)
                .fresh(fresh)
                .start()
                .await
                .unwrap()
                .wait()
                .await
                .unwrap()
        }
    };
    run(false).await;
    let first = manifest(out.path());
    let files = image_files(out.path());
    let requests: u32 = server.hits().values().sum();

    // The same command resumes a finished crawl: nothing is left to do, nothing is requested.
    let report = run(false).await;
    assert_eq!(report.stats.images_saved + report.stats.pages_fetched, 0);
    assert_eq!(server.hits().values().sum::<u32>(), requests);
    assert_eq!(manifest(out.path()), first, "the manifest is unchanged");

    // An output directory from before the state database (only a manifest): its images count as
    // saved, the pages are crawled again, no image is downloaded again.
    std::fs::remove_file(out.path().join(".imgcrawl/state.db")).unwrap();
    let report = run(false).await;
    assert_eq!(report.stats.images_already_saved, 20);
    assert_eq!(report.stats.images_saved, 0);
    for id in 1..=20 {
        let hits = server.hits()[&format!("/img/{id}.png")];
        assert_eq!(hits, 1, "image {id} downloaded again");
    }
    // The same rows, first seen when they were; this run found them again, so they were last
    // seen now (the same second as before, or a later one).
    let again = manifest(out.path());
    for (row, before) in again.iter().zip(&first) {
        assert!(row.last_seen >= before.last_seen, "{row:?}");
    }
    let undated = |rows: Vec<imgcrawl::records::ManifestRow>| {
        rows.into_iter()
            .map(|mut r| {
                r.last_seen = None;
                r
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(undated(again), undated(first.clone()));

    // --fresh starts over: everything is fetched again, and the files already there with the
    // same bytes are kept under their names (no "-2" copies).
    let report = run(true).await;
    assert_eq!(
        report.stats.images_saved, 19,
        "19 distinct images, one byte-identical copy"
    );
    assert_eq!(server.hits()["/img/1.png"], 2);
    assert_eq!(image_files(out.path()), files);
    let paths = |rows: Vec<imgcrawl::records::ManifestRow>| {
        let mut p: Vec<_> = rows.into_iter().map(|r| (r.url, r.path)).collect();
        p.sort();
        p
    };
    assert_eq!(paths(manifest(out.path())), paths(first));
    assert_all_images_saved(site, &server, out.path());
}

#[actix_rt::test]
async fn workers_that_die_mid_crawl_are_replaced_and_their_jobs_requeued() {
    let site = SampleSite {
        pages: 6,
        per_page: 5,
        page_kb: 0,
    };
    // Slow list pages and images, so that workers hold jobs when they are made to crash.
    let server = TestServer::sample(site, |p| {
        (p.starts_with("/list/") || p.starts_with("/img/")).then_some(Duration::from_millis(300))
    });
    let out = tempfile::tempdir().unwrap();
    let s = settings(
        &list_urls(&server, site),
        out.path(),
        "fetchers = 2\nsavers = 3\n[http]\nretries = 0\n",
    );
    let crawl = Crawl::start(s).await.unwrap();

    let mut crashed = (0, 0);
    for _ in 0..200 {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        let busy: Vec<String> = server.hits().keys().cloned().collect();
        if crashed.0 == 0 && server.active() > 0 && busy.iter().any(|p| p.starts_with("/list/")) {
            for f in crawl.workers().await.unwrap().fetchers {
                f.do_send(Crash);
            }
            crashed.0 += 1;
        }
        if crashed.1 == 0 && busy.iter().any(|p| p.starts_with("/img/")) && server.active() > 0 {
            for s in crawl.workers().await.unwrap().savers {
                s.do_send(Crash);
            }
            crashed.1 += 1;
        }
        if crashed.0 > 0 && crashed.1 > 0 {
            break;
        }
    }
    assert_eq!(
        crashed,
        (1, 1),
        "the crawl ended before the workers could be crashed"
    );
    let report = crawl.wait().await.unwrap();

    assert_eq!(report.outcome, Outcome::Finished);
    assert!(
        report.stats.worker_restarts >= 5,
        "restarts: {}",
        report.stats.worker_restarts
    );
    assert_all_images_saved(site, &server, out.path());
    let hits = server.hits();
    let requeued_pages = hits
        .iter()
        .filter(|(p, n)| p.starts_with("/list/") && **n == 2)
        .count();
    let requeued_images = hits
        .iter()
        .filter(|(p, n)| p.starts_with("/img/") && **n == 2)
        .count();
    assert!(
        requeued_pages >= 1,
        "no page job was held by a dying fetcher: {hits:?}"
    );
    assert!(
        requeued_images >= 1,
        "no image job was held by a dying saver: {hits:?}"
    );
    assert!(hits.values().all(|n| *n <= 2), "{hits:?}");
}

#[actix_rt::test]
async fn spellings_of_one_url_are_requested_once_and_depth_and_page_limits_hold() {
    let png = SampleSite::image_bytes(1);
    let server = TestServer::start(move |path| {
        match path {
        "/" => Reply::Ok(
            "text/html",
            br##"<a href="/a/"><img src="/img/x.png"></a><a href="/a/#frag">again</a><a href="/a/../a/">dots</a>
              <img src="/img/%78.png"><img src="/img/x.png#top"><a href="/deep/1">deep</a>"##
                .to_vec(),
        ),
        "/a/" => Reply::Ok("text/html", b"<img src='../img/x.png'>".to_vec()),
        p if p.starts_with("/deep/") => {
            let n: u32 = p[6..].parse().unwrap();
            Reply::Ok("text/html", format!("<a href='/deep/{}'>next</a>", n + 1).into_bytes())
        }
        "/img/x.png" => Reply::Ok("image/png", png.clone()),
        _ => Reply::Status(404),
    }
    });
    let out = tempfile::tempdir().unwrap();
    let start = vec![
        server.url("/"),
        server.url("/index.html#x").replace("index.html", ""),
    ];
    let report = Crawl::start(settings(&start, out.path(), "[scope]\nmax_depth = 3\n"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();

    let hits = server.hits();
    assert_eq!(hits["/"], 1);
    assert_eq!(hits["/a/"], 1);
    assert_eq!(hits["/img/x.png"], 1);
    assert_eq!(hits.get("/deep/3"), Some(&1));
    assert_eq!(hits.get("/deep/4"), None, "max_depth = 3 stops at /deep/3");
    assert_eq!(report.stats.images_saved, 1);

    let out2 = tempfile::tempdir().unwrap();
    let report = Crawl::start(settings(
        &[server.url("/")],
        out2.path(),
        "[scope]\nmax_pages = 3\n",
    ))
    .await
    .unwrap()
    .wait()
    .await
    .unwrap();
    assert_eq!(report.stats.pages_fetched, 3);
}

#[actix_rt::test]
async fn hostile_captions_become_safe_unique_names_inside_out_dir() {
    let long = "長".repeat(3000);
    let captions = [
        "../../etc/passwd",
        "..",
        "CON",
        "a/b\\c:d*e?f",
        "same",
        "same",
        long.as_str(),
        "   ",
    ];
    let mut html = String::new();
    for (i, c) in captions.iter().enumerate() {
        html.push_str(&format!(
            "<figure><img src='/i/{i}.png'><figcaption>{c}</figcaption></figure>"
        ));
    }
    let server = TestServer::start(move |path| match path {
        "/" => Reply::Ok("text/html", html.clone().into_bytes()),
        p if p.starts_with("/i/") => {
            let n: u64 = p[3..].trim_end_matches(".png").parse().unwrap();
            Reply::Ok("image/jpeg", SampleSite::image_bytes(n + 1)) // the real type is PNG
        }
        _ => Reply::Status(404),
    });
    let out = tempfile::tempdir().unwrap();
    let report = Crawl::start(settings(&[server.url("/")], out.path(), ""))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(report.stats.images_saved, captions.len() as u64);
    let files = image_files(out.path());
    assert_eq!(files.len(), captions.len());
    let host = "127.0.0.1";
    for f in &files {
        assert!(f.starts_with(host), "{f:?}");
        assert_eq!(f.components().count(), 2, "{f:?}");
        assert_eq!(
            f.extension().unwrap(),
            "png",
            "extension follows the real type: {f:?}"
        );
        assert!(f.file_name().unwrap().len() <= 255);
    }
    let names: HashSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains("same.png") && names.contains("same-2.png"),
        "{names:?}"
    );
    assert!(names.contains("_CON.png"), "{names:?}");
    assert!(names.contains("_.._etc_passwd.png"), "{names:?}");
}
