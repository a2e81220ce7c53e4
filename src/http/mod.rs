//! HTTP on awc: one client per thread (`awc::Client` is not `Send`; the workers of a thread share
//! its connection pool) with the crawl's trusted roots, ALPN for HTTP/2 and its proxy; what each
//! request carries (configured headers, the session's cookies, the Referer); one GET at a time
//! with redirects reported rather than followed (the Supervisor treats each hop like a new link,
//! and the cookies they set are kept), separate head and total deadlines, body reading under a
//! byte limit counted after decompression, the truncation check awc does not make, `Retry-After`,
//! and the classification of every error into a [`FailureKind`] (a certificate we do not trust
//! is `tls`, not a generic connection failure).

mod body;
mod client;
mod cookies;
mod headers;
mod proxy;
mod tls;

use std::time::{Duration, SystemTime};

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header;
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Instant;
use url::Url;

pub use body::{classify_payload, read_body, read_prefix, too_large, Fetched};
pub use client::{client, Client, SharedClient};
pub use cookies::{parse_netscape, Jar};
pub use headers::{is_secret, Headers, Referer};
pub use proxy::{NoProxy, Proxy, ProxyKind, ProxyRoutes};
pub use tls::{certificate_problem, client_config as tls_config};

use crate::error::{Failure, FailureKind};
use crate::job::Validators;
use crate::settings::HttpSettings;
use crate::urls;

use body::ACCEPT_ENCODING;

/// What one request got.
pub enum Answer<S> {
    /// A success response.
    Body(Fetched<S>),
    /// A redirect to this (resolved, normalized) URL. Not followed here: each hop goes back to the
    /// Supervisor, which checks scope, robots.txt, politeness and duplicates like for any link.
    Redirect(Url),
    /// 304: unchanged since the validators the request sent (only when it sent some).
    NotModified,
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
    get_if_changed(client, url, http, found_on, None).await
}

/// [`get`], made conditional by `before` (`If-None-Match`, `If-Modified-Since`): a 304 is
/// [`Answer::NotModified`].
pub async fn get_if_changed(
    client: &Client,
    url: &Url,
    http: &HttpSettings,
    found_on: Option<&Url>,
    before: Option<&Validators>,
) -> Result<Answer<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin>, Failure> {
    if http.block_private {
        crate::netguard::check_literal(url)
            .map_err(|why| Failure::new(FailureKind::Blocked, why))?;
    }
    let deadline = Instant::now() + http.timeout;
    let head_timeout = http.head_timeout.min(http.timeout);
    let mut first = client.first_connection(url, head_timeout).await;
    let mut req = request(client, url, http, found_on, head_timeout);
    let conditional = before.is_some_and(|v| !v.is_empty());
    if let Some(v) = before {
        if let Some(etag) = &v.etag {
            req = req.insert_header((header::IF_NONE_MATCH, etag.as_str()));
        }
        if let Some(modified) = &v.modified {
            req = req.insert_header((header::IF_MODIFIED_SINCE, modified.as_str()));
        }
    }
    let response = req.send().await.map_err(|e| classify_send(e, url))?;
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
    if conditional && status.as_u16() == 304 {
        return Ok(Answer::NotModified);
    }
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
    Ok(Answer::Body(Fetched::new(response, deadline)?))
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
            // Only a conditional request is answered so; this one is not.
            Answer::NotModified => {
                return Err(Failure::new(FailureKind::Status(304), "Not Modified"))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
