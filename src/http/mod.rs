//! HTTP on awc: one client per thread (`awc::Client` is not `Send`; the workers of a thread share
//! its connection pool) with the crawl's trusted roots, ALPN for HTTP/2 and its proxy; what each
//! request carries (configured headers, the session's cookies, the Referer); one GET at a time
//! with redirects reported rather than followed (the Supervisor treats each hop like a new link,
//! and the cookies they set are kept), separate head and total deadlines, body reading under a
//! byte limit counted after decompression, the truncation check awc does not make, `Retry-After`,
//! and the classification of every error into a [`FailureKind`] (a certificate we do not trust
//! is `tls`, not a generic connection failure).

mod cookies;
mod headers;
mod proxy;
mod tls;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header;
use awc::ClientResponse;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use url::Url;

pub use cookies::{parse_netscape, Jar};
pub use headers::{is_secret, Headers, Referer};
pub use proxy::{NoProxy, Proxy, ProxyKind, ProxyRoutes};
pub use tls::{certificate_problem, client_config as tls_config};

use crate::error::{Failure, FailureKind};
use crate::settings::HttpSettings;
use crate::urls;

/// An HTTP client: awc's, with its connection pool, and which hosts it has connections to. Clones
/// share both, so the workers of one thread share connections (and an HTTP/2 connection's
/// streams). Not `Send`: build one per thread, with [`client`].
#[derive(Clone)]
pub struct Client {
    awc: awc::Client,
    /// https hosts (`host:port`) whose first connection is being opened or is open.
    opened: Rc<RefCell<HashMap<String, Opening>>>,
}

/// The first connection to an https host, being opened or open.
#[derive(Clone)]
enum Opening {
    /// Being opened: others wait for it, so that over HTTP/2 they share it.
    Pending(Rc<tokio::sync::Notify>),
    /// Open: requests go ahead (the pool has the connection, or knows it is HTTP/1.1).
    Open,
}

/// Builds the HTTP client for one thread: TLS with the crawl's trusted roots and ALPN (HTTP/2 when
/// the server offers it), through the configured proxy for the hosts it is for, with the private
/// address guard's resolver when it is on.
pub fn client(http: &HttpSettings) -> Client {
    // The same client either way; only the connector's type differs.
    macro_rules! finish {
        ($connector:expr) => {
            awc::Client::builder()
                .connector($connector)
                .timeout(http.head_timeout)
                .disable_redirects()
                .add_default_header((header::USER_AGENT, http.user_agent.as_str()))
                .finish()
        };
    }
    // The TLS configuration last: awc rebuilds its own on some other calls (max_http_version).
    let connector = awc::Connector::new()
        .timeout(http.connect_timeout)
        .limit(0)
        .rustls_0_23(http.tls.clone());
    let resolver = if http.block_private {
        // Names are resolved by a resolver that keeps only public addresses.
        actix_tls::connect::Resolver::custom(crate::netguard::PublicOnly)
    } else {
        actix_tls::connect::Resolver::default()
    };
    let direct = actix_tls::connect::Connector::new(resolver).service();
    let awc = if http.proxy.is_direct() {
        finish!(connector.connector(direct))
    } else {
        finish!(connector.connector(proxy::Dial {
            routes: Rc::new(http.proxy.clone()),
            direct,
        }))
    };
    Client {
        awc,
        opened: Rc::default(),
    }
}

impl Client {
    /// Waits, for an https host this client has no connection to yet, until the first request
    /// to it has its answer's head: a burst of requests to a new host then shares its one
    /// HTTP/2 connection instead of opening one each. The returned guard, when this request is
    /// the first, marks the host open (or, on failure, lets the next request try) when dropped.
    async fn first_connection(&self, url: &Url, wait: Duration) -> Option<OpenGuard> {
        if url.scheme() != "https" {
            return None;
        }
        let key = format!("{}:{}", url.host_str()?, url.port_or_known_default()?);
        loop {
            let state = self.opened.borrow().get(&key).cloned();
            match state {
                Some(Opening::Open) => return None,
                Some(Opening::Pending(notify)) => {
                    // Created before awaiting: a wake-up sent in between is not missed.
                    let woken = notify.notified();
                    if tokio::time::timeout(wait, woken).await.is_err() {
                        return None;
                    }
                }
                None => {
                    let notify = Rc::new(tokio::sync::Notify::new());
                    self.opened
                        .borrow_mut()
                        .insert(key.clone(), Opening::Pending(notify.clone()));
                    return Some(OpenGuard {
                        opened: self.opened.clone(),
                        key,
                        notify,
                        ok: false,
                    });
                }
            }
        }
    }
}

thread_local! {
    /// The clients of [`SharedClient`]s on this thread, by their id.
    static SHARED: RefCell<HashMap<u64, Client>> = RefCell::new(HashMap::new());
}

/// A handle (`Send`, cloned by reference) to one [`Client`] per thread, shared by the workers of
/// that thread: one connection pool, so an HTTP/2 host gets one connection whose streams they all
/// use. A thread's client goes with the thread, or when the last handle is dropped on it.
#[derive(Debug, Clone, Default)]
pub struct SharedClient {
    id: Arc<ClientId>,
}

/// The id of a [`SharedClient`]'s clients.
#[derive(Debug)]
struct ClientId(u64);

impl Default for ClientId {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        ClientId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Drop for ClientId {
    fn drop(&mut self) {
        let _ = SHARED.try_with(|m| m.borrow_mut().remove(&self.0));
    }
}

impl SharedClient {
    /// This thread's client, built with `http` the first time.
    pub fn get(&self, http: &HttpSettings) -> Client {
        SHARED.with(|m| {
            m.borrow_mut()
                .entry(self.id.0)
                .or_insert_with(|| client(http))
                .clone()
        })
    }
}

/// Held by the first request to an https host; see [`Client::first_connection`].
struct OpenGuard {
    opened: Rc<RefCell<HashMap<String, Opening>>>,
    key: String,
    notify: Rc<tokio::sync::Notify>,
    /// The answer's head came: the host is open.
    ok: bool,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut opened = self.opened.borrow_mut();
        if self.ok {
            opened.insert(std::mem::take(&mut self.key), Opening::Open);
        } else {
            opened.remove(&self.key);
        }
        self.notify.notify_waiters();
    }
}

/// A response whose head arrived with a success status; its body is still to be read, chunk by
/// chunk, with [`Fetched::next_chunk`].
pub struct Fetched<S> {
    /// The response.
    pub response: ClientResponse<S>,
    /// When the whole request (head and body) must be done.
    pub deadline: Instant,
    /// Undoes the Content-Encoding as the body streams.
    decoder: Decoder,
    /// Bytes received as sent (before decoding), to compare with Content-Length.
    raw_bytes: u64,
    /// Bytes after decoding, the ones the limits apply to.
    body_bytes: u64,
    /// The body has ended (and was checked).
    done: bool,
}

/// The encodings we ask for. We decode them ourselves, with a bounded output, because a decoder
/// that inflates a whole chunk at once lets a tiny compressed body fill memory.
const ACCEPT_ENCODING: &str = "gzip, deflate";

/// A streaming Content-Encoding decoder whose output is taken after each chunk.
enum Decoder {
    Identity,
    Gzip(Box<flate2::write::MultiGzDecoder<Sink>>),
    Deflate(Box<flate2::write::ZlibDecoder<Sink>>),
}

/// Where a decoder writes: the bytes of the current chunk, refusing to grow past the limit.
struct Sink {
    out: Vec<u8>,
    room: u64,
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.room {
            return Err(std::io::Error::other(SINK_FULL));
        }
        self.room -= buf.len() as u64;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The error text by which a full [`Sink`] is told apart from corrupt data.
const SINK_FULL: &str = "decoded body over the limit";

impl Decoder {
    /// The decoder for a Content-Encoding header value, or a failure for one we did not ask for.
    fn for_encoding(value: Option<&str>) -> Result<Decoder, Failure> {
        let sink = || Sink {
            out: Vec::new(),
            room: 0,
        };
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Decoder::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Decoder::Gzip(Box::new(
                flate2::write::MultiGzDecoder::new(sink()),
            ))),
            Some("deflate") => Ok(Decoder::Deflate(Box::new(flate2::write::ZlibDecoder::new(
                sink(),
            )))),
            Some(other) => Err(Failure::new(
                FailureKind::Body,
                format!("unsupported Content-Encoding `{other}` (we asked for {ACCEPT_ENCODING})"),
            )),
        }
    }

    /// Decodes `input` (or, when `None`, finishes the stream) allowing `room` more output bytes.
    fn feed(&mut self, input: Option<&[u8]>, room: u64) -> Result<Vec<u8>, Failure> {
        fn run<W: std::io::Write>(
            w: &mut W,
            sink: impl Fn(&mut W) -> &mut Sink,
            input: Option<&[u8]>,
            finish: impl FnOnce(&mut W) -> std::io::Result<()>,
            room: u64,
        ) -> Result<Vec<u8>, Failure> {
            sink(w).room = room;
            let result = match input {
                Some(bytes) => w.write_all(bytes),
                None => finish(w),
            };
            let out = std::mem::take(&mut sink(w).out);
            result.map_err(|e| {
                if e.to_string() == SINK_FULL {
                    Failure::new(FailureKind::TooLarge, "decompressed body over the limit")
                } else if input.is_none() {
                    Failure::new(
                        FailureKind::Truncated,
                        format!("compressed body ends early: {e}"),
                    )
                } else {
                    Failure::new(FailureKind::Body, format!("corrupt compressed body: {e}"))
                }
            })?;
            Ok(out)
        }
        match self {
            Decoder::Identity => Ok(input.map(<[u8]>::to_vec).unwrap_or_default()),
            Decoder::Gzip(d) => run(d.as_mut(), |d| d.get_mut(), input, |d| d.try_finish(), room),
            Decoder::Deflate(d) => {
                run(d.as_mut(), |d| d.get_mut(), input, |d| d.try_finish(), room)
            }
        }
    }
}

/// What one request got.
pub enum Answer<S> {
    /// A success response.
    Body(Fetched<S>),
    /// A redirect to this (resolved, normalized) URL. Not followed here: each hop goes back to the
    /// Supervisor, which checks scope, robots.txt, politeness and duplicates like for any link.
    Redirect(Url),
}

/// Sends one GET for `url`. The response head must come within `http.head_timeout`, and the
/// whole request must end within `http.timeout` (see [`Fetched::deadline`]). A status that is
/// neither success nor redirect is a [`FailureKind::Status`] failure carrying `Retry-After`.
pub async fn get(
    client: &Client,
    url: &Url,
    http: &HttpSettings,
    found_on: Option<&Url>,
) -> Result<Answer<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin>, Failure> {
    if http.block_private {
        crate::netguard::check_literal(url)
            .map_err(|why| Failure::new(FailureKind::Blocked, why))?;
    }
    let deadline = Instant::now() + http.timeout;
    let head_timeout = http.head_timeout.min(http.timeout);
    let mut first = client.first_connection(url, head_timeout).await;
    let response = request(client, url, http, found_on, head_timeout)
        .send()
        .await
        .map_err(|e| classify_send(e, url))?;
    if let Some(first) = &mut first {
        first.ok = true;
    }
    drop(first);
    http.cookies.keep(
        url,
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .filter_map(|v| v.to_str().ok()),
    );
    let status = response.status();
    if status.is_redirection() && status.as_u16() != 304 {
        return response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|loc| urls::resolve(url, loc))
            .map(Answer::Redirect)
            .ok_or_else(|| {
                Failure::new(
                    FailureKind::Status(status.as_u16()),
                    "redirect without a usable Location",
                )
            });
    }
    if !status.is_success() {
        let reason = status.canonical_reason().unwrap_or("").to_string();
        let mut failure = Failure::new(FailureKind::Status(status.as_u16()), reason);
        failure.retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        return Err(failure);
    }
    let decoder = Decoder::for_encoding(
        response
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )?;
    Ok(Answer::Body(Fetched {
        response,
        deadline,
        decoder,
        raw_bytes: 0,
        body_bytes: 0,
        done: false,
    }))
}

/// The GET request for `url`: the configured headers for its host, the session's cookies, and
/// for an image the `Referer` of the page it was found on.
fn request(
    client: &Client,
    url: &Url,
    http: &HttpSettings,
    found_on: Option<&Url>,
    head_timeout: Duration,
) -> awc::ClientRequest {
    request_with(
        client,
        awc::http::Method::GET,
        url,
        http,
        found_on,
        head_timeout,
    )
}

/// [`request`] with another method.
fn request_with(
    client: &Client,
    method: awc::http::Method,
    url: &Url,
    http: &HttpSettings,
    found_on: Option<&Url>,
    head_timeout: Duration,
) -> awc::ClientRequest {
    let mut req = client
        .awc
        .request(method, url.as_str())
        .no_decompress()
        .insert_header((header::ACCEPT_ENCODING, ACCEPT_ENCODING))
        .timeout(head_timeout);
    let mut cookie = http.cookies.header_for(url);
    if !http.headers.is_empty() {
        for (name, value) in http.headers.for_host(url.host_str().unwrap_or("")) {
            if name == header::COOKIE {
                // The configured cookies first, then the session's.
                let configured = value.to_str().unwrap_or("");
                cookie = Some(match cookie {
                    Some(jar) => format!("{configured}; {jar}"),
                    None => configured.to_string(),
                });
                continue;
            }
            req = req.insert_header((name.clone(), value.clone()));
        }
    }
    if let Some(cookie) = cookie {
        req = req.insert_header((header::COOKIE, cookie));
    }
    if let Some(referer) = found_on.and_then(|page| http.referer.value(page, url)) {
        req = req.insert_header((header::REFERER, referer));
    }
    req
}

/// Like [`get`], but follows up to `max_hops` redirects itself, failing on a loop or on a redirect
/// off the sites of `scope` (never requested). Only for robots.txt, which is not a crawl target.
pub async fn get_following(
    client: &Client,
    url: &Url,
    http: &HttpSettings,
    max_hops: usize,
    scope: &crate::settings::Scope,
) -> Result<Fetched<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin>, Failure> {
    let mut chain = vec![url.clone()];
    loop {
        let current = chain.last().expect("the chain starts with the URL");
        match get(client, current, http, None).await? {
            Answer::Body(fetched) => return Ok(fetched),
            Answer::Redirect(next) => {
                if chain.contains(&next) {
                    return Err(Failure::new(
                        FailureKind::RedirectLoop,
                        format!("back to {next}"),
                    ));
                }
                if chain.len() > max_hops {
                    return Err(Failure::new(
                        FailureKind::TooManyRedirects,
                        format!("more than {max_hops} redirects"),
                    ));
                }
                if !scope.host_allowed(&next) {
                    return Err(Failure::new(
                        FailureKind::OutOfScope,
                        format!("redirect to {next}"),
                    ));
                }
                chain.push(next);
            }
        }
    }
}

/// Parses a `Retry-After` value: a number of seconds, or an HTTP date (a date already past is no
/// wait). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl<S> Fetched<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    /// The Content-Length the server announced (of the body as sent, before decoding).
    pub fn announced_length(&self) -> Option<u64> {
        self.response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }

    /// The length of the body after decoding, when the server announced it (an unencoded body
    /// with a Content-Length).
    pub fn announced_body(&self) -> Option<u64> {
        match self.decoder {
            Decoder::Identity => self.announced_length(),
            _ => None,
        }
    }

    /// Fails at once when the announced length of an unencoded body is over `limit`.
    pub fn check_announced(&self, limit: u64) -> Result<(), Failure> {
        match (&self.decoder, self.announced_length()) {
            (Decoder::Identity, Some(n)) if n > limit => Err(too_large(limit)),
            _ => Ok(()),
        }
    }

    /// The next decoded chunk of the body; `None` at its end, which is only reached after checking
    /// that the body arrived whole (Content-Length, and the compressed stream's own end). Fails with
    /// [`FailureKind::TooLarge`] as soon as more than `limit` decoded bytes came, and with
    /// [`FailureKind::Timeout`] once the request's deadline has passed.
    pub async fn next_chunk(&mut self, limit: u64) -> Result<Option<Bytes>, Failure> {
        while !self.done {
            let room = limit.saturating_sub(self.body_bytes);
            let next = match tokio::time::timeout_at(self.deadline, self.response.next()).await {
                Err(_) => {
                    return Err(Failure::new(
                        FailureKind::Timeout,
                        "body not complete within the request timeout",
                    ))
                }
                Ok(next) => next.transpose().map_err(classify_payload)?,
            };
            let announced = self.announced_length();
            let out = match (next, &mut self.decoder) {
                (Some(raw), Decoder::Identity) => {
                    self.raw_bytes += raw.len() as u64;
                    if raw.len() as u64 > room {
                        return Err(too_large(limit));
                    }
                    raw
                }
                (Some(raw), decoder) => {
                    self.raw_bytes += raw.len() as u64;
                    Bytes::from(decoder.feed(Some(&raw), room)?)
                }
                (None, decoder) => {
                    self.done = true;
                    check_length(announced, self.raw_bytes)?;
                    Bytes::from(decoder.feed(None, room)?)
                }
            };
            self.body_bytes += out.len() as u64;
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    /// Decoded bytes received so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }
}

/// Checks the received byte count against the promised length.
fn check_length(expected: Option<u64>, received: u64) -> Result<(), Failure> {
    match expected {
        Some(n) if n != received => Err(Failure::new(
            FailureKind::Truncated,
            format!("received {received} of {n} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Reads a whole body of at most `limit` decoded bytes, checking it arrived complete.
pub async fn read_body<S>(fetched: &mut Fetched<S>, limit: u64) -> Result<Bytes, Failure>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    fetched.check_announced(limit)?;
    let mut body = BytesMut::new();
    while let Some(chunk) = fetched.next_chunk(limit).await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads at most the first `limit` decoded bytes of a body and drops the rest (for robots.txt, of
/// which the standard asks that at least 500 KiB be parsed). Decoding stops with
/// [`FailureKind::TooLarge`] past four times `limit`, so a compressed bomb stays harmless.
pub async fn read_prefix<S>(fetched: &mut Fetched<S>, limit: usize) -> Result<Bytes, Failure>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut body = BytesMut::new();
    loop {
        match fetched.next_chunk(4 * limit as u64).await? {
            None => break,
            Some(chunk) => {
                let take = (limit - body.len()).min(chunk.len());
                body.extend_from_slice(&chunk[..take]);
                if body.len() == limit {
                    break;
                }
            }
        }
    }
    Ok(body.freeze())
}

/// The failure for a body over `limit` bytes.
pub fn too_large(limit: u64) -> Failure {
    Failure::new(FailureKind::TooLarge, format!("larger than {limit} bytes"))
}

/// Classifies an error from sending a request to `url`.
pub fn classify_send(e: SendRequestError, url: &Url) -> Failure {
    if let SendRequestError::Connect(ConnectError::Io(io)) = &e {
        if let Some(why) = tls::certificate_problem(io) {
            let host = url.host_str().unwrap_or("");
            return Failure::new(
                FailureKind::Tls,
                format!("certificate not trusted for {host} ({why})"),
            );
        }
    }
    let kind = match &e {
        SendRequestError::Timeout => FailureKind::Timeout,
        SendRequestError::Connect(ConnectError::Timeout) => FailureKind::Timeout,
        SendRequestError::Connect(ConnectError::Resolver(r))
            if r.to_string().contains(crate::netguard::BLOCKED) =>
        {
            FailureKind::Blocked
        }
        SendRequestError::Connect(_) => FailureKind::Connect,
        SendRequestError::Url(_) | SendRequestError::Http(_) => FailureKind::BadUrl,
        SendRequestError::Send(_) | SendRequestError::Response(_) | SendRequestError::H2(_) => {
            FailureKind::Connect
        }
        _ => FailureKind::Connect,
    };
    let detail = match &e {
        // awc's words for it ("connector has been disconnected") hide what happened.
        SendRequestError::Connect(ConnectError::Disconnected) => {
            "the server closed the connection without answering".to_string()
        }
        _ => e.to_string(),
    };
    Failure::new(kind, detail)
}

/// Classifies an error while reading a body.
pub fn classify_payload(e: PayloadError) -> Failure {
    let kind = match &e {
        PayloadError::Overflow => FailureKind::TooLarge,
        PayloadError::Incomplete(_) => FailureKind::Truncated,
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => FailureKind::Timeout,
        PayloadError::Io(_) => FailureKind::Truncated,
        _ => FailureKind::Body,
    };
    Failure::new(kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decoding_is_bounded_and_notices_a_cut_stream() {
        // 64 MiB of zeros compress to about 64 KiB: a bomb against a 1 MiB limit.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let mut d = Decoder::for_encoding(Some("gzip")).unwrap();
        let mut total = 0u64;
        let mut failure = None;
        for chunk in bomb.chunks(16 * 1024) {
            match d.feed(Some(chunk), (1 << 20) - total) {
                Ok(out) => total += out.len() as u64,
                Err(f) => {
                    failure = Some(f);
                    break;
                }
            }
        }
        assert_eq!(failure.map(|f| f.kind), Some(FailureKind::TooLarge));
        assert!(total <= 1 << 20);

        let page = gzip("<p>完整</p>".repeat(100).as_bytes());
        let mut d = Decoder::for_encoding(Some("GZIP")).unwrap();
        let mut out = d.feed(Some(&page), 1 << 20).unwrap();
        out.extend(d.feed(None, 1 << 20).unwrap());
        assert_eq!(out, "<p>完整</p>".repeat(100).as_bytes());

        let mut d = Decoder::for_encoding(Some("gzip")).unwrap();
        d.feed(Some(&page[..page.len() / 2]), 1 << 20).unwrap();
        assert_eq!(
            d.feed(None, 1 << 20).unwrap_err().kind,
            FailureKind::Truncated
        );

        assert_eq!(
            Decoder::for_encoding(Some("br")).err().map(|f| f.kind),
            Some(FailureKind::Body)
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past means no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn retryable_kinds() {
        assert!(FailureKind::Status(503).is_retryable());
        assert!(FailureKind::Status(429).is_retryable());
        assert!(!FailureKind::Status(404).is_retryable());
        assert!(!FailureKind::NotImage.is_retryable());
        assert!(FailureKind::Truncated.is_retryable());
        assert!(
            !FailureKind::WorkerLost.is_retryable(),
            "a job that kept killing workers is final"
        );
    }
}
