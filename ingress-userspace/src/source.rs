//! Where the agent's inputs come from. Every source publishes complete
//! snapshots on a watch channel (`None` until its first complete one), so the
//! agent loop does not care whether they come from files or the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use crate::manifests::{self, Loaded, ParsedFile, Placement, Replaced};

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
///
/// Only the files that changed are read and parsed again (those inotify
/// names, those whose stamp changed); the others' parsed documents are kept.
pub async fn watch_directory(dir: PathBuf, poll_interval: Duration, snapshots: Snapshots) {
    let mut events = match DirEvents::watch(&dir) {
        Ok(events) => Some(events),
        Err(error) => {
            tracing::warn!("cannot watch {} with inotify ({error}); polling it every {poll_interval:?}", dir.display());
            None
        }
    };
    let mut files = ParsedDir::default();
    let mut changes = Changes::everything();
    loop {
        let read = {
            let dir = dir.clone();
            let mut cache = std::mem::take(&mut files);
            tokio::task::spawn_blocking(move || {
                let result = cache.refresh(&dir, &changes);
                (cache, result)
            })
            .await
        };
        match read {
            Ok((cache, result)) => {
                files = cache;
                match result {
                    Ok(Some(loaded)) => {
                        if snapshots.send(Some(Arc::new(loaded))).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    // The last good snapshot stays programmed.
                    Err(error) => tracing::error!("{error:#}"),
                }
            }
            Err(error) => tracing::error!("reading {} failed: {error}", dir.display()),
        }
        changes = match events.as_mut() {
            Some(watcher) => match watcher.changed_within(poll_interval).await {
                Ok(changes) => changes,
                Err(error) => {
                    tracing::warn!("inotify on {} failed ({error}); polling it every {poll_interval:?}", dir.display());
                    events = None;
                    Changes::default()
                }
            },
            None => {
                tokio::time::sleep(poll_interval).await;
                Changes::default()
            }
        };
    }
}

/// What inotify said changed since the last read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Entries named by events.
    pub names: BTreeSet<OsString>,
    /// Read every file again: an entry other than a manifest changed (a
    /// ConfigMap's `..data` link swap), or the event queue overflowed.
    pub everything: bool,
}

impl Changes {
    pub fn everything() -> Changes {
        Changes { names: BTreeSet::new(), everything: true }
    }

    /// Whether `path` is to be read again whatever its stamp says.
    fn names(&self, path: &Path) -> bool {
        self.everything || path.file_name().is_some_and(|name| self.names.contains(name))
    }
}

/// The manifest files of a directory as last read: each one's stamp,
/// parsed documents and where they landed in `merged`, in name order.
#[derive(Default)]
pub struct ParsedDir {
    files: BTreeMap<PathBuf, (FileStamp, ParsedFile, Placement)>,
    /// The last snapshot made, patched in place when files change only in
    /// the contents of their objects.
    merged: Option<Loaded>,
}

impl ParsedDir {
    /// Reads the files that are new, changed (stamp) or named by `changes`,
    /// forgets the removed ones, and makes a snapshot of all of them; `None`
    /// when nothing changed since the last one.
    pub fn refresh(&mut self, dir: &Path, changes: &Changes) -> anyhow::Result<Option<Loaded>> {
        let listed = manifests::manifest_files(dir)?;
        let stamped: Vec<(PathBuf, FileStamp)> = listed.into_iter().map(|path| { let stamp = FileStamp::of(&path); (path, stamp) }).collect();
        let removed: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| stamped.binary_search_by(|(listed, _)| listed.cmp(path)).is_err())
            .cloned()
            .collect();
        let stale: Vec<&(PathBuf, FileStamp)> = stamped
            .iter()
            .filter(|(path, stamp)| changes.names(path) || self.files.get(path).is_none_or(|(known, ..)| known != stamp))
            .collect();
        let paths: Vec<PathBuf> = stale.iter().map(|(path, _)| path.clone()).collect();
        let started = std::time::Instant::now();
        let mut merged = self.merged.take().filter(|_| removed.is_empty());
        let since = merged.as_ref().map(|loaded| loaded.snapshot.versions.revision).into_iter().collect();
        let mut replaced = Replaced { since, ..Replaced::default() };
        let mut changed = !removed.is_empty() || merged.is_none();
        for path in &removed {
            self.files.remove(path);
        }
        for ((path, stamp), parsed) in stale.into_iter().zip(manifests::read_files(&paths)) {
            let kept = match self.files.remove(path) {
                // The same documents: the last parse stays, with its versions.
                Some((_, before, placement)) if before == parsed => (before, placement),
                Some((_, before, placement)) => {
                    changed = true;
                    // Only the changed objects are put in; any other change
                    // (a new file, objects added or renamed) merges every file again.
                    if let Some(loaded) = &mut merged
                        && !loaded.replace_file(&before, &parsed, &placement, &mut replaced)
                    {
                        merged = None;
                    }
                    (parsed, placement)
                }
                None => {
                    changed = true;
                    merged = None;
                    (parsed, Placement::new())
                }
            };
            self.files.insert(path.clone(), (stamp.clone(), kept.0, kept.1));
        }
        if !changed {
            self.merged = merged;
            return Ok(None);
        }
        let patched = merged.is_some();
        let mut loaded = merged.unwrap_or_else(|| {
            let mut loaded = Loaded::default();
            for (_, parsed, placement) in self.files.values_mut() {
                *placement = loaded.add_file(parsed);
            }
            loaded
        });
        loaded.snapshot.versions.revision = manifests::next_version();
        loaded.snapshot.versions.replaced = patched.then_some(replaced);
        tracing::debug!(reparsed = paths.len(), patched, merge_ms = started.elapsed().as_secs_f64() * 1e3, "manifests read");
        self.merged = Some(loaded.clone());
        Ok(Some(loaded))
    }
}

/// inotify events of one directory (entries created, written, renamed,
/// removed), with the names of the entries they concern.
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

    /// What changed within `limit` (nothing if the time ran out); once
    /// something did, returns when the changes have been quiet for
    /// [`DEBOUNCE`] (at most [`MAX_DEBOUNCE`]).
    async fn changed_within(&mut self, limit: Duration) -> io::Result<Changes> {
        let mut changes = Changes::default();
        match timeout(limit, self.drain(&mut changes)).await {
            Err(_elapsed) => return Ok(changes),
            Ok(result) => result?,
        }
        let settled_by = Instant::now() + MAX_DEBOUNCE;
        while Instant::now() < settled_by {
            match timeout(DEBOUNCE, self.drain(&mut changes)).await {
                Err(_quiet) => break,
                Ok(result) => result?,
            }
        }
        Ok(changes)
    }

    /// Waits for events and reads all that are queued into `changes`.
    async fn drain(&mut self, changes: &mut Changes) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            if let Ok(result) = ready.try_io(|fd| read_queued(fd.get_ref(), changes)) {
                return result;
            }
        }
    }
}

/// Reads until the queue is empty; `WouldBlock` if it was empty already, so
/// that [`AsyncFd`] waits for the next event.
fn read_queued(fd: &OwnedFd, changes: &mut Changes) -> io::Result<()> {
    // Room for many events: a name is at most NAME_MAX + 1 bytes.
    let mut buffer = vec![0u8; 64 * 1024];
    let mut read_any = false;
    loop {
        match nix::unistd::read(fd, &mut buffer) {
            Ok(read) => {
                read_any = true;
                record_events(&buffer[..read], changes);
            }
            Err(Errno::EAGAIN) if read_any => return Ok(()),
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Decodes `struct inotify_event`s (wd, mask, cookie, len, then `len` bytes
/// of NUL-padded name) into `changes`.
pub fn record_events(mut bytes: &[u8], changes: &mut Changes) {
    const HEADER: usize = 16;
    const IN_Q_OVERFLOW: u32 = 0x4000;
    while bytes.len() >= HEADER {
        let word = |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let (mask, len) = (word(4), word(12) as usize);
        let Some(name) = bytes.get(HEADER..HEADER + len) else {
            changes.everything = true;
            return;
        };
        let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
        let manifest = manifests::is_manifest_name(Path::new(OsStr::from_bytes(name)));
        if mask & IN_Q_OVERFLOW != 0 || name.is_empty() {
            changes.everything = true;
        } else if manifest {
            changes.names.insert(OsStr::from_bytes(name).to_owned());
        } else if !name.starts_with(b".") || name.starts_with(b"..") {
            // A hidden temporary file (an editor's, the benchmark's) only
            // matters once renamed to a manifest name, which is its own event;
            // anything else (`..data` of a ConfigMap) may change any file.
            changes.everything = true;
        }
        bytes = &bytes[HEADER + len..];
    }
}

/// What identifies a version of a manifest file without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// metadata() follows symlinks, so a swapped ConfigMap link counts.
    fn of(path: &Path) -> FileStamp {
        match std::fs::metadata(path) {
            Ok(meta) => FileStamp { modified: meta.modified().ok(), len: meta.len(), inode: meta.ino() },
            Err(_) => FileStamp { modified: None, len: 0, inode: 0 },
        }
    }
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

    const SERVICE_A: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n";
    const SERVICE_B: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: default}\nspec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}\n";

    /// Re-reading only the changed files gives what reading the whole
    /// directory gives, including which of two definitions wins.
    #[test]
    fn refreshing_changed_files_gives_what_reading_everything_gives() {
        let dir = std::env::temp_dir().join(format!("lb-source-refresh-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), SERVICE_A).unwrap();
        std::fs::write(dir.join("b.yaml"), format!("{SERVICE_B}---\n{SERVICE_A}")).unwrap();
        std::fs::write(dir.join("c.yml"), IGNORED).unwrap();
        let named = |name: &str| Changes { names: [OsString::from(name)].into(), everything: false };
        let mut parsed = ParsedDir::default();
        let mut check = |changes: &Changes, step: &str| {
            let refreshed = parsed.refresh(&dir, changes).unwrap();
            if let Some(loaded) = &refreshed {
                assert_eq!(*loaded, manifests::load_dir(&dir).unwrap(), "{step}");
            }
            refreshed.is_some()
        };
        assert!(check(&Changes::everything(), "first read"));
        assert!(!check(&Changes::default(), "nothing changed"));
        assert!(!check(&named("c.yml"), "rewritten the same"));

        std::fs::write(dir.join(".b.tmp"), format!("{SERVICE_B}---\nkind: [\n")).unwrap();
        std::fs::rename(dir.join(".b.tmp"), dir.join("b.yaml")).unwrap();
        assert!(check(&named("b.yaml"), "b rewritten"));

        std::fs::write(dir.join("b.yaml"), format!("{SERVICE_A}---\n{SERVICE_B}")).unwrap();
        assert!(check(&named("b.yaml"), "b defines a again"));
        std::fs::remove_file(dir.join("a.yaml")).unwrap();
        assert!(check(&named("a.yaml"), "a removed: b's definition wins now"));
        std::fs::write(dir.join("a.yml"), SERVICE_B).unwrap();
        // Only the stamp tells (no event named it).
        assert!(check(&Changes::default(), "a new file seen by its stamp"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn events_name_manifests_and_anything_else_means_everything() {
        fn event(mask: u32, name: &str) -> Vec<u8> {
            let mut padded = name.as_bytes().to_vec();
            padded.resize(name.len().div_ceil(16) * 16 + 16, 0);
            let mut bytes = Vec::new();
            for word in [1u32, mask, 0, padded.len() as u32] {
                bytes.extend(word.to_ne_bytes());
            }
            bytes.extend(padded);
            bytes
        }
        /// Name, events (mask, entry), entries named, everything.
        type Case<'a> = (&'a str, &'a [(u32, &'a str)], &'a [&'a str], bool);
        let cases: &[Case] = &[
            ("a manifest", &[(0x80, "a.yaml")], &["a.yaml"], false),
            ("a temporary file, renamed", &[(0x100, ".a.tmp"), (0x8, ".a.tmp"), (0x40, ".a.tmp"), (0x80, "b.yml")], &["b.yml"], false),
            ("a ConfigMap's link swap", &[(0x80, "..data")], &[], true),
            ("another file", &[(0x8, "notes.txt")], &[], true),
            ("an overflow", &[(0x4000, "")], &[], true),
        ];
        for (name, events, names, everything) in cases {
            let bytes: Vec<u8> = events.iter().flat_map(|(mask, file)| event(*mask, file)).collect();
            let mut changes = Changes::default();
            record_events(&bytes, &mut changes);
            let expected: BTreeSet<OsString> = names.iter().map(OsString::from).collect();
            assert_eq!((changes.names, changes.everything), (expected, *everything), "{name}");
        }
    }
}
