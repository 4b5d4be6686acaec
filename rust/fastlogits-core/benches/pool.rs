//! The pool's reason to exist, re-measured: `pool::for_each_mut` (the caller claims rows itself and never
//! waits for a worker to wake up) against rayon's `ThreadPool::install(par_chunks_mut(..).for_each(..))`
//! on a pool of as many threads, for the per-row work of a decoding step (one read and one write of a
//! V = 50257 row, a temperature's worth) at B = 2, 8 and 64. See the `pool` module's documentation.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fastlogits_core::pool;
use rayon::prelude::*;

const V: usize = 50257;

fn row_work(row: &mut [f32]) {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    for x in row.iter_mut() {
        *x = (*x - m) * 1.25;
    }
}

fn bench(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    pool::set_num_threads(threads).unwrap();
    // rayon's pool with the same number of threads in all (its `install` runs on a worker: the caller
    // blocks meanwhile).
    let rayon_pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut g = c.benchmark_group(format!("pool/{threads}_threads"));
    for batch in [2usize, 8, 64] {
        let mut buf: Vec<f32> = (0..batch * V).map(|i| (i % 977) as f32 * 0.01).collect();
        g.bench_with_input(BenchmarkId::new("fastlogits_for_each_mut", batch), &batch, |b, _| {
            b.iter(|| {
                let mut rows: Vec<&mut [f32]> = buf.chunks_mut(V).collect();
                pool::for_each_mut(&mut rows, batch * V, |_, r| row_work(r));
            })
        });
        g.bench_with_input(BenchmarkId::new("rayon_install_par_iter", batch), &batch, |b, _| {
            b.iter(|| rayon_pool.install(|| buf.par_chunks_mut(V).for_each(row_work)))
        });
        g.bench_with_input(BenchmarkId::new("one_thread", batch), &batch, |b, _| {
            b.iter(|| buf.chunks_mut(V).for_each(row_work))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
