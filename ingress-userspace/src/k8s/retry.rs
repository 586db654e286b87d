//! When a watcher polls the API server again after an error.
//!
//! kube's `default_backoff` waits after every error, up to 30 s once errors
//! have piled up. After an outage that is wrong for the one error that
//! proves the server is back: `410 Gone`, the answer to resuming a watch
//! from a resourceVersion compacted away meanwhile. With kube's backoff the
//! re-list it calls for waited the full 30 s (twice, when the first retry
//! met the server still starting), and the maps stayed behind the API for
//! a minute after a one-minute outage (`tests/tests/api_churn.rs`,
//! `API_CHURN=full`). Here a 410 starts the backoff over, so the re-list
//! follows within the backoff's first step (800 ms at most), and errors
//! that follow it back off again from there.

use std::time::Duration;

use futures::stream::{self, BoxStream, Stream, StreamExt};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff};

/// `events` with a pause before the poll that follows an error, as
/// `pause_after` decides.
pub fn paced<T: Send + 'static>(
    events: impl Stream<Item = Result<T, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send + 'static {
    let start: (BoxStream<'static, _>, DefaultBackoff, Option<Duration>) = (events.boxed(), DefaultBackoff::default(), None);
    stream::unfold(start, |(mut events, mut backoff, pause)| async move {
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let event = events.next().await?;
        let pause = pause_after(&event, &mut backoff);
        Some((event, (events, backoff, pause)))
    })
}

/// How long to wait before polling again after `event`: not at all after
/// success, the backoff's first step after `410 Gone` (the server is back),
/// the backoff's next step after any other error.
fn pause_after<T>(event: &Result<T, watcher::Error>, backoff: &mut impl Backoff) -> Option<Duration> {
    match event {
        Ok(_) => {
            backoff.reset();
            None
        }
        Err(error) if is_gone(error) => {
            backoff.reset();
            backoff.next()
        }
        Err(_) => backoff.next(),
    }
}

/// Whether the server said the watch's resourceVersion is too old (a
/// re-list is due).
pub fn is_gone(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchError(status) if status.code == 410)
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    /// Doubles from 1 s on every step; `reset` starts over.
    struct Doubling(Duration);

    impl Iterator for Doubling {
        type Item = Duration;
        fn next(&mut self) -> Option<Duration> {
            let step = self.0;
            self.0 *= 2;
            Some(step)
        }
    }

    impl Backoff for Doubling {
        fn reset(&mut self) {
            self.0 = Duration::from_secs(1);
        }
    }

    fn status(code: u16) -> watcher::Error {
        watcher::Error::WatchError(Box::new(Status { code, ..Status::default() }))
    }

    fn unreachable() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    /// A case: its name, the watcher's events, the pause after each.
    type Case = (&'static str, Vec<Result<(), watcher::Error>>, Vec<Option<Duration>>);

    #[test]
    fn pauses_follow_the_events() {
        let secs = |s: u64| Some(Duration::from_secs(s));
        let cases: Vec<Case> = vec![
            ("successes never pause", vec![Ok(()), Ok(())], vec![None, None]),
            ("errors back off further each time", vec![Err(unreachable()), Err(unreachable()), Err(status(500))], vec![secs(1), secs(2), secs(4)]),
            ("a success starts the backoff over", vec![Err(unreachable()), Err(unreachable()), Ok(()), Err(unreachable())], vec![secs(1), secs(2), None, secs(1)]),
            (
                "410 after an outage re-lists after the first step, not the grown one",
                vec![Err(unreachable()), Err(unreachable()), Err(unreachable()), Err(unreachable()), Err(status(410))],
                vec![secs(1), secs(2), secs(4), secs(8), secs(1)],
            ),
            ("errors after a 410 back off from the start", vec![Err(status(410)), Err(unreachable()), Err(unreachable())], vec![secs(1), secs(2), secs(4)]),
            ("other watch errors back off", vec![Err(status(500)), Err(status(403))], vec![secs(1), secs(2)]),
        ];
        for (name, events, expected) in cases {
            let mut backoff = Doubling(Duration::from_secs(1));
            let pauses: Vec<_> = events.iter().map(|event| pause_after(event, &mut backoff)).collect();
            assert_eq!(pauses, expected, "{name}");
        }
    }

    #[tokio::test]
    async fn paced_passes_every_event_through() {
        let events = stream::iter(vec![Ok(1), Err(status(410)), Ok(2)]);
        let seen: Vec<_> = paced(events).map(|event| event.ok()).collect().await;
        assert_eq!(seen, vec![Some(1), None, Some(2)]);
    }
}
