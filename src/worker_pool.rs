//! Independent pieces of work on a few threads: a chain's layers unpacked, an image's blobs
//! pushed, the store re-hashed. One queue, taken in order; results returned by position.

use std::collections::VecDeque;
use std::sync::Mutex;

/// What happens to items not yet started once one fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// No new item starts; those running finish (an all-or-nothing operation).
    StopTakingWork,
    /// Every item runs (a check that reports all it finds).
    Continue,
}

/// Run `work` on each of `items`, at most `threads` at once (at least one). Returns the
/// position in `items` and the result of every item that ran, sorted by position.
pub fn run_bounded<T: Send, R: Send, E: Send>(
    items: Vec<T>,
    threads: usize,
    on_error: OnError,
    work: impl Fn(T) -> Result<R, E> + Sync,
) -> Vec<(usize, Result<R, E>)> {
    let threads = threads.max(1).min(items.len().max(1));
    let queue = Mutex::new(items.into_iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let Some((i, item)) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let r = work(item);
                    let failed = r.is_err();
                    results.lock().unwrap().push((i, r));
                    if failed && on_error == OnError::StopTakingWork {
                        queue.lock().unwrap().clear();
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results
}

/// One thread per CPU, the default width of store-wide work.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_by_position_and_stop_on_error() {
        let all = run_bounded((0..20).collect(), 3, OnError::Continue, |x: u32| {
            if x % 7 == 3 { Err(x) } else { Ok(x * 2) }
        });
        assert_eq!(all.len(), 20);
        assert!(all.iter().enumerate().all(|(k, (i, _))| k == *i));
        assert_eq!(all[3].1, Err(3));
        assert_eq!(all[4].1, Ok(8));
        // One thread: items run in order, and nothing after the first failure starts.
        let stopped = run_bounded((0..20).collect(), 1, OnError::StopTakingWork, |x: u32| {
            if x == 5 { Err(x) } else { Ok(x) }
        });
        assert_eq!(stopped.len(), 6);
        assert_eq!(stopped[5].1, Err(5));
    }
}
