//! One row of scores moving through a chain of processors.
//!
//! A [`Row`] defers work that a later stage may make unnecessary:
//! * a temperature is kept *pending* (`logical = buf[i] / t`) until something needs the values;
//!   selection stages compare raw values (division by `t > 0` is monotone) and divide only what they keep;
//! * after a selective stage (top-k, top-p, ...) with a small kept set, the row becomes *sparse*: the kept
//!   `(index, value)` pairs live in scratch memory, everything else is logically `-inf`, and later warpers
//!   work on the kept pairs only. The buffer is written once, by [`Row::finish`].
//!
//! Stages that use a custom `filter_value` (not `-inf`) first materialize the row, then work densely,
//! because a finite filter value takes part in later softmaxes.
//!
//! Decision rules follow transformers 5.23 (`generation/logits_process.py`); where transformers compares a
//! float32 tensor with a Python float, the float is rounded to f32 here too. Probability masses are
//! accumulated in f64; they can differ from torch's float32 softmax in the last bits, so a token whose
//! cumulative mass lies within ~1e-7 of a threshold may be decided differently (see the tests' margins).

use std::cell::RefCell;

use crate::kernels::{
    count_at_least, div_inplace, entropy_sums, exp_into, exp_into_xe, f32_at_least, finite_moments,
    mask_below, row_max, ExpStats, Moments,
};
use crate::select::{
    boundary_by_mass, buckets_below_max, buckets_typical, collect_at_least, kth_largest, lowered, max_key,
    top_candidates, top_candidates_ext, typical_key, Cand, Histogram, MassItem,
};

const NEG_INF: f32 = f32::NEG_INFINITY;

/// Candidates examined by top-p's fast path before it falls back to the mass histogram.
const TOP_P_FAST: usize = 512;

/// Below this `1 - top_p`, top-p sums the removed mass from the bottom ([`Row::top_p_tail`]).
const TOP_P_TAIL: f64 = 1e-5;

/// Memory reused by one thread from row to row.
#[derive(Default)]
pub struct Scratch {
    /// Live `(index, logical value)` pairs of a sparse row.
    pub kept: Vec<Cand>,
    /// Secondary candidate buffer.
    pub cands: Vec<Cand>,
    /// `exp(l - max)` for every token of the row.
    pub e: Vec<f32>,
    pub items: Vec<MassItem>,
    pub hist: Histogram,
    /// `(token, bias)` contributions of sequence biases, in application order.
    pub contrib: Vec<(u32, f32)>,
    /// Block sums of the sampler's inverse-CDF walk.
    pub sums: Vec<f64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch memory.
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

/// Softmax statistics of a list of (logical) values, in f64: `(max, e_i, sum, sum e*l)`.
fn sparse_stats(kept: &[Cand], items: &mut Vec<MassItem>) -> (f32, ExpStats) {
    let vmax = kept.iter().fold(NEG_INF, |m, c| if c.1 > m { c.1 } else { m });
    items.clear();
    let mut sum = 0.0f64;
    let mut sum_xe = 0.0f64;
    for c in kept {
        let l = (c.1 - vmax) as f64;
        let e = l.exp();
        sum += e;
        sum_xe += e * l;
        items.push(MassItem { key: 0.0, e: e as f32 });
    }
    (vmax, ExpStats { sum, sum_xe })
}

pub struct Row<'a> {
    buf: &'a mut [f32],
    /// Temperature not yet applied to `buf` (dense rows only).
    pending_t: Option<f32>,
    /// The live tokens are exactly `s.kept`; `buf` is stale until [`Row::finish`].
    sparse: bool,
    s: &'a mut Scratch,
    /// While the row is not known to be valid: the old value of every point update, to undo them.
    undo: Option<&'a mut Vec<(u32, f32)>>,
    /// A top-k mask decided before the row was validated, applied when processing resumes.
    deferred_mask: Option<f32>,
    /// What the logged point updates met and made (see [`PointFlags`]).
    flags: PointFlags,
    /// After the validating top-k read: the raw finite scores left lie in `raw_range.0 ..= raw_range.1`
    /// (`-inf` as the low end: not known).
    raw_range: (f32, f32),
    /// The row's input is another buffer, not yet copied: see [`Overlay`].
    overlay: Option<Overlay<'a>>,
}

/// A row processed into a new buffer (transformers' processors return a new tensor) without copying the
/// input first: the values are `src`, except at the positions point updates touched (marked in
/// `touched`), whose values are in the row's buffer. The rest of the buffer is not written until the row
/// is materialized (a dense result: the input copied, the touched values put back) or written out sparse
/// (the `-inf` fill and the kept tokens), so a sparse result costs one write of the buffer, not two.
pub struct Overlay<'a> {
    src: &'a [f32],
    touched: &'a mut Vec<u64>,
}

impl Overlay<'_> {
    #[inline]
    fn has(&self, i: u32) -> bool {
        self.touched[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }
}

/// A suspended overlay row's input and the log of its point updates (see [`Row::resume`]).
pub type OverlayInput<'b> = (&'b [f32], &'b [(u32, f32)]);

/// Copies `src` into `buf`, keeping the values at the positions `log` touched.
fn materialize(buf: &mut [f32], src: &[f32], log: &[(u32, f32)]) {
    let kept: Vec<(u32, f32)> = log.iter().map(|&(i, _)| (i, buf[i as usize])).collect();
    buf.copy_from_slice(src);
    for (i, v) in kept {
        buf[i as usize] = v;
    }
}

/// What logged point updates saw while the row was not yet validated.
#[derive(Debug, Clone, Copy, Default)]
pub struct PointFlags {
    /// An update overwrote a NaN / `+inf` of the input (it must still be reported).
    pub overwrote_invalid: bool,
    /// An update produced a NaN / `+inf` (a float32 overflow: not the input's fault).
    pub created_invalid: bool,
}

/// The verdict of [`Row::top_k_validating`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    #[default]
    Valid,
    /// The input holds NaN / `+inf`.
    InvalidInput,
    /// A point update overflowed: the call has to be redone on the checked path.
    Overflow,
}

/// Point updates of a row's logical values (penalties, bans, biases). While the row has not been
/// validated, every write logs the old value so that [`undo`] can restore the buffer.
pub struct Points<'r> {
    buf: &'r mut [f32],
    undo: Option<(&'r mut Vec<(u32, f32)>, &'r mut PointFlags)>,
    overlay: Option<Overlay<'r>>,
}

impl Points<'_> {
    /// The vocabulary size.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    pub fn get(&self, i: u32) -> f32 {
        match &self.overlay {
            Some(o) if !o.has(i) => o.src[i as usize],
            _ => self.buf[i as usize],
        }
    }

    #[inline]
    pub fn set(&mut self, i: u32, v: f32) {
        if let Some((log, flags)) = &mut self.undo {
            let old = match &self.overlay {
                Some(o) if !o.has(i) => o.src[i as usize],
                _ => self.buf[i as usize],
            };
            log.push((i, old));
            // The row is validated later: a NaN / +inf replaced here must still count.
            flags.overwrote_invalid |= old.is_nan() || old == f32::INFINITY;
            flags.created_invalid |= v.is_nan() || v == f32::INFINITY;
        }
        if let Some(o) = &mut self.overlay {
            o.touched[(i / 64) as usize] |= 1u64 << (i % 64);
        }
        self.buf[i as usize] = v;
    }

    #[inline]
    pub fn update(&mut self, i: u32, f: impl FnOnce(f32) -> f32) {
        let v = f(self.get(i));
        self.set(i, v);
    }
}

/// Restores the values a [`Points`] log recorded (latest first, so repeated writes unwind in order).
pub fn undo(buf: &mut [f32], log: &[(u32, f32)]) {
    for &(i, old) in log.iter().rev() {
        buf[i as usize] = old;
    }
}

/// A row's state between the two phases of a pipeline call (see [`crate::Pipeline`]); its kept tokens
/// travel separately.
#[derive(Debug, Clone, Copy, Default)]
pub struct Suspended {
    pending_t: Option<f32>,
    sparse: bool,
    deferred_mask: Option<f32>,
    /// The buffer still has to be materialized from the input (see [`Overlay`]).
    overlay: bool,
}

impl<'a> Row<'a> {
    pub fn new(buf: &'a mut [f32], s: &'a mut Scratch) -> Self {
        Row {
            buf,
            pending_t: None,
            sparse: false,
            s,
            undo: None,
            deferred_mask: None,
            flags: PointFlags::default(),
            raw_range: (NEG_INF, NEG_INF),
            overlay: None,
        }
    }

    /// A row whose point updates are logged into `log` until it is validated.
    pub fn with_undo(buf: &'a mut [f32], s: &'a mut Scratch, log: &'a mut Vec<(u32, f32)>) -> Self {
        log.clear();
        Row { undo: Some(log), ..Row::new(buf, s) }
    }

    /// [`Row::with_undo`] for a row whose input is `src` and whose result goes to `buf` (see [`Overlay`]);
    /// `touched` is memory for the overlay's marks.
    pub fn with_undo_from(
        buf: &'a mut [f32],
        src: &'a [f32],
        s: &'a mut Scratch,
        log: &'a mut Vec<(u32, f32)>,
        touched: &'a mut Vec<u64>,
    ) -> Self {
        touched.clear();
        touched.resize(buf.len().div_ceil(64), 0);
        Row { overlay: Some(Overlay { src, touched }), ..Row::with_undo(buf, s, log) }
    }

    /// Copies the input into the buffer if the row still reads it from elsewhere (see [`Overlay`]).
    fn materialize(&mut self) {
        if let Some(o) = self.overlay.take() {
            materialize(self.buf, o.src, self.undo.as_deref().map_or(&[], |l| l.as_slice()));
        }
    }

    /// Ends the first phase: the state goes to `st`, the kept tokens to `kept` (swapped, no copy).
    pub fn suspend(self, kept: &mut Vec<Cand>) -> Suspended {
        std::mem::swap(kept, &mut self.s.kept);
        Suspended {
            pending_t: self.pending_t,
            sparse: self.sparse,
            deferred_mask: self.deferred_mask,
            overlay: self.overlay.is_some(),
        }
    }

    /// Continues a suspended row (now known to be valid: nothing is logged any more). `input`: for a row
    /// suspended with an overlay, its input and the log of its point updates.
    pub fn resume(
        buf: &'a mut [f32],
        s: &'a mut Scratch,
        st: Suspended,
        kept: &mut Vec<Cand>,
        input: Option<OverlayInput<'_>>,
    ) -> Self {
        std::mem::swap(kept, &mut s.kept);
        if let (true, false, Some((src, log))) = (st.overlay, st.sparse, input) {
            materialize(buf, src, log);
        }
        let mut row = Row { pending_t: st.pending_t, sparse: st.sparse, ..Row::new(buf, s) };
        if let Some(kth) = st.deferred_mask {
            row.finish();
            mask_below(row.buf, kth, NEG_INF);
        }
        row
    }

    fn vocab(&self) -> usize {
        self.buf.len()
    }

    /// Largest kept set stored sparsely; beyond it, masking the dense row in place is cheaper.
    fn sparse_cap(&self) -> usize {
        (self.buf.len() / 8).max(64)
    }

    fn t(&self) -> f32 {
        self.pending_t.unwrap_or(1.0)
    }

    /// Writes the logical values to the buffer; the row is dense with nothing pending afterwards.
    pub fn finish(&mut self) {
        if self.sparse {
            self.overlay = None; // the fill writes every value
            self.buf.fill(NEG_INF);
            for &(i, v) in &self.s.kept {
                self.buf[i as usize] = v;
            }
            self.sparse = false;
        } else {
            self.materialize();
            if let Some(t) = self.pending_t {
                div_inplace(self.buf, t);
            }
        }
        self.pending_t = None;
    }

    /// Writes the row out (unless `write` is false) and draws a token from its softmax with the uniform
    /// `u`: the same token as [`crate::sampling::sample_row`] on the written row, without reading the row
    /// again when it is sparse. Without `write`, a sparse row is not written at all (the buffer keeps
    /// whatever it held), a dense one still is.
    pub fn finish_and_sample(&mut self, r: usize, u: f64, write: bool) -> crate::Result<usize> {
        if self.sparse && self.s.kept.len() <= crate::sampling::sparse_cap(self.vocab()) {
            if write {
                self.finish();
            } else {
                self.sparse = false;
                self.pending_t = None;
            }
            let kept = &mut self.s.kept;
            kept.sort_unstable_by_key(|c| c.0); // the index order a scan of the row finds them in
            let max = kept.iter().fold(NEG_INF, |m, c| if c.1 > m { c.1 } else { m });
            if max == NEG_INF {
                return Err(crate::Error::value(format!(
                    "row {r} of scores is all -inf: no token is left to choose from"
                )));
            }
            return Ok(crate::sampling::draw_among(kept, max, u));
        }
        self.finish();
        crate::sampling::sample_row(r, self.buf, u, self.s)
    }

    /// Point access to the logical values (penalties, bans, biases).
    pub fn points(&mut self) -> Points<'_> {
        self.points_and_scratch().0
    }

    /// [`Row::points`], and scratch memory for processors that need some meanwhile.
    pub fn points_and_scratch(&mut self) -> (Points<'_>, &mut Scratch) {
        if self.sparse || self.pending_t.is_some() {
            self.finish(); // (an overlay row stays one: point updates read through it)
        }
        let undo = match &mut self.undo {
            Some(log) => Some((&mut **log, &mut self.flags)),
            None => None,
        };
        let overlay = self.overlay.as_mut().map(|o| Overlay { src: o.src, touched: &mut *o.touched });
        (Points { buf: self.buf, undo, overlay }, self.s)
    }

    /// `scores / t`, exactly as torch divides a float32 tensor by a Python float rounded to f32.
    pub fn temperature(&mut self, t: f32) {
        if self.sparse {
            for c in &mut self.s.kept {
                c.1 /= t;
            }
        } else {
            if self.pending_t.is_some() {
                self.finish();
            }
            self.pending_t = Some(t);
        }
    }

    /// Keeps the dense tokens whose raw value is `>= thr_raw` (ties kept); the others get `filter`.
    /// With `filter == -inf` and a small kept set the row becomes sparse.
    fn keep_at_least_raw(&mut self, thr_raw: f32, filter: f32) {
        debug_assert!(!self.sparse);
        if filter == NEG_INF {
            let cap = self.sparse_cap();
            if collect_at_least(self.buf, thr_raw, cap, &mut self.s.kept) {
                if let Some(t) = self.pending_t.take() {
                    for c in &mut self.s.kept {
                        c.1 /= t;
                    }
                }
                self.sparse = true;
            } else {
                mask_below(self.buf, thr_raw, NEG_INF);
            }
        } else {
            debug_assert!(self.pending_t.is_none());
            mask_below(self.buf, thr_raw, filter);
        }
    }

    /// transformers `TopKLogitsWarper`; `k` is already `max(top_k, min_tokens_to_keep)`.
    /// Keeps every token tied with the k-th value (`scores < kth` are removed).
    pub fn top_k(&mut self, k: usize, filter: f32) {
        self.top_k_impl(k, filter, false);
    }

    /// [`Row::top_k`] (with `-inf` filter) as the first full read of a row not yet validated: the same
    /// read checks for NaN / `+inf` (false: the row is invalid, nothing was decided) and the buffer is
    /// not written (a dense mask is deferred to [`Row::resume`]).
    ///
    /// Also records where the raw scores left lie ([`Row::raw_range`]) and, through the result, whether a
    /// point update overflowed.
    pub fn top_k_validating(&mut self, k: usize) -> Validation {
        if self.flags.created_invalid {
            return Validation::Overflow;
        }
        if !self.top_k_impl(k, NEG_INF, true) || self.flags.overwrote_invalid {
            return Validation::InvalidInput;
        }
        Validation::Valid
    }

    /// The largest value point updates wrote (`-inf` if none).
    fn touched_max(&self) -> f32 {
        let log = self.undo.as_deref().map_or(&[][..], |l| l.as_slice());
        log.iter().fold(NEG_INF, |m, &(i, _)| m.max(self.buf[i as usize]))
    }

    /// `top_candidates_ext(.., check = true)` of the row seen through its overlay: the input's candidates
    /// for `k + m` (m = positions point updates touched) contain the row's top k wherever the touched
    /// values went, so the touched positions are replaced by their values and the k-th largest taken again.
    fn top_candidates_overlay(&mut self, k: usize, slack: bool) -> (f32, bool) {
        let Some(o) = &self.overlay else { unreachable!("called for overlay rows only") };
        let log = self.undo.as_deref().map_or(&[][..], |l| l.as_slice());
        let s = &mut *self.s;
        s.cands.clear();
        for &(i, _) in log {
            s.cands.push((i, self.buf[i as usize])); // (repeated positions hold the same current value)
        }
        s.cands.sort_unstable_by_key(|c| c.0);
        s.cands.dedup_by_key(|c| c.0);
        let want = k.saturating_add(s.cands.len()).min(o.src.len());
        let (_, invalid) = top_candidates_ext(o.src, want, slack, true, &mut s.kept);
        if invalid {
            return (NEG_INF, true);
        }
        s.kept.retain(|c| !o.has(c.0));
        s.kept.extend(s.cands.iter().filter(|c| c.1 > NEG_INF));
        if s.kept.len() < k {
            return (NEG_INF, false);
        }
        let kth = kth_largest(&mut s.kept, k);
        let cut = if slack { lowered(kth) } else { kth };
        s.kept.retain(|c| c.1 >= cut);
        (kth, false)
    }

    /// After [`Row::top_k_validating`]: the finite raw scores left (before any pending temperature) lie in
    /// `lo ..= hi`; `lo` is `-inf` when not known, `hi` is `-inf` when the row is all `-inf`.
    pub fn raw_range(&self) -> (f32, f32) {
        self.raw_range
    }

    fn top_k_impl(&mut self, k: usize, filter: f32, validating: bool) -> bool {
        if k >= self.vocab() {
            if !validating {
                return true;
            }
            let (scan, touched_max) = match &self.overlay {
                // The input, and the values point updates wrote (the input's max may be stale: an upper bound).
                Some(o) => (crate::kernels::scan_row(o.src), self.touched_max()),
                None => (crate::kernels::scan_row(self.buf), NEG_INF),
            };
            self.raw_range = (NEG_INF, scan.max.max(touched_max));
            return !scan.invalid;
        }
        if filter != NEG_INF {
            self.finish();
        }
        if self.sparse {
            let kept = &mut self.s.kept;
            if kept.len() > k {
                let kth = kth_largest(kept, k);
                kept.retain(|c| c.1 >= kth);
            }
            return true;
        }
        let t = self.pending_t;
        let (kth_raw, invalid) = match &self.overlay {
            None => top_candidates_ext(self.buf, k, t.is_some(), validating, &mut self.s.kept),
            Some(_) => self.top_candidates_overlay(k, t.is_some()),
        };
        if invalid {
            return false;
        }
        if validating {
            let max = self.s.kept.iter().fold(NEG_INF, |m, c| m.max(c.1));
            // With a pending temperature, values a few ulps under kth_raw can tie with it after dividing.
            let lo = if kth_raw == NEG_INF { NEG_INF } else { lowered(lowered(kth_raw)) };
            self.raw_range = (lo, max);
        }
        if kth_raw == NEG_INF {
            // Fewer than k finite values: transformers' threshold is -inf and nothing is removed.
            return true;
        }
        let kth = match t {
            None => kth_raw,
            Some(t) => {
                // The k-th largest of x / t is (k-th largest of x) / t; compare after dividing, as torch does.
                let kth = kth_raw / t;
                if lowered(kth_raw).next_down() / t < kth {
                    self.s.kept.retain_mut(|c| {
                        c.1 /= t;
                        c.1 >= kth
                    });
                } else {
                    self.materialize(); // (the exact pass reads the whole row)
                    collect_scaled_at_least(self.buf, t, kth, &mut self.s.kept);
                }
                kth
            }
        };
        if filter == NEG_INF && self.s.kept.len() <= self.sparse_cap() {
            self.pending_t = None;
            self.sparse = true;
        } else if validating {
            self.deferred_mask = Some(kth);
        } else {
            self.finish();
            mask_below(self.buf, kth, filter);
        }
        true
    }

    /// transformers `TopPLogitsWarper`: a token is kept iff the mass ranked strictly above it is
    /// `< top_p` (with `1 - top_p` rounded to f32 as torch compares it), and the `min_keep` most likely
    /// tokens always are. Ties with the crossing token are kept.
    pub fn top_p(&mut self, p: f64, filter: f32, min_keep: usize) {
        let rem = (1.0 - p) as f32;
        if (rem as f64) < TOP_P_TAIL {
            return self.top_p_tail(rem as f64, filter, min_keep);
        }
        let frac = 1.0 - rem as f64;
        if filter != NEG_INF {
            self.finish();
        }
        if self.sparse {
            let (_, st) = sparse_stats(&self.s.kept, &mut self.s.items);
            for (it, c) in self.s.items.iter_mut().zip(&self.s.kept) {
                it.key = -c.1;
            }
            if let Some(kb) = boundary_by_mass(&mut self.s.items, 0.0, 0, frac * st.sum, min_keep) {
                self.s.kept.retain(|c| -c.1 <= kb);
            }
            return;
        }
        // Fast path: the crossing usually lies among the few hundred most likely tokens, which one scan
        // finds (their maximum is the row's).
        let v = self.vocab();
        let m = TOP_P_FAST.max(min_keep).min(v);
        let s = &mut *self.s;
        let kth = top_candidates(self.buf, m, false, &mut s.cands);
        let max = s.cands.iter().fold(NEG_INF, |a, c| a.max(c.1));
        if max == NEG_INF {
            return;
        }
        let inv_t = 1.0 / self.pending_t.unwrap_or(1.0);
        s.e.resize(v, 0.0);
        let target = frac * exp_into(self.buf, max, inv_t, &mut s.e);
        // Each token's mass is at most 1 (relative to the maximum), so m tokens cannot reach a target
        // above m; if they do not, a finite kth with no mass sends the walk to the histogram.
        let cand_mass = if target <= m as f64 {
            s.cands.iter().map(|c| s.e[c.0 as usize] as f64).sum::<f64>()
        } else {
            0.0
        };
        let boundary = if kth == NEG_INF || cand_mass >= target {
            s.items.clear();
            s.items.extend(s.cands.iter().map(|c| MassItem { key: -c.1, e: s.e[c.0 as usize] }));
            boundary_by_mass(&mut s.items, 0.0, 0, target, min_keep).or_else(|| {
                if kth == NEG_INF {
                    None
                } else {
                    max_key(&s.items)
                }
            })
        } else {
            // Mass histogram over "nats below the maximum"; only the crossing bucket is sorted.
            buckets_below_max(self.buf, max, inv_t, s.hist.prepare(v));
            s.hist.build(&s.e);
            s.hist.crossing(target, min_keep).and_then(|cr| {
                s.items.clear();
                let (buf, e) = (&*self.buf, &s.e);
                s.items.extend(s.hist.members(cr.bucket).map(|i| MassItem { key: -buf[i], e: e[i] }));
                boundary_by_mass(&mut s.items, cr.mass_before, cr.count_before, target, min_keep)
                    .or_else(|| max_key(&s.items))
            })
        };
        // No boundary: every finite token is kept. transformers' `min_tokens_to_keep` re-keep then also
        // covers -inf tokens when there are fewer finite tokens than `min_keep` (they stay -inf, which only
        // shows with a finite filter value; if only some of them fit, torch's unstable sort picks which).
        let thr = boundary.map_or_else(
            || {
                if filter != NEG_INF && min_keep > 1 && count_at_least(self.buf, -f32::MAX) < min_keep {
                    NEG_INF
                } else {
                    -f32::MAX
                }
            },
            |kb| -kb,
        );
        self.keep_at_least_raw(thr, filter);
    }

    /// [`Row::top_p`] when `rem = 1 - top_p` is small (`top_p = 1` included). transformers removes the
    /// least likely tokens whose float32 probabilities, summed from the bottom, stay `<= rem` (for
    /// `top_p = 1`: those whose float32 probability is 0, and the `-inf` ones, which then take `filter`).
    /// Summed from the top, the mass left below the boundary drowns in the rounding of the total, so this
    /// sums from the bottom, over the candidates with probability `<= rem` only, by halving selection.
    fn top_p_tail(&mut self, rem: f64, filter: f32, min_keep: usize) {
        if filter != NEG_INF {
            self.finish();
        }
        let v = self.vocab();
        let s = &mut *self.s;
        s.items.clear();
        // (max, 1 / T, total mass): probabilities are exp((x - max) / T) / total.
        let (max, inv_t, total) = if self.sparse {
            let max = s.kept.iter().fold(NEG_INF, |m, c| m.max(c.1));
            (max, 1.0f64, s.kept.iter().map(|c| ((c.1 - max) as f64).exp()).sum::<f64>())
        } else {
            let range = crate::kernels::scan_row_range(self.buf);
            let inv_t = 1.0 / self.pending_t.unwrap_or(1.0) as f64;
            if range.max == NEG_INF {
                return; // all -inf: transformers' softmax is NaN and nothing is removed
            }
            if rem == 0.0 && filter == NEG_INF && (range.max as f64 - range.min as f64) * inv_t < 87.0 {
                return; // no float32 probability underflows (each is >= e^-87 / V): nothing is removed
            }
            s.e.resize(v, 0.0);
            (range.max, inv_t, exp_into(self.buf, range.max, inv_t as f32, &mut s.e))
        };
        if max == NEG_INF {
            return;
        }
        // Candidates: probability <= rem (or below float32's smallest, 2^-149, for rem = 0), with a margin.
        let cut = (rem.max(1.4e-45) * total).ln() + 0.7;
        // torch's float32 softmax: exp(x / T - max / T) rounded to float32 (subnormals included), times the
        // float32 reciprocal of the sum; this decides which tiny probabilities are exactly 0.
        let t = self.pending_t.filter(|_| !self.sparse).unwrap_or(1.0);
        let (max_t, inv_sum) = (max / t, (1.0 / total) as f32);
        let prob = |x: f32| (((x / t - max_t) as f64).exp() as f32) * inv_sum;
        let values: Box<dyn Iterator<Item = f32> + '_> = if self.sparse {
            Box::new(s.kept.iter().map(|c| c.1))
        } else {
            Box::new(self.buf.iter().copied())
        };
        for x in values {
            if x > NEG_INF && (x as f64 - max as f64) * inv_t <= cut {
                s.items.push(MassItem { key: x, e: prob(x) });
            }
        }
        // The first score kept, walking up: the cumulative probability exceeds rem there.
        let boundary = if rem == 0.0 {
            s.items.iter().filter(|it| it.e > 0.0).map(|it| it.key).min_by(f32::total_cmp)
        } else {
            boundary_by_mass(&mut s.items, 0.0, 0, rem.next_up(), 1)
        };
        // No boundary among the candidates: all of them are removed, the smallest other score is kept.
        let cands_max = s.items.iter().map(|it| it.key).max_by(f32::total_cmp);
        let above =
            |xs: &mut dyn Iterator<Item = f32>, m: f32| xs.filter(|&x| x > m).fold(f32::INFINITY, f32::min);
        let thr = match (boundary, cands_max) {
            (Some(b), _) => b,
            (None, Some(m)) => {
                let a = if self.sparse {
                    above(&mut s.kept.iter().map(|c| c.1), m)
                } else {
                    above(&mut self.buf.iter().copied(), m)
                };
                if a == f32::INFINITY {
                    m
                } else {
                    a
                }
            }
            (None, None) => -f32::MAX,
        };
        if self.sparse {
            return retain_at_least(&mut self.s.kept, thr, min_keep);
        }
        // (fewer finite tokens than `min_keep`: the threshold is -inf, and -inf tokens stay -inf, see `top_p`)
        let thr = self.min_keep_threshold(thr, min_keep);
        self.keep_at_least_raw(thr, filter);
    }

    /// `thr`, lowered to the `min_keep`-th largest raw score where fewer than `min_keep` tokens reach it
    /// (transformers re-keeps its `min_tokens_to_keep` most likely tokens; with fewer finite ones than that,
    /// `-inf`).
    fn min_keep_threshold(&mut self, thr: f32, min_keep: usize) -> f32 {
        if min_keep > 1 && count_at_least(self.buf, thr) < min_keep {
            thr.min(top_candidates(self.buf, min_keep.min(self.vocab()), false, &mut self.s.cands))
        } else {
            thr
        }
    }

    /// transformers `MinPLogitsWarper`: removes `prob < min_p * max_prob`, i.e. logits more than
    /// `-ln(min_p)` below the maximum, then re-keeps the `min_keep` most likely tokens.
    pub fn min_p(&mut self, min_p: f64, filter: f32, min_keep: usize) {
        let ln = ((min_p as f32) as f64).ln();
        if filter != NEG_INF {
            self.finish();
        }
        if self.sparse {
            let vmax = self.s.kept.iter().fold(NEG_INF, |m, c| m.max(c.1));
            return retain_at_least(&mut self.s.kept, (vmax as f64 + ln) as f32, min_keep);
        }
        let max = row_max(self.buf);
        if max == NEG_INF {
            return;
        }
        let thr = self.min_keep_threshold((max as f64 + ln * self.t() as f64) as f32, min_keep);
        self.keep_at_least_raw(thr, filter);
    }

    /// transformers `EpsilonLogitsWarper` (`floor = epsilon`) and `EtaLogitsWarper`
    /// (`floor = min(eps, sqrt(eps) * exp(-entropy))`): removes `prob < floor` unless the token is among
    /// the `min_keep` most likely.
    pub fn prob_floor(&mut self, floor: impl Fn(&ExpStats) -> f64, filter: f32, min_keep: usize) {
        if filter != NEG_INF {
            self.finish();
        }
        if self.sparse {
            let (vmax, st) = sparse_stats(&self.s.kept, &mut self.s.items);
            let ln_floor = (floor(&st) as f32 as f64).ln() + st.sum.ln();
            return retain_at_least(&mut self.s.kept, (vmax as f64 + ln_floor) as f32, min_keep);
        }
        let max = row_max(self.buf);
        if max == NEG_INF {
            return;
        }
        let v = self.vocab();
        let t = self.t();
        self.s.e.resize(v, 0.0);
        let st = exp_into_xe(self.buf, max, 1.0 / t, &mut self.s.e);
        let ln_floor = (floor(&st) as f32 as f64).ln() + st.sum.ln();
        let mut thr = (max as f64 + ln_floor * t as f64) as f32;
        let kth = if min_keep <= 1 {
            max
        } else {
            top_candidates(self.buf, min_keep.min(v), false, &mut self.s.cands)
        };
        thr = thr.min(kth);
        self.keep_at_least_raw(thr, filter);
    }

    /// transformers `TypicalLogitsWarper`. With `l = log p`, the key `|-l - H|` equals `|x - mu|` where
    /// `x` is the logit (minus its max) and `mu = E[x]`: tokens are taken by increasing key until the mass
    /// reaches `mass` (the crossing token and its ties included), the first `min_keep` always.
    pub fn typical(&mut self, mass: f64, filter: f32, min_keep: usize) {
        let mass = (mass as f32) as f64;
        if filter != NEG_INF {
            self.finish();
        }
        if self.sparse {
            let (vmax, st) = sparse_stats(&self.s.kept, &mut self.s.items);
            let mu = st.sum_xe / st.sum;
            let key = |v: f32| ((v - vmax) as f64 - mu).abs() as f32;
            for (it, c) in self.s.items.iter_mut().zip(&self.s.kept) {
                it.key = key(c.1);
            }
            if let Some(kb) = boundary_by_mass(&mut self.s.items, 0.0, 0, mass * st.sum, min_keep) {
                self.s.kept.retain(|c| key(c.1) <= kb);
            }
            return;
        }
        let max = row_max(self.buf);
        if max == NEG_INF {
            return;
        }
        let v = self.vocab();
        let inv_t = 1.0 / self.t();
        self.s.e.resize(v, 0.0);
        let st = exp_into_xe(self.buf, max, inv_t, &mut self.s.e);
        let mu = (st.sum_xe / st.sum) as f32;
        let target = mass * st.sum;
        let s = &mut *self.s;
        buckets_typical(self.buf, max, inv_t, mu, s.hist.prepare(v));
        s.hist.build(&s.e);
        let Some(cr) = s.hist.crossing(target, min_keep) else {
            return; // transformers clamps the boundary to the last token: nothing is removed
        };
        s.items.clear();
        let (buf, e) = (&*self.buf, &s.e);
        s.items.extend(
            s.hist.members(cr.bucket).map(|i| MassItem { key: typical_key(buf[i], max, inv_t, mu), e: e[i] }),
        );
        let kb = boundary_by_mass(&mut s.items, cr.mass_before, cr.count_before, target, min_keep)
            .or_else(|| max_key(&s.items))
            .unwrap_or(f32::INFINITY);
        mask_typical(self.buf, max, inv_t, mu, kb, filter);
    }
}

impl Row<'_> {
    /// transformers 5.23 `TopHLogitsWarper` (top-h, arXiv 2509.02510): among the `n` most likely tokens
    /// (`n = min(100, vocab)`, ranked as `torch.topk` ranks them; ties: lower id first), keep the longest
    /// prefix whose cumulative entropy `-sum p_i ln p_i` (p renormalized over the `n`) stays `<= top_h * H`,
    /// H the entropy of those `n`, and at least the most likely token; everything else gets `filter`.
    /// Tokens whose float32 probability underflows to 0 are never kept (transformers' `0 * log 0` is NaN).
    /// The sums are exact-rounded f64 where torch sums float32: a token whose cumulative entropy lies
    /// within float32 rounding of the threshold may be decided differently.
    pub fn top_h(&mut self, top_h: f64, filter: f32) {
        const N: usize = 100;
        self.finish();
        let n = N.min(self.vocab());
        let cap = self.sparse_cap();
        let s = &mut *self.s;
        top_candidates(self.buf, n, false, &mut s.cands);
        if s.cands.is_empty() {
            return; // all -inf: transformers keeps position 0, which is -inf as well
        }
        s.cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        s.cands.truncate(n);
        let max = s.cands[0].1;
        // As transformers computes it in float32: p = softmax(top logits), H = -sum (x - logsumexp) * p,
        // the terms -p * ln p and their running sum (torch accumulates cumsum in double on the CPU).
        // The probabilities, in the scratch buffer (at most 100: no allocation per row).
        s.e.clear();
        s.e.extend(s.cands.iter().map(|c| (c.1 - max).exp()));
        let sum = s.e.iter().map(|&x| x as f64).sum::<f64>() as f32;
        let lse = max + sum.ln();
        s.e.iter_mut().for_each(|x| *x /= sum);
        let entropy = -s.cands.iter().zip(&s.e).map(|(c, &p)| ((c.1 - lse) * p) as f64).sum::<f64>() as f32;
        let tau = entropy * top_h as f32;
        let mut cum = 0.0f64;
        let mut keep = 1;
        for (i, &p) in s.e.iter().enumerate() {
            if p == 0.0 {
                break; // 0 * ln 0 is NaN in transformers' cumulative sum: nothing from here on is kept
            }
            cum += (-p * p.ln()) as f64;
            if i > 0 {
                if cum as f32 > tau {
                    break;
                }
                keep = i + 1;
            }
        }
        s.cands.truncate(keep);
        if filter == NEG_INF && keep <= cap {
            std::mem::swap(&mut s.kept, &mut s.cands);
            self.sparse = true;
        } else {
            self.buf.fill(filter);
            for &(i, v) in &s.cands {
                self.buf[i as usize] = v;
            }
        }
    }
}

impl Row<'_> {
    /// The finite values of the row (after any pending temperature): count, max, min, sum, sum of squares.
    /// Dense rows are finished first.
    /// The sums are of `x - shift`, `shift` the first finite value (see [`finite_moments`]).
    fn finite_moments(&mut self) -> Moments {
        if self.sparse {
            let shift = self.s.kept.iter().find(|c| c.1 > NEG_INF).map_or(0.0, |c| c.1);
            let mut m = Moments::EMPTY;
            for &(_, x) in self.s.kept.iter().filter(|c| c.1 > NEG_INF) {
                m.add(x, shift);
            }
            return m;
        }
        self.finish();
        let shift = self.buf.iter().copied().find(|&x| x > NEG_INF).unwrap_or(0.0);
        finite_moments(self.buf, shift)
    }

    /// Sets the values `< cut` to `filter` (dense) or drops them (sparse).
    fn keep_at_least(&mut self, cut: f32, filter: f32) {
        if self.sparse {
            if filter != NEG_INF {
                self.finish();
                mask_below(self.buf, cut, filter);
            } else {
                self.s.kept.retain(|c| c.1 >= cut);
            }
        } else {
            mask_below(self.buf, cut, filter);
        }
    }

    /// Top-nσ (llama.cpp `top_n_sigma`, arXiv 2411.07641): the tokens whose value is `< max - n * sigma`
    /// get `filter`, sigma the (population) standard deviation of the row's finite values. Rows with fewer
    /// than two finite values are unchanged. The moments are of the values minus the first finite one
    /// (float32 lanes, f64 across blocks; llama.cpp: float sums), so a value within rounding of the cut may
    /// be decided differently, but a constant added to every score changes nothing.
    pub fn top_n_sigma(&mut self, n: f64, filter: f32) {
        let m = self.finite_moments();
        if m.n < 2 {
            return;
        }
        let mean = m.sum / m.n as f64; // (of x - shift: the variance is the same)
        let var = (m.sq / m.n as f64 - mean * mean).max(0.0);
        self.keep_at_least(f32_at_least(m.max as f64 - n * var.sqrt()), filter);
    }

    /// Dynamic temperature (llama.cpp `temp_ext`): the row is divided by
    /// `T_min + (T_max - T_min) * (H / ln N) ** exponent`, `T_min = max(0, t - range)`, `T_max = t + range`,
    /// H the entropy of the softmax over the row's N finite values (N = llama.cpp's candidates left); N < 2:
    /// unchanged. `range <= 0`: plain temperature `t`. Where that temperature is 0 or so small that the
    /// division overflows float32, its limit is taken: only the maximal tokens are kept (the others -inf).
    pub fn dynamic_temperature(&mut self, t: f64, range: f64, exponent: f64) {
        if range <= 0.0 {
            return self.temperature(t as f32);
        }
        let m = self.finite_moments();
        if m.n < 2 {
            return;
        }
        let max = m.max;
        // Entropy of softmax over the finite values: ln Z - E[x - max].
        let (z, xe) = if self.sparse {
            self.s.kept.iter().filter(|c| c.1 > NEG_INF).fold((0.0f64, 0.0f64), |(z, xe), c| {
                let d = (c.1 - max) as f64;
                (z + d.exp(), xe + d.exp() * d)
            })
        } else {
            self.s.e.resize(self.buf.len(), 0.0);
            exp_into(self.buf, max, 1.0, &mut self.s.e);
            entropy_sums(self.buf, max, &self.s.e)
        };
        let entropy = (z.ln() - xe / z).max(0.0);
        let normalized = (entropy / (m.n as f64).ln()).min(1.0);
        let (lo, hi) = ((t - range).max(0.0), t + range);
        let dyn_t = lo + (hi - lo) * normalized.powf(exponent);
        let biggest = m.min.abs().max(m.max.abs()) as f64;
        if dyn_t <= 0.0 || biggest / dyn_t >= f32::MAX as f64 {
            return self.keep_at_least(max, NEG_INF);
        }
        let t32 = dyn_t as f32;
        if self.sparse {
            self.s.kept.iter_mut().for_each(|c| c.1 /= t32);
        } else {
            div_inplace(self.buf, t32);
        }
    }
}

impl Row<'_> {
    /// XTC, "exclude top choices" (llama.cpp `xtc`), once the row's draw decided it applies: of the tokens
    /// whose probability (softmax over the finite values) is `>= threshold`, all but the least probable one
    /// are set to -inf, when at least two qualify and `min_keep` tokens remain. Among tokens tied at that
    /// least probability, the one with the highest id is kept (llama.cpp's sort leaves the choice open).
    pub fn xtc(&mut self, threshold: f64, min_keep: usize) {
        let m = self.finite_moments();
        if m.n < 2 {
            return;
        }
        // p >= threshold  <=>  x >= max + ln(threshold) + ln(Z), Z = sum exp(x - max).
        let z = if self.sparse {
            self.s.kept.iter().filter(|c| c.1 > NEG_INF).map(|c| ((c.1 - m.max) as f64).exp()).sum::<f64>()
        } else {
            self.s.e.resize(self.buf.len(), 0.0);
            exp_into(self.buf, m.max, 1.0, &mut self.s.e)
        };
        let cut = m.max as f64 + threshold.ln() + z.ln();
        let s = &mut *self.s;
        s.cands.clear();
        // (x as f64 >= cut  <=>  x >= the least f32 at or above cut)
        let cut32 = f32_at_least(cut);
        if self.sparse {
            s.cands.extend(s.kept.iter().filter(|c| c.1 >= cut32));
        } else {
            collect_at_least(self.buf, cut32, usize::MAX, &mut s.cands);
        }
        let qualify = s.cands.len();
        if qualify < 2 || m.n.saturating_sub(qualify - 1) < min_keep {
            return;
        }
        // The one kept: the least value, ties to the highest id.
        let keep = s.cands.iter().copied().fold(s.cands[0], |a, c| {
            if c.1 < a.1 || (c.1 == a.1 && c.0 > a.0) {
                c
            } else {
                a
            }
        });
        if self.sparse {
            s.kept.retain(|c| (c.1 as f64) < cut || c.0 == keep.0);
        } else {
            for &(i, _) in s.cands.iter().filter(|c| c.0 != keep.0) {
                self.buf[i as usize] = NEG_INF;
            }
        }
    }
}

/// Keeps the sparse tokens `>= thr`, or the `min_keep` most likely where fewer reach it (transformers'
/// `min_tokens_to_keep`).
fn retain_at_least(kept: &mut Vec<Cand>, mut thr: f32, min_keep: usize) {
    let k = min_keep.min(kept.len());
    if k > 0 && kept.iter().filter(|c| c.1 >= thr).count() < k {
        thr = thr.min(kth_largest(kept, k));
    }
    kept.retain(|c| c.1 >= thr);
}

crate::kernels::dispatch_fn! {
    /// Sets every element whose typical key exceeds `kb` to `fill` (`-inf` elements included).
    fn mask_typical(row: &mut [f32], max: f32, inv_t: f32, mu: f32, kb: f32, fill: f32) {
        for x in row.iter_mut() {
            let k = typical_key(*x, max, inv_t, mu);
            // -inf gives k = inf (or NaN for an all -inf row, excluded by the caller).
            *x = if k <= kb { *x } else { fill };
        }
    }
}

/// Exact (slow) path: every finite `x` with `x / t >= kth`, values divided.
fn collect_scaled_at_least(row: &[f32], t: f32, kth: f32, out: &mut Vec<Cand>) {
    out.clear();
    for (i, &x) in row.iter().enumerate() {
        let v = x / t;
        if x > NEG_INF && v >= kth {
            out.push((i as u32, v));
        }
    }
}
