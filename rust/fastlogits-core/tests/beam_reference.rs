//! Beam search against a direct port of transformers 5.23's `GenerationMixin._beam_search` loop body
//! (fixed-size `B x K x max_length` buffers as transformers allocates them, full stable sorts instead of
//! selection): every step's tokens, source rows, running sequences and scores, and the final output, bit
//! for bit, on random configurations and log-probs with ties and `-inf`. Public API only.

use fastlogits_core::beam::{BeamConfig, BeamSearch, EarlyStopping, FinalOutput, StepOutput, MASK};
use fastlogits_core::sampling::Seeds;
use proptest::prelude::*;

#[path = "common/log_probs.rs"]
mod log_probs;
use log_probs::{lcg, make_log_probs};

/// A direct port of transformers' `_beam_search` loop body on fixed-size buffers (`B x K x
/// max_length`, as transformers allocates them), with full sorts instead of selection.
struct Reference {
    cfg: BeamConfig,
    plen: usize,
    cur_len: usize,
    seq_run: Vec<Vec<Vec<i64>>>,
    seq_fin: Vec<Vec<Vec<i64>>>,
    sc_run: Vec<Vec<f32>>,
    sc_fin: Vec<Vec<f32>>,
    bi_run: Vec<Vec<Vec<i64>>>,
    bi_fin: Vec<Vec<Vec<i64>>>,
    fin: Vec<Vec<bool>>,
    unsat: Vec<bool>,
}

fn stable_desc(v: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx
}

impl Reference {
    fn new(cfg: &BeamConfig, prompt: &[i64], plen: usize) -> Self {
        let (bs, k, ml) = (cfg.batch_size, cfg.num_beams, cfg.max_length);
        let fill = cfg.fill_value();
        let seq_run: Vec<Vec<Vec<i64>>> = (0..bs)
            .map(|b| {
                (0..k)
                    .map(|j| {
                        let r = b * k + j;
                        let mut s = vec![fill; ml];
                        s[..plen].copy_from_slice(&prompt[r * plen..(r + 1) * plen]);
                        s
                    })
                    .collect()
            })
            .collect();
        Reference {
            cfg: cfg.clone(),
            plen,
            cur_len: plen,
            seq_fin: seq_run.clone(),
            seq_run,
            sc_run: (0..bs).map(|_| (0..k).map(|j| if j == 0 { 0.0 } else { MASK }).collect()).collect(),
            sc_fin: vec![vec![MASK; k]; bs],
            bi_run: vec![vec![vec![-1; ml - plen]; k]; bs],
            bi_fin: vec![vec![vec![-1; ml - plen]; k]; bs],
            fin: vec![vec![false; k]; bs],
            unsat: vec![true; bs],
        }
    }

    fn step(&mut self, lp: &[f32], v: usize) -> StepOutput {
        let c = self.cfg.clone();
        let (k, keep, cl, pl) = (c.num_beams, c.beams_to_keep(), self.cur_len, self.plen);
        let mut all_hit = true;
        let (mut toks, mut srcs) = (vec![], vec![]);
        for b in 0..c.batch_size {
            let acc: Vec<f32> =
                (0..k * v).map(|f| lp[(b * k + f / v) * v + f % v] + self.sc_run[b][f / v]).collect();
            let top: Vec<usize> = stable_desc(&acc)[..keep].to_vec();
            let vals: Vec<f32> = top.iter().map(|&f| acc[f]).collect();
            let mut tseq = vec![];
            let mut tbi = vec![];
            let mut hits = vec![];
            for &f in &top {
                let mut s = self.seq_run[b][f / v].clone();
                s[cl] = (f % v) as i64;
                tseq.push(s);
                let mut bi = self.bi_run[b][f / v].clone();
                bi[cl - pl] = (b * k + f / v) as i64;
                tbi.push(bi);
                hits.push(cl + 1 >= c.max_length || c.eos_token_ids.contains(&((f % v) as i64)));
            }
            all_hit &= hits.iter().all(|&h| h);
            let trl: Vec<f32> =
                vals.iter().zip(&hits).map(|(&x, &h)| x + if h { MASK } else { -0.0 }).collect();
            let nxt = stable_desc(&trl);
            for (i, &n) in nxt[..k].iter().enumerate() {
                self.seq_run[b][i] = tseq[n].clone();
                self.sc_run[b][i] = trl[n];
                self.bi_run[b][i] = tbi[n].clone();
                toks.push(tseq[n][cl]);
                srcs.push(tbi[n][cl - pl]);
            }
            let denom = ((cl + 1 - pl) as f64).powf(c.length_penalty) as f32;
            let full = c.early_stopping == EarlyStopping::True && self.fin[b].iter().all(|&x| x);
            let mut msc = self.sc_fin[b].clone();
            let mut mseq = self.seq_fin[b].clone();
            let mut mbi = self.bi_fin[b].clone();
            let mut mfin = self.fin[b].clone();
            for ci in 0..keep {
                let did = hits[ci] && ci < k;
                let mut t = vals[ci] / denom;
                t += if full { MASK } else { -0.0 };
                t += if !self.unsat[b] { MASK } else { -0.0 };
                t += if !did { MASK } else { -0.0 };
                msc.push(t);
                mseq.push(tseq[ci].clone());
                mbi.push(tbi[ci].clone());
                mfin.push(did);
            }
            let m = stable_desc(&msc);
            for (i, &j) in m[..k].iter().enumerate() {
                self.sc_fin[b][i] = msc[j];
                self.seq_fin[b][i] = mseq[j].clone();
                self.bi_fin[b][i] = mbi[j].clone();
                self.fin[b][i] = mfin[j];
            }
        }
        self.cur_len += 1;
        let hl = if c.early_stopping == EarlyStopping::Never && c.length_penalty > 0.0 {
            c.max_length - pl
        } else {
            self.cur_len - pl
        };
        let d = (hl as f64).powf(c.length_penalty) as f32;
        for b in 0..c.batch_size {
            let best = self.sc_run[b][0] / d;
            let worst = self.sc_fin[b].iter().cloned().fold(f32::INFINITY, f32::min);
            let any = (0..k).any(|j| best > if self.fin[b][j] { worst } else { -1.0e9 });
            self.unsat[b] = self.unsat[b] && any;
        }
        let open = !(self.fin.iter().flatten().all(|&x| x) && c.early_stopping == EarlyStopping::True);
        let done = !(self.unsat.iter().any(|&u| u) && open && !all_hit);
        StepOutput { next_tokens: toks, beam_idx: srcs, done }
    }

    fn running(&self) -> Vec<i64> {
        self.seq_run.iter().flatten().flat_map(|s| s[..self.cur_len].to_vec()).collect()
    }

    fn finalize(&self) -> FinalOutput {
        let n = self.cfg.num_return_sequences;
        let mut seqs = vec![];
        let mut scores = vec![];
        let mut bis = vec![];
        for b in 0..self.cfg.batch_size {
            for j in 0..n {
                seqs.push(self.seq_fin[b][j].clone());
                scores.push(self.sc_fin[b][j]);
                bis.push(self.bi_fin[b][j].clone());
            }
        }
        let generated = bis.iter().map(|r| r.iter().filter(|&&x| x + 1 != 0).count()).max().unwrap();
        let seq_len = self.plen + generated;
        FinalOutput {
            rows: seqs.len(),
            sequences: seqs.iter().flat_map(|s| s[..seq_len].to_vec()).collect(),
            seq_len,
            sequences_scores: scores,
            beam_indices: bis.iter().flat_map(|s| s[..generated].to_vec()).collect(),
            generated,
        }
    }
}

fn same_floats(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn run_both(cfg: &BeamConfig, plen: usize, v: usize, seed: u64, coarse: bool) {
    let rows = cfg.batch_size * cfg.num_beams;
    let mut r = lcg(seed ^ 0xABCD);
    let prompt: Vec<i64> = (0..rows * plen).map(|_| (r() % v as u64) as i64).collect();
    let mut bs = BeamSearch::new(cfg.clone(), &prompt, plen).unwrap();
    let mut rf = Reference::new(cfg, &prompt, plen);
    let mut step = 0u64;
    loop {
        let lp = make_log_probs(rows, v, seed.wrapping_add(step * 7919), coarse);
        let got = bs.step(&lp, v).unwrap();
        let want = rf.step(&lp, v);
        assert_eq!(got, want, "step {step}");
        assert_eq!(bs.running_sequences(), rf.running().as_slice(), "step {step}");
        let got_scores: Vec<f32> = rf.sc_run.iter().flatten().cloned().collect();
        assert!(same_floats(bs.running_scores(), &got_scores));
        // Every new row continues a row of its own entry.
        for (i, &s) in got.beam_idx.iter().enumerate() {
            let k = cfg.num_beams as i64;
            assert_eq!(s / k, i as i64 / k);
        }
        step += 1;
        if got.done {
            break;
        }
        assert!(step < 1000);
    }
    let f = bs.finalize();
    let w = rf.finalize();
    assert_eq!(f.sequences, w.sequences);
    assert_eq!(f.beam_indices, w.beam_indices);
    assert_eq!((f.seq_len, f.generated, f.rows), (w.seq_len, w.generated, w.rows));
    assert!(same_floats(&f.sequences_scores, &w.sequences_scores));
    assert!(bs.step(&make_log_probs(rows, v, 1, coarse), v).is_err());
}

fn config_strategy() -> impl Strategy<Value = (BeamConfig, usize, usize, u64, bool)> {
    (
        1usize..4,
        1usize..6,
        0usize..4,
        prop::sample::select(vec![-2.0f64, -0.5, 0.0, 0.7, 1.0, 2.0]),
        0usize..3,
        1usize..9,
        0usize..4,
        any::<u64>(),
        any::<bool>(),
        (1usize..13, prop::option::of(0i64..3)),
    )
        .prop_flat_map(|(bs, k, neos, lp, es, new, plen, seed, coarse, (v, pad))| {
            (1usize..=k).prop_map(move |nrs| {
                let eos: Vec<i64> = (0..neos as i64).map(|i| (i * 5 + 1) % (v as i64 + 1)).collect();
                let cfg = BeamConfig {
                    batch_size: bs,
                    num_beams: k,
                    length_penalty: lp,
                    early_stopping: [EarlyStopping::True, EarlyStopping::False, EarlyStopping::Never][es],
                    num_return_sequences: nrs,
                    eos_token_ids: eos,
                    pad_token_id: pad,
                    max_length: plen + new,
                    do_sample: false,
                    seed: Seeds::Shared(seed),
                };
                (cfg, plen, v, seed, coarse)
            })
        })
        .prop_filter("beams_to_keep <= K * V", |(c, _, v, _, _)| c.beams_to_keep() <= c.num_beams * v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn matches_reference((cfg, plen, v, seed, coarse) in config_strategy()) {
        run_both(&cfg, plen, v, seed, coarse);
    }
}

#[test]
fn large_vocab_matches_reference() {
    let mut cfg = BeamConfig::new(2, 5, 8);
    cfg.eos_token_ids = vec![3, 17];
    cfg.length_penalty = 1.3;
    run_both(&cfg, 3, 5000, 11, false);
    cfg.early_stopping = EarlyStopping::Never;
    run_both(&cfg, 3, 5000, 12, true);
}
