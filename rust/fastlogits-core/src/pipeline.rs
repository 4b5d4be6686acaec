//! A chain of processors applied in one call: validated, then each row once through every processor, in
//! place, rows in parallel.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use crate::error::Result;
use crate::history::RowHistory;
use std::sync::Arc;

use crate::processors::{At, Processor, Range, RowProcessor, TopK};
use crate::row::{undo, with_scratch, Row, Suspended, Validation};
use crate::sampling::Seeds;
use crate::select::Cand;
use crate::{batch_of, check_ids, check_scores, pool, Error, TokenId};

/// Processors in order, plus the per-row history state of the ones that need it.
///
/// A call never leaves `scores` half-modified: rows are validated (no NaN / `+inf`) before any is written
/// out. For the usual sampling chains (point updates, temperatures, then top-k; see `fused_split`) the
/// validation happens inside the top-k's read of each row (phase A, point updates logged), then every row
/// is finished (phase B); on an invalid row the logged updates are undone. Other chains validate in a
/// separate read first.
#[derive(Debug, Clone)]
pub struct Pipeline {
    procs: Vec<Processor>,
    rows: Vec<RowMem>,
    uses_history: bool,
}

/// What the pipeline keeps for one row: its history, its processors with their states, and its memory
/// between the two phases.
#[derive(Debug, Clone)]
struct RowMem {
    hist: RowHistory,
    chain: Vec<RowProcessor>,
    undo: Vec<(u32, f32)>,
    /// Marks of the positions point updates touched, when the input is another buffer.
    touched: Vec<u64>,
    kept: Vec<Cand>,
    suspended: Suspended,
    valid: Validation,
    /// Phase A: where the raw finite scores left lie.
    range: Range,
    error: Option<Error>,
}

impl RowMem {
    fn new(chain: Vec<RowProcessor>) -> Self {
        RowMem {
            hist: RowHistory::default(),
            chain,
            undo: Vec::new(),
            touched: Vec::new(),
            kept: Vec::new(),
            suspended: Suspended::default(),
            valid: Validation::Valid,
            range: Range { lo: f64::NEG_INFINITY, hi: f64::NEG_INFINITY },
            error: None,
        }
    }
}

struct Work<'a> {
    buf: &'a mut [f32],
    mem: &'a mut RowMem,
    out: Option<&'a mut i64>,
}

impl Pipeline {
    pub fn new(procs: Vec<Processor>) -> Self {
        let uses_history = procs.iter().any(Processor::uses_history);
        Pipeline { procs, rows: Vec::new(), uses_history }
    }

    pub fn processors(&self) -> &[Processor] {
        &self.procs
    }

    /// Forgets the histories seen so far (the next call rebuilds every row's state).
    pub fn reset(&mut self) {
        self.rows.clear();
    }

    fn new_row(&self, r: usize) -> RowMem {
        RowMem::new(self.procs.iter().map(|p| p.bind(r)).collect())
    }

    /// Applies every processor to `scores` (`B x vocab`, row-major) given the histories `ids`
    /// (`B x seq_len`). On error nothing has been modified.
    pub fn apply<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        scores: &mut [f32],
        vocab: usize,
    ) -> Result<()> {
        self.run(ids, seq_len, None, scores, vocab, None, None)
    }

    /// [`Pipeline::apply`] in a decoding loop that draws the tokens afterwards (with another sampler):
    /// processors that need randomness (XTC) take the row's stream of `seeds` at `step`, as in
    /// [`Pipeline::apply_and_sample`], instead of their own seed.
    pub fn apply_seeded<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        scores: &mut [f32],
        vocab: usize,
        seeds: &Seeds,
        step: u64,
    ) -> Result<()> {
        let batch = batch_of(scores.len(), vocab)?;
        seeds.check(batch, "rows")?;
        self.run(ids, seq_len, None, scores, vocab, Some((seeds, step)), None)
    }

    /// [`Pipeline::apply`] to a copy: `dst` receives the processed `src` (same shape), which is not
    /// modified (what transformers' processors do: they return a new tensor). The copy is made row by row
    /// inside the call, in parallel, and each row is processed while it is in cache. On error `dst` holds
    /// unspecified values.
    pub fn apply_from<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        src: &[f32],
        dst: &mut [f32],
        vocab: usize,
    ) -> Result<()> {
        if src.len() != dst.len() {
            return Err(Error::shape(format!(
                "the output has {} elements but the scores have {}",
                dst.len(),
                src.len()
            )));
        }
        self.run(ids, seq_len, Some(src), dst, vocab, None, None)
    }

    /// [`Pipeline::apply`], then one token per row drawn from the processed scores with the row's stream of
    /// `seeds` at `step`: the tokens [`crate::sampling::sample`] would draw from the written scores, in one
    /// pass less. Bad input is rejected before anything is written; a row left all `-inf` by the
    /// processors is an error reported after `scores` has been processed.
    ///
    /// With `write_scores` false the caller only wants the tokens: `scores` is scratch space and its
    /// content afterwards is unspecified (rows whose kept set is small are not written out at all, which
    /// saves a write of the whole buffer). The tokens are the same.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_and_sample<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        scores: &mut [f32],
        vocab: usize,
        seeds: &Seeds,
        step: u64,
        out: &mut [i64],
        write_scores: bool,
    ) -> Result<()> {
        let batch = batch_of(scores.len(), vocab)?;
        if out.len() != batch {
            return Err(Error::shape(format!("the output has {} rows but scores has {batch}", out.len())));
        }
        seeds.check(batch, "rows")?;
        self.run(ids, seq_len, None, scores, vocab, Some((seeds, step)), Some((out, write_scores)))
    }

    /// Where a call can validate rows inside the first top-k read instead of a separate pass: the
    /// processors are point updates, then temperatures, then a top-k with the `-inf` filter (the shape of
    /// every sampling chain `generate` builds). Returns the index of that top-k, and the top-k.
    fn fused_split(&self) -> Option<(usize, Arc<TopK>)> {
        let first_warper = self.procs.iter().position(|p| !p.is_point_update())?;
        let k = first_warper.checked_add(
            self.procs[first_warper..].iter().position(|p| !matches!(p, Processor::Temperature(_)))?,
        )?;
        let Processor::TopK(t) = &self.procs[k] else { return None }; // another processor: not this plan
        (t.filter == f32::NEG_INFINITY).then(|| (k, Arc::clone(t)))
    }

    /// The call: `scores` is processed in place, or, with `src`, receives the processed `src`. `stream`: the
    /// rows' random streams and the step (for the draw, and for processors that need randomness); `draw`:
    /// where the drawn tokens go (it needs `stream`), and whether the processed scores are written back.
    #[allow(clippy::too_many_arguments)]
    fn run<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        src: Option<&[f32]>,
        scores: &mut [f32],
        vocab: usize,
        stream: Option<(&Seeds, u64)>,
        mut draw: Option<(&mut [i64], bool)>,
    ) -> Result<()> {
        let batch = batch_of(scores.len(), vocab)?;
        check_ids(ids, seq_len, batch, vocab, self.uses_history)?;
        for p in &self.procs {
            p.check(batch, vocab)?;
        }
        if self.rows.len() != batch {
            // A new batch: per-row states (and per-row state parameters) start afresh.
            self.rows = (0..batch).map(|r| self.new_row(r)).collect();
        }
        let split = self.fused_split();
        if split.is_none() {
            // Validate every row before any is written; where the chain might overflow float32 (huge
            // scores, extreme parameters), take the checked path.
            let ranges = scan_ranges(src.unwrap_or(scores), vocab)?;
            if draw.is_some() {
                // A row that is all -inf already cannot be drawn from: say so before anything is written.
                if let Some(r) = ranges.iter().position(|range| range.hi == f64::NEG_INFINITY) {
                    return Err(all_neg_inf(r));
                }
            }
            let safe =
                ranges.iter().enumerate().all(|(r, &range)| cannot_overflow(&self.procs, range, r, seq_len));
            if !safe {
                return self.run_checked(ids, seq_len, src, scores, vocab, stream, draw);
            }
        }
        let procs = &self.procs;
        let uses_history = self.uses_history;
        let shared = Seeds::Shared(0);
        let (seeds, step) = stream.unwrap_or((&shared, 0));
        let write = draw.as_ref().is_none_or(|d| d.1);
        let drawing = draw.is_some();
        let mut outs: Vec<Option<&mut i64>> = match &mut draw {
            Some(d) => d.0.iter_mut().map(Some).collect(),
            None => Vec::new(),
        };
        outs.resize_with(batch, || None);
        let mut work: Vec<Work> = scores
            .chunks_mut(vocab)
            .zip(self.rows.iter_mut())
            .zip(outs)
            .map(|((buf, mem), out)| Work { buf, mem, out })
            .collect();
        let elements = batch.saturating_mul(vocab); // = scores.len()

        // Phase A (fused plans only): point updates, logged, then the top-k read, which also validates.
        let start = match split {
            None => 0,
            Some((k, ref top_k)) => {
                pool::for_each_mut(&mut work, elements, |r, w| {
                    let mem = &mut *w.mem;
                    if uses_history {
                        mem.hist.sync(row_of(ids, r, seq_len), vocab, &mut mem.chain);
                    }
                    with_scratch(|s| {
                        // With a separate input, nothing is copied yet: see `row::Overlay`.
                        let mut row = match src {
                            Some(src) => Row::with_undo_from(
                                w.buf,
                                row_of(src, r, vocab),
                                s,
                                &mut mem.undo,
                                &mut mem.touched,
                            ),
                            None => Row::with_undo(w.buf, s, &mut mem.undo),
                        };
                        let at = At { row: r, len: seq_len, hist: &mem.hist.ids, draw: stream };
                        for p in &mem.chain[..k] {
                            p.apply(&mut row, &at);
                        }
                        mem.valid = row.top_k_validating(top_k.k.get(r));
                        let (lo, hi) = row.raw_range();
                        mem.range = Range { lo: lo as f64, hi: hi as f64 };
                        mem.suspended = row.suspend(&mut mem.kept);
                    });
                });
                // What is left to apply to the raw values measured: pending temperatures and what follows.
                let rest = &procs[procs.iter().position(|p| !p.is_point_update()).unwrap_or(k)..];
                let overflow = work.iter().enumerate().any(|(r, w)| {
                    w.mem.valid == Validation::Overflow || !cannot_overflow(rest, w.mem.range, r, seq_len)
                });
                let bad_input = work.iter().position(|w| w.mem.valid == Validation::InvalidInput);
                let empty = work.iter().position(|w| drawing && w.mem.range.hi == f64::NEG_INFINITY);
                if overflow || bad_input.is_some() || empty.is_some() {
                    for w in work.iter_mut() {
                        undo(w.buf, &w.mem.undo); // the messages below read the restored rows
                    }
                    drop(work);
                    if overflow {
                        return self.run_checked(ids, seq_len, src, scores, vocab, stream, draw);
                    }
                    if let Some(r) = bad_input {
                        let row = row_of(src.unwrap_or(scores), r, vocab);
                        return Err(crate::row_error(r, row, crate::kernels::scan_row(row), false)
                            .unwrap_or_else(|| {
                                Error::internal(format!(
                                    "row {r} was flagged invalid, but no NaN / +inf is in it"
                                ))
                            }));
                    }
                    return Err(all_neg_inf(empty.unwrap_or(0)));
                }
                k.saturating_add(1) // k < procs.len()
            }
        };

        // Phase B: the remaining processors, then the row is written out (and a token drawn).
        pool::for_each_mut(&mut work, elements, |r, w| {
            if split.is_none() {
                if let Some(src) = src {
                    w.buf.copy_from_slice(row_of(src, r, vocab));
                }
            }
            let mem = &mut *w.mem;
            if split.is_none() && uses_history {
                mem.hist.sync(row_of(ids, r, seq_len), vocab, &mut mem.chain);
            }
            with_scratch(|s| {
                let mut row = match split {
                    None => Row::new(w.buf, s),
                    Some(_) => {
                        let input = src.map(|src| (row_of(src, r, vocab), mem.undo.as_slice()));
                        Row::resume(w.buf, s, mem.suspended, &mut mem.kept, input)
                    }
                };
                let at = At { row: r, len: seq_len, hist: &mem.hist.ids, draw: stream };
                for p in &mem.chain[start..] {
                    p.apply(&mut row, &at);
                }
                mem.error = None;
                match &mut w.out {
                    Some(o) => match row.finish_and_sample(r, seeds.uniform(r, step), write) {
                        Ok(t) => **o = t as i64,
                        Err(e) => mem.error = Some(e),
                    },
                    None => row.finish(),
                }
            });
        });
        match work.into_iter().find_map(|w| w.mem.error.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The checked path, for calls that might overflow float32 (scores near its limits, extreme
    /// parameters): the processors run one at a time over a copy of the scores, each result is checked,
    /// and the caller's buffer is written only when all of them succeeded. An overflow is reported naming
    /// the processor, the position and the value it started from. Same results as the fast path otherwise
    /// (a chain equals its processors applied one after another).
    #[allow(clippy::too_many_arguments)]
    fn run_checked<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        src: Option<&[f32]>,
        scores: &mut [f32],
        vocab: usize,
        stream: Option<(&Seeds, u64)>,
        draw: Option<(&mut [i64], bool)>,
    ) -> Result<()> {
        let input = src.unwrap_or(scores);
        check_scores(input, vocab, false)?;
        let elements = input.len();
        if self.uses_history {
            pool::for_each_mut(&mut self.rows, elements, |r, mem| {
                mem.hist.sync(row_of(ids, r, seq_len), vocab, &mut mem.chain);
            });
        }
        let mut work = input.to_vec();
        let mut before = input.to_vec();
        for (j, p) in self.procs.iter().enumerate() {
            before.copy_from_slice(&work);
            let mut rows: Vec<(&mut [f32], &RowMem)> = work.chunks_mut(vocab).zip(self.rows.iter()).collect();
            pool::for_each_mut(&mut rows, elements, |r, (buf, mem)| {
                with_scratch(|s| {
                    let mut row = Row::new(buf, s);
                    mem.chain[j]
                        .apply(&mut row, &At { row: r, len: seq_len, hist: &mem.hist.ids, draw: stream });
                    row.finish();
                });
            });
            if let Some(i) = work.iter().position(|x| x.is_nan() || *x == f32::INFINITY) {
                let (r, c) = (i.checked_div(vocab).unwrap_or(0), i.checked_rem(vocab).unwrap_or(0));
                return Err(Error::overflow(format!(
                    "{} turned scores[{r}, {c}] = {:e} into {}: the result is beyond the float32 range \
                     (scores near ±{:e}, or an extreme parameter); the scores were left unchanged",
                    p.name(),
                    before[i],
                    if work[i].is_nan() { "NaN" } else { "+inf" },
                    f32::MAX
                )));
            }
        }
        let (Some((out, _)), Some((seeds, step))) = (draw, stream) else {
            scores.copy_from_slice(&work);
            return Ok(());
        };
        let batch = out.len();
        let mut errors: Vec<Option<Error>> = vec![None; batch];
        let mut jobs: Vec<(&[f32], &mut i64, &mut Option<Error>)> = work
            .chunks(vocab)
            .zip(out.iter_mut())
            .zip(errors.iter_mut())
            .map(|((a, b), c)| (a, b, c))
            .collect();
        pool::for_each_mut(&mut jobs, elements, |r, (row, o, err)| {
            match with_scratch(|s| crate::sampling::sample_row(r, row, seeds.uniform(r, step), s)) {
                Ok(t) => **o = t as i64,
                Err(e) => **err = Some(e),
            }
        });
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(e);
        }
        scores.copy_from_slice(&work);
        Ok(())
    }

    /// Reorders the per-row states after a beam step: new row `i` continues old row `src[i]`.
    /// Before the first call (no rows yet) the indices must still be rows of a batch of `src.len()`.
    pub fn reorder(&mut self, src: &[usize]) -> Result<()> {
        if self.rows.is_empty() {
            return match src.iter().find(|&&s| s >= src.len()) {
                Some(&bad) => Err(Error::value(format!(
                    "`beam_idx` holds {bad}, outside [0, {}) (the batch it reorders has {} rows)",
                    src.len(),
                    src.len()
                ))),
                None => Ok(()),
            };
        }
        if src.len() != self.rows.len() {
            return Err(Error::shape(format!(
                "`beam_idx` has {} indices but the pipeline holds {} rows",
                src.len(),
                self.rows.len()
            )));
        }
        if let Some(&bad) = src.iter().find(|&&s| s >= self.rows.len()) {
            return Err(Error::value(format!("`beam_idx` holds {bad}, outside [0, {})", self.rows.len())));
        }
        let old = std::mem::take(&mut self.rows);
        self.rows = src.iter().map(|&s| old[s].clone()).collect();
        Ok(())
    }
}

/// Scores up to this bound are far enough from `f32::MAX` that the float32 rounding of the few
/// operations of a chain cannot carry them past it.
const SAFE_MAX: f64 = f32::MAX as f64 / (1.0 + 1e-5);

/// Whether `procs`, applied to row `r` (history length `len`) whose finite scores lie in `range`, provably
/// produce no NaN / `+inf`. False means "not proven" (the checked path then decides).
fn cannot_overflow(procs: &[Processor], range: Range, r: usize, len: usize) -> bool {
    // The highest bound reached after any processor (a later one may lower it again: too late).
    let mut acc = range;
    let mut peak = range.hi;
    for p in procs {
        acc = p.range_after(acc, r, len);
        if acc.hi.is_nan() {
            return false;
        }
        peak = peak.max(acc.hi);
    }
    // A chain that does not raise the maximum is fine even next to f32::MAX.
    peak <= range.hi || peak <= SAFE_MAX
}

/// Validates every row (no NaN / `+inf`, naming the first) and returns where its finite scores lie.
fn scan_ranges(scores: &[f32], vocab: usize) -> Result<Vec<Range>> {
    let batch = batch_of(scores.len(), vocab)?;
    let mut out: Vec<(Range, Option<Error>)> =
        vec![(Range { lo: f64::INFINITY, hi: f64::NEG_INFINITY }, None); batch];
    pool::for_each_mut(&mut out, scores.len(), |r, (range, err)| {
        let row = row_of(scores, r, vocab);
        let scan = crate::kernels::scan_row_range(row);
        match crate::row_error(
            r,
            row,
            crate::kernels::RowScan { max: scan.max, invalid: scan.invalid },
            false,
        ) {
            Some(e) => *err = Some(e),
            None => *range = Range { lo: scan.min as f64, hi: scan.max as f64 },
        }
    });
    match out.iter_mut().find_map(|o| o.1.take()) {
        Some(e) => Err(e),
        None => Ok(out.into_iter().map(|o| o.0).collect()),
    }
}

/// Row `r` of a row-major buffer of rows of `width` (`r` below the number of rows, checked by the callers'
/// shape checks: `(r + 1) * width <= buf.len()`).
#[inline]
#[allow(clippy::arithmetic_side_effects)]
fn row_of<T>(buf: &[T], r: usize, width: usize) -> &[T] {
    &buf[r * width..(r + 1) * width]
}

fn all_neg_inf(r: usize) -> Error {
    Error::value(format!("row {r} of scores is all -inf: no token is left to choose from"))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::PerRow;

    #[test]
    fn fused_chain_undoes_point_updates_when_a_later_row_is_invalid() {
        let mut p = Pipeline::new(vec![
            Processor::repetition_penalty(PerRow::All(2.0), PerRow::All(0)).unwrap(),
            Processor::no_repeat_ngram(1).unwrap(),
            Processor::temperature(PerRow::All(0.5)).unwrap(),
            Processor::top_k(PerRow::All(2), f32::NEG_INFINITY, 1).unwrap(),
        ]);
        assert_eq!(p.fused_split().map(|s| s.0), Some(3));
        let ids: Vec<i64> = vec![0, 1, 2, 3];
        let mut scores: Vec<f32> = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        scores[4] = f32::NAN; // row 1, col 0: not in row 1's history, found by the top-k read
        let before = scores.clone();
        let err = p.apply(&ids, 2, &mut scores, 4).unwrap_err();
        assert!(err.to_string().contains("scores[1, 0] is NaN"), "{err}");
        assert!(scores.iter().zip(&before).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
        scores[4] = 5.0;
        scores[6] = f32::INFINITY; // row 1, col 2: an id of row 1's history, overwritten by the ban
        let ids: Vec<i64> = vec![0, 1, 2, 3];
        let before = scores.clone();
        assert!(p.apply(&ids, 2, &mut scores, 4).unwrap_err().to_string().contains("+inf"));
        assert_eq!(scores, before);
        scores[6] = 7.0;
        p.apply(&ids, 2, &mut scores, 4).unwrap();
        assert_eq!(scores[..4], [f32::NEG_INFINITY, f32::NEG_INFINITY, 6.0, 8.0]);
    }

    #[test]
    fn an_overflow_is_reported_naming_the_processor_and_leaves_the_buffer_unchanged() {
        let temp = || Processor::temperature(PerRow::All(0.5)).unwrap();
        let chains = vec![
            vec![temp()],
            vec![temp(), Processor::top_p(PerRow::All(0.9), f32::NEG_INFINITY, 1).unwrap()],
            // the fused sampling chain: point updates, temperature, top-k
            vec![
                Processor::repetition_penalty(PerRow::All(1.1), PerRow::All(0)).unwrap(),
                temp(),
                Processor::top_k(PerRow::All(2), f32::NEG_INFINITY, 1).unwrap(),
            ],
        ];
        for procs in chains {
            let mut p = Pipeline::new(procs);
            let ids: Vec<i64> = vec![1, 2];
            let before = vec![1.0f32, 2.0, 3.0, f32::NEG_INFINITY, 3e38, 1.0, -5.0, 0.0];
            let mut scores = before.clone();
            let err = p.apply(&ids, 1, &mut scores, 4).unwrap_err().to_string();
            assert!(err.contains("TemperatureLogitsWarper turned scores[1, 0] = 3e38 into +inf"), "{err}");
            assert_eq!(scores, before);
            let mut out = [0i64; 2];
            assert!(p
                .apply_and_sample(&ids, 1, &mut scores, 4, &Seeds::Shared(0), 0, &mut out, false)
                .is_err());
            assert_eq!(scores, before);
            // Near the limit without overflowing: the checked path gives the ordinary result.
            let mut fine = vec![1.0f32, 2.0, 3.0, 0.0, 1e38, 1.0, -5.0, 0.0];
            p.apply(&ids, 1, &mut fine, 4).unwrap();
            assert_eq!(fine[4], 2e38);
        }
    }

    #[test]
    fn apply_from_equals_apply_and_leaves_the_source() {
        let procs = vec![
            Processor::repetition_penalty(PerRow::All(1.5), PerRow::All(0)).unwrap(),
            Processor::temperature(PerRow::All(0.7)).unwrap(),
            Processor::top_k(PerRow::All(3), f32::NEG_INFINITY, 1).unwrap(),
        ];
        let ids: Vec<i64> = vec![0, 4, 2, 2];
        let src: Vec<f32> = (0..16).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let mut want = src.clone();
        Pipeline::new(procs.clone()).apply(&ids, 2, &mut want, 8).unwrap();
        let mut dst = vec![9.0f32; 16];
        Pipeline::new(procs).apply_from(&ids, 2, &src, &mut dst, 8).unwrap();
        assert_eq!(dst, want);
        assert_eq!(src, (0..16).map(|i| ((i * 7) % 11) as f32 - 5.0).collect::<Vec<_>>());
    }

    #[test]
    fn top_p_one_removes_only_tokens_whose_float32_probability_is_zero() {
        let mut p = Pipeline::new(vec![Processor::top_p(PerRow::All(1.0), f32::NEG_INFINITY, 1).unwrap()]);
        // e^-50 is a float32 probability, e^-120 underflows (torch's softmax gives exactly 0).
        let mut scores = vec![0.0f32, -50.0, -120.0, f32::NEG_INFINITY, -1.0];
        p.apply::<i64>(&[], 0, &mut scores, 5).unwrap();
        assert_eq!(scores, vec![0.0, -50.0, f32::NEG_INFINITY, f32::NEG_INFINITY, -1.0]);
    }

    #[test]
    fn bad_words_that_are_all_eos_ban_nothing() {
        let mut p =
            Pipeline::new(vec![
                Processor::bad_words(vec![vec![2], vec![2], vec![]], Some(vec![2, -1])).unwrap()
            ]);
        let mut scores = vec![1.0f32, 2.0, 3.0];
        p.apply(&[1i64], 1, &mut scores, 3).unwrap();
        assert_eq!(scores, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn reorder_checks_indices_before_the_first_call() {
        let mut p = Pipeline::new(vec![Processor::no_repeat_ngram(2).unwrap()]);
        assert!(p.reorder(&[0, 2]).unwrap_err().to_string().contains("outside [0, 2)"));
        p.reorder(&[1, 0]).unwrap();
    }

    #[test]
    fn error_leaves_buffer_unchanged() {
        let mut p = Pipeline::new(vec![Processor::temperature(PerRow::All(2.0)).unwrap()]);
        let mut scores = vec![1.0, 2.0, 3.0, f32::NAN];
        let before = scores.clone();
        let ids: Vec<i64> = vec![0, 1];
        let err = p.apply(&ids, 1, &mut scores, 2).unwrap_err();
        assert!(err.to_string().contains("scores[1, 1] is NaN"), "{err}");
        assert_eq!(scores[..3], before[..3]);
        // Ids are checked against the vocabulary where they are read (not by a temperature: transformers'
        // warpers ignore them).
        let mut scores = vec![1.0, 2.0];
        p.apply(&[5i64], 1, &mut scores, 2).unwrap();
        let mut p =
            Pipeline::new(vec![Processor::repetition_penalty(PerRow::All(2.0), PerRow::All(0)).unwrap()]);
        let mut scores = vec![1.0, 2.0];
        let err = p.apply(&[5i64], 1, &mut scores, 2).unwrap_err();
        assert!(err.to_string().contains("input_ids[0, 0] = 5"), "{err}");
        assert_eq!(scores, vec![1.0, 2.0]);
    }
}
