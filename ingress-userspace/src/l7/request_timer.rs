//! The request timeout on timers a worker reuses. `tokio::time::timeout`
//! puts a new timer into the runtime's wheel as soon as the upstream does
//! not answer at once, which is every request, and takes it out again with
//! the answer: two wheel updates under the driver's lock per request. A
//! timer taken from the spares here keeps its place in the wheel: its
//! deadline is at most the new one, so it never fires late; when it fires
//! early it is moved to the true deadline then, once per timeout at most.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

/// Spare timers kept at most: one per request in flight on the worker
/// is reused, a burst beyond it is dropped after use.
const MAX_SPARE: usize = 256;

/// A worker's spare timers. They belong to the runtime that made them, as
/// the worker's proxy does.
#[derive(Default)]
pub(crate) struct RequestTimers {
    spare: Mutex<Vec<Pin<Box<Sleep>>>>,
}

/// The request did not finish within its limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

impl RequestTimers {
    /// `future`'s output, or `TimedOut` once `limit` has passed first. A
    /// request given up on (its client went away) drops its timer. The
    /// future is borrowed pinned where the caller made it: moved in, the
    /// request's large future was copied twice per request.
    pub(crate) async fn within<F: Future>(&self, limit: Duration, mut future: Pin<&mut F>) -> Result<F::Output, TimedOut> {
        let deadline = Instant::now() + limit;
        let mut timer = self.take(deadline);
        let outcome = poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            loop {
                ready!(timer.as_mut().poll(cx));
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(TimedOut));
                }
                timer.as_mut().reset(deadline);
            }
        })
        .await;
        self.put_back(timer);
        outcome
    }

    /// A timer due no later than `deadline`.
    fn take(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        let spare = self.spare.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        match spare {
            Some(mut timer) => {
                // Made for a longer limit (another route's): moved now.
                if timer.deadline() > deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => Box::pin(sleep_until(deadline)),
        }
    }

    fn put_back(&self, timer: Pin<Box<Sleep>>) {
        let mut spare = self.spare.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if spare.len() < MAX_SPARE {
            spare.push(timer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_times_out_at_its_new_deadline_not_its_old_one() {
        let timers = RequestTimers::default();
        let limit = Duration::from_secs(10);
        assert_eq!(timers.within(limit, pin!(async { 1 })).await, Ok(1));
        // The spare is still due 10 s after the first request started.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let started = Instant::now();
        assert_eq!(timers.within(limit, pin!(std::future::pending::<()>())).await, Err(TimedOut));
        assert_eq!(started.elapsed(), limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_limit_than_the_spare_was_made_for_still_holds() {
        let timers = RequestTimers::default();
        assert_eq!(timers.within(Duration::from_secs(60), pin!(async {})).await, Ok(()));
        let started = Instant::now();
        let limit = Duration::from_secs(2);
        assert_eq!(timers.within(limit, pin!(std::future::pending::<()>())).await, Err(TimedOut));
        assert_eq!(started.elapsed(), limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_finishing_in_time_is_not_cut_short() {
        let timers = RequestTimers::default();
        let limit = Duration::from_secs(5);
        for _ in 0..3 {
            let answer = async {
                tokio::time::sleep(Duration::from_secs(4)).await;
                "answer"
            };
            assert_eq!(timers.within(limit, pin!(answer)).await, Ok("answer"));
        }
    }
}
