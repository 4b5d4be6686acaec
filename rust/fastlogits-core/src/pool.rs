//! The one thread pool, sized to the machine, shared by every batched call. Rows are the unit of
//! parallelism; results never depend on the number of threads.

use std::sync::{Arc, OnceLock, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, Result};

/// Below this many elements (rows x vocabulary) a call runs on the calling thread: waking the pool
/// costs more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// The threads a batched call uses: the calling thread plus the pool's `threads - 1` workers.
struct Threads {
    threads: usize,
    pool: Arc<ThreadPool>,
}

static POOL: OnceLock<RwLock<Arc<Threads>>> = OnceLock::new();

fn default_threads() -> usize {
    std::env::var("FASTLOGITS_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `n` threads in all: the caller works too, so the pool holds `n - 1` workers (one idle worker when
/// `n == 1`, never used). A part of the rows then always lands on the same worker, whose cache still
/// holds them from the validation pass.
fn build(n: usize) -> Result<Arc<Threads>> {
    let pool = ThreadPoolBuilder::new()
        .num_threads(n.saturating_sub(1).max(1))
        .thread_name(|i| format!("fastlogits-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::param(format!("could not start {n} threads: {e}")))?;
    Ok(Arc::new(Threads { threads: n, pool }))
}

fn cell() -> &'static RwLock<Arc<Threads>> {
    POOL.get_or_init(|| RwLock::new(build(default_threads()).expect("starting the fastlogits thread pool")))
}

fn current() -> Arc<Threads> {
    cell().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Number of threads used by batched calls (the calling thread included).
pub fn num_threads() -> usize {
    current().threads
}

/// Replaces the pool by one with `n` threads (`0`: the default, `FASTLOGITS_NUM_THREADS` or the number
/// of CPUs). Calls already running finish on the old pool.
pub fn set_num_threads(n: usize) -> Result<()> {
    let n = if n == 0 { default_threads() } else { n };
    if n > 4096 {
        return Err(Error::param(format!("`num_threads` must be in [0, 4096], but is {n}")));
    }
    let p = build(n)?;
    *cell().write().unwrap_or_else(|e| e.into_inner()) = p;
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

/// Splits `items` into `threads` contiguous parts and runs `f(first_index, part)` on each: the calling
/// thread takes the first part itself and the pool the others (one wake-up, no idle caller).
fn split_run<T: Send>(items: &mut [T], threads: usize, f: &(impl Fn(usize, &mut [T]) + Sync)) {
    if threads <= 1 {
        f(0, items);
        return;
    }
    let size = items.len().div_ceil(threads);
    let mut parts = items.chunks_mut(size);
    let first = parts.next().expect("at least one part");
    current().pool.in_place_scope(|s| {
        for (k, part) in parts.enumerate() {
            s.spawn(move |_| f((k + 1) * size, part));
        }
        f(0, first);
    });
}

/// Calls `f(i, item)` for every item; in parallel when the work (`elements` values in all) is large
/// enough.
pub fn for_each_mut<T: Send>(items: &mut [T], elements: usize, f: impl Fn(usize, &mut T) + Sync + Send) {
    let threads = threads_for(items.len(), elements);
    split_run(items, threads, &|start, part: &mut [T]| {
        for (j, t) in part.iter_mut().enumerate() {
            f(start + j, t);
        }
    });
}

/// Checks `f(i)` for `i in 0..n`, in parallel when large enough, and returns the error of the lowest `i`.
pub fn check_all(n: usize, elements: usize, f: impl Fn(usize) -> Result<()> + Sync + Send) -> Result<()> {
    let threads = threads_for(n, elements);
    if threads <= 1 {
        return (0..n).try_for_each(f);
    }
    let mut results: Vec<Result<()>> = (0..n).map(|_| Ok(())).collect();
    split_run(&mut results, threads, &|start, part: &mut [Result<()>]| {
        for (j, r) in part.iter_mut().enumerate() {
            *r = f(start + j);
            if r.is_err() {
                break; // later rows of this part cannot hold a lower index
            }
        }
    });
    results.into_iter().collect()
}
