//! Property tests of the core's invariants, on random batches (the Python suite compares with transformers;
//! these check the core against itself: fused vs one processor at a time, incremental vs rebuilt state,
//! errors vs the untouched buffer, the fused draw vs the plain sampler).

use fastlogits_core::sampling::Seeds;
use fastlogits_core::{sampling, PerRow, Pipeline, Processor};
use proptest::prelude::*;

const NEG_INF: f32 = f32::NEG_INFINITY;

/// A batch: `(batch, vocab, history length, scores, ids)`. Scores mix a wide range, exact repeats and `-inf`.
fn batch() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<i64>)> {
    (1usize..5, 1usize..400, 0usize..24).prop_flat_map(|(b, v, l)| {
        let score = prop_oneof![
            6 => -20.0f32..20.0,
            1 => Just(1.5f32),
            1 => Just(NEG_INF),
        ];
        (
            Just(b),
            Just(v),
            Just(l),
            prop::collection::vec(score, b * v),
            prop::collection::vec(0..v as i64, b * l),
        )
    })
}

/// A sampling chain of the shape `generate` builds (point updates, temperature, top-k): every value it
/// produces is computed the same way whether fused or not, so the results must be bit-identical.
fn chain() -> impl Strategy<Value = Vec<Processor>> {
    let k = prop_oneof![3 => 1i64..60, 1 => 60i64..500]; // large k: kept sets beyond the sparse cap
    (0.5f64..3.0, 1i64..4, 0.2f64..3.0, k, any::<bool>()).prop_map(|(pen, n, t, k, with_ngram)| {
        let mut p = vec![Processor::repetition_penalty(PerRow::All(pen), PerRow::All(0)).unwrap()];
        if with_ngram {
            p.push(Processor::no_repeat_ngram(n).unwrap());
        }
        p.push(Processor::temperature(PerRow::All(t)).unwrap());
        p.push(Processor::top_k(PerRow::All(k), NEG_INF, 1).unwrap());
        p
    })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fused_chain_equals_one_processor_at_a_time((b, v, l, scores, ids) in batch(), procs in chain()) {
        let mut fused = scores.clone();
        Pipeline::new(procs.clone()).apply(&ids, l, &mut fused, v).unwrap();
        let mut single = scores.clone();
        for p in procs {
            Pipeline::new(vec![p]).apply(&ids, l, &mut single, v).unwrap();
        }
        prop_assert_eq!(bits(&fused), bits(&single), "B={} V={} L={}", b, v, l);
    }

    #[test]
    fn into_a_new_buffer_equals_in_place_and_leaves_the_input(
        (_b, v, l, scores, ids) in batch(),
        procs in chain(),
        top_p in prop::option::of(0.05f64..1.0),
        garbage in any::<f32>(),
    ) {
        // The fused chain, and a non-fused one (a top-p first), both through apply_from: the result must
        // not depend on what the output buffer held (it is not copied into first: see `row::Overlay`).
        let mut procs = procs;
        if let Some(p) = top_p {
            procs.insert(0, Processor::top_p(PerRow::All(p), NEG_INF, 1).unwrap());
        }
        let mut want = scores.clone();
        Pipeline::new(procs.clone()).apply(&ids, l, &mut want, v).unwrap();
        let mut out = vec![garbage; scores.len()];
        Pipeline::new(procs).apply_from(&ids, l, &scores, &mut out, v).unwrap();
        prop_assert_eq!(bits(&out), bits(&want));
    }

    #[test]
    fn incremental_history_equals_a_rebuild((b, v, l, scores, ids) in batch(), procs in chain()) {
        // One pipeline sees the histories grow token by token; a fresh one sees only the last.
        let mut inc = Pipeline::new(procs.clone());
        let mut out = scores.clone();
        for n in 0..=l {
            let prefix: Vec<i64> = (0..b).flat_map(|r| ids[r * l..r * l + n].to_vec()).collect();
            out.copy_from_slice(&scores);
            inc.apply(&prefix, n, &mut out, v).unwrap();
        }
        let mut fresh = scores.clone();
        Pipeline::new(procs).apply(&ids, l, &mut fresh, v).unwrap();
        prop_assert_eq!(bits(&out), bits(&fresh));
    }

    #[test]
    fn bad_scores_leave_the_buffer_unchanged(
        (_b, v, l, mut scores, ids) in batch(),
        procs in chain(),
        pos in any::<prop::sample::Index>(),
        nan in any::<bool>(),
        draw in any::<bool>(),
    ) {
        let at = pos.index(scores.len());
        scores[at] = if nan { f32::NAN } else { f32::INFINITY };
        let before = bits(&scores);
        let mut p = Pipeline::new(procs);
        let r = if draw {
            let mut out = vec![0i64; scores.len() / v];
            p.apply_and_sample(&ids, l, &mut scores, v, &Seeds::Shared(7), 3, &mut out, nan)
        } else {
            p.apply(&ids, l, &mut scores, v)
        };
        prop_assert!(r.is_err());
        prop_assert_eq!(bits(&scores), before);
    }

    #[test]
    fn fused_draw_is_the_sampler_on_the_processed_scores(
        (_b, v, l, scores, ids) in batch(),
        procs in chain(),
        seed in any::<u64>(),
        per_row in any::<bool>(),
        step in 0u64..1000,
    ) {
        let b = scores.len() / v;
        // One seed for the batch, or a key per row.
        let seeds = if per_row {
            Seeds::PerRow((0..b as u64).map(|r| seed.wrapping_mul(r + 1)).collect::<Vec<_>>().into())
        } else {
            Seeds::Shared(seed)
        };
        let mut processed = scores.clone();
        Pipeline::new(procs.clone()).apply(&ids, l, &mut processed, v).unwrap();
        // Rows the chain leaves all -inf are an error for every sampler.
        prop_assume!(processed.chunks(v).all(|row| row.iter().any(|&x| x > NEG_INF)));
        let mut expect = vec![0i64; b];
        sampling::sample(&processed, v, &seeds, step, &mut expect).unwrap();
        for write in [true, false] {
            let mut buf = scores.clone();
            let mut got = vec![0i64; b];
            Pipeline::new(procs.clone()).apply_and_sample(&ids, l, &mut buf, v, &seeds, step, &mut got, write).unwrap();
            prop_assert_eq!(&got, &expect, "write_scores = {}", write);
            if write {
                prop_assert_eq!(bits(&buf), bits(&processed));
            }
        }
    }
}
