//! Work spread over the machine's CPUs, for the passes that see a whole
//! cluster at once (every manifest file, every Service), where one thread
//! would leave the other cores idle.

/// `work` applied to every item, results in the items' order, on up to one
/// thread per CPU (the calling thread is one), each taking a run of at
/// least `min_per_thread` items: fewer are not worth a thread.
pub fn map<T: Send, R: Send>(items: Vec<T>, min_per_thread: usize, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = cpus.min(items.len() / min_per_thread.max(1)).max(1);
    if threads == 1 {
        return items.into_iter().map(work).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut items = items.into_iter();
    let mut runs: Vec<Vec<T>> = (0..threads).map(|_| items.by_ref().take(per_thread).collect()).collect();
    let mine = runs.remove(0);
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = runs.into_iter().map(|run| scope.spawn(move || run.into_iter().map(work).collect::<Vec<R>>())).collect();
        let mut results: Vec<R> = mine.into_iter().map(work).collect();
        for other in others {
            // A panic in `work` is a bug: let it surface as one.
            results.extend(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_however_many_threads_run() {
        // (items, min_per_thread): one thread, as many as there are CPUs,
        // and runs of unequal length.
        for (count, min_per_thread) in [(0, 1), (1, 1), (7, 1), (1000, 1), (1000, 999), (1001, 10)] {
            let items: Vec<u32> = (0..count).collect();
            let expected: Vec<u64> = items.iter().map(|i| u64::from(*i) * 3).collect();
            assert_eq!(map(items, min_per_thread, |i| u64::from(i) * 3), expected, "{count} items, {min_per_thread} per thread");
        }
    }

    #[test]
    fn work_runs_once_per_item() {
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let results = map((0..500).collect(), 1, |i: usize| {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            i
        });
        assert_eq!(results.len(), 500);
        assert_eq!(runs.into_inner(), 500);
    }
}
