//! Data parallelism inside one stage run: the plant's implementation of
//! [`cellfab_model::Parallel`]. Formation and aging split a lot into fixed-size chunks of
//! cells and hand them here as jobs; [`Threads`] runs them on scoped worker threads that
//! pull job indices from a shared counter, like channels of a rack taking the next cell
//! from the tray. The stages merge their chunk results in job order, so the thread count
//! never changes a result.

use cellfab_model::Parallel;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs the jobs of a stage on up to `workers` threads (the calling thread is one of them).
#[derive(Clone, Copy, Debug)]
pub struct Threads {
    /// Threads that work on one `for_each` call, the caller included; ≥ 1 -- constant.
    workers: usize,
}

impl Threads {
    /// Up to `workers` threads (at least one).
    pub fn new(workers: usize) -> Self {
        Self { workers: workers.max(1) }
    }

    /// One thread per core (`std::thread::available_parallelism`, 1 if unknown).
    pub fn available() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Threads per `for_each` call.
    pub fn workers(&self) -> usize {
        self.workers
    }
}

impl Parallel for Threads {
    fn for_each(&self, jobs: usize, job: &(dyn Fn(usize) + Sync)) {
        let workers = self.workers.min(jobs);
        if workers <= 1 {
            (0..jobs).for_each(job);
            return;
        }
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= jobs {
                break;
            }
            job(i);
        };
        std::thread::scope(|scope| {
            for _ in 1..workers {
                scope.spawn(work);
            }
            work();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[test]
    fn every_job_runs_exactly_once_on_several_threads() {
        let seen = Mutex::new(Vec::new());
        let threads = Mutex::new(HashSet::new());
        Threads::new(4).for_each(1000, &|i| {
            seen.lock().unwrap().push(i);
            threads.lock().unwrap().insert(std::thread::current().id());
            std::thread::sleep(std::time::Duration::from_micros(50));
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(threads.into_inner().unwrap().len() > 1, "jobs spread over more than one thread");
    }

    #[test]
    fn no_jobs_and_one_worker_run_inline() {
        Threads::new(4).for_each(0, &|_| panic!("no job to run"));
        let caller = std::thread::current().id();
        Threads::new(1).for_each(3, &|_| assert_eq!(std::thread::current().id(), caller));
    }

    #[test]
    fn a_panicking_job_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| Threads::new(2).for_each(8, &|i| assert!(i != 5, "job 5 fails")));
        assert!(r.is_err());
    }
}
