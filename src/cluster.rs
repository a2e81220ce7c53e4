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
//!
//! A job is an entry in its stream. XREADGROUP leases it to one process; the process acknowledges
//! it (XACK, XDEL, `open` - 1) only once its outcome is stored: a page once the links and images it
//! found are published (in the same script call), an image once its file and state are committed.
//! Leases are renewed every `lease_secs / 3`; XAUTOCLAIM hands the jobs of a process that went
//! silent for `lease_secs` to another. Admission, acknowledgement and counters of one batch run in
//! one Lua script, so `open` never disagrees with the streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use redis::{ErrorKind, RedisError, Script};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::Error;
use crate::frontier::{ImageJob, PageJob};
use crate::settings::Distributed;

/// The consumer group every process reads the job streams with.
const GROUP: &str = "workers";

/// The two kinds of shared job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Pages to fetch.
    Page,
    /// Images to download.
    Image,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Page => "p",
            Kind::Image => "i",
        }
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
    fn script_keys(&self) -> [String; 9] {
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
        ]
        .map(|k| self.key(k))
    }
}

/// A page as it travels through the shared queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WirePage {
    url: String,
    depth: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    from: Vec<String>,
}

/// An image as it travels through the shared queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WireImage {
    url: String,
    page: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    from: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn urls(from: &[Url]) -> Vec<String> {
    from.iter().map(|u| u.to_string()).collect()
}

fn parse_urls(from: &[String]) -> Option<Vec<Url>> {
    from.iter().map(|u| Url::parse(u).ok()).collect()
}

/// The JSON form of a page job.
pub fn encode_page(job: &PageJob) -> String {
    serde_json::to_string(&WirePage {
        url: job.url.to_string(),
        depth: job.depth,
        attempts: job.attempts,
        from: urls(&job.redirected_from),
    })
    .expect("a page job always serialises")
}

/// The JSON form of an image job.
pub fn encode_image(job: &ImageJob) -> String {
    serde_json::to_string(&WireImage {
        url: job.url.to_string(),
        page: job.page.to_string(),
        name: job.name.clone(),
        attempts: job.attempts,
        from: urls(&job.redirected_from),
    })
    .expect("an image job always serialises")
}

fn decode_page(json: &str) -> Option<PageJob> {
    let w: WirePage = serde_json::from_str(json).ok()?;
    Some(PageJob {
        url: Url::parse(&w.url).ok()?,
        depth: w.depth,
        attempts: w.attempts,
        losses: 0,
        redirected_from: parse_urls(&w.from)?,
    })
}

fn decode_image(json: &str) -> Option<ImageJob> {
    let w: WireImage = serde_json::from_str(json).ok()?;
    Some(ImageJob {
        url: Url::parse(&w.url).ok()?,
        page: Url::parse(&w.page).ok()?,
        name: w.name,
        attempts: w.attempts,
        losses: 0,
        redirected_from: parse_urls(&w.from)?,
    })
}

/// The fixed-size key of a URL in the shared seen sets.
pub fn url_hash(url: &Url) -> [u8; 16] {
    let digest = Sha256::digest(url.as_str().as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
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

/// Applies a batch of [`Op`]s atomically. See the module documentation for the keys.
const PUBLISH: &str = r#"
local group = ARGV[1]
local max_pages = tonumber(ARGV[2])
local acked = 0
local i = 3
local function stream(k) if k == 'p' then return KEYS[1] else return KEYS[2] end end
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'P' or op == 'I' then
    local seen = KEYS[4]
    if op == 'P' then seen = KEYS[3] end
    if redis.call('SADD', seen, ARGV[i + 1]) == 1 then
      local ok = true
      if op == 'P' and max_pages > 0 then
        ok = redis.call('INCR', KEYS[9]) <= max_pages
      end
      if ok then
        local s = KEYS[2]
        if op == 'P' then s = KEYS[1] end
        redis.call('XADD', s, '*', 'j', ARGV[i + 2])
        redis.call('INCR', KEYS[5])
      end
    end
    i = i + 3
  elseif op == 'A' then
    -- kind, id, counter to add 1 to ('' for none), manifest row ('' for none), bytes saved
    local s = stream(ARGV[i + 1])
    if redis.call('XACK', s, group, ARGV[i + 2]) == 1 then
      redis.call('XDEL', s, ARGV[i + 2])
      redis.call('DECR', KEYS[5])
      acked = acked + 1
      if ARGV[i + 3] ~= '' then redis.call('HINCRBY', KEYS[7], ARGV[i + 3], 1) end
      if ARGV[i + 4] ~= '' then redis.call('RPUSH', KEYS[8], ARGV[i + 4]) end
      if tonumber(ARGV[i + 5]) > 0 then redis.call('HINCRBY', KEYS[7], 'bytes_saved', ARGV[i + 5]) end
    end
    i = i + 6
  elseif op == 'R' then
    local s = stream(ARGV[i + 1])
    if redis.call('XACK', s, group, ARGV[i + 2]) == 1 then
      redis.call('XDEL', s, ARGV[i + 2])
      redis.call('XADD', s, '*', 'j', ARGV[i + 3])
    end
    i = i + 4
  else
    return redis.error_reply('imgcrawl: unknown operation ' .. tostring(op))
  end
end
local open = tonumber(redis.call('GET', KEYS[5]) or '0')
if acked > 0 and open <= 0 then redis.call('SET', KEYS[6], '1') end
return open
"#;

/// Grants one request start to a host if the cluster's limits allow it. KEYS: the host's slots
/// (a sorted set of tokens scored by lease expiry), its next allowed start and its pause. ARGV:
/// token, in-flight limit (1 while a delay is set), delay (ms), lease (ms). Returns 0 (granted), -1 (at the in-flight
/// limit) or the milliseconds to wait. Redis's clock is the only one used, so processes on
/// machines with different clocks agree.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local wait = 0
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > now then wait = pause - now end
local next = tonumber(redis.call('GET', KEYS[2]) or '0')
if next - now > wait then wait = next - now end
if wait > 0 then return wait end
-- With a delay, one request at a time: the next is granted once this one's slot is freed (after
-- the server had it) and a delay has passed, so no process's scheduling can bring two requests
-- closer together at the server.
local limit = tonumber(ARGV[2])
local delay = tonumber(ARGV[3])
if delay > 0 then limit = 1 end
if redis.call('ZCARD', KEYS[1]) >= limit then return -1 end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
if delay > 0 then redis.call('SET', KEYS[2], now + delay, 'PX', delay + 1000) end
return 0
"#;

/// Frees a request slot. KEYS: the host's slots and next start; ARGV: the token and the delay
/// (ms). The next start is also pushed to a delay after now: the request reached the server
/// before its slot was freed, so the server never sees two starts closer than the delay, however
/// late a process's request left after its grant.
const RELEASE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
local delay = tonumber(ARGV[2])
if delay > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local next = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now + delay > next then redis.call('SET', KEYS[2], now + delay, 'PX', delay + 1000) end
end
return 0
"#;

/// Pauses a host for ARGV[1] ms from now (never shortening a longer pause). KEYS: its pause.
const PAUSE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > old then redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[1]) + 1000) end
return 0
"#;

/// Renews request slots: KEYS are slot sets, ARGV the token in each and then the lease (ms).
const RENEW_SLOTS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[#ARGV])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i])
  redis.call('PEXPIRE', key, lease)
end
return 0
"#;

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
fn start_error(d: &Distributed, e: &RedisError) -> Error {
    let auth = e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    if auth {
        return Error::ClusterAuth(format!(
            "Redis at {} refused the credentials (the user and password of --redis or distributed.redis_url): {e}",
            d.redacted_url()
        ));
    }
    Error::Cluster(format!("cannot use Redis at {}: {e}", d.redacted_url()))
}

impl Cluster {
    /// Connects to the shared crawl `d`, checks the credentials and creates the job streams and
    /// their consumer group when this is the crawl's first process.
    pub async fn connect(d: &Distributed, max_pages: Option<u64>) -> Result<Cluster, Error> {
        let client = redis::Client::open(d.redis_url.as_str()).map_err(|e| start_error(d, &e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let con = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| start_error(d, &e))?;
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
        };
        let mut con = cluster.con.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map_err(|e| start_error(d, &e))?;
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
                Err(e) => return Err(start_error(d, &e)),
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

    /// Whether the crawl is complete (every job admitted was acknowledged).
    pub async fn is_complete(&self) -> Result<bool, RedisError> {
        let mut con = self.con.clone();
        redis::cmd("EXISTS")
            .arg(self.keys.key("done"))
            .query_async(&mut con)
            .await
    }

    /// Applies `ops` in order, atomically; returns the number of jobs still open.
    pub async fn publish(&self, ops: &[Op]) -> Result<i64, RedisError> {
        let mut inv = self.publish.prepare_invoke();
        for k in self.keys.script_keys() {
            inv.key(k);
        }
        inv.arg(GROUP).arg(self.max_pages);
        for op in ops {
            match op {
                Op::Page(job) => {
                    inv.arg("P")
                        .arg(&url_hash(&job.url)[..])
                        .arg(encode_page(job));
                }
                Op::Image(job) => {
                    inv.arg("I")
                        .arg(&url_hash(&job.url)[..])
                        .arg(encode_image(job));
                }
                Op::Ack(kind, id, outcome) => {
                    inv.arg("A")
                        .arg(kind.code())
                        .arg(id)
                        .arg(outcome.count.unwrap_or(""))
                        .arg(outcome.row.as_deref().unwrap_or(""))
                        .arg(outcome.bytes);
                }
                Op::GiveBack(kind, id, json) => {
                    inv.arg("R").arg(kind.code()).arg(id).arg(json);
                }
            }
        }
        let mut con = self.con.clone();
        inv.invoke_async(&mut con).await
    }

    /// Leases up to `pages` pages and `images` images to this process: first jobs whose lease
    /// ran out (their process went silent), then new ones. When nothing was found, also tells
    /// whether the crawl is complete.
    pub async fn take(
        &self,
        pages: usize,
        images: usize,
        claim_from: &mut HashMap<Kind, String>,
    ) -> Result<Taken, RedisError> {
        let mut taken = Taken::default();
        let mut con = self.con.clone();
        for (kind, want) in [(Kind::Page, pages), (Kind::Image, images)] {
            if want == 0 {
                continue;
            }
            let stream = self.keys.stream(kind);
            let start = claim_from
                .get(&kind)
                .cloned()
                .unwrap_or_else(|| "0-0".into());
            let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(self.lease.as_millis() as u64)
                .arg(start)
                .arg("COUNT")
                .arg(want)
                .query_async(&mut con)
                .await?;
            claim_from.insert(kind, claimed.next_stream_id);
            let mut entries = claimed.claimed;
            if !entries.is_empty() {
                log::info!(
                    "took over {} {} whose lease ran out",
                    entries.len(),
                    if kind == Kind::Page {
                        "pages"
                    } else {
                        "images"
                    }
                );
            }
            let more = want.saturating_sub(entries.len());
            if more > 0 {
                let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg("COUNT")
                    .arg(more)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">")
                    .query_async(&mut con)
                    .await?;
                if let Some(r) = read {
                    entries.extend(r.keys.into_iter().flat_map(|k| k.ids));
                }
            }
            for e in entries {
                let json: Option<String> = e.get("j");
                let ok = match (kind, json.as_deref()) {
                    (Kind::Page, Some(j)) => decode_page(j).map(|job| {
                        taken.pages.push(Leased {
                            id: e.id.clone(),
                            job,
                        })
                    }),
                    (Kind::Image, Some(j)) => decode_image(j).map(|job| {
                        taken.images.push(Leased {
                            id: e.id.clone(),
                            job,
                        })
                    }),
                    _ => None,
                };
                if ok.is_none() {
                    log::warn!("dropping a shared job that is not a job: {json:?}");
                    taken.malformed += 1;
                    self.publish(&[Op::Ack(kind, e.id, Outcome::default())])
                        .await?;
                }
            }
        }
        if taken.pages.is_empty() && taken.images.is_empty() {
            taken.complete = self.is_complete().await?;
        }
        Ok(taken)
    }

    /// Renews the leases on these entries (they are held, waiting or in progress, here).
    pub async fn renew(&self, kind: Kind, ids: &[String]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut con = self.con.clone();
        for chunk in ids.chunks(500) {
            let _: redis::Value = redis::cmd("XCLAIM")
                .arg(self.keys.stream(kind))
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query_async(&mut con)
                .await?;
        }
        Ok(())
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

    #[test]
    fn jobs_survive_the_wire() {
        let page = PageJob {
            url: Url::parse("http://h/list?page=2").unwrap(),
            depth: 3,
            attempts: 1,
            losses: 2,
            redirected_from: vec![Url::parse("http://h/old").unwrap()],
        };
        let back = decode_page(&encode_page(&page)).unwrap();
        assert_eq!(back, PageJob { losses: 0, ..page });
        let image = ImageJob {
            url: Url::parse("http://h/a.png").unwrap(),
            page: Url::parse("http://h/list").unwrap(),
            name: Some("猫 cat".into()),
            attempts: 0,
            losses: 0,
            redirected_from: Vec::new(),
        };
        assert_eq!(decode_image(&encode_image(&image)).unwrap(), image);
        assert!(decode_page("{\"url\": \"not a url\", \"depth\": 0}").is_none());
        assert!(decode_image("[]").is_none());
    }
}
