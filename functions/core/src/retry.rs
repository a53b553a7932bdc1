//! Retrying: exponential backoff with jitter, `Retry-After` headers, and which HTTP statuses
//! are worth another attempt.
//!
//! # Backoff
//!
//! One formula: the ceiling for retry number `n` (counted from 0) is
//! `min(cap, base * 2^n)`, computed without overflow for any `n`. The delay is then drawn
//! from that ceiling `c` as [`Jitter`] says:
//! - [`Jitter::Full`]: uniform in `[0, c]` ("full jitter" in AWS's *Exponential Backoff And
//!   Jitter*; spreads retries best);
//! - [`Jitter::Equal`]: uniform in `[c/2, c]` ("equal jitter": never less than half the
//!   ceiling);
//! - [`Jitter::None`]: exactly `c`.
//!
//! # Retry-After
//!
//! [`parse_retry_after`] reads both forms of RFC 9110 (delay-seconds and HTTP-date) and caps
//! the wait at [`MAX_RETRY_AFTER`].

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::Rng;

/// How a delay is drawn below the exponential ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, ceiling]`.
    Full,
    /// Uniform in `[ceiling / 2, ceiling]`.
    Equal,
    /// The ceiling itself.
    None,
}

/// Exponential backoff: `min(cap, base * 2^n)` for retry `n` (from 0), jittered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry (`n = 0`).
    pub base: Duration,
    /// No ceiling exceeds this.
    pub cap: Duration,
    /// How the delay is drawn below the ceiling.
    pub jitter: Jitter,
}

impl Backoff {
    /// A backoff from `base`, capped at `cap`, with `jitter`.
    pub const fn new(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Self { base, cap, jitter }
    }

    /// `min(cap, base * 2^n)`; saturates instead of overflowing, whatever `n`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let grown = match 1u32.checked_shl(n) {
            Some(factor) => self.base.saturating_mul(factor),
            None if self.base.is_zero() => Duration::ZERO,
            None => Duration::MAX,
        };
        grown.min(self.cap)
    }

    /// The delay before retry `n` (from 0), drawn with the thread's random generator.
    pub fn delay(&self, n: u32) -> Duration {
        self.delay_with(n, &mut rand::rng())
    }

    /// The delay before retry `n` (from 0), drawn with `rng` (tests pass a seeded one).
    pub fn delay_with<R: Rng + ?Sized>(&self, n: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(n);
        // Nanoseconds beyond u64 (584 years) are not a delay anyone waits for.
        let c = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let nanos = match self.jitter {
            Jitter::None => return ceiling,
            Jitter::Full => rng.random_range(0..=c),
            Jitter::Equal => rng.random_range(c - c / 2..=c),
        };
        Duration::from_nanos(nanos)
    }
}

/// The longest wait a `Retry-After` header can ask for: one hour. Lambda runs an invocation
/// for at most 15 minutes, so a longer wait would change no caller's decision (each gives up
/// when the wait passes its own deadline), and the cap keeps `Instant + wait` from overflowing.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait a `Retry-After` header value asks for, relative to now: delay-seconds (`120`) or
/// an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`; also the obsolete RFC 850 and asctime
/// forms). A date in the past is no wait; any wait is capped at [`MAX_RETRY_AFTER`]. `None`
/// when the value is neither form.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, Utc::now())
}

/// [`parse_retry_after`] as seen at `now`.
pub fn parse_retry_after_at(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    let digits = v.strip_prefix('+').unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        let secs = digits.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = http_date(v)?;
    let ms = when.signed_duration_since(now).num_milliseconds().max(0);
    Some(Duration::from_millis(ms.unsigned_abs()).min(MAX_RETRY_AFTER))
}

/// An HTTP-date in any of the three forms RFC 9110 says a recipient must accept.
fn http_date(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc2822(v) {
        return Some(d.with_timezone(&Utc));
    }
    // RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
    let rfc850 = v
        .strip_suffix(" GMT")
        .and_then(|s| NaiveDateTime::parse_from_str(s, "%A, %d-%b-%y %H:%M:%S").ok());
    let asctime = || {
        let squeezed = v.split_whitespace().collect::<Vec<_>>().join(" ");
        NaiveDateTime::parse_from_str(&squeezed, "%a %b %e %H:%M:%S %Y").ok()
    };
    rfc850.or_else(asctime).map(|n| n.and_utc())
}

/// Whether an HTTP status is worth retrying: 408 (request timeout), 429 (too many requests)
/// and every 5xx (and the non-standard codes above). This is the union of what the producer's
/// MPAS client and the forwarder's HTTP emitters decided; 425 (too early) is left out, since
/// only 0-RTT requests (which these clients never send) receive it.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || status >= 500
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use chrono::TimeZone;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_from_the_base_and_stops_at_the_cap() {
        let b = Backoff::new(100 * MS, 1000 * MS, Jitter::None);
        assert_eq!(b.ceiling(0), 100 * MS);
        assert_eq!(b.ceiling(1), 200 * MS);
        assert_eq!(b.ceiling(3), 800 * MS);
        assert_eq!(b.ceiling(4), 1000 * MS);
        assert_eq!(b.delay(2), 400 * MS);
    }

    #[test]
    fn ceiling_never_overflows_whatever_the_retry_number() {
        let b = Backoff::new(
            Duration::from_secs(u64::MAX / 2),
            Duration::MAX,
            Jitter::Full,
        );
        for n in [0, 1, 31, 32, 33, 63, 64, 1000, u32::MAX] {
            let _ = b.ceiling(n);
            let _ = b.delay(n);
        }
        assert_eq!(b.ceiling(u32::MAX), Duration::MAX);
        let capped = Backoff::new(MS, Duration::from_secs(5), Jitter::Equal);
        assert_eq!(capped.ceiling(u32::MAX), Duration::from_secs(5));
        assert!(capped.delay(u32::MAX) <= Duration::from_secs(5));
        let zero = Backoff::new(Duration::ZERO, Duration::from_secs(5), Jitter::Full);
        assert_eq!(zero.ceiling(40), Duration::ZERO);
        assert_eq!(zero.delay(40), Duration::ZERO);
    }

    #[test]
    fn full_jitter_draws_from_zero_to_the_ceiling() {
        let b = Backoff::new(100 * MS, Duration::from_secs(10), Jitter::Full);
        let mut low = false;
        for _ in 0..500 {
            let d = b.delay(2);
            assert!(d <= 400 * MS);
            low |= d < 200 * MS;
        }
        assert!(low, "full jitter goes below half the ceiling");
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half_of_the_ceiling() {
        let b = Backoff::new(100 * MS, 1000 * MS, Jitter::Equal);
        for _ in 0..200 {
            let d0 = b.delay(0);
            assert!(d0 >= 50 * MS && d0 <= 100 * MS, "{d0:?}");
            let d2 = b.delay(2);
            assert!(d2 >= 200 * MS && d2 <= 400 * MS, "{d2:?}");
            let d8 = b.delay(8);
            assert!(d8 >= 500 * MS && d8 <= 1000 * MS, "{d8:?}");
        }
    }

    #[test]
    fn retry_after_reads_delay_seconds_capped_at_an_hour() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("3601"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("10000000000000000000"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999999999"),
            Some(MAX_RETRY_AFTER)
        );
        for bad in ["soon", "", "-5", "1.5", "1e19", "5s"] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_reads_http_dates_in_all_three_forms() {
        let now = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 0).unwrap();
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after_at(date, now),
                Some(Duration::from_secs(37)),
                "{date}"
            );
        }
        let later = Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap();
        assert_eq!(
            parse_retry_after_at("Sun, 06 Nov 1994 08:49:37 GMT", later),
            Some(Duration::ZERO),
            "a past date is no wait"
        );
        assert_eq!(
            parse_retry_after_at("Fri, 31 Dec 9999 23:59:59 GMT", later),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn timeouts_throttling_and_server_errors_are_retryable() {
        for s in [408, 429, 500, 502, 503, 504, 599, 600] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [0, 200, 204, 301, 400, 401, 403, 404, 409, 413, 422, 425] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}
