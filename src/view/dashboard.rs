//! The live dashboard of a running crawl, at `/` of its `--metrics` address: progress, the rates
//! of the last two minutes as a chart, the hosts in flight, the newest saved images as thumbnails
//! and the latest failures. A server-rendered page that reloads itself every two seconds (a
//! `refresh` meta tag: no script), under the same Content-Security-Policy as the gallery.
//!
//! A [`Watcher`] actor subscribes to the crawl's events and keeps what the counters do not: the
//! pages and images of each second, the newest saved rows and the latest failures.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, HttpResponse};

use super::html::{esc, outside};
use crate::activity::Activity;
use crate::actors::logger::CrawlEvent;
use crate::records::{ErrorRow, ManifestRow, Stats};
use crate::Crawl;

/// Seconds of rates the chart shows.
const HISTORY_SECS: usize = 120;
/// Newest images shown.
const NEWEST: usize = 12;
/// Latest failures shown.
const FAILURES: usize = 10;
/// Saved images whose thumbnail can be asked for: more than are shown, since the page a browser
/// shows may be a few seconds old by the time it asks.
const SERVABLE: usize = 256;

/// What the dashboard keeps of the crawl's events.
#[derive(Debug, Default)]
pub struct Board {
    /// Pages and images done in each of the last seconds, oldest first.
    history: VecDeque<(u32, u32)>,
    /// The second being counted.
    current: (u32, u32),
    /// The newest saved images (their own files, no duplicates), newest first.
    newest: VecDeque<ManifestRow>,
    /// The latest failures, newest first.
    failures: VecDeque<ErrorRow>,
    /// The latest saved images' sha256 and file, newest first: the thumbnails that may be asked
    /// for.
    servable: VecDeque<(String, PathBuf)>,
}

impl Board {
    /// Takes in one event.
    pub fn record(&mut self, event: &CrawlEvent) {
        match event {
            CrawlEvent::PageFetched { .. } => self.current.0 += 1,
            CrawlEvent::ImageSaved(row) => {
                self.current.1 += 1;
                if row.duplicate_of.is_none() && row.duplicate_on.is_none() {
                    self.newest.push_front((**row).clone());
                    self.newest.truncate(NEWEST);
                    self.servable
                        .push_front((row.sha256.clone(), row.path.clone()));
                    self.servable.truncate(SERVABLE);
                }
            }
            CrawlEvent::Failed(row) => {
                self.failures.push_front(row.clone());
                self.failures.truncate(FAILURES);
            }
            _ => {}
        }
    }

    /// A second has passed.
    pub fn tick(&mut self) {
        self.history.push_back(std::mem::take(&mut self.current));
        while self.history.len() > HISTORY_SECS {
            self.history.pop_front();
        }
    }
}

/// Keeps a [`Board`] from the crawl's events.
pub struct Watcher {
    board: Arc<Mutex<Board>>,
}

impl Actor for Watcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |w, _| lock(&w.board).tick());
    }
}

impl Handler<CrawlEvent> for Watcher {
    type Result = ();

    fn handle(&mut self, event: CrawlEvent, _: &mut Context<Self>) {
        lock(&self.board).record(&event);
    }
}

fn lock(board: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the dashboard's handlers share.
struct Shared {
    crawl: Crawl,
    out_dir: PathBuf,
    board: Arc<Mutex<Board>>,
}

/// The dashboard of one crawl: cheap to clone into each server worker.
#[derive(Clone)]
pub struct Dashboard {
    shared: web::Data<Shared>,
}

impl Dashboard {
    /// The dashboard of `crawl`, saving into `out_dir`; starts its [`Watcher`] in the current
    /// System.
    pub fn start(crawl: Crawl, out_dir: PathBuf) -> Dashboard {
        let board = Arc::new(Mutex::new(Board::default()));
        let watcher = Watcher {
            board: board.clone(),
        }
        .start();
        crawl.subscribe(watcher.recipient());
        Dashboard {
            shared: web::Data::new(Shared {
                crawl,
                out_dir,
                board,
            }),
        }
    }

    /// Its routes: `/`, the newest images' thumbnails and the stylesheet.
    pub fn routes(&self) -> impl FnOnce(&mut web::ServiceConfig) {
        let shared = self.shared.clone();
        move |cfg| {
            cfg.app_data(shared)
                .route("/", web::get().to(page))
                .route("/recent/{sha}", web::get().to(recent))
                .route("/static/app.css", web::get().to(super::css))
                .route("/favicon.ico", web::get().to(super::favicon));
        }
    }
}

async fn page(s: web::Data<Shared>) -> HttpResponse {
    let (stats, activity) = futures_util::join!(s.crawl.stats(), s.crawl.activity());
    let (Ok(stats), Ok(activity)) = (stats, activity) else {
        return HttpResponse::ServiceUnavailable().body("the crawl is gone\n");
    };
    let body = render(&stats, &activity, &lock(&s.board));
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The thumbnail of one of the newest images (only those: no path comes from the request).
async fn recent(s: web::Data<Shared>, sha: web::Path<String>) -> HttpResponse {
    let found = lock(&s.board)
        .servable
        .iter()
        .find(|(h, _)| *h == *sha)
        .cloned();
    let Some((sha, path)) = found else {
        return HttpResponse::NotFound().finish();
    };
    super::thumbnail_response(s.out_dir.clone(), path, sha).await
}

/// The dashboard page.
pub fn render(stats: &Stats, activity: &Activity, board: &Board) -> String {
    let q = &activity.queues;
    let mut body = format!(
        "<h1>Crawl {state:?}</h1><table class=\"facts\">\
         <tr><th>pages fetched</th><td>{pf}</td><th>waiting</th><td>{pw}</td><th>in flight</th><td>{pi}</td></tr>\
         <tr><th>images saved</th><td>{is}</td><th>waiting</th><td>{iw}</td><th>in flight</th><td>{ii}</td></tr>\
         <tr><th>duplicates</th><td>{dup}</td><th>failed</th><td>{fail}</td><th>MB saved</th><td>{mb:.1}</td></tr>\
         </table>",
        state = activity.state,
        pf = stats.pages_fetched,
        pw = q.pages_waiting,
        pi = q.pages_in_flight,
        is = stats.images_saved,
        iw = q.images_waiting,
        ii = q.images_in_flight,
        dup = stats.duplicates,
        fail = stats.pages_failed + stats.images_failed,
        mb = stats.bytes_saved as f64 / 1e6,
    );
    body.push_str(&chart(&board.history));
    body.push_str("<h2>Hosts in flight</h2><table>");
    for (host, n) in &activity.hosts_in_flight {
        let _ = write!(body, "<tr><td>{}</td><td>{n}</td></tr>", esc(host));
    }
    body.push_str("</table><h2>Newest images</h2><div class=\"grid\">");
    for r in &board.newest {
        let _ = write!(
            body,
            "<figure class=\"tile\"><a><img src=\"/recent/{sha}\" alt=\"{name}\"></a>\
             <figcaption>{name}</figcaption></figure>",
            sha = esc(&r.sha256),
            name = esc(&r.name)
        );
    }
    body.push_str("</div><h2>Latest failures</h2><table>");
    for f in &board.failures {
        let page = f.page.as_deref().map(outside).unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{page}</td></tr>",
            outside(&f.url),
            esc(&f.error),
            esc(&f.detail)
        );
    }
    body.push_str("</table>");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"2\"><title>imgcrawl dashboard</title>\
         <link rel=\"stylesheet\" href=\"/static/app.css\"></head><body><header><strong>imgcrawl</strong>\
         <nav><a href=\"/\" aria-current=\"page\">Dashboard</a><a href=\"/status\">/status</a>\
         <a href=\"/metrics\">/metrics</a></nav></header><main>{body}</main></body></html>"
    )
}

/// Pages and images a second over the last seconds, as an SVG chart (presentation attributes
/// only: no style, no script).
fn chart(history: &VecDeque<(u32, u32)>) -> String {
    let (w, h) = (600.0, 120.0);
    let top = history
        .iter()
        .map(|&(p, i)| p.max(i))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let line = |pick: fn(&(u32, u32)) -> u32| {
        history
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let x = w * k as f64 / (HISTORY_SECS - 1) as f64;
                let y = h - h * f64::from(pick(s)) / top;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let last = history.back().copied().unwrap_or_default();
    format!(
        "<h2>Per second, last two minutes <small>now {} pages, {} images; top {}</small></h2>\
         <svg class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-label=\"pages and images per second\"><rect width=\"{w}\" height=\"{h}\" fill=\"none\" \
         stroke=\"#8884\"/><polyline fill=\"none\" stroke=\"#2a6fd6\" stroke-width=\"2\" points=\"{}\"/>\
         <polyline fill=\"none\" stroke=\"#d66e20\" stroke-width=\"2\" points=\"{}\"/></svg>\
         <p><small><span class=\"pages\">blue: pages</span>, <span class=\"images\">orange: images</span></small></p>",
        last.0,
        last.1,
        top,
        line(|s| s.0),
        line(|s| s.1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_counts_each_second_and_keeps_the_newest() {
        let mut b = Board::default();
        for _ in 0..3 {
            b.record(&CrawlEvent::PageFetched {
                url: url::Url::parse("http://h/").unwrap(),
                depth: 0,
                images: 0,
                links: 0,
                images_dropped: 0,
                links_dropped: 0,
                links_out_of_scope: 0,
                change: crate::actors::logger::PageChange::New,
            });
        }
        b.tick();
        b.tick();
        assert_eq!(b.history, [(3, 0), (0, 0)]);
        for _ in 0..HISTORY_SECS + 5 {
            b.tick();
        }
        assert_eq!(b.history.len(), HISTORY_SECS);
        let svg = chart(&b.history);
        assert!(svg.contains("<polyline") && !svg.contains("style="));
    }
}
