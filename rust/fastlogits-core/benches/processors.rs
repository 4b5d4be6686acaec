//! Criterion micro-benchmarks of the core on one GPT-2-sized row (V = 50257), "typical" logits
//! (Zipf exponent 1.5 over a shuffled vocabulary). The comparison with transformers lives in the
//! repository's benches/ (Python), since it needs torch.

use criterion::{criterion_group, criterion_main, Criterion};
use fastlogits_core::{sampling, PerRow, Pipeline, Processor};

const V: usize = 50257;

fn typical_row(seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    let mut perm: Vec<usize> = (0..V).collect();
    for i in (1..V).rev() {
        perm.swap(i, next() % (i + 1));
    }
    let mut row = vec![0.0f32; V];
    for (rank, &tok) in perm.iter().enumerate() {
        row[tok] = -1.5 * ((rank + 1) as f32).ln();
    }
    row
}

fn flat_row(seed: u64) -> Vec<f32> {
    // N(0, 0.5) by Box-Muller: entropy ~10.7 nats at V = 50257, like a random-init GPT-2.
    let mut s = seed;
    let mut u = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..V)
        .map(|_| (0.5 * (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos()) as f32)
        .collect()
}

fn bench(c: &mut Criterion) {
    let flat = flat_row(2);
    for (name, procs) in [
        ("flat/top_p_0.95", vec![Processor::top_p(PerRow::All(0.95), f32::NEG_INFINITY, 1).unwrap()]),
        ("flat/typical_0.9", vec![Processor::typical(0.9, f32::NEG_INFINITY, 1).unwrap()]),
    ] {
        let mut p = Pipeline::new(procs);
        let mut row = flat.clone();
        let ids: Vec<i64> = vec![];
        c.bench_function(name, |b| {
            b.iter(|| {
                row.copy_from_slice(&flat);
                p.apply(&ids, 0, &mut row, V).unwrap();
            })
        });
    }
    let base = typical_row(1);
    let ids: Vec<i64> = (0..256).map(|i| (i * 7919 % V) as i64).collect();
    let neg = f32::NEG_INFINITY;
    let cases: Vec<(&str, Vec<Processor>)> = vec![
        ("top_k_50", vec![Processor::top_k(PerRow::All(50), neg, 1).unwrap()]),
        ("top_p_0.95", vec![Processor::top_p(PerRow::All(0.95), neg, 1).unwrap()]),
        ("min_p_0.05", vec![Processor::min_p(PerRow::All(0.05), neg, 1).unwrap()]),
        (
            "chain",
            vec![
                Processor::repetition_penalty(PerRow::All(1.2), PerRow::All(0)).unwrap(),
                Processor::no_repeat_ngram(3).unwrap(),
                Processor::temperature(PerRow::All(0.8)).unwrap(),
                Processor::top_k(PerRow::All(50), neg, 1).unwrap(),
                Processor::top_p(PerRow::All(0.95), neg, 1).unwrap(),
            ],
        ),
    ];
    for (name, procs) in cases {
        let mut p = Pipeline::new(procs);
        let mut row = base.clone();
        c.bench_function(name, |b| {
            b.iter(|| {
                row.copy_from_slice(&base);
                p.apply(&ids, ids.len(), &mut row, V).unwrap();
            })
        });
    }
    let mut out = [0i64];
    c.bench_function("sample_dense", |b| {
        b.iter(|| sampling::sample(&base, V, &sampling::Seeds::Shared(1), 0, &mut out).unwrap())
    });
    c.bench_function("copy_row (floor)", |b| {
        let mut row = base.clone();
        b.iter(|| row.copy_from_slice(&base))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
