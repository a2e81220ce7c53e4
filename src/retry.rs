//! The retry policy: after a failure, whether a job is tried again and when, and whether its host
//! is paused (`Retry-After`); after a worker died holding a job, whether the job goes back to the
//! queue. Pure: the Supervisor applies the decisions.

use std::time::Duration;

use crate::error::{Failure, FailureKind};
use crate::settings::HttpSettings;
use crate::Kind;

/// Times a job may be lost with a dying worker before it is given up (a job that kills every
/// worker that takes it must not kill them forever).
pub const MAX_LOSSES: u32 = 3;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Try again after this long; `None` to give up.
    pub retry_in: Option<Duration>,
    /// The host asked (with `Retry-After`) for no requests during this long.
    pub pause_host: Option<Duration>,
}

/// The retry rules of `http.retries`, `http.retry_backoff_ms` and `http.max_wait_secs`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    retries: u32,
    /// The first backoff, doubled with each attempt.
    backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one gives up.
    max_wait: Duration,
}

impl RetryPolicy {
    /// The policy of these HTTP settings.
    pub fn new(http: &HttpSettings) -> Self {
        RetryPolicy {
            retries: http.retries,
            backoff: http.retry_backoff,
            max_wait: http.max_wait,
        }
    }

    /// Decides after `failure` on attempt number `attempts` (1-based); `salt` spreads the
    /// retries of many jobs (the job's id). A `Retry-After` longer than `http.max_wait_secs`
    /// gives up and says so in the failure's detail; a shorter one pauses the host and is the
    /// least wait before the retry.
    pub fn decide(&self, failure: &mut Failure, attempts: u32, salt: u64) -> Decision {
        let asked = failure.retry_after.unwrap_or_default();
        if asked > self.max_wait {
            failure.detail = format!(
                "{} (Retry-After of {} s is longer than http.max_wait_secs)",
                failure.detail,
                asked.as_secs()
            );
            return Decision {
                retry_in: None,
                pause_host: None,
            };
        }
        let pause_host = (!asked.is_zero()).then_some(asked);
        let retry = failure.kind.is_retryable() && attempts <= self.retries;
        Decision {
            retry_in: retry.then(|| backoff(self.backoff, attempts, salt).max(asked)),
            pause_host,
        }
    }
}

/// After a worker of `kind` died holding a job for the `losses`-th time: `None` to queue it
/// again, or the failure to give it up with.
pub fn after_loss(kind: Kind, losses: u32) -> Option<Failure> {
    (losses > MAX_LOSSES).then(|| {
        let worker = match kind {
            Kind::Page => "a page fetcher",
            Kind::Image => "an image saver",
        };
        let detail = format!("{worker} died each of the {losses} times it held this {kind}");
        Failure::new(FailureKind::WorkerLost, detail)
    })
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

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(60),
        }
    }

    fn failure(kind: FailureKind, retry_after: Option<u64>) -> Failure {
        let mut f = Failure::new(kind, "detail");
        f.retry_after = retry_after.map(Duration::from_secs);
        f
    }

    #[test]
    fn retryable_failures_are_retried_until_the_retries_are_spent() {
        let p = policy(2);
        let mut f = failure(FailureKind::Timeout, None);
        let first = p
            .decide(&mut f, 1, 7)
            .retry_in
            .expect("a timeout is retried");
        assert!((375..=625).contains(&first.as_millis()), "{first:?}");
        assert!(p.decide(&mut f, 2, 7).retry_in.is_some());
        assert_eq!(
            p.decide(&mut f, 3, 7).retry_in,
            None,
            "two retries, then no more"
        );
        let mut gone = failure(FailureKind::Status(404), None);
        assert_eq!(p.decide(&mut gone, 1, 7).retry_in, None, "a 404 is final");
    }

    #[test]
    fn retry_after_pauses_the_host_and_is_the_least_wait_unless_it_is_too_long() {
        let p = policy(3);
        let mut busy = failure(FailureKind::Status(503), Some(20));
        let d = p.decide(&mut busy, 1, 1);
        assert_eq!(d.pause_host, Some(Duration::from_secs(20)));
        assert!(d.retry_in.unwrap() >= Duration::from_secs(20));
        // A final failure still pauses the host it came from.
        let mut last = failure(FailureKind::Status(503), Some(5));
        assert_eq!(
            p.decide(&mut last, 4, 1).pause_host,
            Some(Duration::from_secs(5))
        );
        let mut long = failure(FailureKind::Status(503), Some(3600));
        assert_eq!(
            p.decide(&mut long, 1, 1),
            Decision {
                retry_in: None,
                pause_host: None
            }
        );
        assert!(
            long.detail.contains("longer than http.max_wait_secs"),
            "{}",
            long.detail
        );
    }

    #[test]
    fn a_job_that_keeps_killing_workers_is_given_up() {
        assert_eq!(after_loss(Kind::Page, MAX_LOSSES), None);
        let f = after_loss(Kind::Image, MAX_LOSSES + 1).unwrap();
        assert_eq!(f.kind, FailureKind::WorkerLost);
        assert!(
            f.detail.contains("image saver died each of the 4 times"),
            "{}",
            f.detail
        );
    }

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
}
