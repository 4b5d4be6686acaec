//! Beam search bookkeeping with the semantics of transformers 5.23 `generate(num_beams=...)`.
//!
//! [`BeamSearch`] holds what `GenerationMixin._beam_search` keeps between iterations of its loop: the
//! `B x K` running sequences with their scores and beam indices, the `K` best finished hypotheses of
//! every batch entry, the early-stop state and `cur_len`. [`BeamSearch::step`] is one iteration of the
//! loop body, from `log_probs + running_beam_scores` to the stopping test; the caller runs the model and
//! the logits processors (on [`BeamSearch::running_sequences`]) and reorders its KV cache with the
//! returned source rows. [`BeamSearch::finalize`] gives `sequences`, `sequences_scores` and
//! `beam_indices` as `generate(..., return_dict_in_generate=True, output_scores=True)` returns them.
//!
//! Every score is computed with the same float32 operations, in the same order, as transformers:
//! `log_probs + running_beam_scores`; the `-1e9` masks added in float32; the length penalty
//! `score / ((cur_len + 1 - prompt_len) ** length_penalty)` with the divisor computed in f64 (as Python
//! does) and rounded to f32 (as torch does for a float32 tensor divided by a Python float).
//!
//! The `B x (K * V)` candidates are never sorted: every row's `beams_to_keep` best accumulated scores
//! are selected in one read of the row (rows in parallel, by [`crate::select::top_k_shifted`]), and only
//! the `K * beams_to_keep` survivors of an entry are sorted. Beam sampling draws with the sampler's
//! two-level walk ([`crate::sampling`]). The loop body is split as transformers splits it: each private
//! step of [`BeamSearch::step`] names the `GenerationMixin` helper it mirrors.
//!
//! **Ties.** `torch.topk` orders exactly equal values in an implementation-defined way. Here every
//! ranking is by value, descending, then by position, ascending (for the candidates: `beam * V + token`;
//! for the finished hypotheses: old ones before new ones). Results therefore match transformers whenever
//! no two candidates that compete for a place have exactly the same float32 score. (Such ties occur in
//! practice at the first step when beam 0 has fewer than `beams_to_keep` finite log-probs (`V` smaller
//! than `beams_to_keep`, or a processor that bans most tokens): candidates of beams `1..K`, which start
//! at `-1e9`, then compete, and `-1e9 + x` rounds to the same float32 for many `x`. Also among `-inf`
//! scores.) Likewise beam *sampling* draws from the distribution transformers draws from (ordered
//! sampling without replacement, `torch.multinomial(softmax(scores), beams_to_keep)`), with Philox
//! counter-based streams `(seed, batch entry, step)` instead of torch's global generator.
//!
//! ```
//! use fastlogits_core::beam::{BeamConfig, BeamSearch};
//! // One prompt `[7]`, 2 beams (the prompt expanded to 2 rows), EOS = 0, at most 3 new tokens.
//! let mut cfg = BeamConfig::new(1, 2, 4);
//! cfg.eos_token_ids = vec![0];
//! let mut bs = BeamSearch::new(cfg, &[7, 7], 1).unwrap();
//! let v = 4;
//! loop {
//!     // The model's log-softmax (after the processors) for the 2 running rows.
//!     let log_probs: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).cycle().take(2 * v).collect();
//!     let out = bs.step(&log_probs, v).unwrap();
//!     // ... reorder the KV cache with `out.beam_idx`, feed `out.next_tokens` to the model ...
//!     if out.done {
//!         break;
//!     }
//! }
//! let result = bs.finalize();
//! assert_eq!(result.rows, 1);
//! assert_eq!(&result.sequences[..2], &[7, 3]);
//! ```

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::kernels::{dispatch_fn, exp_nonpos, scan_row};
use crate::pool;
use crate::sampling::{block_span, block_sums, remove_weight, walk, Landing, Seeds, BLOCK};
use crate::select::{top_k_shifted, Cand};

/// The mask transformers adds (in float32) to scores that must not be chosen.
pub const MASK: f32 = -1.0e9;

/// `generate(early_stopping=...)`: `True`, `False` or `"never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// Stop an entry as soon as it has `num_beams` finished hypotheses.
    True,
    /// Stop when the best running beam, scored at the current length, cannot beat the worst finished one.
    False,
    /// As `False`, but with `length_penalty > 0` the best running beam is scored at `max_length`.
    Never,
}

/// Parameters of a beam search (the `generate` arguments of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct BeamConfig {
    pub batch_size: usize,
    pub num_beams: usize,
    pub length_penalty: f64,
    pub early_stopping: EarlyStopping,
    pub num_return_sequences: usize,
    /// May be empty (no EOS: every hypothesis runs to `max_length`).
    pub eos_token_ids: Vec<i64>,
    pub pad_token_id: Option<i64>,
    /// Total length (prompt included), as `generate(max_length=...)`.
    pub max_length: usize,
    /// Beam sampling: draw the candidates instead of taking the best ones.
    pub do_sample: bool,
    /// Beam sampling's random streams: one seed (entry `b` draws from `(seed, b)`) or one key per batch
    /// entry (`batch_size` of them).
    pub seed: Seeds<'static>,
}

impl BeamConfig {
    /// The `generate` defaults: `length_penalty = 1`, `early_stopping = False`, one returned sequence, no
    /// EOS, no padding token, no sampling.
    pub fn new(batch_size: usize, num_beams: usize, max_length: usize) -> Self {
        BeamConfig {
            batch_size,
            num_beams,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
            num_return_sequences: 1,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            max_length,
            do_sample: false,
            seed: Seeds::Shared(0),
        }
    }

    /// `max(2, 1 + number of EOS ids) * num_beams`: candidates kept per entry and step.
    pub fn beams_to_keep(&self) -> usize {
        2.max(1 + self.eos_token_ids.len()) * self.num_beams
    }

    /// What transformers pads finished sequences with:
    /// `pad_token_id or eos_token_id[0] if eos_token_id is not None else -1` (Python precedence, and
    /// Python truthiness: a padding id of 0 falls back to the first EOS id).
    pub fn fill_value(&self) -> i64 {
        match self.eos_token_ids.first() {
            None => -1,
            Some(&eos) => match self.pad_token_id {
                Some(p) if p != 0 => p,
                _ => eos,
            },
        }
    }

    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::param("`batch_size` has to be a positive integer, but is 0"));
        }
        if self.num_beams == 0 {
            return Err(Error::param("`num_beams` has to be a positive integer, but is 0"));
        }
        if self.num_return_sequences == 0 {
            return Err(Error::param("`num_return_sequences` has to be a positive integer, but is 0"));
        }
        if self.num_return_sequences > self.num_beams {
            return Err(Error::param(format!(
                "`num_return_sequences` ({}) has to be smaller or equal to `num_beams` ({}).",
                self.num_return_sequences, self.num_beams
            )));
        }
        if !self.length_penalty.is_finite() {
            return Err(Error::param(format!(
                "`length_penalty` has to be a finite float, but is {}",
                self.length_penalty
            )));
        }
        let rows = self.batch_size.checked_mul(self.num_beams);
        if rows.is_none_or(|r| r > u32::MAX as usize) {
            return Err(Error::param("`batch_size * num_beams` is too large (at most 2^32 - 1 rows)"));
        }
        Ok(())
    }
}

/// What one step decided.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// The token appended to each of the `B * K` running rows (the model's next input).
    pub next_tokens: Vec<i64>,
    /// For each new running row, the row (in `[0, B * K)`, batch offset included) it continues: reorder
    /// the KV cache (and any per-row state) with these.
    pub beam_idx: Vec<i64>,
    /// The whole search is over (transformers stops the loop for every entry at once).
    pub done: bool,
}

/// The result, shaped as `generate` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalOutput {
    /// `batch_size * num_return_sequences`.
    pub rows: usize,
    /// `(rows, seq_len)` row-major, padded with [`BeamConfig::fill_value`].
    pub sequences: Vec<i64>,
    /// Prompt length plus the longest generated length among the returned hypotheses.
    pub seq_len: usize,
    /// `(rows,)`: length-penalized scores.
    pub sequences_scores: Vec<f32>,
    /// `(rows, generated)` row-major: the running row each token was appended to, `-1` padded.
    pub beam_indices: Vec<i64>,
    /// `seq_len - prompt_len`.
    pub generated: usize,
}

/// A finished hypothesis slot (`sequences` / `beam_scores` / `beam_indices` / `is_sent_finished` of one
/// beam position).
#[derive(Debug, Clone, Default, PartialEq)]
struct Slot {
    score: f32,
    finished: bool,
    /// Prompt and generated tokens (the rest is fill).
    seq: Vec<i64>,
    /// One per generated token.
    beam_idx: Vec<i64>,
}

/// One running row's best candidates, and whether its log-probs held a NaN or `+inf`.
#[derive(Debug, Default, Clone)]
struct RowCands {
    cands: Vec<Cand>,
    invalid: bool,
}

/// The beam search state of `batch_size` entries with `num_beams` beams each.
#[derive(Debug, Clone)]
pub struct BeamSearch {
    cfg: BeamConfig,
    beams_to_keep: usize,
    prompt_len: usize,
    cur_len: usize,
    steps: u64,
    /// `B*K x cur_len` token ids.
    running: Vec<i64>,
    /// `B*K x (cur_len - prompt_len)`.
    running_idx: Vec<i64>,
    running_scores: Vec<f32>,
    /// `B*K`: for each entry its `K` slots, best first.
    slots: Vec<Slot>,
    /// `is_early_stop_heuristic_unsatisfied`, per entry.
    unsatisfied: Vec<bool>,
    done: bool,
    // Scratch, reused from step to step (never part of the state).
    row_cands: Vec<RowCands>,
    exp_buf: Vec<f32>,
    sums_buf: Vec<f64>,
    spare_running: Vec<i64>,
    spare_idx: Vec<i64>,
}

/// A candidate of a batch entry: `beam * V + token` and its accumulated score.
type Flat = (usize, f32);

/// One entry's weights, block sums and drawn candidates.
type DrawWork<'a> = ((&'a mut [f32], &'a mut [f64]), &'a mut Vec<Flat>);

/// Value descending, then position ascending (a total order: positions are distinct).
#[inline]
fn rank(a: &Flat, b: &Flat) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

dispatch_fn! {
    /// `e[i] = exp((row[i] + s) - max)`, the weights of beam sampling's walk, and their block sums.
    fn exp_block_sums(row: &[f32], s: f32, max: f32, e: &mut [f32], sums: &mut [f64]) {
        for (o, &x) in e.iter_mut().zip(row) {
            *o = exp_nonpos((x + s) - max);
        }
        block_sums(e, sums);
    }
}

/// The running beams of the next iteration, built by
/// [`BeamSearch::get_running_beams_for_next_iteration`] while the current ones are still read.
struct NextRunning {
    /// `B*K x (cur_len + 1)`.
    seqs: Vec<i64>,
    /// `B*K x (cur_len + 1 - prompt_len)`.
    idx: Vec<i64>,
    scores: Vec<f32>,
    next_tokens: Vec<i64>,
    beam_idx: Vec<i64>,
}

impl BeamSearch {
    /// A search over `prompt`: `batch_size * num_beams` rows of `prompt_len` ids, row-major (the prompt
    /// already expanded to one row per beam, as `generate` does with `repeat_interleave`).
    pub fn new(cfg: BeamConfig, prompt: &[i64], prompt_len: usize) -> Result<Self> {
        cfg.validate()?;
        cfg.seed.check(cfg.batch_size, "batch entries")?;
        let rows = cfg.batch_size * cfg.num_beams; // checked by `validate`
                                                   // The state is proportional to the prompt the caller holds, except for an empty prompt: bound it.
        if prompt_len == 0 && rows > 1 << 16 {
            return Err(Error::shape(format!(
                "the prompt is empty and batch_size * num_beams = {rows}: give the prompt tokens (at most 65536 \
                 rows without any)"
            )));
        }
        if rows.checked_mul(prompt_len) != Some(prompt.len()) {
            return Err(Error::shape(format!(
                "the prompt has {} ids, but batch_size * num_beams = {rows} rows of length {prompt_len} \
                 need {}",
                prompt.len(),
                rows.saturating_mul(prompt_len)
            )));
        }
        if prompt_len >= cfg.max_length {
            return Err(Error::param(format!(
                "Input length of input_ids is {prompt_len}, but `max_length` is set to {}. This can lead \
                 to unexpected behavior. You should consider increasing `max_length` or, better yet, \
                 setting `max_new_tokens`.",
                cfg.max_length
            )));
        }
        let k = cfg.num_beams;
        let running_scores = (0..rows).map(|r| if r % k == 0 { 0.0 } else { MASK }).collect();
        let slots = (0..rows)
            .map(|r| Slot {
                score: MASK,
                finished: false,
                seq: prompt[r * prompt_len..(r + 1) * prompt_len].to_vec(),
                beam_idx: Vec::new(),
            })
            .collect();
        Ok(BeamSearch {
            beams_to_keep: cfg.beams_to_keep(),
            unsatisfied: vec![true; cfg.batch_size],
            cfg,
            prompt_len,
            cur_len: prompt_len,
            steps: 0,
            running: prompt.to_vec(),
            running_idx: Vec::new(),
            running_scores,
            slots,
            done: false,
            row_cands: Vec::new(),
            exp_buf: Vec::new(),
            sums_buf: Vec::new(),
            spare_running: Vec::new(),
            spare_idx: Vec::new(),
        })
    }

    pub fn config(&self) -> &BeamConfig {
        &self.cfg
    }

    /// Current length of the running sequences (prompt included).
    pub fn cur_len(&self) -> usize {
        self.cur_len
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// `batch_size * num_beams`.
    pub fn rows(&self) -> usize {
        self.cfg.batch_size * self.cfg.num_beams
    }

    /// True once a step has decided that the search is over ([`BeamSearch::step`] then refuses to run).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Per entry: its finished hypotheses are settled (the early-stop heuristic is satisfied, or with
    /// `early_stopping=True` it has `num_beams` finished ones: transformers then masks its new
    /// candidates with `-1e9`), or the search is over. The search itself stops only when every entry
    /// is done (or every candidate hits a stopping criterion), as in transformers.
    pub fn entries_done(&self) -> Vec<bool> {
        let k = self.cfg.num_beams;
        (0..self.cfg.batch_size)
            .map(|b| {
                self.done
                    || !self.unsatisfied[b]
                    || (self.cfg.early_stopping == EarlyStopping::True
                        && self.slots[b * k..(b + 1) * k].iter().all(|s| s.finished))
            })
            .collect()
    }

    /// The running sequences, `B*K x cur_len` row-major: the `input_ids` the logits processors see.
    pub fn running_sequences(&self) -> &[i64] {
        &self.running
    }

    /// The running beams' accumulated (unpenalized) scores, `B*K`.
    pub fn running_scores(&self) -> &[f32] {
        &self.running_scores
    }

    /// One iteration of transformers' beam search loop. `log_probs` is `B*K x vocab` (row-major), the
    /// log-softmax of the model's logits after the logits processors. On error nothing has changed.
    pub fn step(&mut self, log_probs: &[f32], vocab: usize) -> Result<StepOutput> {
        if self.done {
            return Err(Error::value("the beam search is finished: call finalize() (or start a new search)"));
        }
        let rows = self.rows();
        if vocab == 0 {
            return Err(Error::shape("log_probs has V = 0 columns"));
        }
        if log_probs.len() != rows * vocab {
            return Err(Error::shape(format!(
                "log_probs has {} elements, but batch_size * num_beams = {rows} rows of V = {vocab} need {}",
                log_probs.len(),
                rows * vocab
            )));
        }
        let k = self.cfg.num_beams;
        let keep = self.beams_to_keep;
        if keep > k * vocab {
            return Err(Error::param(format!(
                "beam search keeps max(2, 1 + number of EOS ids) * num_beams = {keep} candidates per step, \
                 more than num_beams * V = {}",
                k * vocab
            )));
        }
        let cands = self.get_top_k_continuations(log_probs, vocab)?;
        Ok(self.advance(&cands, vocab))
    }

    /// The first NaN / `+inf` of `log_probs` as an error.
    fn invalid_error(log_probs: &[f32], vocab: usize) -> Error {
        let Some((i, x)) = log_probs.iter().enumerate().find(|(_, x)| x.is_nan() || **x == f32::INFINITY)
        else {
            return Error::value("log_probs holds a NaN or +inf: log-probabilities must be finite or -inf");
        };
        Error::value(format!(
            "log_probs[{}, {}] is {}: log-probabilities must be finite or -inf",
            i / vocab,
            i % vocab,
            if x.is_nan() { "NaN" } else { "+inf" }
        ))
    }

    /// Mirrors `_get_top_k_continuations`' selection: `torch.topk` (or, sampling, `torch.multinomial` of
    /// the softmax) of `log_probs + running_beam_scores` over each entry's `K * V` candidates, giving `B x
    /// beams_to_keep` `(beam * V + token, accumulated score)`. The gathers it goes on with
    /// (`topk_running_sequences`, `topk_running_beam_indices`) are done only for the candidates that are
    /// kept, by [`Self::gather_beam`]. The one fallible part of a step: nothing changes here.
    fn get_top_k_continuations(&mut self, log_probs: &[f32], vocab: usize) -> Result<Vec<Vec<Flat>>> {
        if self.cfg.do_sample {
            self.sample_candidates(log_probs, vocab)
        } else {
            self.top_candidates(log_probs, vocab)
        }
    }

    /// `torch.topk(log_probs + running_beam_scores, beams_to_keep)` of every entry: `B x beams_to_keep`.
    /// Every running row's `beams_to_keep` best in one read of the row (rows in parallel), then the
    /// `K * beams_to_keep` survivors of an entry are sorted.
    fn top_candidates(&mut self, log_probs: &[f32], vocab: usize) -> Result<Vec<Vec<Flat>>> {
        let rows = self.rows();
        let keep = self.beams_to_keep;
        self.row_cands.resize_with(rows, RowCands::default);
        let scores = &self.running_scores;
        pool::for_each_mut(&mut self.row_cands, log_probs.len(), |r, rc| {
            let row = &log_probs[r * vocab..(r + 1) * vocab];
            rc.invalid = top_k_shifted(row, scores[r], keep, &mut rc.cands);
        });
        if self.row_cands.iter().any(|rc| rc.invalid) {
            return Err(Self::invalid_error(log_probs, vocab));
        }
        let k = self.cfg.num_beams;
        Ok(self
            .row_cands
            .chunks(k)
            .map(|entry| {
                let mut all: Vec<Flat> = entry
                    .iter()
                    .enumerate()
                    .flat_map(|(j, rc)| rc.cands.iter().map(move |c| (j * vocab + c.0 as usize, c.1)))
                    .collect();
                all.sort_unstable_by(rank);
                all.truncate(keep);
                all
            })
            .collect())
    }

    /// `torch.multinomial(softmax(log_probs + running_beam_scores), beams_to_keep)` of every entry, in
    /// draw order, with the accumulated scores of the drawn candidates: the sampler's two-level walk
    /// ([`crate::sampling`]) over the entry's `K * V` weights, one segment per beam.
    fn sample_candidates(&mut self, log_probs: &[f32], vocab: usize) -> Result<Vec<Vec<Flat>>> {
        let rows = self.rows();
        let k = self.cfg.num_beams;
        let keep = self.beams_to_keep;
        // Validate and find each row's maximum in one read.
        let mut maxes = vec![(0.0f32, false); rows];
        pool::for_each_mut(&mut maxes, log_probs.len(), |r, m| {
            let s = scan_row(&log_probs[r * vocab..(r + 1) * vocab]);
            *m = (s.max, s.invalid);
        });
        if maxes.iter().any(|m| m.1) {
            return Err(Self::invalid_error(log_probs, vocab));
        }
        let scores = &self.running_scores;
        // max(row + s) = max(row) + s: float addition is monotone.
        let entry_max: Vec<f32> = (0..self.cfg.batch_size)
            .map(|b| (b * k..(b + 1) * k).map(|r| maxes[r].0 + scores[r]).fold(f32::NEG_INFINITY, f32::max))
            .collect();
        if let Some(b) = entry_max.iter().position(|&m| m == f32::NEG_INFINITY) {
            return Err(Error::value(format!(
                "every candidate of batch entry {b} has score -inf: there is nothing to sample"
            )));
        }
        let nb = vocab.div_ceil(BLOCK);
        self.exp_buf.resize(rows * vocab, 0.0);
        self.sums_buf.resize(rows * nb, 0.0);
        {
            let mut work: Vec<(&mut [f32], &mut [f64])> =
                self.exp_buf.chunks_mut(vocab).zip(self.sums_buf.chunks_mut(nb)).collect();
            pool::for_each_mut(&mut work, log_probs.len(), |r, (e, sums)| {
                let row = &log_probs[r * vocab..(r + 1) * vocab];
                exp_block_sums(row, scores[r], entry_max[r / k], e, sums);
            });
        }
        let (seeds, step) = (&self.cfg.seed, self.steps);
        let mut out: Vec<Vec<Flat>> = vec![Vec::with_capacity(keep); self.cfg.batch_size];
        let mut work: Vec<DrawWork> = self
            .exp_buf
            .chunks_mut(k * vocab)
            .zip(self.sums_buf.chunks_mut(k * nb))
            .zip(out.iter_mut())
            .collect();
        pool::for_each_mut(&mut work, rows * nb * keep, |b, ((e, sums), picks)| {
            let acc = |f: usize| log_probs[(b * k) * vocab + f] + scores[b * k + f / vocab];
            for j in 0..keep {
                let total: f64 = sums.iter().sum();
                let f = if total > 0.0 {
                    let u = seeds.uniforms(b, step, (j / 2) as u32)[j % 2];
                    match walk(e, sums, vocab, u * total) {
                        Landing::At(f) => Some(f),
                        // Rounding: the last candidate with weight in the block the sums pointed at, or
                        // in the entry.
                        Landing::ShortIn(blk) => block_span(blk, vocab).rev().find(|&i| e[i] > 0.0),
                        Landing::Beyond => e.iter().rposition(|&w| w > 0.0),
                    }
                } else {
                    None
                };
                let Some(f) = f else {
                    // No probability mass left (torch then returns zero-probability candidates in an
                    // unspecified order): the best remaining scores.
                    let drawn: Vec<usize> = picks.iter().map(|p| p.0).collect();
                    let mut rest: Vec<Flat> =
                        (0..k * vocab).filter(|f| !drawn.contains(f)).map(|f| (f, acc(f))).collect();
                    let need = keep - picks.len();
                    rest.select_nth_unstable_by(need - 1, rank);
                    rest.truncate(need);
                    rest.sort_unstable_by(rank);
                    picks.extend(rest);
                    break;
                };
                picks.push((f, acc(f)));
                remove_weight(e, sums, vocab, f);
            }
        });
        Ok(out)
    }

    /// The loop body after `_get_top_k_continuations`, in transformers' order: the stopping criteria,
    /// `_get_running_beams_for_next_iteration`, `_update_finished_beams`, `cur_len + 1`,
    /// `_check_early_stop_heuristic`, `_beam_search_has_unfinished_sequences`. Infallible: the state
    /// changes here.
    fn advance(&mut self, cands: &[Vec<Flat>], vocab: usize) -> StepOutput {
        let hits = self.stopping_criteria(cands, vocab);
        let next = self.get_running_beams_for_next_iteration(cands, &hits, vocab);
        self.update_finished_beams(cands, &hits, vocab);
        let NextRunning { seqs, idx, scores, next_tokens, beam_idx } = next;
        self.spare_running = std::mem::replace(&mut self.running, seqs);
        self.spare_idx = std::mem::replace(&mut self.running_idx, idx);
        self.running_scores = scores;
        self.cur_len += 1;
        self.steps += 1;
        self.check_early_stop_heuristic();
        self.done = !self.beam_search_has_unfinished_sequences(&hits);
        StepOutput { next_tokens, beam_idx, done: self.done }
    }

    /// The running row (batch offset included) that candidate `f` of entry `b` continues, and its token:
    /// `_get_top_k_continuations`' `topk_indices // vocab_size + batch_offset` and
    /// `topk_indices % vocab_size`.
    fn continuation(&self, b: usize, f: usize, vocab: usize) -> (usize, i64) {
        (b * self.cfg.num_beams + f / vocab, (f % vocab) as i64)
    }

    /// `_gather_beams` of `running_sequences` and `running_beam_indices` for one candidate (in the flat
    /// `B*K` layout of `_flatten_beam_dim`), with `_get_top_k_continuations`' writes at `cur_len`: `seq`
    /// (`cur_len + 1` ids) gets row `src`'s ids and `tok`, `idx` (`cur_len + 1 - prompt_len`) its beam
    /// indices and `src`.
    fn gather_beam(&self, src: usize, tok: i64, seq: &mut [i64], idx: &mut [i64]) {
        let (len, gen) = (self.cur_len, self.cur_len - self.prompt_len);
        seq[..len].copy_from_slice(&self.running[src * len..(src + 1) * len]);
        seq[len] = tok;
        idx[..gen].copy_from_slice(&self.running_idx[src * gen..(src + 1) * gen]);
        idx[gen] = src as i64;
    }

    /// `next_token_hits_stopping_criteria`: the stopping criteria `generate` builds for beam search
    /// (`MaxLengthCriteria`, `EosTokenCriteria`) on each entry's `beams_to_keep` continuations.
    fn stopping_criteria(&self, cands: &[Vec<Flat>], vocab: usize) -> Vec<Vec<bool>> {
        let max_hit = self.cur_len + 1 >= self.cfg.max_length;
        let eos = &self.cfg.eos_token_ids;
        cands
            .iter()
            .map(|cand| cand.iter().map(|&(f, _)| max_hit || eos.contains(&((f % vocab) as i64))).collect())
            .collect()
    }

    /// Mirrors `_get_running_beams_for_next_iteration`: the continuations that hit a stopping criterion
    /// get `-1e9`, and the `num_beams` best of each entry (by `torch.topk`, ties by position) are gathered
    /// into the next running beams. Reads the current running beams; [`Self::advance`] commits.
    fn get_running_beams_for_next_iteration(
        &mut self,
        cands: &[Vec<Flat>],
        hits: &[Vec<bool>],
        vocab: usize,
    ) -> NextRunning {
        let k = self.cfg.num_beams;
        let (len, gen) = (self.cur_len, self.cur_len - self.prompt_len);
        let rows = self.rows();
        let mut seqs = std::mem::take(&mut self.spare_running);
        seqs.clear();
        seqs.resize(rows * (len + 1), 0);
        let mut idx = std::mem::take(&mut self.spare_idx);
        idx.clear();
        idx.resize(rows * (gen + 1), 0);
        let mut next = NextRunning {
            seqs,
            idx,
            scores: vec![0.0f32; rows],
            next_tokens: vec![0i64; rows],
            beam_idx: vec![0i64; rows],
        };
        for (b, (cand, hits)) in cands.iter().zip(hits).enumerate() {
            // `topk_log_probs + next_token_hits_stopping_criteria * -1e9` (+ -0.0 leaves a score as is).
            let mut order: Vec<Flat> = cand
                .iter()
                .zip(hits)
                .enumerate()
                .map(|(c, (&(_, v), &h))| (c, if h { v + MASK } else { v }))
                .collect();
            order.sort_by(rank);
            for (i, &(c, v)) in order.iter().take(k).enumerate() {
                let (src, tok) = self.continuation(b, cand[c].0, vocab);
                let row = b * k + i;
                self.gather_beam(
                    src,
                    tok,
                    &mut next.seqs[row * (len + 1)..(row + 1) * (len + 1)],
                    &mut next.idx[row * (gen + 1)..(row + 1) * (gen + 1)],
                );
                next.scores[row] = v;
                next.next_tokens[row] = tok;
                next.beam_idx[row] = src as i64;
            }
        }
        next
    }

    /// Mirrors `_update_finished_beams`: only the first `num_beams` continuations that hit a stopping
    /// criterion may finish; their length-penalized scores (`-1e9` added for the others, for an entry
    /// whose beams are full under `early_stopping=True`, and for one whose early-stop heuristic is
    /// satisfied) are merged with the finished hypotheses and the `num_beams` best kept (old ones first
    /// among equal scores).
    fn update_finished_beams(&mut self, cands: &[Vec<Flat>], hits: &[Vec<bool>], vocab: usize) {
        let BeamConfig { num_beams: k, length_penalty: lp, early_stopping: es, .. } = self.cfg;
        let (len, gen) = (self.cur_len, self.cur_len - self.prompt_len);
        // `topk_log_probs / ((cur_len + 1 - decoder_prompt_len) ** length_penalty)`: a Python float
        // divisor, applied to a float32 tensor in float32.
        let denom = ((len + 1 - self.prompt_len) as f64).powf(lp) as f32;
        for (b, (cand, hits)) in cands.iter().zip(hits).enumerate() {
            let old = &self.slots[b * k..(b + 1) * k];
            let full = es == EarlyStopping::True && old.iter().all(|s| s.finished);
            let unsat = self.unsatisfied[b];
            let mut merged: Vec<Flat> = old.iter().enumerate().map(|(i, s)| (i, s.score)).collect();
            for (c, (&(_, v), &h)) in cand.iter().zip(hits).enumerate() {
                let mut t = v / denom;
                if full {
                    t += MASK;
                }
                if !unsat {
                    t += MASK;
                }
                if !(h && c < k) {
                    t += MASK;
                }
                merged.push((k + c, t));
            }
            merged.sort_by(rank);
            let mut taken: Vec<Option<Slot>> =
                self.slots[b * k..(b + 1) * k].iter_mut().map(|s| Some(std::mem::take(s))).collect();
            for (i, &(m, score)) in merged.iter().take(k).enumerate() {
                let slot = if m < k {
                    // Each old slot is merged once (`m` indexes `merged`, whose old entries are distinct).
                    let slot = taken[m].take();
                    debug_assert!(slot.is_some(), "old slot {m} merged twice");
                    slot.unwrap_or_default()
                } else {
                    let c = m - k;
                    let (src, tok) = self.continuation(b, cand[c].0, vocab);
                    let mut seq = vec![0i64; len + 1];
                    let mut beam_idx = vec![0i64; gen + 1];
                    self.gather_beam(src, tok, &mut seq, &mut beam_idx);
                    Slot { score, finished: hits[c] && c < k, seq, beam_idx }
                };
                self.slots[b * k + i] = slot;
            }
        }
    }

    /// Mirrors `_check_early_stop_heuristic` (after `cur_len += 1`): an entry stays unsatisfied while its
    /// best running beam, scored at the best hypothetical length, beats the worst finished hypothesis
    /// (or `-1e9` for an unfinished slot).
    fn check_early_stop_heuristic(&mut self) {
        let BeamConfig { num_beams: k, length_penalty: lp, early_stopping: es, max_length, .. } = self.cfg;
        let plen = self.prompt_len;
        let best_len =
            if es == EarlyStopping::Never && lp > 0.0 { max_length - plen } else { self.cur_len - plen };
        let best_denom = (best_len as f64).powf(lp) as f32;
        for (b, unsat) in self.unsatisfied.iter_mut().enumerate() {
            let slots = &self.slots[b * k..(b + 1) * k];
            let best = self.running_scores[b * k] / best_denom;
            let worst = slots.iter().map(|s| s.score).fold(f32::INFINITY, f32::min);
            let improvable = slots.iter().any(|s| best > if s.finished { worst } else { MASK });
            *unsat &= improvable;
        }
    }

    /// Mirrors `_beam_search_has_unfinished_sequences`: some entry can still improve, there is an open
    /// beam (with `early_stopping=True`, not every slot of every entry finished), and not every
    /// continuation hit a stopping criterion.
    fn beam_search_has_unfinished_sequences(&self, hits: &[Vec<bool>]) -> bool {
        let improvement_possible = self.unsatisfied.iter().any(|&u| u);
        let exists_open_beam =
            !(self.slots.iter().all(|s| s.finished) && self.cfg.early_stopping == EarlyStopping::True);
        let valid_continuations = !hits.iter().flatten().all(|&h| h);
        improvement_possible && exists_open_beam && valid_continuations
    }

    /// The `num_return_sequences` best finished hypotheses of every entry, as `generate` returns them
    /// (also callable before the search is done: then it reports the hypotheses finished so far).
    pub fn finalize(&self) -> FinalOutput {
        let (k, n) = (self.cfg.num_beams, self.cfg.num_return_sequences);
        let chosen: Vec<&Slot> =
            (0..self.cfg.batch_size).flat_map(|b| self.slots[b * k..b * k + n].iter()).collect();
        let generated = chosen.iter().map(|s| s.beam_idx.len()).max().unwrap_or(0);
        let seq_len = self.prompt_len + generated;
        let fill = self.cfg.fill_value();
        let rows = chosen.len();
        let mut sequences = vec![fill; rows * seq_len];
        let mut beam_indices = vec![-1i64; rows * generated];
        for (i, s) in chosen.iter().enumerate() {
            let m = s.seq.len().min(seq_len);
            sequences[i * seq_len..i * seq_len + m].copy_from_slice(&s.seq[..m]);
            beam_indices[i * generated..i * generated + s.beam_idx.len()].copy_from_slice(&s.beam_idx);
        }
        FinalOutput {
            rows,
            sequences,
            seq_len,
            sequences_scores: chosen.iter().map(|s| s.score).collect(),
            beam_indices,
            generated,
        }
    }
}

#[cfg(test)]
#[path = "../tests/common/log_probs.rs"]
mod log_probs;

#[cfg(test)]
mod tests {
    use super::log_probs::make_log_probs;
    use super::*;

    #[test]
    fn validation() {
        let p = vec![0i64; 4];
        let mut c = BeamConfig::new(1, 2, 5);
        c.num_return_sequences = 3;
        let e = BeamSearch::new(c, &p, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`num_return_sequences` (3) has to be smaller or equal to `num_beams` (2)."
        );
        assert!(BeamSearch::new(BeamConfig::new(1, 0, 5), &[], 2).is_err());
        assert!(BeamSearch::new(BeamConfig::new(0, 2, 5), &[], 2).is_err());
        let e = BeamSearch::new(BeamConfig::new(1, 2, 2), &p, 2).unwrap_err();
        assert!(e.to_string().starts_with("Input length of input_ids is 2, but `max_length` is set to 2"));
        assert!(BeamSearch::new(BeamConfig::new(1, 2, 5), &p[..3], 2).is_err());
        let mut c = BeamConfig::new(1, 2, 5);
        c.length_penalty = f64::NAN;
        assert!(BeamSearch::new(c, &p, 2).is_err());
    }

    #[test]
    fn fill_value_follows_python_truthiness() {
        let mut c = BeamConfig::new(1, 2, 5);
        assert_eq!(c.fill_value(), -1);
        c.pad_token_id = Some(4);
        assert_eq!(c.fill_value(), -1, "no EOS: -1 whatever the padding id");
        c.eos_token_ids = vec![7, 8];
        assert_eq!(c.fill_value(), 4);
        c.pad_token_id = Some(0);
        assert_eq!(c.fill_value(), 7, "pad 0 is falsy in Python");
        c.pad_token_id = None;
        assert_eq!(c.fill_value(), 7);
    }

    #[test]
    fn errors_leave_the_state_unchanged() {
        let mut c = BeamConfig::new(2, 2, 6);
        c.eos_token_ids = vec![1];
        let p = vec![0i64; 4];
        let mut bs = BeamSearch::new(c, &p, 1).unwrap();
        let v = 6;
        bs.step(&make_log_probs(4, v, 3, false), v).unwrap();
        let before = (bs.running_sequences().to_vec(), bs.running_scores().to_vec(), bs.finalize());
        let mut lp = make_log_probs(4, v, 4, false);
        lp[3 * v + 2] = f32::NAN;
        let e = bs.step(&lp, v).unwrap_err();
        assert_eq!(e.to_string(), "log_probs[3, 2] is NaN: log-probabilities must be finite or -inf");
        assert!(bs.step(&lp[..5], v).is_err());
        assert!(bs.step(&make_log_probs(4, 1, 4, false), 1).is_err(), "beams_to_keep > K * V");
        let after = (bs.running_sequences().to_vec(), bs.running_scores().to_vec(), bs.finalize());
        assert_eq!(before, after);
        assert_eq!(bs.cur_len(), 2);
    }

    #[test]
    fn sampling_is_thread_count_independent_and_without_replacement() {
        let mut c = BeamConfig::new(3, 4, 12);
        c.do_sample = true;
        c.seed = Seeds::Shared(42);
        c.eos_token_ids = vec![2, 5];
        let v = 3000;
        let p = vec![1i64; 12 * 2];
        let run = |threads: usize| {
            crate::pool::set_num_threads(threads).unwrap();
            let mut bs = BeamSearch::new(c.clone(), &p, 2).unwrap();
            let mut outs = vec![];
            for s in 0..10 {
                let o = bs.step(&make_log_probs(12, v, s, false), v).unwrap();
                outs.push(o.clone());
                if o.done {
                    break;
                }
            }
            (outs, bs.finalize())
        };
        let a = run(1);
        let b = run(2);
        crate::pool::set_num_threads(0).unwrap();
        assert_eq!(a, b);
        // Without replacement: the candidates of an entry are distinct.
        let mut bs = BeamSearch::new(c.clone(), &p, 2).unwrap();
        let lp = make_log_probs(12, v, 5, false);
        let cands = bs.sample_candidates(&lp, v).unwrap();
        for cs in cands {
            let mut f: Vec<usize> = cs.iter().map(|x| x.0).collect();
            assert_eq!(f.len(), c.beams_to_keep());
            f.sort();
            f.dedup();
            assert_eq!(f.len(), c.beams_to_keep());
            // First step: beams 1.. start at -1e9, so every draw comes from beam 0.
            assert!(f.iter().all(|&x| x < v));
        }
    }

    #[test]
    fn sampling_follows_ordered_draws_without_replacement() {
        // One beam, V = 4, keep = 2: P(first = i, second = j) = p_i p_j / (1 - p_i).
        let lp: Vec<f32> = [0.1f64, 0.2, 0.3, 0.4].iter().map(|p| p.ln() as f32).collect();
        let mut counts = [[0usize; 4]; 4];
        let n = 40_000;
        for seed in 0..n {
            let mut c = BeamConfig::new(1, 1, 3);
            c.do_sample = true;
            c.seed = Seeds::Shared(seed);
            let mut bs = BeamSearch::new(c, &[0], 1).unwrap();
            let cands = bs.sample_candidates(&lp, 4).unwrap();
            counts[cands[0][0].0][cands[0][1].0] += 1;
        }
        let p = [0.1f64, 0.2, 0.3, 0.4];
        for i in 0..4 {
            for j in 0..4 {
                if i == j {
                    assert_eq!(counts[i][j], 0);
                    continue;
                }
                let q = p[i] * p[j] / (1.0 - p[i]);
                let sd = (n as f64 * q * (1.0 - q)).sqrt();
                assert!((counts[i][j] as f64 - n as f64 * q).abs() < 5.0 * sd, "{counts:?}");
            }
        }
    }

    #[test]
    fn sampling_without_enough_mass_takes_the_best_remaining() {
        // Only two candidates have probability > 0 but four are kept.
        let mut c = BeamConfig::new(1, 2, 4);
        c.do_sample = true;
        let lp = vec![0.0f32, -200.0, -300.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0, 0.0];
        let mut bs = BeamSearch::new(c, &[0, 0], 1).unwrap();
        let cands = bs.sample_candidates(&lp, 4).unwrap();
        let f: Vec<usize> = cands[0].iter().map(|x| x.0).collect();
        assert_eq!(f.len(), 4);
        // Beam 1 starts at -1e9: its tokens (4..8) have weight 0 after exp(x - max).
        assert_eq!(f[0], 0);
        assert_eq!(&f[1..], &[1, 2, 4]);
    }
}
