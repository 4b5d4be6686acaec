//! The one thread pool, sized to the machine, shared by every batched call. Rows are the unit of
//! parallelism; results never depend on the number of threads.
//!
//! **Why not rayon's `ThreadPool::install(|| rows.par_iter_mut().for_each(..))`.** A decoding step's
//! rows take microseconds each, and the batch is often a handful of rows. `install` hands the whole job to
//! a pool worker and blocks the caller until the workers have woken up, split the range and finished: the
//! wake-up (a futex round trip, far longer in a VM) is paid on every call, and the calling thread does no
//! work. Here the caller starts claiming rows at once, one at a time, and wakes `threads - 1` workers that
//! join when they get there (a worker that arrives after the last row is claimed leaves without touching
//! the data); the caller then waits only for rows still being processed. rayon still provides the threads.
//! Measured by `benches/pool.rs` (criterion; a temperature's work per row, one read and one write of a
//! V = 50,257 row; 2 threads on the 2-core development VM, 2026-12-02): B = 2: 19.8 µs here, 42.2 µs with
//! `install` (slower than one thread, 32.1 µs); B = 8: 71.1 vs 83.8 µs; B = 64: 684 vs 712 µs (one
//! thread 953 µs). The gap is the per-call overhead, so it matters most at small batches.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, Result};

/// Below this many elements (rows x vocabulary) a call runs on the calling thread: waking the pool
/// costs more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// The threads a batched call uses: the calling thread plus the pool's `threads - 1` workers. Without a
/// pool (the default one could not be started), every call runs on the calling thread.
struct Threads {
    threads: usize,
    pool: Option<Arc<ThreadPool>>,
    /// The process that started the workers: after a `fork` they do not exist in the child, whose first
    /// call starts its own.
    pid: u32,
}

static POOL: RwLock<Option<Arc<Threads>>> = RwLock::new(None);

/// The most threads [`set_num_threads`] and `FASTLOGITS_NUM_THREADS` accept.
pub const MAX_THREADS: usize = 4096;

/// `FASTLOGITS_NUM_THREADS`: `None` when unset, empty or 0 (one thread per CPU); an error when it is not an
/// integer in `[0, MAX_THREADS]`.
pub fn threads_from_env() -> Result<Option<usize>> {
    let Ok(v) = std::env::var("FASTLOGITS_NUM_THREADS") else {
        return Ok(None);
    };
    match v.trim().parse::<usize>() {
        Ok(0) => Ok(None),
        Ok(n) if n <= MAX_THREADS => Ok(Some(n)),
        _ if v.trim().is_empty() => Ok(None),
        _ => Err(Error::param(format!(
            "`FASTLOGITS_NUM_THREADS` (={v:?}) has to be an integer in [0, {MAX_THREADS}] (0 or unset: one \
             thread per CPU)"
        ))),
    }
}

fn default_threads() -> usize {
    // An invalid FASTLOGITS_NUM_THREADS is reported by `threads_from_env` (the Python package raises at
    // import); here it counts as unset.
    threads_from_env()
        .ok()
        .flatten()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS))
}

/// `n` threads in all: the caller works too, so the pool holds `n - 1` workers (none when `n == 1`).
fn build(n: usize) -> Result<Arc<Threads>> {
    if n <= 1 {
        return Ok(serial());
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(n.saturating_sub(1))
        .thread_name(|i| format!("fastlogits-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::param(format!("could not start {n} threads: {e}")))?;
    Ok(Arc::new(Threads { threads: n, pool: Some(pool), pid: std::process::id() }))
}

/// Bumped whenever `POOL` changes: a thread's cached pool is current while the generation and the process
/// are the same.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The pool this thread last used, with the generation and process it was read in: a busy thread does
    /// not touch `POOL`'s lock on every call. (That also keeps `fork` safe: a thread of the parent that held
    /// the lock at the moment of the fork would leave it locked forever in the child.)
    static CACHED: RefCell<Option<(u64, u32, Arc<Threads>)>> = const { RefCell::new(None) };
}

fn current() -> Arc<Threads> {
    let pid = std::process::id();
    let generation = GENERATION.load(Ordering::Acquire);
    let cached = CACHED.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_ref() {
            Some((g, p, t)) if *g == generation && *p == pid => return Some(Arc::clone(t)),
            // Forked: the parent's pool is never dropped here (its workers do not exist; see below).
            Some((_, p, _)) if *p != pid => std::mem::forget(c.take()),
            _ => {}
        }
        None
    });
    if let Some(t) = cached {
        return t;
    }
    let t = current_locked(pid);
    CACHED.with(|c| *c.borrow_mut() = Some((generation, pid, Arc::clone(&t))));
    t
}

fn current_locked(pid: u32) -> Arc<Threads> {
    if let Some(t) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|t| t.pid == pid) {
        return Arc::clone(t);
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = slot.take_if(|t| t.pid != pid) {
        // Forked: the parent's workers do not exist here. Start as many (the old pool is leaked, not
        // dropped: nothing of it may be waited for).
        let n = old.threads;
        std::mem::forget(old);
        *slot = Some(build(n).unwrap_or_else(|_| serial()));
    }
    // The default pool; if the system refuses the threads, calls run on the calling thread (the results
    // do not depend on the thread count) and `set_num_threads` reports the failure when asked again.
    let t = slot.get_or_insert_with(|| build(default_threads()).unwrap_or_else(|_| serial()));
    Arc::clone(t)
}

/// No workers: every call runs on the calling thread.
fn serial() -> Arc<Threads> {
    Arc::new(Threads { threads: 1, pool: None, pid: std::process::id() })
}

/// Number of threads used by batched calls (the calling thread included).
pub fn num_threads() -> usize {
    current().threads
}

/// Replaces the pool by one with `n` threads (`0`: the default, `FASTLOGITS_NUM_THREADS` or the number
/// of CPUs). Calls already running finish on the old pool. An error (too many threads, or the system
/// refused to start them) leaves the current pool in place.
pub fn set_num_threads(n: usize) -> Result<()> {
    if n > MAX_THREADS {
        return Err(Error::param(format!("`num_threads` has to be in [0, {MAX_THREADS}], but is {n}")));
    }
    let n = if n == 0 { default_threads() } else { n };
    let same = |t: &Arc<Threads>| t.threads == n && t.pid == std::process::id();
    if POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(same) {
        return Ok(()); // already that many: starting thousands of threads again takes seconds
    }
    let p = build(n)?;
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(p);
    GENERATION.fetch_add(1, Ordering::Release);
    Ok(())
}

/// How many threads a call with `items` rows and `elements` values in all should use.
fn threads_for(items: usize, elements: usize) -> usize {
    if items > 1 && elements >= PARALLEL_MIN_ELEMENTS {
        num_threads().min(items)
    } else {
        1
    }
}

/// State shared by the caller and the workers of one [`split_run`].
struct Shared {
    /// Next unclaimed item; only grows, and stays `>= n` once every item is claimed.
    next: AtomicUsize,
    n: usize,
    /// Workers between "about to claim" and "done with their item".
    active: AtomicUsize,
    /// `task(i)` processes item `i`. Only called for a claimed `i < n`, which the caller waits for.
    task: *const (dyn Fn(usize) + Sync + 'static),
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `task` points to a `Sync` closure that outlives every call made through it (see `split_run`).
unsafe impl Send for Shared {}
// SAFETY: as above; the other fields are atomics and a mutex.
unsafe impl Sync for Shared {}

impl Shared {
    /// Claims and runs items until none is left (a worker records a panic instead of unwinding).
    fn work(&self, worker: bool) {
        loop {
            if worker {
                self.active.fetch_add(1, Ordering::SeqCst);
            }
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.n {
                if worker {
                    self.active.fetch_sub(1, Ordering::SeqCst);
                }
                return;
            }
            // SAFETY: `i < n` was claimed before the caller stopped waiting (it waits for `active == 0`
            // after every item is claimed), so the closure is alive.
            let task = unsafe { &*self.task };
            if worker {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| task(i))) {
                    self.next.fetch_max(self.n, Ordering::SeqCst);
                    self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
                }
                self.active.fetch_sub(1, Ordering::SeqCst);
            } else {
                task(i);
            }
        }
    }
}

/// Stops further claims and waits for the workers still busy with an item (also when the caller unwinds).
struct WaitOnDrop<'a>(&'a Shared);

impl Drop for WaitOnDrop<'_> {
    fn drop(&mut self) {
        self.0.next.fetch_max(self.0.n, Ordering::SeqCst);
        // A row takes microseconds: spin first, then yield (more threads than cores must not starve the
        // worker being waited for).
        let mut spins = 0u32;
        while self.0.active.load(Ordering::SeqCst) != 0 {
            if spins < 2000 {
                spins = spins.saturating_add(1);
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

struct SendPtr<T>(*mut T);
// SAFETY: used to hand out disjoint `&mut T` (one per claimed index) of a `Send` type.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above: no two threads ever get the same index.
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Runs `f(i, &mut items[i])` for every item on `threads` threads: the calling thread and `threads - 1`
/// pool workers claim items one at a time. The caller never waits for a worker to *wake up* (in a VM that
/// can take longer than the work): it processes items itself until none is left, then waits only for
/// items a worker is still processing. A worker that starts late finds nothing and leaves without touching
/// the data.
fn split_run<T: Send>(items: &mut [T], threads: usize, f: &(impl Fn(usize, &mut T) + Sync)) {
    if threads <= 1 || items.len() <= 1 {
        for (i, t) in items.iter_mut().enumerate() {
            f(i, t);
        }
        return;
    }
    let n = items.len();
    let base = SendPtr(items.as_mut_ptr());
    let task = move |i: usize| {
        let base = &base;
        // SAFETY: every index in [0, n) is claimed exactly once, so the `&mut` are disjoint.
        f(i, unsafe { &mut *base.0.add(i) })
    };
    let task: &(dyn Fn(usize) + Sync) = &task;
    // SAFETY: lifetime erasure; `WaitOnDrop` keeps this frame (and so `task`) alive until no worker can
    // call it any more.
    let task: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(task) };
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        n,
        active: AtomicUsize::new(0),
        task,
        panic: Mutex::new(None),
    });
    let threads_now = current();
    if let Some(pool) = &threads_now.pool {
        for _ in 1..threads.min(n) {
            let sh = Arc::clone(&shared);
            pool.spawn(move || sh.work(true));
        }
    }
    {
        let _wait = WaitOnDrop(&shared);
        shared.work(false);
    }
    let panicked = shared.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = panicked {
        panic::resume_unwind(p);
    }
}

/// Calls `f(i, item)` for every item; in parallel when the work (`elements` values in all) is large
/// enough.
pub fn for_each_mut<T: Send>(items: &mut [T], elements: usize, f: impl Fn(usize, &mut T) + Sync + Send) {
    let threads = threads_for(items.len(), elements);
    split_run(items, threads, &f);
}

/// Checks `f(i)` for `i in 0..n`, in parallel when large enough, and returns the error of the lowest `i`.
pub fn check_all(n: usize, elements: usize, f: impl Fn(usize) -> Result<()> + Sync + Send) -> Result<()> {
    let threads = threads_for(n, elements);
    if threads <= 1 {
        return (0..n).try_for_each(f);
    }
    let mut results: Vec<Result<()>> = (0..n).map(|_| Ok(())).collect();
    split_run(&mut results, threads, &|i, r: &mut Result<()>| *r = f(i));
    results.into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_and_panics_reach_the_caller() {
        let _ = set_num_threads(2);
        for n in [2usize, 3, 8, 64, 1000] {
            let mut items = vec![0u32; n];
            for_each_mut(&mut items, 1 << 20, |i, x| *x += i as u32 + 1);
            assert!(items.iter().enumerate().all(|(i, &x)| x == i as u32 + 1), "n = {n}");
        }
        for bad in [0usize, 7, 63] {
            let mut items = vec![0u32; 64];
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                for_each_mut(&mut items, 1 << 20, |i, _| assert!(i != bad, "boom at {i}"))
            }));
            assert!(r.is_err(), "the panic at item {bad} was lost");
        }
        let r =
            check_all(64, 1 << 20, |i| if i % 10 == 9 { Err(Error::param(format!("{i}"))) } else { Ok(()) });
        assert_eq!(r.unwrap_err().to_string(), Error::param("9").to_string());
    }
}
