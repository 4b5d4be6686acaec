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
