//! The activator's pacing of its AWS IoT calls: a token bucket per operation and the retry
//! loop around every call (design memo B2).
//!
//! AWS IoT limits each operation per account and Region and refuses what is over the rate with
//! `ThrottlingException`. The SDK's own retries would spend the invocation on a throttled API
//! and leave the other containers' calls to collide with the same quota, so the IoT client of
//! the activator has them off and every attempt goes through [`Limiter::call`]:
//!
//! 1. take a token of the operation's bucket, waiting for it (the wait is counted);
//! 2. send;
//! 3. on `ThrottlingException`, cut the operation's rate ×0.7 (not below a tenth of its
//!    configured rate) and back off with full jitter (100 ms base, 5 s cap); on a transient
//!    error (timeout, dispatch failure, 5xx, `InternalFailureException`,
//!    `ServiceUnavailableException`) back off the same way;
//! 4. on success, give back a twentieth of the configured rate, up to it.
//!
//! Before any wait that would pass the invocation's deadline less [`DEADLINE_MARGIN`], it
//! stops and hands back the last error, marked throttled or not, for the caller to fail the
//! invocation with (Lambda retries it; the sweep catches what is left).

use crate::metrics::Tally;
use jitr_contract::rates::{IotApi, RateConfig};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Left before the deadline when the limiter gives up: time to answer and log (at most a
/// quarter of the invocation's time).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);
/// First backoff step, doubled on each retry, drawn with full jitter.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The largest backoff step.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The rate cut on a throttle (multiplicative decrease).
const DECREASE: f64 = 0.7;
/// The lowest rate a cut reaches, as a part of the configured rate.
const FLOOR: f64 = 0.1;
/// The rate given back on a success, as a part of the configured rate (additive increase).
const INCREASE: f64 = 0.05;

/// Time, for the limiter: the real one in Lambda, a manual one in unit tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// tokio's timer and the monotonic clock.
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// When the invocation must have answered, and the last moment a wait may end: the deadline
/// less [`DEADLINE_MARGIN`], or less a quarter of the invocation's time when that is shorter
/// (a function with a timeout of a second or two must still be able to call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub end: Instant,
    stop: Instant,
}

impl Deadline {
    /// From Lambda's deadline (`Lambda-Runtime-Deadline-Ms`, milliseconds since the epoch).
    pub fn from_epoch_ms(deadline_ms: u64, clock: &dyn Clock) -> Deadline {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Deadline::after(
            Duration::from_millis(deadline_ms.saturating_sub(now_ms)),
            clock,
        )
    }

    /// `after` from now.
    pub fn after(after: Duration, clock: &dyn Clock) -> Deadline {
        let now = clock.now();
        let margin = DEADLINE_MARGIN.min(after / 4);
        Deadline {
            end: now + after,
            stop: now + (after - margin),
        }
    }

    /// The last moment a wait may end.
    fn stop(self) -> Instant {
        self.stop
    }

    /// Whether there is still time to send a call at `now`.
    pub fn open_at(self, now: Instant) -> bool {
        now < self.stop()
    }
}

/// How an attempt ended, for the retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// `ThrottlingException`: over the account's rate.
    Throttled,
    /// Worth another try: timeouts, dispatch failures, 5xx.
    Transient,
    /// The answer (a not-found, an already-exists, a validation error): the caller decides.
    Final,
}

/// What [`Limiter::call`] returns when the call did not succeed.
#[derive(Debug)]
pub enum CallError<E> {
    /// The error AWS answered that retrying cannot change.
    Final(E),
    /// The invocation's time ran out before a call could succeed: `last` is the last
    /// attempt's error (`None` when none could be sent), `throttled` whether it was a throttle.
    OutOfTime { last: Option<E>, throttled: bool },
}

/// One operation's bucket and its adapted rate.
#[derive(Debug, Clone)]
pub struct Bucket {
    configured: f64,
    rate: f64,
    /// May go below zero: tokens promised to callers that are waiting for them.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket of `rate` requests per second (capacity max(1, rate)).
    pub fn new(rate: f64, now: Instant) -> Bucket {
        Bucket {
            configured: rate,
            rate,
            tokens: rate.max(1.0),
            last: now,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        self.last = now.max(self.last);
    }

    /// How long a caller at `now` waits for its token; `None` (and nothing taken) when that
    /// wait would end after `stop`.
    pub fn reserve(&mut self, now: Instant, stop: Instant) -> Option<Duration> {
        self.refill(now);
        let wait = if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        };
        if now + wait > stop {
            return None;
        }
        self.tokens -= 1.0;
        Some(wait)
    }

    /// A throttle: the rate ×0.7, not below a tenth of the configured rate.
    pub fn throttled(&mut self, now: Instant) {
        self.refill(now);
        self.rate = (self.rate * DECREASE).max(self.configured * FLOOR);
    }

    /// A success: a twentieth of the configured rate back, up to it.
    pub fn succeeded(&mut self, now: Instant) {
        self.refill(now);
        self.rate = (self.rate + self.configured * INCREASE).min(self.configured);
    }
}

/// The full-jitter backoff before retry number `retry` (0 for the first): a uniform draw
/// in `0..=min(cap, base·2^retry)`.
pub fn backoff(retry: u32, draw: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << retry.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(draw.clamp(0.0, 1.0))
}

/// The buckets of one container, shared by its invocations.
pub struct Limiter {
    buckets: Mutex<Vec<(IotApi, Bucket)>>,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    /// One bucket per operation at `config`'s per-container rate.
    pub fn new(config: &RateConfig, clock: Arc<dyn Clock>) -> Limiter {
        let now = clock.now();
        let buckets = IotApi::ALL
            .iter()
            .map(|op| (*op, Bucket::new(config.per_container(*op), now)))
            .collect();
        Limiter {
            buckets: Mutex::new(buckets),
            clock,
        }
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The current (adapted) rate of `op`.
    pub fn rate(&self, op: IotApi) -> f64 {
        self.with_bucket(op, |b| b.rate())
    }

    fn with_bucket<T>(&self, op: IotApi, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (_, bucket) = buckets
            .iter_mut()
            .find(|(o, _)| *o == op)
            .expect("a bucket per operation");
        f(bucket)
    }

    /// Sends `send()` for `op` until it succeeds, fails for good, or the deadline is near.
    /// `classify` tells the outcome of an attempt. Every attempt is counted in `tally`.
    pub async fn call<T, E, Fut>(
        &self,
        op: IotApi,
        deadline: Deadline,
        tally: &Tally,
        classify: impl Fn(&Result<T, E>) -> Verdict,
        mut send: impl FnMut() -> Fut,
    ) -> Result<T, CallError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let stop = deadline.stop();
        let mut last: Option<(E, bool)> = None;
        let mut retry = 0u32;
        loop {
            let now = self.clock.now();
            let Some(wait) = self.with_bucket(op, |b| b.reserve(now, stop)) else {
                return Err(out_of_time(last));
            };
            if !wait.is_zero() {
                tally.token_wait(wait);
                self.clock.sleep(wait).await;
            }
            let result = send().await;
            let verdict = classify(&result);
            tally.call(op, verdict == Verdict::Throttled);
            let now = self.clock.now();
            let error = match (verdict, result) {
                (Verdict::Throttled | Verdict::Transient, Err(e)) => e,
                (verdict, result) => {
                    if verdict == Verdict::Success {
                        self.with_bucket(op, |b| b.succeeded(now));
                    }
                    return result.map_err(CallError::Final);
                }
            };
            let throttled = verdict == Verdict::Throttled;
            if throttled {
                self.with_bucket(op, |b| b.throttled(now));
            }
            last = Some((error, throttled));
            let pause = backoff(retry, fastrand::f64());
            retry += 1;
            if now + pause > stop {
                return Err(out_of_time(last));
            }
            self.clock.sleep(pause).await;
        }
    }
}

/// The limiter gave up before the first attempt could be sent, or after `last`.
fn out_of_time<E>(last: Option<(E, bool)>) -> CallError<E> {
    match last {
        Some((last, throttled)) => CallError::OutOfTime {
            last: Some(last),
            throttled,
        },
        // No token within the time left: the operation's rate (cut by earlier throttles, or
        // split over many containers) has no room for this call: a throttle of our own.
        None => CallError::OutOfTime {
            last: None,
            throttled: true,
        },
    }
}

/// How an AWS SDK call ended, for [`Limiter::call`]: AWS IoT's (and SSM's) throttle is
/// `ThrottlingException` (HTTP 400); server faults, timeouts and failures to reach the
/// service are transient; every other answer is final.
pub fn sdk_verdict<T, E>(
    result: &Result<T, aws_sdk_iot::error::SdkError<E, aws_sdk_iot::config::http::HttpResponse>>,
) -> Verdict
where
    E: aws_sdk_iot::error::ProvideErrorMetadata,
{
    use aws_sdk_iot::error::SdkError;
    match result {
        Ok(_) => Verdict::Success,
        Err(SdkError::ServiceError(se)) => match se.err().code() {
            Some("ThrottlingException" | "TooManyRequestsException") => Verdict::Throttled,
            Some(
                "InternalFailureException" | "InternalException" | "ServiceUnavailableException",
            ) => Verdict::Transient,
            _ if se.raw().status().is_server_error() => Verdict::Transient,
            _ => Verdict::Final,
        },
        Err(
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_),
        ) => Verdict::Transient,
        Err(_) => Verdict::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when slept on.
    struct ManualClock {
        now: Mutex<Instant>,
        slept: Mutex<Vec<Duration>>,
    }

    impl ManualClock {
        fn new() -> Arc<ManualClock> {
            Arc::new(ManualClock {
                now: Mutex::new(Instant::now()),
                slept: Mutex::new(Vec::new()),
            })
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.now.lock().unwrap()
        }
        fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            *self.now.lock().unwrap() += duration;
            self.slept.lock().unwrap().push(duration);
            Box::pin(std::future::ready(()))
        }
    }

    fn one_op(rate: f64) -> RateConfig {
        RateConfig {
            rates: jitr_contract::rates::ApiRates::default().with(IotApi::UpdateCertificate, rate),
            share: 1.0,
            concurrency: 1,
        }
    }

    #[test]
    fn the_bucket_holds_a_second_and_then_spaces_calls_at_its_rate() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut b = Bucket::new(4.0, t0);
        let burst: Vec<Duration> = (0..4).map(|_| b.reserve(t0, far).unwrap()).collect();
        assert!(burst.iter().all(|w| w.is_zero()), "{burst:?}");
        // The next ones queue behind each other, 250 ms apart.
        assert_eq!(b.reserve(t0, far), Some(Duration::from_millis(250)));
        assert_eq!(b.reserve(t0, far), Some(Duration::from_millis(500)));
        // A wait past the stop is refused and takes nothing.
        assert_eq!(b.reserve(t0, t0 + Duration::from_millis(700)), None);
        assert_eq!(b.reserve(t0, far), Some(Duration::from_millis(750)));
        // Below one request a second: one in the bucket, then one every 1/rate.
        let mut slow = Bucket::new(0.5, t0);
        assert_eq!(slow.reserve(t0, far), Some(Duration::ZERO));
        assert_eq!(slow.reserve(t0, far), Some(Duration::from_secs(2)));
    }

    #[test]
    fn throttles_cut_the_rate_to_a_floor_and_successes_win_it_back() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, t0);
        b.throttled(t0);
        assert!((b.rate() - 7.0).abs() < 1e-9);
        for _ in 0..20 {
            b.throttled(t0);
        }
        assert!((b.rate() - 1.0).abs() < 1e-9, "floor is a tenth");
        b.succeeded(t0);
        assert!((b.rate() - 1.5).abs() < 1e-9, "a twentieth back");
        for _ in 0..40 {
            b.succeeded(t0);
        }
        assert_eq!(b.rate(), 10.0, "never above the configured rate");
    }

    #[test]
    fn backoff_is_full_jitter_below_a_doubling_ceiling() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(10, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(2, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(5, 0.0), Duration::ZERO);
    }

    #[derive(Debug, PartialEq)]
    enum Answer {
        Throttle,
        Flaky,
        NotFound,
    }

    fn verdict(r: &Result<u32, Answer>) -> Verdict {
        match r {
            Ok(_) => Verdict::Success,
            Err(Answer::Throttle) => Verdict::Throttled,
            Err(Answer::Flaky) => Verdict::Transient,
            Err(Answer::NotFound) => Verdict::Final,
        }
    }

    /// `answers` in turn, then success.
    fn script(answers: Vec<Answer>) -> impl FnMut() -> std::future::Ready<Result<u32, Answer>> {
        let mut answers = answers.into_iter();
        let mut n = 0;
        move || {
            n += 1;
            std::future::ready(answers.next().map_or(Ok(n), Err))
        }
    }

    #[tokio::test]
    async fn a_throttled_call_backs_off_slows_its_operation_and_succeeds() {
        let clock = ManualClock::new();
        let limiter = Limiter::new(&one_op(10.0), clock.clone());
        let deadline = Deadline::after(Duration::from_secs(30), clock.as_ref());
        let tally = Tally::default();
        let op = IotApi::UpdateCertificate;
        let answers = vec![Answer::Throttle, Answer::Throttle, Answer::Flaky];
        let got = limiter
            .call(op, deadline, &tally, verdict, script(answers))
            .await;
        assert_eq!(got.ok(), Some(4), "the fourth attempt");
        assert_eq!(tally.calls(op), (4, 2));
        // Two cuts (×0.7 each), one success back (+0.5).
        assert!((limiter.rate(op) - (10.0 * 0.49 + 0.5)).abs() < 1e-9);
        // Other operations are untouched.
        assert_eq!(limiter.rate(IotApi::DescribeCertificate), 10.0);
        // Three backoffs, each within its jitter ceiling.
        let slept = clock.slept.lock().unwrap().clone();
        assert_eq!(slept.len(), 3, "{slept:?}");
        for (i, s) in slept.iter().enumerate() {
            assert!(*s <= BACKOFF_BASE * (1 << i), "{i}: {s:?}");
        }
    }

    #[tokio::test]
    async fn a_final_answer_is_not_retried() {
        let clock = ManualClock::new();
        let limiter = Limiter::new(&one_op(10.0), clock.clone());
        let deadline = Deadline::after(Duration::from_secs(30), clock.as_ref());
        let tally = Tally::default();
        let got = limiter
            .call(
                IotApi::DescribeCertificate,
                deadline,
                &tally,
                verdict,
                script(vec![Answer::NotFound]),
            )
            .await;
        assert!(matches!(got, Err(CallError::Final(Answer::NotFound))));
        assert_eq!(tally.calls(IotApi::DescribeCertificate), (1, 0));
    }

    #[tokio::test]
    async fn endless_throttling_gives_up_before_the_deadline() {
        let clock = ManualClock::new();
        let limiter = Limiter::new(&one_op(10.0), clock.clone());
        let t0 = clock.now();
        let deadline = Deadline::after(Duration::from_secs(20), clock.as_ref());
        let tally = Tally::default();
        let op = IotApi::UpdateCertificate;
        let always = || std::future::ready(Err::<u32, _>(Answer::Throttle));
        let got = limiter.call(op, deadline, &tally, verdict, always).await;
        match got {
            Err(CallError::OutOfTime {
                last: Some(Answer::Throttle),
                throttled: true,
            }) => {}
            other => panic!("{other:?}"),
        }
        let ended = clock.now() - t0;
        assert!(ended <= Duration::from_secs(18), "stopped at {ended:?}");
        let (calls, throttled) = tally.calls(op);
        assert_eq!(calls, throttled);
        assert!(calls >= 5, "{calls} attempts in 18 s");
        assert!((limiter.rate(op) - 1.0).abs() < 1e-9, "at its floor");
        // Transient errors give up the same way, not marked throttled.
        let limiter = Limiter::new(&one_op(10.0), clock.clone());
        let deadline = Deadline::after(Duration::from_secs(5), clock.as_ref());
        let flaky = || std::future::ready(Err::<u32, _>(Answer::Flaky));
        let got = limiter.call(op, deadline, &tally, verdict, flaky).await;
        assert!(matches!(
            got,
            Err(CallError::OutOfTime {
                throttled: false,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn no_call_is_sent_when_its_token_comes_too_late() {
        let clock = ManualClock::new();
        // 0.1/s: one token now, the next in ten seconds.
        let limiter = Limiter::new(&one_op(0.1), clock.clone());
        let deadline = Deadline::after(Duration::from_secs(5), clock.as_ref());
        let tally = Tally::default();
        let op = IotApi::UpdateCertificate;
        let first = limiter
            .call(op, deadline, &tally, verdict, script(vec![]))
            .await;
        assert!(first.is_ok());
        let second = limiter
            .call(op, deadline, &tally, verdict, script(vec![]))
            .await;
        assert!(matches!(
            second,
            Err(CallError::OutOfTime {
                last: None,
                throttled: true
            })
        ));
        assert_eq!(tally.calls(op), (1, 0), "the second was never sent");
        assert!(clock.slept.lock().unwrap().is_empty(), "and nothing waited");
    }

    #[test]
    fn the_deadline_comes_from_lambdas_epoch_milliseconds() {
        let clock = TokioClock;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let d = Deadline::from_epoch_ms(now_ms + 10_000, &clock);
        let left = d.end - Instant::now();
        assert!(
            left > Duration::from_secs(9) && left <= Duration::from_secs(10),
            "{left:?}"
        );
        assert!(d.open_at(Instant::now()));
        assert!(!d.open_at(Instant::now() + Duration::from_millis(8_100)));
        let past = Deadline::from_epoch_ms(now_ms - 1000, &clock);
        assert!(!past.open_at(Instant::now()));
        // A two-second function keeps a quarter of its time, not two seconds.
        let short = Deadline::after(Duration::from_secs(2), &clock);
        assert!(short.open_at(Instant::now() + Duration::from_millis(1400)));
        assert!(!short.open_at(Instant::now() + Duration::from_millis(1600)));
    }
}
