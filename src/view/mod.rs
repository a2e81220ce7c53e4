//! `imgcrawl view OUT`: a gallery of a finished or running crawl in the browser, served by
//! actix-web from the same binary. It reads the crawl's state and records ([`catalog`]), renders
//! plain HTML ([`html`]), and serves originals and thumbnails ([`files`]) only from inside the
//! output directory. Every response carries a Content-Security-Policy that allows no script and
//! no content from elsewhere, and `X-Content-Type-Options: nosniff`; originals are served with the
//! type their bytes show, and anything that is not a known image is a download.
//!
//! The catalog is read at start and again, at most every two seconds, when the state database
//! changed (a crawl running in the same directory). File reads and thumbnails run on actix-web's
//! blocking pool, never on a server thread.

pub mod catalog;
pub mod dashboard;
pub mod files;
pub mod html;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;

use crate::error::Error;
use crate::output::Layout;
use catalog::{Catalog, Filter};
use html::Listed;

/// The policy every response carries: nothing runs, nothing comes from elsewhere.
pub const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self'; \
                       form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// How often, at most, the state is looked at for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// What the server's handlers share.
pub struct Gallery {
    /// The crawl's output directory.
    out_dir: PathBuf,
    /// What is shown, as last read.
    catalog: RwLock<Arc<Catalog>>,
    /// When the state was last looked at, and how it was then (modification times of the
    /// database and its write-ahead log).
    checked: Mutex<(Instant, Vec<Option<SystemTime>>)>,
}

impl Gallery {
    /// Reads the crawl in `out_dir`.
    pub fn open(out_dir: &Path) -> Result<Gallery, Error> {
        let catalog = Catalog::read(out_dir)?;
        Ok(Gallery {
            out_dir: out_dir.to_path_buf(),
            catalog: RwLock::new(Arc::new(catalog)),
            checked: Mutex::new((Instant::now(), stamps(out_dir))),
        })
    }

    /// The catalog, read again first if the state changed (at most every [`RELOAD_EVERY`]).
    async fn catalog(self: &Arc<Self>) -> Arc<Catalog> {
        let stale = {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.0.elapsed() < RELOAD_EVERY {
                false
            } else {
                let now = stamps(&self.out_dir);
                let changed = now != checked.1;
                *checked = (Instant::now(), now);
                changed
            }
        };
        if stale {
            let me = self.clone();
            let read = web::block(move || Catalog::read(&me.out_dir)).await;
            match read {
                Ok(Ok(c)) => *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c),
                Ok(Err(e)) => log::warn!("cannot read the crawl again: {e}"),
                Err(e) => log::warn!("cannot read the crawl again: {e}"),
            }
        }
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The modification times of a crawl's state database and its write-ahead log.
fn stamps(out_dir: &Path) -> Vec<Option<SystemTime>> {
    Layout::new(out_dir)
        .state_db_files()
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// The gallery's routes, to mount in an application of one's own (as [`ViewServer`] does).
pub fn routes(gallery: Arc<Gallery>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(gallery))
            .route("/", web::get().to(grid))
            .route("/image/{id}", web::get().to(image_page))
            .route("/file/{id}", web::get().to(file))
            .route("/thumb/{id}", web::get().to(thumb))
            .route("/duplicates", web::get().to(duplicates))
            .route("/errors", web::get().to(errors))
            .route("/skipped", web::get().to(skipped))
            .route("/hosts", web::get().to(hosts))
            .route("/static/app.css", web::get().to(css))
            .route("/favicon.ico", web::get().to(favicon));
    }
}

/// The headers every response carries.
pub fn safety_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/html; charset=utf-8")
        .body(html::page(
            "Not found",
            "",
            "<h1>Not found</h1><p><a href=\"/\">Gallery</a></p>",
        ))
}

async fn grid(g: web::Data<Gallery>, filter: web::Query<Filter>) -> HttpResponse {
    let catalog = g.into_inner().catalog().await;
    html(html::gallery(&catalog, &filter))
}

/// The entry numbered `id` (a path segment), if there is one.
fn entry_of(catalog: &Catalog, id: &str) -> Option<catalog::Entry> {
    let n: usize = id.parse().ok()?;
    catalog.entries.get(n).cloned()
}

async fn image_page(g: web::Data<Gallery>, id: web::Path<String>) -> HttpResponse {
    let catalog = g.into_inner().catalog().await;
    match entry_of(&catalog, &id) {
        Some(e) => html(html::image(&catalog, &e)),
        None => not_found(),
    }
}

/// An original, with the type its bytes show; anything not an image is a download.
async fn file(g: web::Data<Gallery>, id: web::Path<String>) -> HttpResponse {
    let g = g.into_inner();
    let catalog = g.catalog().await;
    let Some(e) = entry_of(&catalog, &id) else {
        return not_found();
    };
    let (out, rel) = (g.out_dir.clone(), e.file().to_path_buf());
    let bytes = match web::block(move || files::read_inside(&out, &rel)).await {
        Ok(Ok(b)) => b,
        _ => return not_found(),
    };
    match crate::sniff::sniff(&bytes[..bytes.len().min(crate::sniff::SNIFF_LEN)]) {
        Some(kind) => HttpResponse::Ok()
            .content_type(kind.mime())
            .insert_header((header::CACHE_CONTROL, "private, max-age=60"))
            .body(bytes),
        None => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header((header::CONTENT_DISPOSITION, "attachment"))
            .body(bytes),
    }
}

async fn thumb(g: web::Data<Gallery>, id: web::Path<String>) -> HttpResponse {
    let g = g.into_inner();
    let catalog = g.catalog().await;
    let Some(e) = entry_of(&catalog, &id) else {
        return not_found();
    };
    thumbnail_response(
        g.out_dir.clone(),
        e.file().to_path_buf(),
        e.row.sha256.clone(),
    )
    .await
}

/// The thumbnail of the file `rel` in `out` with hex SHA-256 `sha`, made on the blocking pool if
/// it is not kept yet; 404 when there can be none.
pub(crate) async fn thumbnail_response(out: PathBuf, rel: PathBuf, sha: String) -> HttpResponse {
    match web::block(move || files::thumbnail(&out, &rel, &sha)).await {
        Ok(Ok(Some(bytes))) => {
            let kind = crate::sniff::sniff(&bytes).map_or("image/jpeg", |k| k.mime());
            HttpResponse::Ok()
                .content_type(kind)
                .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
                .body(bytes)
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

/// `?p=N` (a page of a list) and `?kind=page|image`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    p: usize,
    kind: String,
}

async fn duplicates(g: web::Data<Gallery>, q: web::Query<ListQuery>) -> HttpResponse {
    let catalog = g.into_inner().catalog().await;
    html(html::duplicates(&catalog, q.p))
}

async fn errors(g: web::Data<Gallery>, q: web::Query<ListQuery>) -> HttpResponse {
    let catalog = g.into_inner().catalog().await;
    let kinds: Vec<String> = catalog.errors.iter().map(|r| r.kind.to_string()).collect();
    let rows: Vec<Listed<'_>> = catalog
        .errors
        .iter()
        .zip(&kinds)
        .map(|(r, kind)| Listed {
            reason: &r.error,
            url: &r.url,
            kind,
            detail: &r.detail,
            page: r.page.as_deref(),
        })
        .collect();
    html(html::listed("Failures", "Failures", &rows, &q.kind))
}

async fn skipped(g: web::Data<Gallery>, q: web::Query<ListQuery>) -> HttpResponse {
    let catalog = g.into_inner().catalog().await;
    let kinds: Vec<String> = catalog.skipped.iter().map(|r| r.kind.to_string()).collect();
    let rows: Vec<Listed<'_>> = catalog
        .skipped
        .iter()
        .zip(&kinds)
        .map(|(r, kind)| Listed {
            reason: &r.reason,
            url: &r.url,
            kind,
            detail: &r.detail,
            page: r.page.as_deref(),
        })
        .collect();
    html(html::listed("Skipped", "Skipped", &rows, &q.kind))
}

async fn hosts(g: web::Data<Gallery>) -> HttpResponse {
    let catalog = g.into_inner().catalog().await;
    html(html::hosts(&catalog))
}

/// The one stylesheet (the gallery's and the dashboard's).
pub(crate) async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(include_str!("app.css"))
}

/// The tab's icon: a small orange square (browsers ask for one whatever the page says).
pub(crate) async fn favicon() -> HttpResponse {
    static ICON: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let png = ICON.get_or_init(|| {
        let img = image::RgbaImage::from_pixel(16, 16, image::Rgba([214, 110, 32, 255]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("a 16x16 image always encodes");
        out.into_inner()
    });
    HttpResponse::Ok()
        .content_type("image/png")
        .insert_header((header::CACHE_CONTROL, "max-age=86400"))
        .body(png.clone())
}

/// The gallery server of one output directory, running in the current System.
pub struct ViewServer {
    handle: ServerHandle,
    addr: SocketAddr,
}

impl ViewServer {
    /// Serves the gallery of `out_dir` on `listener` (two worker threads; Ctrl-C is the caller's).
    pub fn start(out_dir: &Path, listener: TcpListener) -> Result<ViewServer, Error> {
        let addr = listener.local_addr().map_err(|source| Error::View {
            addr: "the gallery's socket".into(),
            source,
        })?;
        let gallery = Arc::new(Gallery::open(out_dir)?);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(safety_headers())
                .configure(routes(gallery.clone()))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(|source| Error::View {
            addr: addr.to_string(),
            source,
        })?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(ViewServer { handle, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}
