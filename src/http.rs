//! HTTP on awc: client construction (one client per arbiter-thread actor; `awc::Client` is not
//! `Send`), GET with redirects followed by hand (to know the final URL, stop loops and stay in scope),
//! body reading under a total deadline and a byte limit, the truncation check awc does not make, and
//! the classification of every error into a [`FailureKind`].

use std::time::Duration;

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header;
use awc::ClientResponse;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use url::Url;

use crate::error::{Failure, FailureKind};
use crate::settings::{HttpSettings, Scope};
use crate::urls;

/// Builds the HTTP client for one actor. Must be called on the thread that will use it.
pub fn client(http: &HttpSettings) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().timeout(http.connect_timeout).limit(0))
        .timeout(http.timeout)
        .disable_redirects()
        .add_default_header((header::USER_AGENT, http.user_agent.as_str()))
        .finish()
}

/// A response whose head arrived, with the URL it finally came from after redirects.
pub struct Fetched<S> {
    /// The normalized URL that answered (the request URL if there was no redirect).
    pub final_url: Url,
    /// The response; its body is still to be read.
    pub response: ClientResponse<S>,
    /// When the whole request (head and body) must be done.
    pub deadline: Instant,
}

/// Sends a GET for `url`, following up to `http.max_redirects` redirects within `scope`. A status
/// that is not success is returned as a [`FailureKind::Status`] failure.
pub async fn get(
    client: &awc::Client,
    url: &Url,
    http: &HttpSettings,
    scope: &Scope,
) -> Result<Fetched<impl Stream<Item = Result<Bytes, PayloadError>> + Unpin>, Failure> {
    let deadline = Instant::now() + http.timeout;
    let mut current = url.clone();
    let mut visited = vec![current.clone()];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Failure::new(
                FailureKind::Timeout,
                "no time left for the request",
            ));
        }
        let response = client
            .get(current.as_str())
            .timeout(remaining)
            .send()
            .await
            .map_err(classify_send)?;
        let status = response.status();
        if status.is_redirection() && status.as_u16() != 304 {
            let next = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| urls::resolve(&current, loc))
                .ok_or_else(|| {
                    Failure::new(
                        FailureKind::Status(status.as_u16()),
                        "redirect without a usable Location",
                    )
                })?;
            drop(response);
            if visited.len() > http.max_redirects as usize {
                return Err(Failure::new(
                    FailureKind::TooManyRedirects,
                    format!("more than {} redirects", http.max_redirects),
                ));
            }
            if visited.contains(&next) {
                return Err(Failure::new(
                    FailureKind::RedirectLoop,
                    format!("back to {next}"),
                ));
            }
            if !scope.host_allowed(&next) {
                return Err(Failure::new(
                    FailureKind::OutOfScope,
                    format!("redirect to {next}"),
                ));
            }
            visited.push(next.clone());
            current = next;
            continue;
        }
        if !status.is_success() {
            let reason = status.canonical_reason().unwrap_or("").to_string();
            return Err(Failure::new(FailureKind::Status(status.as_u16()), reason));
        }
        return Ok(Fetched {
            final_url: current,
            response,
            deadline,
        });
    }
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

/// Backoff before retry number `attempt` (1-based): 0.5 s doubling, capped at 30 s, with up to
/// ±25 % jitter so that many failed jobs do not come back at once.
pub fn backoff(attempt: u32, jitter_seed: u64) -> Duration {
    let base_ms = 500u64
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
        let b1 = backoff(1, 7).as_millis();
        let b3 = backoff(3, 7).as_millis();
        assert!((375..=625).contains(&b1), "{b1}");
        assert!((1500..=2500).contains(&b3), "{b3}");
        assert!(backoff(30, 1).as_millis() <= 37_500);
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
