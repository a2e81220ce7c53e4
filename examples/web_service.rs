//! An actix-web service that runs imgcrawl crawls inside its own System.
//!
//! ```text
//! cargo run --example web_service            # listens on 127.0.0.1:8088
//! curl -X POST 127.0.0.1:8088/crawls -H 'content-type: application/json' \
//!      -d '{"start_urls": ["http://127.0.0.1:8080/list/1.html"], "out_dir": "web-out"}'
//! curl 127.0.0.1:8088/crawls/1
//! ```
//! (`cargo run -- serve-sample` serves a gallery on 127.0.0.1:8080 to try it with.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use actix_web::{get, post, web, App, HttpResponse, HttpServer};
use imgcrawl::{Crawl, Settings};
use serde::Deserialize;

/// The crawls started by this service, by id.
#[derive(Default)]
struct Crawls {
    next: AtomicU64,
    running: Mutex<HashMap<u64, Crawl>>,
}

/// Body of `POST /crawls`.
#[derive(Deserialize)]
struct NewCrawl {
    start_urls: Vec<String>,
    #[serde(default = "default_out")]
    out_dir: String,
}

fn default_out() -> String {
    "imgcrawl-out".into()
}

#[post("/crawls")]
async fn start(state: web::Data<Crawls>, body: web::Json<NewCrawl>) -> HttpResponse {
    let body = body.into_inner();
    let settings = match Settings::for_urls(body.start_urls, body.out_dir) {
        Ok(s) => s,
        Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
    };
    match Crawl::start(settings).await {
        Ok(crawl) => {
            let id = state.next.fetch_add(1, Ordering::SeqCst) + 1;
            state.running.lock().unwrap().insert(id, crawl);
            HttpResponse::Created()
                .json(serde_json::json!({ "id": id, "status": format!("/crawls/{id}") }))
        }
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

#[get("/crawls/{id}")]
async fn status(state: web::Data<Crawls>, id: web::Path<u64>) -> HttpResponse {
    let crawl = state.running.lock().unwrap().get(&id.into_inner()).cloned();
    let Some(crawl) = crawl else {
        return HttpResponse::NotFound().body("no such crawl");
    };
    match (crawl.stats().await, crawl.queues().await) {
        (Ok(stats), Ok(q)) => {
            let finished =
                q.pages_waiting + q.images_waiting + q.pages_in_flight + q.images_in_flight == 0;
            HttpResponse::Ok().json(serde_json::json!({ "finished": finished, "stats": stats }))
        }
        (Err(e), _) | (_, Err(e)) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Shared by every worker: created once, outside the factory closure.
    let crawls = web::Data::new(Crawls::default());
    println!("listening on http://127.0.0.1:8088 (POST /crawls, GET /crawls/{{id}})");
    HttpServer::new(move || {
        App::new()
            .app_data(crawls.clone())
            .service(start)
            .service(status)
    })
    .bind(("127.0.0.1", 8088))?
    .run()
    .await
}
