//! The shared crawl on Redis: the key layout, the wire form of jobs, and the few operations a
//! process of a distributed crawl needs (join, publish, take, renew, give back, read the totals).
//! The Supervisor drives them; this module knows Redis and nothing of actors.
//!
//! Keys, all under `imgcrawl:{ID}:` (the braces make the crawl id a Redis Cluster hash tag, so one
//! crawl's keys live in one slot and its scripts may touch them all):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `pages`, `images` | stream, consumer group `workers` | jobs waiting (undelivered) or leased (pending) |
//! | `seen:pages`, `seen:images` | set | 16-byte SHA-256 prefixes of every URL ever admitted |
//! | `open` | integer | jobs admitted and not yet acknowledged, anywhere |
//! | `admitted` | integer | pages admitted (for `scope.max_pages` across the cluster) |
//! | `done` | string | set once `open` reaches 0: the crawl is complete |
//! | `stats` | hash | whole-crawl counters |
//! | `manifest` | list | one JSON manifest row per saved image, with the process that saved it |
//! | `bytes` | hash | SHA-256 (32 bytes) of every stored image to `process\npath`: where those bytes are |
//! | `bytes:claims` | hash | SHA-256 to `process expiry`: bytes a process is storing now |
//! | `kept` | hash | page URL hash to its `ETag`, `Last-Modified` and what it held, for update runs |
//! | `run` | integer | the run going on: 1 for the first crawl, one more for each update |
//!
//! A job is an entry in its stream. XREADGROUP leases it to one process; the process acknowledges
//! it (XACK, XDEL, `open` - 1) only once its outcome is stored: a page once the links and images it
//! found are published (in the same script call), an image once its file and state are committed.
//! Leases are renewed every `lease_secs / 3`; XAUTOCLAIM hands the jobs of a process that went
//! silent for `lease_secs` to another. Admission, acknowledgement and counters of one batch run in
//! one Lua script, so `open` never disagrees with the streams.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod scripts;
mod streams;
mod wire;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script};

use crate::error::Error;
use crate::job::{Before, ImageJob, PageJob, Validators};
use crate::settings::Distributed;
use crate::Kind;
use scripts::{ACQUIRE, BEGIN_UPDATE, CLAIM_BYTES, PAUSE, PUBLISH, RELEASE, RENEW_SLOTS};
use url::Url;
pub use wire::{encode_image, encode_page, url_hash};

/// The consumer group every process reads the job streams with.
const GROUP: &str = "workers";

/// The letter naming a kind's stream.
fn code(kind: Kind) -> &'static str {
    match kind {
        Kind::Page => "p",
        Kind::Image => "i",
    }
}

/// Key names of one shared crawl.
#[derive(Debug, Clone)]
pub struct Keys {
    id: String,
    prefix: String,
}

impl Keys {
    /// The keys of crawl `id`.
    pub fn new(id: &str) -> Keys {
        Keys {
            id: id.to_string(),
            prefix: format!("imgcrawl:{{{id}}}:"),
        }
    }

    /// The crawl id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The full name of key `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn stream(&self, kind: Kind) -> String {
        self.key(match kind {
            Kind::Page => "pages",
            Kind::Image => "images",
        })
    }

    /// The keys the publish script touches, in the order it expects them.
    fn script_keys(&self) -> [String; 12] {
        [
            "pages",
            "images",
            "seen:pages",
            "seen:images",
            "open",
            "done",
            "stats",
            "manifest",
            "admitted",
            "bytes",
            "bytes:claims",
            "kept",
        ]
        .map(|k| self.key(k))
    }
}

/// One change to the shared crawl, applied in order by [`Cluster::publish`].
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Queue a page unless its URL was seen (and, with a page budget, while it lasts).
    Page(PageJob),
    /// Queue an image unless its URL was seen.
    Image(ImageJob),
    /// The job with this stream entry id is finished: drop it. Only if it was still leased (no
    /// other process took it over and finished it first), count its outcome.
    Ack(Kind, String, Outcome),
    /// Put a leased job back as waiting (a process stopping), as this job.
    GiveBack(Kind, String, String),
    /// Keep what a fetched page held and its validators (see [`kept_page`]) for the next update.
    Keep(Url, String),
}

/// What the shared crawl keeps of a fetched page for update runs: its `ETag` and `Last-Modified`
/// (each on a line of its own, empty when absent), then what it held (in the form of
/// [`crate::extract::Extracted::encode`]).
pub fn kept_page(validators: &Validators, found: &str) -> String {
    let v = validators;
    format!(
        "{}\n{}\n{found}",
        v.etag.as_deref().unwrap_or(""),
        v.modified.as_deref().unwrap_or("")
    )
}

/// Reads [`kept_page`]'s text back: what a page's job carries into an update.
pub fn read_kept(text: &str) -> Option<Before> {
    let mut parts = text.splitn(3, '\n');
    let (etag, modified) = (parts.next()?, parts.next()?);
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(Before {
        validators: Validators {
            etag: some(etag),
            modified: some(modified),
        },
        found: Some(parts.next()?.to_string()),
    })
}

/// What a finished job adds to the whole crawl's records.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// The counter to add 1 to (`pages_fetched`, `images_saved`, ...), if any.
    pub count: Option<&'static str>,
    /// The manifest row (JSON) of a saved image.
    pub row: Option<String>,
    /// Bytes written.
    pub bytes: u64,
    /// The hex SHA-256 and path (in this process's `out_dir`) of image bytes this process now
    /// holds, so that other processes link to them instead of storing a copy.
    pub stored: Option<(String, String)>,
}

impl Outcome {
    /// Counts one in `field`.
    pub fn count(field: &'static str) -> Outcome {
        Outcome {
            count: Some(field),
            ..Outcome::default()
        }
    }
}

/// A job leased to this process: the stream entry id to acknowledge, and the job.
#[derive(Debug, Clone)]
pub struct Leased<J> {
    /// Stream entry id.
    pub id: String,
    /// The job.
    pub job: J,
}

/// What [`Cluster::take`] found.
#[derive(Debug, Default)]
pub struct Taken {
    /// Pages now leased to this process.
    pub pages: Vec<Leased<PageJob>>,
    /// Images now leased to this process.
    pub images: Vec<Leased<ImageJob>>,
    /// Entries that could not be read as jobs (acknowledged and dropped, and logged).
    pub malformed: usize,
    /// The crawl is complete: nothing waits or is leased anywhere.
    pub complete: bool,
}

/// What [`Cluster::acquire`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The request may start now; release the token when its slot is free.
    Granted,
    /// The host is at its in-flight limit across the cluster.
    Busy,
    /// The host's delay or pause allows the next start after this long.
    Wait(Duration),
}

/// What [`Cluster::claim_bytes`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BytesClaim {
    /// No process holds these bytes: this one stores them.
    Mine,
    /// A process stores them already.
    Stored {
        /// That process's consumer name.
        by: String,
        /// The file, in that process's `out_dir`.
        path: PathBuf,
    },
    /// Another process is storing them now: ask again after this long at most.
    Wait(Duration),
}

/// A connection to one shared crawl. Cheap to clone; clones share the connection, which
/// reconnects by itself after Redis went away.
#[derive(Clone)]
pub struct Cluster {
    con: ConnectionManager,
    keys: Keys,
    /// This process's consumer name in the group (host, pid and start time).
    consumer: String,
    lease: Duration,
    max_pages: u64,
    publish: Arc<Script>,
    acquire: Arc<Script>,
    release: Arc<Script>,
    pause: Arc<Script>,
    renew_slots: Arc<Script>,
    claim_bytes: Arc<Script>,
    /// The run going on is an update: pages taken get what the crawl kept of them.
    update: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("keys", &self.keys)
            .field("consumer", &self.consumer)
            .finish()
    }
}

/// Why Redis could not be used at start-up: a wrong password is a configuration error.
fn start_error(d: &Distributed, e: RedisError) -> Error {
    let auth = e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    let url = d.redacted_url();
    if auth {
        return Error::ClusterAuth { url, source: e };
    }
    Error::Cluster {
        url,
        what: "start-up",
        source: e,
    }
}

impl Cluster {
    /// Connects to the shared crawl `d`, checks the credentials and creates the job streams and
    /// their consumer group when this is the crawl's first process.
    pub async fn connect(d: &Distributed, max_pages: Option<u64>) -> Result<Cluster, Error> {
        let client = redis::Client::open(d.redis_url.as_str()).map_err(|e| start_error(d, e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let con = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| start_error(d, e))?;
        let cluster = Cluster {
            con,
            keys: Keys::new(&d.crawl_id),
            consumer: consumer_name(),
            lease: d.lease,
            max_pages: max_pages.unwrap_or(0),
            publish: Arc::new(Script::new(PUBLISH)),
            acquire: Arc::new(Script::new(ACQUIRE)),
            release: Arc::new(Script::new(RELEASE)),
            pause: Arc::new(Script::new(PAUSE)),
            renew_slots: Arc::new(Script::new(RENEW_SLOTS)),
            claim_bytes: Arc::new(Script::new(CLAIM_BYTES)),
            update: false,
        };
        let mut con = cluster.con.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map_err(|e| start_error(d, e))?;
        for kind in [Kind::Page, Kind::Image] {
            let created: Result<(), RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(cluster.keys.stream(kind))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut con)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(start_error(d, e)),
            }
        }
        Ok(cluster)
    }

    /// This process's name in the consumer group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The crawl's key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// How long a lease lasts without renewal.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// For `crawl --update`: when the shared crawl is complete, starts an update run of it (see
    /// the script); otherwise this process joins the run going on. Answers whether it started
    /// one, and the run's number.
    pub async fn begin_update(&mut self) -> Result<(bool, i64), RedisError> {
        let mut con = self.con.clone();
        let (started, run): (i64, i64) = Script::new(BEGIN_UPDATE)
            .key(self.keys.key("done"))
            .key(self.keys.key("run"))
            .key(self.keys.key("seen:pages"))
            .key(self.keys.key("admitted"))
            .key(self.keys.key("stats"))
            .key(self.keys.key("open"))
            .invoke_async(&mut con)
            .await?;
        self.update = run > 1;
        Ok((started == 1, run))
    }

    /// What the crawl kept of each of `urls` (pages), in order.
    async fn kept(&self, urls: &[&Url]) -> Result<Vec<Option<String>>, RedisError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.key("kept"));
        for url in urls {
            cmd.arg(&url_hash(url)[..]);
        }
        cmd.query_async(&mut con).await
    }

    /// Whether the crawl is complete (every job admitted was acknowledged).
    pub async fn is_complete(&self) -> Result<bool, RedisError> {
        let mut con = self.con.clone();
        redis::cmd("EXISTS")
            .arg(self.keys.key("done"))
            .query_async(&mut con)
            .await
    }

    fn host_key(&self, host: &str, what: &str) -> String {
        self.keys.key(&format!("host:{host}:{what}"))
    }

    /// Asks to start one request to `host` (a politeness key) as `token`, with at most `limit`
    /// requests in flight across the cluster and `delay` between starts.
    pub async fn acquire(
        &self,
        host: &str,
        token: &str,
        limit: usize,
        delay: Duration,
    ) -> Result<Acquired, RedisError> {
        let mut con = self.con.clone();
        let answer: i64 = self
            .acquire
            .key(self.host_key(host, "slots"))
            .key(self.host_key(host, "next"))
            .key(self.host_key(host, "pause"))
            .arg(token)
            .arg(limit)
            .arg(delay.as_millis() as u64)
            .arg(self.lease.as_millis() as u64)
            .invoke_async(&mut con)
            .await?;
        Ok(match answer {
            0 => Acquired::Granted,
            n if n < 0 => Acquired::Busy,
            ms => Acquired::Wait(Duration::from_millis(ms as u64)),
        })
    }

    /// Frees the request slot `token` held on `host`; with a `delay`, no request to `host` starts
    /// before `delay` from now (a request was made; zero for a permit given back unused).
    pub async fn release(
        &self,
        host: &str,
        token: &str,
        delay: Duration,
    ) -> Result<(), RedisError> {
        let mut con = self.con.clone();
        self.release
            .key(self.host_key(host, "slots"))
            .key(self.host_key(host, "next"))
            .arg(token)
            .arg(delay.as_millis() as u64)
            .invoke_async(&mut con)
            .await
    }

    /// No process starts a request to `host` for `wait` (the host answered with `Retry-After`).
    pub async fn pause_host(&self, host: &str, wait: Duration) -> Result<(), RedisError> {
        let mut con = self.con.clone();
        self.pause
            .key(self.host_key(host, "pause"))
            .arg(wait.as_millis() as u64)
            .invoke_async(&mut con)
            .await
    }

    /// Renews the request slots held here, as (host, token) pairs.
    pub async fn renew_slots(&self, slots: &[(String, String)]) -> Result<(), RedisError> {
        if slots.is_empty() {
            return Ok(());
        }
        let mut inv = self.renew_slots.prepare_invoke();
        for (host, token) in slots {
            inv.key(self.host_key(host, "slots")).arg(token);
        }
        inv.arg(self.lease.as_millis() as u64);
        let mut con = self.con.clone();
        inv.invoke_async(&mut con).await
    }

    /// Asks to be the process that stores the image bytes with hex SHA-256 `sha256`.
    pub async fn claim_bytes(&self, sha256: &str) -> Result<BytesClaim, RedisError> {
        let mut con = self.con.clone();
        let answer: Vec<String> = self
            .claim_bytes
            .key(self.keys.key("bytes"))
            .key(self.keys.key("bytes:claims"))
            .arg(&sha_key(sha256)[..])
            .arg(&self.consumer)
            .arg(self.lease.as_millis() as u64)
            .invoke_async(&mut con)
            .await?;
        let ms = |v: &str| {
            v.parse::<u64>()
                .ok()
                .map(|n| Duration::from_millis(n.max(1)))
        };
        Ok(match answer.as_slice() {
            [code] if code == "0" => BytesClaim::Mine,
            [code, stored] if code == "1" => {
                let (by, path) = stored.split_once('\n').unwrap_or(("", stored));
                BytesClaim::Stored {
                    by: by.to_string(),
                    path: PathBuf::from(path),
                }
            }
            [code, wait] if code == "2" && ms(wait).is_some() => {
                BytesClaim::Wait(ms(wait).unwrap_or_default())
            }
            _ => {
                return Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "unexpected answer from the bytes claim script",
                )))
            }
        })
    }

    /// The whole crawl's counters.
    pub async fn stats(&self) -> Result<HashMap<String, i64>, RedisError> {
        let mut con = self.con.clone();
        redis::cmd("HGETALL")
            .arg(self.keys.key("stats"))
            .query_async(&mut con)
            .await
    }

    /// The whole crawl's manifest rows (JSON), `from` the index given, at most `count`.
    pub async fn manifest(&self, from: usize, count: usize) -> Result<Vec<String>, RedisError> {
        let mut con = self.con.clone();
        redis::cmd("LRANGE")
            .arg(self.keys.key("manifest"))
            .arg(from)
            .arg(from + count - 1)
            .query_async(&mut con)
            .await
    }
}

/// The key of image bytes in the `bytes` hashes: their SHA-256, from hex to its 32 raw bytes
/// (half the memory of the hex text).
fn sha_key(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A consumer name unique to this process: host name, process id and start time.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{host}-{}-{since}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_cluster_slot() {
        let k = Keys::new("gallery-1");
        assert_eq!(k.key("open"), "imgcrawl:{gallery-1}:open");
        assert!(k
            .script_keys()
            .iter()
            .all(|key| key.starts_with("imgcrawl:{gallery-1}:")));
    }
}
