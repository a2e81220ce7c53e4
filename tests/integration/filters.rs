//! Image filters (`[filter]`): dimensions read from the first bytes, with a too-small image
//! abandoned without the rest of its bytes (counted at the server); byte limits before and while
//! downloading; URL exclusions that are never requested; skips counted by filter key, not errors.

use std::time::Duration;

use imgcrawl::sample_site::png;

use crate::support::{errors, manifest, run_crawl, Reply, TestServer};

/// A valid PNG header for `width` x `height` followed by `len` bytes of padding: the header tells
/// the dimensions at once, the rest is only weight.
fn heavy_png(width: u32, height: u32, len: usize) -> Vec<u8> {
    let mut bytes = png(5, width, height);
    bytes.resize(len, 0);
    bytes
}

#[actix_rt::test]
async fn filters_skip_small_large_and_excluded_images_as_early_as_they_can() {
    const HEAVY: usize = 8 << 20;
    const HUGE: usize = 24 << 20;
    let server = TestServer::start(move |path| match path {
        "/robots.txt" => Reply::Status(404),
        "/" => Reply::Ok(
            "text/html",
            b"<img src='/keep.png'><img src='/icon.png'><img src='/narrow.png'>\
              <img src='/flat.png'><img src='/avatars/7.png'><img src='/huge.png'>\
              <img src='/streamed.png'><img src='/light.png'>"
                .to_vec(),
        ),
        "/keep.png" => Reply::Ok("image/png", png(1, 120, 130)),
        // 16 x 16 pixels in 8 MiB (under max_bytes): abandoned after its header, sent slowly so that the bytes
        // the server managed to send before the crawler hung up can be counted.
        "/icon.png" => Reply::Paced(
            "image/png",
            heavy_png(16, 16, HEAVY),
            Duration::from_millis(2),
        ),
        "/narrow.png" => Reply::Ok("image/png", png(2, 60, 300)),
        "/flat.png" => Reply::Ok("image/png", png(3, 300, 60)),
        "/avatars/7.png" => Reply::Ok("image/png", png(4, 200, 200)),
        // Announced over max_bytes: refused before its body.
        "/huge.png" => Reply::Paced(
            "image/png",
            heavy_png(400, 400, HUGE),
            Duration::from_millis(2),
        ),
        // No Content-Length: stopped once more than max_bytes came.
        "/streamed.png" => Reply::Stream("image/png", png(6, 400, 400)[..1000].to_vec(), HUGE),
        // Large enough in pixels, too few bytes.
        "/light.png" => Reply::Ok("image/png", png(7, 101, 101)[..].to_vec()),
        _ => Reply::Status(404),
    });
    let keep_len = png(1, 120, 130).len();
    let light_len = png(7, 101, 101).len();
    assert!(light_len < keep_len, "{light_len} {keep_len}");
    let out = tempfile::tempdir().unwrap();
    let toml = format!(
        "[filter]\nmin_width = 100\nmin_height = 100\nmin_bytes = {}\nmax_bytes = 16000000\n\
         exclude = [\"/avatars?/\"]\n",
        light_len + 1
    );
    let (report, _) = run_crawl(&[server.url("/")], out.path(), &toml).await;
    let rows = manifest(out.path());
    assert_eq!(
        rows.iter().map(|r| r.url.as_str()).collect::<Vec<_>>(),
        [server.url("/keep.png")],
        "{rows:?}"
    );
    let skipped = &report.stats.images_skipped;
    let count = |k: &str| skipped.get(k).copied().unwrap_or(0);
    assert_eq!(count("filter.min_width"), 2, "{skipped:?}");
    assert_eq!(count("filter.min_height"), 1, "{skipped:?}");
    assert_eq!(count("filter.exclude"), 1, "{skipped:?}");
    assert_eq!(count("filter.max_bytes"), 2, "{skipped:?}");
    assert_eq!(count("filter.min_bytes"), 1, "{skipped:?}");
    // Skips are not failures.
    assert!(errors(out.path()).is_empty(), "{:?}", errors(out.path()));
    assert_eq!(report.exit_code(), 0);
    // An excluded URL is never requested.
    assert_eq!(server.hits().get("/avatars/7.png"), None);
    // The icon's dimensions were in its first bytes: the crawler hung up long before 8 MiB.
    let icon = server.sent("/icon.png");
    assert!(icon < 1 << 20, "{icon} bytes of the icon were sent");
    // The huge image announced its size: refused at the head.
    let huge = server.sent("/huge.png");
    assert!(huge < 1 << 20, "{huge} bytes of the huge image were sent");
}
