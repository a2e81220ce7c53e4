//! Live metrics of a running crawl: Prometheus text at `/metrics` and a JSON status at `/status`,
//! served by actix-web inside the crawl's own System (`--metrics ADDR`), or mounted by an
//! application that embeds the crawler with [`routes`]. Counters come from the Logger's
//! [`Stats`], gauges and response times from the Supervisor's [`Activity`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Serialize;

use crate::activity::{Activity, CrawlState, Histogram, QueueState};
use crate::error::Error;
use crate::records::Stats;
use crate::Crawl;

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes one metric family: its help, its type, and its samples (`labels` is `k="v",...` or
/// empty).
fn family<'a>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, f64)> + 'a,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The crawl's metrics in the Prometheus text exposition format (version 0.0.4).
pub fn prometheus_text(stats: &Stats, activity: &Activity) -> String {
    let mut out = String::new();
    counters(&mut out, stats);
    gauges(&mut out, activity);
    response_times(&mut out, activity);
    out
}

/// One sample without labels.
fn one(v: u64) -> Vec<(String, f64)> {
    vec![(String::new(), v as f64)]
}

/// Samples labelled `key="value"`.
fn by(key: &str, pairs: &[(&str, u64)]) -> Vec<(String, f64)> {
    pairs
        .iter()
        .map(|(v, n)| (format!("{key}=\"{v}\""), *n as f64))
        .collect()
}

/// Samples labelled `kind="page"` and `kind="image"`.
fn by_kind(pages: usize, images: usize) -> Vec<(String, f64)> {
    by("kind", &[("page", pages as u64), ("image", images as u64)])
}

/// The crawl's counters (from the Logger's stats).
fn counters(out: &mut String, s: &Stats) {
    family(
        out,
        "imgcrawl_pages_total",
        "counter",
        "Pages done, by outcome.",
        by(
            "outcome",
            &[("fetched", s.pages_fetched), ("failed", s.pages_failed)],
        ),
    );
    family(
        out,
        "imgcrawl_images_total",
        "counter",
        "Image URLs done, by outcome (duplicate: same bytes as a saved file).",
        by(
            "outcome",
            &[
                ("saved", s.images_saved),
                ("duplicate", s.duplicates),
                ("failed", s.images_failed),
                ("already_saved", s.images_already_saved),
                ("out_of_scope", s.images_out_of_scope),
            ],
        ),
    );
    family(
        out,
        "imgcrawl_images_skipped_total",
        "counter",
        "Images left out on purpose, by reason (a [filter] key, robots).",
        s.images_skipped
            .iter()
            .map(|(k, n)| (format!("reason=\"{}\"", label(k)), *n as f64)),
    );
    family(
        out,
        "imgcrawl_pages_skipped_total",
        "counter",
        "Pages left out on purpose, by reason (robots, trap, out of scope).",
        s.pages_skipped
            .iter()
            .map(|(k, n)| (format!("reason=\"{}\"", label(k)), *n as f64)),
    );
    family(
        out,
        "imgcrawl_saved_bytes_total",
        "counter",
        "Bytes of the new image files written.",
        one(s.bytes_saved),
    );
    family(
        out,
        "imgcrawl_errors_total",
        "counter",
        "Pages and images that failed for good, by kind of error.",
        s.errors_by_kind
            .iter()
            .map(|(k, n)| (format!("kind=\"{}\"", label(k)), *n as f64)),
    );
    family(
        out,
        "imgcrawl_retries_total",
        "counter",
        "Retries made after retryable failures.",
        one(s.retries),
    );
    family(
        out,
        "imgcrawl_worker_restarts_total",
        "counter",
        "Workers that died and were replaced.",
        one(s.worker_restarts),
    );
}

/// The crawl's gauges (from the Supervisor's activity).
fn gauges(out: &mut String, activity: &Activity) {
    let q = &activity.queues;
    family(
        out,
        "imgcrawl_frontier_jobs",
        "gauge",
        "Jobs waiting (spilled to the state database included), by kind.",
        by_kind(q.pages_waiting, q.images_waiting),
    );
    family(
        out,
        "imgcrawl_frontier_spilled_jobs",
        "gauge",
        "Of the waiting jobs, those kept only in the state database, by kind.",
        by_kind(q.pages_spilled, q.images_spilled),
    );
    family(
        out,
        "imgcrawl_in_flight_requests",
        "gauge",
        "Requests being served, by kind.",
        by_kind(q.pages_in_flight, q.images_in_flight),
    );
    family(
        out,
        "imgcrawl_images_committing",
        "gauge",
        "Images stored and waiting for the state commit after which they count as saved.",
        one(q.images_committing as u64),
    );
    family(
        out,
        "imgcrawl_host_in_flight_requests",
        "gauge",
        "Requests being served, by host (hosts with none are left out).",
        activity
            .hosts_in_flight
            .iter()
            .map(|(h, n)| (format!("host=\"{}\"", label(h)), *n as f64)),
    );
    family(
        out,
        "imgcrawl_running",
        "gauge",
        "1 while the crawl runs (or is stopping), 0 once it has ended.",
        one(u64::from(matches!(
            activity.state,
            CrawlState::Running | CrawlState::Stopping
        ))),
    );
}

/// The response-time histograms, by kind.
fn response_times(out: &mut String, activity: &Activity) {
    let name = "imgcrawl_response_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Seconds from a request's start until its response was in (body read in full, or the failure known), by kind."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (kind, h) in [
        ("page", &activity.response_times.pages),
        ("image", &activity.response_times.images),
    ] {
        for (bound, n) in h.cumulative() {
            let _ = writeln!(out, "{name}_bucket{{kind=\"{kind}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}",
            h.count()
        );
        let _ = writeln!(out, "{name}_sum{{kind=\"{kind}\"}} {}", h.sum());
        let _ = writeln!(out, "{name}_count{{kind=\"{kind}\"}} {}", h.count());
    }
}

/// The JSON answered at `/status`.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    /// running, stopping, finished, stopped or failed.
    pub state: CrawlState,
    /// The counters so far.
    pub stats: &'a Stats,
    /// Waiting, in-flight and committing jobs.
    pub queues: QueueState,
    /// Requests in flight per host.
    pub hosts_in_flight: &'a BTreeMap<String, usize>,
    /// Response times: count and mean seconds, by kind.
    pub response_seconds: BTreeMap<&'static str, Mean>,
}

/// A count and a mean, for [`Status`].
#[derive(Debug, Serialize)]
pub struct Mean {
    /// Observations.
    pub count: u64,
    /// Their mean, in seconds (0 without any).
    pub mean: f64,
}

impl Mean {
    fn of(h: &Histogram) -> Mean {
        let count = h.count();
        Mean {
            count,
            mean: if count == 0 {
                0.0
            } else {
                h.sum() / count as f64
            },
        }
    }
}

/// The crawl's status as JSON.
pub fn status_json(stats: &Stats, activity: &Activity) -> String {
    let status = Status {
        state: activity.state,
        stats,
        queues: activity.queues,
        hosts_in_flight: &activity.hosts_in_flight,
        response_seconds: [
            ("page", Mean::of(&activity.response_times.pages)),
            ("image", Mean::of(&activity.response_times.images)),
        ]
        .into_iter()
        .collect(),
    };
    serde_json::to_string_pretty(&status).expect("the status serialises to JSON")
}

/// The counters and the activity, or the answer that says they could not be read.
async fn read(crawl: &Crawl) -> Result<(Stats, Activity), HttpResponse> {
    let (stats, activity) = futures_util::join!(crawl.stats(), crawl.activity());
    match (stats, activity) {
        (Ok(s), Ok(a)) => Ok((s, a)),
        (Err(e), _) | (_, Err(e)) => {
            Err(HttpResponse::ServiceUnavailable().body(format!("the crawl is gone: {e}\n")))
        }
    }
}

async fn metrics(crawl: web::Data<Crawl>) -> HttpResponse {
    match read(&crawl).await {
        Ok((s, a)) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(prometheus_text(&s, &a)),
        Err(r) => r,
    }
}

async fn status(crawl: web::Data<Crawl>) -> HttpResponse {
    match read(&crawl).await {
        Ok((s, a)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(status_json(&s, &a)),
        Err(r) => r,
    }
}

/// The `/metrics` and `/status` routes for `crawl`, to mount in an application's own actix-web
/// server: `App::new().configure(imgcrawl::metrics::routes(crawl.clone()))`.
pub fn routes(crawl: Crawl) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(crawl))
            .route("/metrics", web::get().to(metrics))
            .route("/status", web::get().to(status));
    }
}

/// Opens the listening socket for the metrics server, before the crawl starts, so that a busy
/// address stops imgcrawl before any work is done.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).map_err(|source| Error::Metrics {
        addr: addr.to_string(),
        source,
    })
}

/// The metrics server of one crawl, running in the current System.
pub struct MetricsServer {
    handle: ServerHandle,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Serves `crawl`'s `/metrics` and `/status` on `listener` (see [`bind`]), with one worker
    /// thread and no signal handling of its own (the crawl owns Ctrl-C).
    pub fn start(crawl: &Crawl, listener: TcpListener) -> Result<MetricsServer, Error> {
        Self::start_with_dashboard(crawl, listener, None)
    }

    /// [`start`](Self::start), and with `out_dir` (the crawl's output directory) the live
    /// dashboard at `/` (see [`crate::view::dashboard`]), under the gallery's safety headers.
    pub fn start_with_dashboard(
        crawl: &Crawl,
        listener: TcpListener,
        out_dir: Option<std::path::PathBuf>,
    ) -> Result<MetricsServer, Error> {
        let addr = listener.local_addr().map_err(|source| Error::Metrics {
            addr: "the metrics socket".into(),
            source,
        })?;
        let crawl = crawl.clone();
        // One dashboard (and its event watcher) for all the server's workers.
        let dashboard =
            out_dir.map(|out| crate::view::dashboard::Dashboard::start(crawl.clone(), out));
        let server = HttpServer::new(move || {
            let app = App::new()
                .wrap(crate::view::safety_headers())
                .configure(routes(crawl.clone()));
            match &dashboard {
                Some(d) => app.configure(d.routes()),
                None => app,
            }
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(|source| Error::Metrics {
            addr: addr.to_string(),
            source,
        })?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(MetricsServer { handle, addr })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let mut h = Histogram::default();
        for secs in [0.001, 0.005, 0.007, 0.3, 0.3, 45.0] {
            h.observe(secs);
        }
        let c: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(c[0], (0.005, 2), "a bound includes values equal to it");
        assert_eq!(c[1], (0.01, 3));
        assert_eq!(c[6], (0.5, 5));
        assert_eq!(c.last(), Some(&(30.0, 5)), "45 s is only in +Inf");
        assert_eq!(h.count(), 6);
        assert!((h.sum() - 45.613).abs() < 1e-9);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
