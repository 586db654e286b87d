//! Where the agent's inputs come from. Every source publishes complete
//! snapshots on a watch channel (`None` until its first complete one), so the
//! agent loop does not care whether they come from files or the API server.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use crate::manifests::{self, Loaded};

pub type Snapshots = watch::Sender<Option<Arc<Loaded>>>;

/// After a change, further changes are awaited this long before the
/// directory is read: an edit or a ConfigMap update touches several entries
/// (temporary file, rename, symlink swap) within microseconds.
const DEBOUNCE: Duration = Duration::from_millis(5);
/// A directory that keeps changing is still read this often.
const MAX_DEBOUNCE: Duration = Duration::from_millis(50);

/// Publishes the directory's contents now and again whenever a file in it
/// changes: at once on an inotify event, and in any case every
/// `poll_interval` if the files' stamps changed. The polling is what is left
/// where inotify is unavailable or misses a change (a replaced directory, a
/// network filesystem); it also covers ConfigMap volumes, whose updates are
/// symlink swaps.
pub async fn watch_directory(dir: PathBuf, poll_interval: Duration, snapshots: Snapshots) {
    let mut events = match DirEvents::watch(&dir) {
        Ok(events) => Some(events),
        Err(error) => {
            tracing::warn!("cannot watch {} with inotify ({error}); polling it every {poll_interval:?}", dir.display());
            None
        }
    };
    let mut seen: Option<Vec<FileStamp>> = None;
    let mut notified = false;
    loop {
        let stamps = stamp_dir(&dir);
        // An event reloads even with equal stamps: a rewrite of the same size
        // within the filesystem's timestamp granularity looks unchanged.
        if notified || seen.as_ref() != Some(&stamps) {
            match manifests::load_dir(&dir) {
                Ok(loaded) => {
                    seen = Some(stamps);
                    if snapshots.send(Some(Arc::new(loaded))).is_err() {
                        return;
                    }
                }
                // The last good snapshot stays programmed.
                Err(error) => tracing::error!("{error:#}"),
            }
        }
        notified = match events.as_mut() {
            Some(watcher) => match watcher.changed_within(poll_interval).await {
                Ok(changed) => changed,
                Err(error) => {
                    tracing::warn!("inotify on {} failed ({error}); polling it every {poll_interval:?}", dir.display());
                    events = None;
                    false
                }
            },
            None => {
                tokio::time::sleep(poll_interval).await;
                false
            }
        };
    }
}

/// inotify events of one directory (entries created, written, renamed,
/// removed), only as a signal: which entry changed does not matter, the
/// whole directory is read again.
struct DirEvents {
    fd: AsyncFd<OwnedFd>,
}

impl DirEvents {
    fn watch(dir: &Path) -> io::Result<DirEvents> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_ONLYDIR;
        inotify.add_watch(dir, flags)?;
        // SAFETY: the AsyncFd owns the descriptor (an OwnedFd, never handed
        // out), so it stays open and the same until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(OwnedFd::from(inotify)) }?;
        Ok(DirEvents { fd })
    }

    /// Whether something changed within `limit`; if so, returns once the
    /// changes have been quiet for [`DEBOUNCE`] (at most [`MAX_DEBOUNCE`]).
    async fn changed_within(&mut self, limit: Duration) -> io::Result<bool> {
        match timeout(limit, self.drain()).await {
            Err(_elapsed) => return Ok(false),
            Ok(result) => result?,
        }
        let settled_by = Instant::now() + MAX_DEBOUNCE;
        while Instant::now() < settled_by {
            match timeout(DEBOUNCE, self.drain()).await {
                Err(_quiet) => break,
                Ok(result) => result?,
            }
        }
        Ok(true)
    }

    /// Waits for events and reads (discards) all that are queued.
    async fn drain(&mut self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            if let Ok(result) = ready.try_io(|fd| read_queued(fd.get_ref())) {
                return result;
            }
        }
    }
}

/// Reads until the queue is empty; `WouldBlock` if it was empty already, so
/// that [`AsyncFd`] waits for the next event.
fn read_queued(fd: &OwnedFd) -> io::Result<()> {
    let mut buffer = [0u8; 4096];
    let mut read_any = false;
    loop {
        match nix::unistd::read(fd, &mut buffer) {
            Ok(_) => read_any = true,
            Err(Errno::EAGAIN) if read_any => return Ok(()),
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// What identifies a version of a manifest file without reading it.
#[derive(PartialEq, Eq)]
struct FileStamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp_dir(dir: &Path) -> Vec<FileStamp> {
    let mut stamps: Vec<FileStamp> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            // metadata() follows symlinks, so a swapped ConfigMap link counts.
            let meta = std::fs::metadata(entry.path()).ok()?;
            Some(FileStamp { path: entry.path(), modified: meta.modified().ok(), len: meta.len() })
        })
        .collect();
    stamps.sort_by(|a, b| a.path.cmp(&b.path));
    stamps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document the loader counts as ignored: the count tells snapshots apart.
    const IGNORED: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n";
    /// Long enough that only the inotify path can explain a snapshot.
    const NO_POLLING: Duration = Duration::from_secs(3600);
    /// A bound for the wait, not a figure under test.
    const WAIT: Duration = Duration::from_secs(20);

    /// Waits (bounded) for a snapshot with `expected` ignored documents;
    /// intermediate ones (a file seen half written) are skipped.
    async fn wait_for_ignored(rx: &mut watch::Receiver<Option<Arc<Loaded>>>, expected: usize) {
        let found = timeout(WAIT, rx.wait_for(|loaded| loaded.as_ref().is_some_and(|l| l.ignored == expected))).await;
        found.expect("no such snapshot in time").expect("the watcher ended");
    }

    #[tokio::test]
    async fn a_new_and_a_replaced_file_are_seen_without_polling() {
        let dir = std::env::temp_dir().join(format!("lb-source-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), IGNORED).unwrap();
        let (tx, mut rx) = watch::channel(None);
        let watcher = tokio::spawn(watch_directory(dir.clone(), NO_POLLING, tx));
        wait_for_ignored(&mut rx, 1).await;

        std::fs::write(dir.join("b.yaml"), IGNORED).unwrap();
        wait_for_ignored(&mut rx, 2).await;

        // An atomic replacement (write + rename), as editors and the benchmark do.
        std::fs::write(dir.join(".a.tmp"), format!("{IGNORED}---\n{IGNORED}")).unwrap();
        std::fs::rename(dir.join(".a.tmp"), dir.join("a.yaml")).unwrap();
        wait_for_ignored(&mut rx, 3).await;

        watcher.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn where_inotify_cannot_watch_polling_reads_the_directory() {
        let dir = std::env::temp_dir().join(format!("lb-source-poll-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("staging")).unwrap();
        std::fs::write(dir.join("staging/a.yaml"), IGNORED).unwrap();
        let (tx, mut rx) = watch::channel(None);
        // The directory does not exist yet, so inotify has nothing to watch.
        let watcher = tokio::spawn(watch_directory(dir.join("later"), Duration::from_millis(20), tx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.borrow().is_none(), "a snapshot of a missing directory");
        std::fs::rename(dir.join("staging"), dir.join("later")).unwrap();
        wait_for_ignored(&mut rx, 1).await;
        watcher.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
