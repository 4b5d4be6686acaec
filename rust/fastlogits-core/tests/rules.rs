//! Every warper and rule of the core against its definition (transformers 5.23's `logits_process.py`),
//! written here the slow, obvious way: a full sort in f64. The Python suite compares with transformers
//! itself; these keep `cargo test` meaningful without Python.

use fastlogits_core::{PerRow, Pipeline, Processor};
use proptest::prelude::*;

const NEG_INF: f32 = f32::NEG_INFINITY;

fn run(p: Processor, ids: &[i64], len: usize, scores: &[f32]) -> Vec<f32> {
    let mut out = scores.to_vec();
    Pipeline::new(vec![p]).apply(ids, len, &mut out, scores.len()).unwrap();
    out
}

fn kept(row: &[f32]) -> Vec<bool> {
    row.iter().map(|&x| x > NEG_INF).collect()
}

/// Probabilities in f64 of a row (softmax).
fn probs(row: &[f32]) -> Vec<f64> {
    let m = row.iter().cloned().fold(NEG_INF, f32::max) as f64;
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// Indices sorted by a key, ascending (ties: lower index first).
fn order(keys: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    idx.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]).then(a.cmp(&b)));
    idx
}

/// Top-p: sort ascending, remove while the cumulative mass is <= 1 - p, keep the last `min_keep`.
fn top_p_ref(row: &[f32], p: f64, min_keep: usize) -> Vec<bool> {
    let pr = probs(row);
    let idx = order(&pr);
    let mut keep = vec![true; row.len()];
    let mut cum = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        cum += pr[i];
        if cum <= 1.0 - p && rank + min_keep < row.len() {
            keep[i] = false;
        }
    }
    keep
}

/// Typical: keys |-log p - H| ascending, keep up to the first token whose cumulative mass reaches `mass`.
fn typical_ref(row: &[f32], mass: f64) -> Vec<bool> {
    let pr = probs(row);
    let h: f64 = -pr.iter().filter(|&&p| p > 0.0).map(|p| p * p.ln()).sum::<f64>();
    let keys: Vec<f64> = pr.iter().map(|p| (-p.ln() - h).abs()).collect();
    let idx = order(&keys);
    let mut keep = vec![false; row.len()];
    let mut cum = 0.0;
    for &i in &idx {
        keep[i] = true;
        cum += pr[i];
        if cum >= mass {
            break;
        }
    }
    keep
}

/// Margin of a cumulative-mass rule: how close any prefix sum (in the rule's order) comes to `target`.
fn margin(pr: &[f64], idx: &[usize], target: f64) -> f64 {
    let mut cum = 0.0;
    let mut best = f64::INFINITY;
    for &i in idx {
        cum += pr[i];
        best = best.min((cum - target).abs());
    }
    best
}

#[test]
fn examples_by_hand() {
    let row: Vec<f32> = [0.5f64, 0.3, 0.15, 0.05].iter().map(|p| p.ln() as f32).collect();
    let p = |x: Processor| kept(&run(x, &[], 0, &row));
    // top-p 0.8: ascending cumsum 0.05, 0.2, 0.5, 1.0; removed while <= 0.2.
    assert_eq!(p(Processor::top_p(PerRow::All(0.8), NEG_INF, 1).unwrap()), [true, true, false, false]);
    // min-p 0.5: removed below 0.5 * 0.5.
    assert_eq!(p(Processor::min_p(PerRow::All(0.5), NEG_INF, 1).unwrap()), [true, true, false, false]);
    // epsilon 0.1: removed below 0.1.
    assert_eq!(p(Processor::epsilon(0.1, NEG_INF, 1).unwrap()), [true, true, true, false]);
    // eta 0.2: threshold min(0.2, sqrt(0.2) * exp(-H)), H = 1.14 nats: 0.143.
    assert_eq!(p(Processor::eta(0.2, NEG_INF, 1).unwrap()), [true, true, true, false]);
    // top-k 2, and a kept minimum of 3 tokens.
    assert_eq!(p(Processor::top_k(PerRow::All(2), NEG_INF, 1).unwrap()), [true, true, false, false]);
    assert_eq!(p(Processor::top_k(PerRow::All(2), NEG_INF, 3).unwrap()), [true, true, true, false]);
    // typical 0.5: keys |-ln p - H| = 0.45, 0.06, 0.76, 1.86; mass 0.3 then 0.8 reaches 0.5.
    assert_eq!(p(Processor::typical(0.5, NEG_INF, 1).unwrap()), [true, true, false, false]);
    // A finite filter value.
    assert_eq!(run(Processor::min_p(PerRow::All(0.5), -5.0, 1).unwrap(), &[], 0, &row)[3], -5.0);
}

#[test]
fn length_rules_and_biases() {
    let row = [1.0f32, 2.0, 3.0, 4.0];
    let ids: Vec<i64> = vec![0, 1, 2];
    // min_length: EOS banned while the history is shorter.
    assert_eq!(run(Processor::min_length(4, &[3]).unwrap(), &ids, 3, &row)[3], NEG_INF);
    assert_eq!(run(Processor::min_length(3, &[3]).unwrap(), &ids, 3, &row)[3], 4.0);
    // min_new_tokens: after a prompt of 2, one new token so far.
    assert_eq!(run(Processor::min_new_tokens(2, 2, &[3]).unwrap(), &ids, 3, &row)[3], NEG_INF);
    assert_eq!(run(Processor::min_new_tokens(2, 1, &[3]).unwrap(), &ids, 3, &row)[3], 4.0);
    // suppress at the beginning: only when the length is the index.
    assert_eq!(run(Processor::suppress_tokens_at_begin(&[0], 3).unwrap(), &ids, 3, &row)[0], NEG_INF);
    assert_eq!(run(Processor::suppress_tokens_at_begin(&[0], 2).unwrap(), &ids, 3, &row)[0], 1.0);
    // exponential decay: start 1 + prompt 1, length 3: s + |s| * (1.5^1 - 1).
    assert_eq!(run(Processor::exponential_decay(1.0, 1.5, &[3], 1.0).unwrap(), &ids, 3, &row)[3], 6.0);
    // sequence bias: (1, 2) -> +10 on 2 applies (the history ends with 1); (0, 3) does not.
    let sb = Processor::sequence_bias(vec![(vec![2, 1], 10.0), (vec![0, 3], 10.0), (vec![0], -1.0)]).unwrap();
    assert_eq!(run(sb, &ids, 3, &row), [0.0, 12.0, 3.0, 4.0]);
    // bad words: [2, 3] bans 3 after a history ending with 2; [1] always.
    let bw = Processor::bad_words(vec![vec![2, 3], vec![1]], None).unwrap();
    assert_eq!(run(bw, &ids, 3, &row), [1.0, NEG_INF, 3.0, NEG_INF]);
    // repetition penalty over the history: 0, 1, 2.
    assert_eq!(
        run(
            Processor::repetition_penalty(PerRow::All(2.0), PerRow::All(0)).unwrap(),
            &ids,
            3,
            &[-1.0, 2.0, 3.0, 4.0]
        ),
        [-2.0, 1.0, 1.5, 4.0]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mass_rules_follow_their_definition(
        row in prop::collection::vec(-8.0f32..8.0, 2..300),
        p in 0.05f64..0.99,
        min_keep in 1usize..4,
    ) {
        let pr = probs(&row);
        // Exclude boundaries closer than float32 rounding can decide (and exact ties).
        let asc = order(&pr);
        prop_assume!(margin(&pr, &asc, 1.0 - p) > 1e-5);
        let got = kept(&run(Processor::top_p(PerRow::All(p), NEG_INF, min_keep as i64).unwrap(), &[], 0, &row));
        prop_assert_eq!(got, top_p_ref(&row, p, min_keep));

        let h: f64 = -pr.iter().filter(|&&q| q > 0.0).map(|q| q * q.ln()).sum::<f64>();
        let keys: Vec<f64> = pr.iter().map(|q| (-q.ln() - h).abs()).collect();
        let by_key = order(&keys);
        prop_assume!(margin(&pr, &by_key, p) > 1e-5);
        let sorted_keys: Vec<f64> = by_key.iter().map(|&i| keys[i]).collect();
        prop_assume!(sorted_keys.windows(2).all(|w| w[1] - w[0] > 1e-5));
        let got = kept(&run(Processor::typical(p, NEG_INF, 1).unwrap(), &[], 0, &row));
        prop_assert_eq!(got, typical_ref(&row, p));
    }

    #[test]
    fn threshold_rules_follow_their_definition(
        row in prop::collection::vec(-8.0f32..8.0, 2..300),
        q in 0.001f64..0.5,
    ) {
        let pr = probs(&row);
        let max = pr.iter().cloned().fold(0.0, f64::max);
        let h: f64 = -pr.iter().map(|x| x * x.ln()).sum::<f64>();
        let eta = q.min(q.sqrt() * (-h).exp());
        for (thr, proc) in [
            (q * max, Processor::min_p(PerRow::All(q), NEG_INF, 1).unwrap()),
            (q, Processor::epsilon(q, NEG_INF, 1).unwrap()),
            (eta, Processor::eta(q, NEG_INF, 1).unwrap()),
        ] {
            prop_assume!(pr.iter().all(|x| (x - thr).abs() > 1e-6 * thr.max(1e-12)));
            let got = kept(&run(proc, &[], 0, &row));
            // Removed below the threshold, except the most likely token (min_tokens_to_keep = 1).
            let top = order(&pr)[row.len() - 1];
            let want: Vec<bool> = pr.iter().enumerate().map(|(i, &x)| x >= thr || i == top).collect();
            prop_assert_eq!(got, want);
        }
    }
}

// -- the samplers transformers lacks (llama.cpp's definitions) -------------------------------------------

#[test]
fn top_n_sigma_keeps_scores_within_n_sigma_of_the_max() {
    // finite 1, 2, 3 (mean 2, population sigma sqrt(2/3) = 0.816): n = 1 cuts at 2.18, n = 2 at 1.37.
    let row = [1.0f32, 2.0, 3.0, NEG_INF];
    let one = run(Processor::top_n_sigma(1.0.into(), NEG_INF).unwrap(), &[], 0, &row);
    assert_eq!(kept(&one), [false, false, true, false]);
    let two = run(Processor::top_n_sigma(2.0.into(), NEG_INF).unwrap(), &[], 0, &row);
    assert_eq!(kept(&two), [false, true, true, false]);
    // A constant added to every score changes nothing.
    let far: Vec<f32> = row.iter().map(|x| x + 30_000.0).collect();
    let moved = run(Processor::top_n_sigma(2.0.into(), NEG_INF).unwrap(), &[], 0, &far);
    assert_eq!(kept(&moved), kept(&two));
    assert!(Processor::top_n_sigma(0.0.into(), NEG_INF).is_err());
}

#[test]
fn dynamic_temperature_follows_the_normalized_entropy() {
    let row = [0.5f32, -1.0, 2.0, 0.0];
    let pr = probs(&row);
    let h: f64 = -pr.iter().map(|p| p * p.ln()).sum::<f64>();
    let (t, r, e) = (1.0, 0.5, 2.0);
    let dyn_t = (t - r) + 2.0 * r * (h / 4f64.ln()).powf(e);
    let out = run(Processor::dynamic_temperature(t.into(), r.into(), e.into()).unwrap(), &[], 0, &row);
    for (o, x) in out.iter().zip(row) {
        assert!(((*o as f64) - x as f64 / dyn_t).abs() < 1e-5, "{o} vs {}", x as f64 / dyn_t);
    }
    // range 0: the plain temperature.
    let plain =
        run(Processor::dynamic_temperature(0.7.into(), 0.0.into(), 1.0.into()).unwrap(), &[], 0, &row);
    assert_eq!(plain, run(Processor::temperature(0.7.into()).unwrap(), &[], 0, &row));
}

#[test]
fn xtc_removes_all_top_choices_but_the_least_likely() {
    // p ~ 0.47, 0.29, 0.17, 0.06: threshold 0.15 qualifies the first three; the third stays.
    let row = [2.0f32, 1.5, 1.0, 0.0];
    let out = run(Processor::xtc(0.15.into(), 1.0.into(), 1, 0).unwrap(), &[], 0, &row);
    assert_eq!(kept(&out), [false, false, true, true]);
    // Fewer than two qualify, or min_keep not left: unchanged.
    assert_eq!(run(Processor::xtc(0.4.into(), 1.0.into(), 1, 0).unwrap(), &[], 0, &row), row);
    assert_eq!(run(Processor::xtc(0.15.into(), 1.0.into(), 3, 0).unwrap(), &[], 0, &row), row);
    // Probability 0: never.
    assert_eq!(run(Processor::xtc(0.15.into(), 0.0.into(), 1, 0).unwrap(), &[], 0, &row), row);
}

#[test]
fn dry_penalizes_the_token_that_would_extend_a_repeat() {
    // llama.cpp's example: a b c c b c y a b c. "a b c" repeats (3) before c, "b c" (2) before y.
    let hist = [0i64, 1, 2, 2, 1, 2, 3, 0, 1, 2];
    let out = run(Processor::dry(1.0, 2.0, 2, &[], -1).unwrap(), &hist, hist.len(), &[0.0; 5]);
    assert_eq!(out, [0.0, 0.0, -2.0, -1.0, 0.0]);
    // The window: only the last 4 tokens (y a b c) count: no repeat of length 2.
    let out = run(Processor::dry(1.0, 2.0, 2, &[], 4).unwrap(), &hist, hist.len(), &[0.0; 5]);
    assert_eq!(out, [0.0; 5]);
    assert!(Processor::dry(1.0, 0.5, 2, &[], -1).is_err());
    assert!(Processor::dry(1.0, 2.0, 0, &[], -1).is_err());
}
