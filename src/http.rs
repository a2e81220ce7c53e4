//! HTTP on awc: client construction (one client per arbiter-thread actor; `awc::Client` is not
//! `Send`), one GET at a time with redirects reported rather than followed (the Supervisor treats
//! each hop like a new link), separate head and total deadlines, body reading under a byte limit
//! counted after decompression, the truncation check awc does not make, `Retry-After`, and the
//! classification of every error into a [`FailureKind`].

use std::time::{Duration, SystemTime};

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header;
use awc::ClientResponse;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use url::Url;

use crate::error::{Failure, FailureKind};
use crate::settings::HttpSettings;
use crate::urls;

/// Builds the HTTP client for one actor. Must be called on the thread that will use it.
pub fn client(http: &HttpSettings) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().timeout(http.connect_timeout).limit(0))
        .timeout(http.head_timeout)
        .disable_redirects()
        .add_default_header((header::USER_AGENT, http.user_agent.as_str()))
        .finish()
}

/// A response whose head arrived with a success status; its body is still to be read.
pub struct Fetched<S> {
    /// The response.
    pub response: ClientResponse<S>,
    /// When the whole request (head and body) must be done.
    pub deadline: Instant,
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
    client: &awc::Client,
    url: &Url,
    http: &HttpSettings,
) -> Result<Answer<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin>, Failure> {
    let deadline = Instant::now() + http.timeout;
    let response = client
        .get(url.as_str())
        .timeout(http.head_timeout.min(http.timeout))
        .send()
        .await
        .map_err(classify_send)?;
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
    Ok(Answer::Body(Fetched { response, deadline }))
}

/// Like [`get`], but follows up to `max_hops` redirects itself (on any host), failing on a loop.
/// Only for robots.txt, which the standard lets redirect anywhere and which is not a crawl target.
pub async fn get_following(
    client: &awc::Client,
    url: &Url,
    http: &HttpSettings,
    max_hops: usize,
) -> Result<Fetched<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin>, Failure> {
    let mut chain = vec![url.clone()];
    loop {
        let current = chain.last().expect("the chain starts with the URL");
        match get(client, current, http).await? {
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

/// The body length the server promised, when it can be compared with the bytes received (no
/// content encoding: awc decompresses, so an encoded length would not match).
pub fn expected_length<S>(res: &ClientResponse<S>) -> Option<u64> {
    let encoded = res
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
    if encoded {
        return None;
    }
    res.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The next chunk of a body, failing with [`FailureKind::Timeout`] once `deadline` has passed.
pub async fn next_chunk<S>(
    res: &mut ClientResponse<S>,
    deadline: Instant,
) -> Result<Option<Bytes>, Failure>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    match tokio::time::timeout_at(deadline, res.next()).await {
        Err(_) => Err(Failure::new(
            FailureKind::Timeout,
            "body not complete within the request timeout",
        )),
        Ok(None) => Ok(None),
        Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
        Ok(Some(Err(e))) => Err(classify_payload(e)),
    }
}

/// Checks the received byte count against the promised length.
pub fn check_length(expected: Option<u64>, received: u64) -> Result<(), Failure> {
    match expected {
        Some(n) if n != received => Err(Failure::new(
            FailureKind::Truncated,
            format!("received {received} of {n} bytes"),
        )),
        _ => Ok(()),
    }
}

/// Reads a whole body of at most `limit` bytes, checking it arrived complete.
pub async fn read_body<S>(fetched: &mut Fetched<S>, limit: u64) -> Result<Bytes, Failure>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let expected = expected_length(&fetched.response);
    if expected.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = next_chunk(&mut fetched.response, fetched.deadline).await? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    check_length(expected, body.len() as u64)?;
    Ok(body.freeze())
}

/// Reads at most the first `limit` bytes of a body and drops the rest (for robots.txt, of which
/// the standard asks that at least 500 KiB be parsed).
pub async fn read_prefix<S>(fetched: &mut Fetched<S>, limit: usize) -> Result<Bytes, Failure>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut body = BytesMut::new();
    while let Some(chunk) = next_chunk(&mut fetched.response, fetched.deadline).await? {
        let take = (limit - body.len()).min(chunk.len());
        body.extend_from_slice(&chunk[..take]);
        if body.len() == limit {
            break;
        }
    }
    Ok(body.freeze())
}

/// The failure for a body over `limit` bytes.
pub fn too_large(limit: u64) -> Failure {
    Failure::new(FailureKind::TooLarge, format!("larger than {limit} bytes"))
}

/// Classifies an error from sending a request.
pub fn classify_send(e: SendRequestError) -> Failure {
    let kind = match &e {
        SendRequestError::Timeout => FailureKind::Timeout,
        SendRequestError::Connect(ConnectError::Timeout) => FailureKind::Timeout,
        SendRequestError::Connect(_) => FailureKind::Connect,
        SendRequestError::Url(_) | SendRequestError::Http(_) => FailureKind::BadUrl,
        SendRequestError::Send(_) | SendRequestError::Response(_) | SendRequestError::H2(_) => {
            FailureKind::Connect
        }
        _ => FailureKind::Connect,
    };
    Failure::new(kind, e.to_string())
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

/// Backoff before retry number `attempt` (1-based): `base` doubling with each attempt, capped at
/// 30 s, with up to ±25 % jitter so that many failed jobs do not come back at once.
pub fn backoff(base: Duration, attempt: u32, jitter_seed: u64) -> Duration {
    let base_ms = (base.as_millis().min(30_000) as u64)
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(30_000);
    // A cheap deterministic mix of the seed (the job id) is enough for spreading retries.
    let mixed = jitter_seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    let jitter = (mixed % 501) as i64 - 250; // -250..=250 per mille of a quarter
    let ms = base_ms as i64 + base_ms as i64 * jitter / 1000;
    Duration::from_millis(ms.max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(500);
        let b1 = backoff(base, 1, 7).as_millis();
        let b3 = backoff(base, 3, 7).as_millis();
        assert!((375..=625).contains(&b1), "{b1}");
        assert!((1500..=2500).contains(&b3), "{b3}");
        assert!(backoff(base, 30, 1).as_millis() <= 37_500);
        assert!(backoff(Duration::from_millis(10), 1, 3).as_millis() <= 13);
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
