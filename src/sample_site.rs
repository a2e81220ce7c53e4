//! The bundled sample gallery: a generated site of list pages with lazy-loaded images, Chinese and
//! English captions, pagination, detail pages, a robots.txt, byte-identical copies under other URLs
//! and a few broken images. [`SampleSite`] decides what each path serves (pure, testable);
//! [`SampleServer`] serves it with actix-web on 127.0.0.1 inside the running System and counts
//! requests per path, so tests can check that nothing was fetched twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;

/// Captions, alternating Chinese and English, cycled over the images.
const CAPTIONS: &[&str] = &[
    "山间晨雾",
    "Morning mist",
    "海边日落",
    "Sunset by the sea",
    "古城小巷",
    "Old town alley",
    "雪后松林",
    "Pines after snow",
    "稻田秋色",
    "Rice fields in autumn",
    "夜市灯火",
    "Night market lights",
];

/// One response of the sample site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleResponse {
    /// HTTP status.
    pub status: u16,
    /// Content-Type header.
    pub content_type: &'static str,
    /// The body as served.
    pub body: Bytes,
    /// When set, the response announces `body.len()` bytes but sends only this many, then closes.
    pub cut_at: Option<usize>,
}

/// What one image item on a list page is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleImage {
    /// Item number, from 1.
    pub id: u64,
    /// Path of the image URL.
    pub path: String,
    /// Its caption.
    pub caption: String,
    /// The bytes it serves, when it is a good image.
    pub bytes: Option<Vec<u8>>,
}

/// A generated gallery of `pages` list pages with `per_page` images each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleSite {
    /// Number of list pages.
    pub pages: u64,
    /// Images per list page.
    pub per_page: u64,
    /// Extra markup on every list and detail page, in KiB (0 for none): article text, comments
    /// and nested blocks with in-page links, for a parse-heavy variant of the site. Adds no page
    /// or image to the crawl.
    pub page_kb: u64,
}

impl Default for SampleSite {
    /// The demo's size: 12 list pages of 10 images.
    fn default() -> Self {
        SampleSite {
            pages: 12,
            per_page: 10,
            page_kb: 0,
        }
    }
}

/// Paths of the broken images: a 404, an HTML page served as a JPEG, and a PNG cut short.
pub const BROKEN_IMAGES: [&str; 3] = ["/img/missing.jpg", "/img/error-page.jpg", "/img/cut.png"];
/// How a crawl records each of [`BROKEN_IMAGES`] failing (the `error` of its `errors.jsonl` row).
pub const BROKEN_IMAGE_ERRORS: [&str; 3] = ["status 404", "not an image", "truncated body"];

/// A page of the gallery, answered with 200.
fn html_response(body: String) -> SampleResponse {
    SampleResponse {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: body.into(),
        cut_at: None,
    }
}

impl SampleSite {
    /// Number of good image items.
    pub fn image_count(&self) -> u64 {
        self.pages * self.per_page
    }

    /// The caption of item `id`; every 9th item repeats the previous caption, so that two
    /// different images share a name.
    pub fn caption(id: u64) -> String {
        let shown = if id.is_multiple_of(9) { id - 1 } else { id };
        format!("{} {shown:03}", CAPTIONS[(shown as usize) % CAPTIONS.len()])
    }

    /// The bytes of item `id`: a PNG of 2 to 60 KB. Every 20th item is a byte-identical copy of
    /// the one before it, served under its own URL.
    pub fn image_bytes(id: u64) -> Vec<u8> {
        let source = if id.is_multiple_of(20) { id - 1 } else { id };
        let side = 26 + (source.wrapping_mul(2_654_435_761) % 115) as u32;
        png(source, side, side)
    }

    /// Every image item of the site in page order, broken ones included.
    pub fn images(&self) -> Vec<SampleImage> {
        let mut out: Vec<SampleImage> = (1..=self.image_count())
            .map(|id| SampleImage {
                id,
                path: format!("/img/{id}.png"),
                caption: Self::caption(id),
                bytes: Some(Self::image_bytes(id)),
            })
            .collect();
        for (i, path) in BROKEN_IMAGES.iter().enumerate() {
            out.push(SampleImage {
                id: 0,
                path: path.to_string(),
                caption: format!("broken {}", i + 1),
                bytes: None,
            });
        }
        out
    }

    fn page_of(&self, id: u64) -> u64 {
        (id - 1) / self.per_page + 1
    }

    fn list_page(&self, n: u64) -> String {
        let mut items = String::new();
        for id in (n - 1) * self.per_page + 1..=n * self.per_page {
            let caption = html_escape(&Self::caption(id));
            items.push_str(&format!(
                "<li class=\"item\"><a href=\"/detail/{id}.html\"><img class=\"lazy\" src=\"/static/loading.gif\" data-original=\"/img/{id}.png\" alt=\"photo {id}\"><p>{caption}</p></a></li>\n"
            ));
        }
        // The broken images sit on the last list page.
        if n == self.pages {
            for (i, path) in BROKEN_IMAGES.iter().enumerate() {
                items.push_str(&format!(
                    "<li class=\"item\"><a href=\"#\"><img src=\"/static/loading.gif\" data-src=\"{path}\"><p>broken {}</p></a></li>\n",
                    i + 1
                ));
            }
        }
        let mut nav = String::new();
        if n > 1 {
            nav.push_str(&format!(
                "<a class=\"prev\" href=\"/list/{}.html\">上一页 Previous</a> ",
                n - 1
            ));
        }
        for p in 1..=self.pages.min(5) {
            nav.push_str(&format!("<a href=\"/list/{p}.html\">{p}</a> "));
        }
        if n < self.pages {
            nav.push_str(&format!(
                "<a class=\"next\" href=\"list/../{}.html\">下一页 Next</a>",
                n + 1
            ));
        }
        page(
            &format!("图库 Gallery — page {n}"),
            &format!(
                "<ul class=\"gallery\">\n{items}</ul>\n<nav>{nav}</nav>{}",
                filler(self.page_kb, n)
            ),
        )
    }

    fn detail_page(&self, id: u64) -> String {
        let caption = html_escape(&Self::caption(id));
        page(
            &caption,
            &format!(
                "<figure><img src=\"/img/{id}.png\" alt=\"photo {id}\"><figcaption>{caption}</figcaption></figure>\n<a href=\"/list/{}.html#item-{id}\">返回 Back</a>{}",
                self.page_of(id),
                filler(self.page_kb, id)
            ),
        )
    }

    /// Every path the site serves with status 200, for writing it out as static files.
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = ["/index.html", "/robots.txt", "/static/loading.gif"]
            .iter()
            .map(|p| p.to_string())
            .collect();
        paths.extend((1..=self.pages).map(|n| format!("/list/{n}.html")));
        for id in 1..=self.image_count() {
            paths.push(format!("/detail/{id}.html"));
            paths.push(format!("/img/{id}.png"));
        }
        // missing.jpg stays missing (a 404); cut.png can only be cut by a live server, so a
        // static copy is whole.
        paths.push(BROKEN_IMAGES[1].to_string());
        paths.push(BROKEN_IMAGES[2].to_string());
        paths
    }

    /// Writes the site under `dir` as static files (`dir/list/1.html`, `dir/img/1.png`, ...), for
    /// serving with any web server; returns the number of files and of bytes written.
    pub fn write_to(&self, dir: &std::path::Path) -> std::io::Result<(u64, u64)> {
        let (mut files, mut bytes) = (0, 0);
        for path in self.paths() {
            let r = self.respond(&path);
            let file = dir.join(path.trim_start_matches('/'));
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, &r.body)?;
            files += 1;
            bytes += r.body.len() as u64;
        }
        Ok((files, bytes))
    }

    /// What the site serves at `path` (without query).
    pub fn respond(&self, path: &str) -> SampleResponse {
        let number = |prefix: &str, suffix: &str| {
            path.strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse::<u64>()
                .ok()
        };
        if let Some(fixed) = Self::fixed(path) {
            return fixed;
        }
        if let Some(n) = number("/list/", ".html").filter(|n| (1..=self.pages).contains(n)) {
            return html_response(self.list_page(n));
        }
        if let Some(id) =
            number("/detail/", ".html").filter(|id| (1..=self.image_count()).contains(id))
        {
            return html_response(self.detail_page(id));
        }
        if let Some(id) = number("/img/", ".png").filter(|id| (1..=self.image_count()).contains(id))
        {
            return SampleResponse {
                status: 200,
                content_type: "image/png",
                body: Self::image_bytes(id).into(),
                cut_at: None,
            };
        }
        SampleResponse {
            status: 404,
            content_type: "text/html; charset=utf-8",
            body: page("404", "<h1>Not Found</h1>").into(),
            cut_at: None,
        }
    }

    /// The answers at fixed paths: the start page, robots.txt, and the deliberately odd files.
    fn fixed(path: &str) -> Option<SampleResponse> {
        match path {
            "/" | "/index.html" => Some(html_response(page(
                "图库 Sample gallery",
                "<p>A sample gallery for imgcrawl.</p><a href=\"/list/1.html\">开始 Start</a>",
            ))),
            "/robots.txt" => Some(SampleResponse {
                status: 200,
                content_type: "text/plain",
                body: "User-agent: *\nDisallow: /private/\n".into(),
                cut_at: None,
            }),
            "/static/loading.gif" => Some(SampleResponse {
                status: 200,
                content_type: "image/gif",
                body: Bytes::from_static(LOADING_GIF),
                cut_at: None,
            }),
            "/img/error-page.jpg" => {
                let body = page("出错了 Error", "<h1>Image temporarily unavailable</h1>");
                Some(SampleResponse {
                    status: 200,
                    content_type: "image/jpeg",
                    body: body.into(),
                    cut_at: None,
                })
            }
            "/img/cut.png" => {
                let bytes = png(999_999, 90, 90);
                let cut = bytes.len() / 2;
                Some(SampleResponse {
                    status: 200,
                    content_type: "image/png",
                    body: bytes.into(),
                    cut_at: Some(cut),
                })
            }
            _ => None,
        }
    }
}

/// About `kb` KiB of ordinary page markup (comment threads: nested blocks, text with inline
/// elements, in-page links, a script), different for each `seed`. Links point inside the page
/// (fragments), so the crawl finds nothing more to fetch.
fn filler(kb: u64, seed: u64) -> String {
    let target = kb as usize * 1024;
    let mut out = String::with_capacity(target + 1024);
    if target == 0 {
        return out;
    }
    out.push_str("\n<section class=\"comments\"><script>window.__state={\"page\":");
    out.push_str(&format!("{seed},\"theme\":\"light\"}};</script>\n"));
    let mut k = 0u64;
    while out.len() < target {
        k += 1;
        let word = CAPTIONS[(seed.wrapping_add(k) as usize) % CAPTIONS.len()];
        out.push_str(&format!(
            "<div class=\"comment\" id=\"c{k}\"><div class=\"meta\"><span class=\"user\">user{}</span> \
             <time datetime=\"2026-11-{:02}\">{} days ago</time> <a href=\"#c{k}\">#</a></div>\
             <div class=\"body\"><p>{word} &mdash; <em>lovely</em> light, <strong>shot {k}</strong>. \
             Which lens was this? <a href=\"#c{}\">reply</a></p><ul><li>like</li><li>share</li></ul></div></div>\n",
            (seed * 31 + k) % 997,
            k % 28 + 1,
            k % 9 + 1,
            k.saturating_sub(1).max(1),
        ));
    }
    out.push_str("</section>");
    out
}

fn page(title: &str, body: &str) -> String {
    format!("<!DOCTYPE html>\n<html lang=\"zh\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\n{body}\n</body></html>\n")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A 1×1 transparent GIF, the lazy-loading placeholder.
const LOADING_GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// A valid `width`×`height` RGB PNG whose pixels depend on `seed` (stored, uncompressed deflate, so
/// the size is predictable: about 3 bytes per pixel).
pub fn png(seed: u64, width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((width * 3 + 1) * height) as usize);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..height {
        raw.extend([0u8]); // each row starts with its filter type: none
        for _ in 0..width * 3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            raw.push((state >> 24) as u8);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    for (kind, data) in [
        (&b"IHDR"[..], &ihdr[..]),
        (b"IDAT", &zlib[..]),
        (b"IEND", &[][..]),
    ] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    out
}

/// Requests seen by a [`SampleServer`], by path and query.
#[derive(Debug, Clone, Default)]
pub struct Hits(Arc<Mutex<HashMap<String, u32>>>);

impl Hits {
    fn record(&self, path: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(path.to_string())
            .or_default() += 1;
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> HashMap<String, u32> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The sample site served over HTTP on a loopback address.
pub struct SampleServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests it has answered.
    pub hits: Hits,
    handle: actix_web::dev::ServerHandle,
}

impl SampleServer {
    /// Serves `site` on `127.0.0.1:port` (0 picks a free port) inside the running actix System.
    pub fn start(site: SampleSite, port: u16) -> std::io::Result<SampleServer> {
        let hits = Hits::default();
        let h = hits.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new((site, h.clone())))
                .default_service(web::to(serve))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", port))?;
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(SampleServer { addr, hits, handle })
    }

    /// The site's root URL, e.g. `http://127.0.0.1:41234/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops serving.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

async fn serve(req: HttpRequest, data: web::Data<(SampleSite, Hits)>) -> HttpResponse {
    let (site, hits) = data.get_ref();
    let key = match req.uri().query() {
        Some(q) => format!("{}?{q}", req.path()),
        None => req.path().to_string(),
    };
    hits.record(&key);
    let r = site.respond(req.path());
    let mut builder = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(r.status).unwrap_or(actix_web::http::StatusCode::OK),
    );
    builder.content_type(r.content_type);
    match r.cut_at {
        None => builder.body(r.body),
        Some(cut) => {
            // Announce the full length, send part of the body, then drop the connection, as a
            // server that died mid-transfer would. The pause lets the part go out first: a body
            // that errors (or ends short) at once makes actix-web drop the connection with the
            // headers still unsent.
            use futures_util::StreamExt;
            let part = r.body.slice(..cut);
            let stream = futures_util::stream::once(async move { Ok(part) }).chain(
                futures_util::stream::once(async {
                    actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
                    Err(std::io::Error::other(
                        "the sample server cuts this body short",
                    ))
                }),
            );
            builder.no_chunking(r.body.len() as u64).streaming(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sniff::{looks_complete_bytes, sniff, ImageType};

    #[test]
    fn generated_images_are_valid_pngs_of_realistic_sizes() {
        for id in 1..=200 {
            let b = SampleSite::image_bytes(id);
            assert_eq!(sniff(&b), Some(ImageType::Png));
            assert!(looks_complete_bytes(ImageType::Png, &b));
            assert!((2_000..=61_000).contains(&b.len()), "{id}: {}", b.len());
        }
        assert_eq!(SampleSite::image_bytes(20), SampleSite::image_bytes(19));
        assert_ne!(SampleSite::image_bytes(18), SampleSite::image_bytes(19));
        assert_eq!(SampleSite::caption(9), SampleSite::caption(8));
    }

    #[test]
    fn site_routes() {
        let site = SampleSite {
            pages: 3,
            per_page: 4,
            page_kb: 0,
        };
        assert_eq!(site.respond("/list/3.html").status, 200);
        assert_eq!(site.respond("/list/4.html").status, 404);
        assert_eq!(site.respond("/detail/12.html").status, 200);
        assert_eq!(site.respond("/img/13.png").status, 404);
        assert!(site.respond("/img/cut.png").cut_at.is_some());
        assert_eq!(site.images().len(), 15);
    }

    #[test]
    fn page_kb_adds_markup_but_no_urls() {
        use crate::extract::extract;
        use crate::settings::ExtractRules;
        use url::Url;
        let plain = SampleSite {
            pages: 3,
            per_page: 4,
            page_kb: 0,
        };
        let heavy = SampleSite {
            page_kb: 40,
            ..plain
        };
        let found = |site: &SampleSite, path: &str| {
            let r = site.respond(path);
            let html = String::from_utf8(r.body.to_vec()).unwrap();
            let url = Url::parse(&format!("http://example.test{path}")).unwrap();
            let mut e = extract(&html, &url, &ExtractRules::default()).unwrap();
            let mut links: Vec<String> = e
                .links
                .iter_mut()
                .map(|u| {
                    u.set_fragment(None);
                    u.to_string()
                })
                .collect();
            links.sort();
            links.dedup();
            let images: Vec<String> = e.images.iter().map(|i| i.url.to_string()).collect();
            (html.len(), images, links)
        };
        for path in ["/list/2.html", "/detail/5.html"] {
            let (small, images, links) = found(&plain, path);
            let (big, heavy_images, heavy_links) = found(&heavy, path);
            assert!(small < 4096 && big >= 40 * 1024, "{path}: {small} -> {big}");
            assert_eq!(images, heavy_images, "{path}");
            let own = format!("http://example.test{path}");
            let heavy_links: Vec<String> = heavy_links.into_iter().filter(|l| *l != own).collect();
            let links: Vec<String> = links.into_iter().filter(|l| *l != own).collect();
            assert_eq!(links, heavy_links, "{path}");
        }
    }
}
