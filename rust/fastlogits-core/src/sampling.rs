//! Drawing tokens: seeded multinomial sampling, greedy choice, log-softmax and top-n log-probabilities.
//!
//! Randomness comes from Philox4x32-10, a counter-based generator: the draw for row `r` at step `s`
//! is a pure function of `(seed, r, s)`, so results are identical whatever the number of threads or
//! the order rows are processed in.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::kernels::{exp_into, lane_sum, row_max, scan_row};
use crate::row::{with_scratch, Scratch};
use crate::select::{scan_finite, top_candidates, Cand};
use crate::{batch_of, check_scores, pool};

/// Philox4x32 with 10 rounds (Salmon et al., SC'11), as in Random123, numpy and JAX.
pub fn philox4x32(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    const M0: u64 = 0xD251_1F53;
    const M1: u64 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    let (mut c, mut k) = (ctr, key);
    for _ in 0..10 {
        let p0 = M0 * c[0] as u64;
        let p1 = M1 * c[2] as u64;
        c = [(p1 >> 32) as u32 ^ c[1] ^ k[0], p1 as u32, (p0 >> 32) as u32 ^ c[3] ^ k[1], p0 as u32];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// Two independent uniforms in `[0, 1)` with 53 random bits each, for `(seed, stream, step, index)`.
pub fn uniforms(seed: u64, stream: u64, step: u64, index: u32) -> [f64; 2] {
    let stream = stream as u32; // rows / beams: far below 2^32
    let o = philox4x32([index, step as u32, (step >> 32) as u32, stream], [seed as u32, (seed >> 32) as u32]);
    let to =
        |hi: u32, lo: u32| ((((hi as u64) << 32) | lo as u64) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    [to(o[0], o[1]), to(o[2], o[3])]
}

/// Which random stream each row (or beam-search batch entry) draws from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seeds<'a> {
    /// One seed for the batch: row `r` draws from the stream `(seed, r)`.
    Shared(u64),
    /// One key per row: row `r` draws from the stream `(keys[r], 0)` wherever it sits in the batch, so
    /// its tokens do not depend on the batch's size, its order or the other rows.
    PerRow(Cow<'a, [u64]>),
}

impl From<u64> for Seeds<'_> {
    fn from(seed: u64) -> Self {
        Seeds::Shared(seed)
    }
}

impl Seeds<'_> {
    /// [`uniforms`] of row `row`'s stream.
    pub fn uniforms(&self, row: usize, step: u64, index: u32) -> [f64; 2] {
        match self {
            Seeds::Shared(seed) => uniforms(*seed, row as u64, step, index),
            // `check` made sure every row has its key.
            Seeds::PerRow(keys) => uniforms(keys.get(row).copied().unwrap_or(0), 0, step, index),
        }
    }

    /// The uniform that decides row `row`'s token at `step`.
    pub fn uniform(&self, row: usize, step: u64) -> f64 {
        self.uniforms(row, step, 0)[0]
    }

    /// Per-row keys must number `rows`.
    pub fn check(&self, rows: usize, what: &str) -> Result<()> {
        match self {
            Seeds::PerRow(keys) if keys.len() != rows => Err(Error::shape(format!(
                "`seed` holds {} per-row keys but there are {rows} {what}: give one key per {}",
                keys.len(),
                what.trim_end_matches('s')
            ))),
            _ => Ok(()),
        }
    }

    /// The same seeds, owning their keys.
    pub fn into_owned(self) -> Seeds<'static> {
        match self {
            Seeds::Shared(s) => Seeds::Shared(s),
            Seeds::PerRow(k) => Seeds::PerRow(Cow::Owned(k.into_owned())),
        }
    }
}

/// Block size of the two-level inverse-CDF walk ([`walk`]) over dense weights.
pub(crate) const BLOCK: usize = 256;

/// `out[b]`: the sum of `e[b * BLOCK..]`'s block of [`BLOCK`], in f64 (lane-parallel within a block),
/// for every block of `e` (`out` has `e.len().div_ceil(BLOCK)` elements). Inlined into the caller's
/// kernel (which computed `e`: fused there, it costs less than as a kernel of its own).
#[inline(always)]
pub(crate) fn block_sums(e: &[f32], out: &mut [f64]) {
    for (blk, o) in e.chunks(BLOCK).zip(out.iter_mut()) {
        *o = lane_sum(blk);
    }
}

crate::kernels::dispatch_fn! {
    /// `e = exp(row - max)` and its [`block_sums`]: the weights of the sampler's walk.
    fn exp_block_sums(row: &[f32], max: f32, e: &mut [f32], sums: &mut [f64]) {
        exp_into(row, max, 1.0, e);
        block_sums(e, sums);
    }
}

/// The index range of block `b` of weights cut into segments of `seg` (see [`walk`]).
#[inline]
pub(crate) fn block_span(b: usize, seg: usize) -> std::ops::Range<usize> {
    let nb = seg.div_ceil(BLOCK);
    let (s, j) = (b / nb, b % nb);
    let start = s * seg + j * BLOCK;
    start..(start + BLOCK).min((s + 1) * seg)
}

/// Where [`walk`] lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landing {
    /// The first index at which the cumulative weight exceeds the target.
    At(usize),
    /// Rounding: the block sums put the target in block `b`, but its weights, added one by one, stay at or
    /// below it.
    ShortIn(usize),
    /// Rounding: the target is at or beyond the sum of all the blocks.
    Beyond,
}

/// The two-level inverse-CDF walk: the first index of the nonnegative weights `e` at which their
/// cumulative sum exceeds `target` (in `[0, total)`), found by skipping whole blocks. `e` is cut into
/// segments of `seg` weights (a row: one for the sampler, the `K` beams of an entry for beam sampling),
/// each into blocks of [`BLOCK`] that never straddle two segments; `sums` holds the blocks' sums
/// ([`block_sums`] of each segment). Where rounding leaves the walk short of the target, the caller
/// chooses the fallback (see [`Landing`]).
pub(crate) fn walk(e: &[f32], sums: &[f64], seg: usize, target: f64) -> Landing {
    let mut cum = 0.0f64;
    for (b, &bs) in sums.iter().enumerate() {
        // Empty blocks (common in beam sampling: whole beams far below the best) are skipped without
        // joining the chain of dependent additions.
        if bs <= 0.0 {
            continue;
        }
        if cum + bs > target {
            let span = block_span(b, seg);
            let base = span.start;
            for (i, &w) in e[span].iter().enumerate() {
                cum += w as f64;
                if cum > target {
                    return Landing::At(base + i);
                }
            }
            return Landing::ShortIn(b);
        }
        cum += bs;
    }
    Landing::Beyond
}

/// Draws without replacement: sets weight `i` to 0 and recomputes the sum of its block (`e`, `sums` and
/// `seg` as in [`walk`]).
pub(crate) fn remove_weight(e: &mut [f32], sums: &mut [f64], seg: usize, i: usize) {
    e[i] = 0.0;
    let b = (i / seg) * seg.div_ceil(BLOCK) + (i % seg) / BLOCK;
    sums[b] = lane_sum(&e[block_span(b, seg)]);
}

/// Rows with at most this many finite entries are drawn from the list of those entries; denser rows by
/// a two-level walk over the whole row.
pub fn sparse_cap(vocab: usize) -> usize {
    (vocab / 16).max(32)
}

/// Index drawn from `softmax(row)` with the uniform `u`; `Err` if the row holds NaN / `+inf` or is all
/// `-inf` (`r` names the row in the message). Reads the row once when it is sparse.
pub fn sample_row(r: usize, row: &[f32], u: f64, s: &mut Scratch) -> Result<usize> {
    let (scan, complete) = scan_finite(row, sparse_cap(row.len()), &mut s.cands);
    if let Some(e) = crate::row_error(r, row, scan, true) {
        return Err(e);
    }
    if complete {
        return Ok(draw_among(&s.cands, scan.max, u));
    }
    s.e.resize(row.len(), 0.0);
    s.sums.resize(row.len().div_ceil(BLOCK), 0.0);
    exp_block_sums(row, scan.max, &mut s.e, &mut s.sums);
    let total: f64 = s.sums.iter().sum();
    match walk(&s.e, &s.sums, row.len(), u * total) {
        Landing::At(i) => Ok(i),
        // Rounding can leave the walk just short of the target: take the last token with mass.
        Landing::ShortIn(_) | Landing::Beyond => Ok(s.e.iter().rposition(|&e| e > 0.0).unwrap_or(0)),
    }
}

/// Inverse-CDF draw among finite `(index, value)` entries listed in index order.
pub fn draw_among(cands: &[Cand], max: f32, u: f64) -> usize {
    let total: f64 = cands.iter().map(|c| ((c.1 - max) as f64).exp()).sum();
    let target = u * total;
    let mut cum = 0.0f64;
    for c in cands {
        cum += ((c.1 - max) as f64).exp();
        if cum > target {
            return c.0 as usize;
        }
    }
    cands.iter().rev().find(|c| c.1 > f32::NEG_INFINITY).map_or(0, |c| c.0 as usize)
}

/// One token per row drawn from `softmax(scores[r])`, with row `r`'s uniform of `seeds` at `step`. Reads
/// each row once when it has few finite entries (after top-k / top-p).
pub fn sample(scores: &[f32], vocab: usize, seeds: &Seeds, step: u64, out: &mut [i64]) -> Result<()> {
    let batch = batch_of(scores.len(), vocab)?;
    check_out(out.len(), batch)?;
    seeds.check(batch, "rows")?;
    let mut work: Vec<(&[f32], &mut i64, Option<Error>)> =
        scores.chunks(vocab).zip(out.iter_mut()).map(|(a, b)| (a, b, None)).collect();
    pool::for_each_mut(&mut work, scores.len(), |r, (row, o, err)| {
        let u = seeds.uniform(r, step);
        match with_scratch(|s| sample_row(r, row, u, s)) {
            Ok(t) => **o = t as i64,
            Err(e) => *err = Some(e),
        }
    });
    match work.into_iter().find_map(|w| w.2) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Mirostat 2.0 (llama.cpp `mirostat_v2`; Basu et al., arXiv 2007.14966): per row, the tokens whose surprise
/// `-log2 p` (p: softmax of the row) exceeds the row's `mu[r]` are left out (the most likely token never is),
/// one token is drawn from the softmax of the rest with the row's uniform of `seeds` at `step`, and
/// `mu[r] -= eta * (-log2 p' - tau)`, p' the drawn token's probability among those kept. The scores are
/// read only. Errors (NaN / `+inf`, an all `-inf` row) are reported before any `mu` changes.
#[allow(clippy::too_many_arguments)]
pub fn mirostat_v2(
    scores: &[f32],
    vocab: usize,
    seeds: &Seeds,
    step: u64,
    tau: f32,
    eta: f32,
    mu: &mut [f32],
    out: &mut [i64],
) -> Result<()> {
    let batch = batch_of(scores.len(), vocab)?;
    check_out(out.len(), batch)?;
    seeds.check(batch, "rows")?;
    if mu.len() != batch {
        return Err(Error::shape(format!("`mu` has {} rows but scores has {batch}", mu.len())));
    }
    check_scores(scores, vocab, true)?;
    let ln2 = std::f64::consts::LN_2;
    let mut work: Vec<(&[f32], (&mut i64, &mut f32))> =
        scores.chunks(vocab).zip(out.iter_mut().zip(mu.iter_mut())).collect();
    pool::for_each_mut(&mut work, scores.len(), |r, (row, (o, m))| {
        with_scratch(|s| {
            let max = crate::kernels::row_max(row); // (finite: checked)
            s.e.resize(row.len(), 0.0);
            let z = crate::kernels::exp_into(row, max, 1.0, &mut s.e);
            // surprise(x) <= mu  <=>  x >= max + ln Z - mu ln 2
            let cut = max as f64 + z.ln() - **m as f64 * ln2;
            let cut32 = crate::kernels::f32_at_least(cut);
            crate::select::collect_at_least(row, cut32.min(max), usize::MAX, &mut s.cands);
            if !s.cands.iter().any(|c| c.1 as f64 >= cut) {
                // Nothing within mu: the most likely token alone (the first of equal ones).
                let first = row.iter().position(|&x| x == max).unwrap_or(0);
                s.cands.clear();
                s.cands.push((first as u32, max));
            } else {
                s.cands.retain(|c| c.1 as f64 >= cut);
            }
            // The draw among the kept tokens, by inverse CDF over their weights exp(x - max) (in `s.e`).
            let weight = |i: u32| s.e.get(i as usize).copied().unwrap_or(0.0) as f64;
            let z_kept: f64 = s.cands.iter().map(|c| weight(c.0)).sum();
            let target = seeds.uniform(r, step) * z_kept;
            let mut cum = 0.0f64;
            let t = s
                .cands
                .iter()
                .find(|c| {
                    cum += weight(c.0);
                    cum > target
                })
                .or_else(|| s.cands.iter().rev().find(|c| weight(c.0) > 0.0))
                .map_or(s.cands[0].0, |c| c.0) as usize;
            let p = weight(t as u32) / z_kept;
            // (mu beyond +-1e30 means the same as at it: keep all / keep the most likely; never inf or NaN)
            **m = (**m as f64 - eta as f64 * (-p.log2() - tau as f64)).clamp(-1e30, 1e30) as f32;
            **o = t as i64;
        })
    });
    Ok(())
}

/// Index of the first maximum of each row (`torch.argmax`). An all `-inf` row is an error when
/// `strict`, else gives 0 as `torch.argmax` does.
pub fn greedy(scores: &[f32], vocab: usize, out: &mut [i64], strict: bool) -> Result<()> {
    let batch = batch_of(scores.len(), vocab)?;
    check_out(out.len(), batch)?;
    // One read validates a row and finds its maximum (only `out` is written: rows need not all be checked
    // first); a second finds the first position of the maximum.
    let mut work: Vec<(&[f32], &mut i64, Option<Error>)> =
        scores.chunks(vocab).zip(out.iter_mut()).map(|(a, b)| (a, b, None)).collect();
    pool::for_each_mut(&mut work, scores.len(), |r, (row, o, err)| {
        let scan = scan_row(row);
        match crate::row_error(r, row, scan, strict) {
            Some(e) => *err = Some(e),
            None => **o = row.iter().position(|&x| x == scan.max).unwrap_or(0) as i64,
        }
    });
    match work.into_iter().find_map(|w| w.2) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn check_out(len: usize, batch: usize) -> Result<()> {
    if len != batch {
        return Err(Error::shape(format!("the output has {len} rows but scores has {batch}")));
    }
    Ok(())
}

/// `log(sum(exp(x - max)))` of a row with a finite maximum.
fn log_norm(row: &[f32], max: f32, s: &mut Scratch) -> f32 {
    s.e.resize(row.len(), 0.0);
    exp_into(row, max, 1.0, &mut s.e).ln() as f32
}

/// `log_softmax` of every row into `out` (same shape): `(x - max) - log(sum(exp(x - max)))`.
pub fn log_softmax(scores: &[f32], vocab: usize, out: &mut [f32]) -> Result<()> {
    batch_of(scores.len(), vocab)?;
    if out.len() != scores.len() {
        return Err(Error::shape("the output must have the shape of scores"));
    }
    check_scores(scores, vocab, true)?;
    let mut work: Vec<(&[f32], &mut [f32])> = scores.chunks(vocab).zip(out.chunks_mut(vocab)).collect();
    pool::for_each_mut(&mut work, scores.len(), |_, (row, o)| {
        let max = row_max(row);
        let ln = with_scratch(|s| log_norm(row, max, s));
        for (y, &x) in o.iter_mut().zip(row.iter()) {
            *y = (x - max) - ln;
        }
    });
    Ok(())
}

/// The `n` most likely tokens of each row, most likely first (ties: lower index first), with their
/// log-probabilities. Rows with fewer than `n` finite scores are padded with index `-1` and `-inf`.
pub fn top_logprobs(
    scores: &[f32],
    vocab: usize,
    n: usize,
    values: &mut [f32],
    indices: &mut [i64],
) -> Result<()> {
    let batch = batch_of(scores.len(), vocab)?;
    if n == 0 || n > vocab {
        return Err(Error::param(format!("`n` has to be in [1, V = {vocab}], but is {n}")));
    }
    if values.len() != batch * n || indices.len() != batch * n {
        return Err(Error::shape("the outputs must have shape (batch, n)"));
    }
    check_scores(scores, vocab, true)?;
    let mut work: Vec<(&[f32], &mut [f32], &mut [i64])> = scores
        .chunks(vocab)
        .zip(values.chunks_mut(n))
        .zip(indices.chunks_mut(n))
        .map(|((a, b), c)| (a, b, c))
        .collect();
    pool::for_each_mut(&mut work, scores.len(), |_, (row, vals, idx)| {
        with_scratch(|s| {
            let max = row_max(row);
            let ln = log_norm(row, max, s);
            let mut cands = std::mem::take(&mut s.cands);
            top_candidates(row, n, false, &mut cands);
            cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for j in 0..n {
                match cands.get(j) {
                    Some(&(i, x)) => {
                        vals[j] = (x - max) - ln;
                        idx[j] = i as i64;
                    }
                    None => {
                        vals[j] = f32::NEG_INFINITY;
                        idx[j] = -1;
                    }
                }
            }
            s.cands = cands;
        })
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        // Random123 kat_vectors for philox4x32_10.
        assert_eq!(philox4x32([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn sampling_is_deterministic_and_follows_softmax() {
        let v = 5;
        let row = [0.0f32, 1.0, 2.0, f32::NEG_INFINITY, 0.5];
        let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
        let mut counts = [0usize; 5];
        let n = 40_000;
        for step in 0..n {
            let mut out = [0i64];
            sample(&row, v, &Seeds::Shared(7), step, &mut out).unwrap();
            counts[out[0] as usize] += 1;
        }
        assert_eq!(counts[3], 0);
        for i in [0usize, 1, 2, 4] {
            let p = (row[i] as f64).exp() / z;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((counts[i] as f64 - n as f64 * p).abs() < 5.0 * sd, "{counts:?}");
        }
        let mut a = [0i64];
        let mut b = [0i64];
        sample(&row, v, &Seeds::Shared(99), 3, &mut a).unwrap();
        sample(&row, v, &Seeds::Shared(99), 3, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn walk_skips_blocks_and_keeps_segments_apart() {
        // Two segments of 300 weights (blocks 0..256, 256..300 | 300..556, 556..600), weight 1 at a few
        // places.
        let seg = 300;
        let mut e = vec![0.0f32; 2 * seg];
        for i in [5, 255, 256, 299, 300, 599] {
            e[i] = 1.0;
        }
        let mut sums = vec![0.0f64; 4];
        for (s, e) in sums.chunks_mut(2).zip(e.chunks(seg)) {
            block_sums(e, s);
        }
        assert_eq!(sums, [2.0, 2.0, 1.0, 1.0]);
        assert_eq!(
            (block_span(1, seg), block_span(2, seg), block_span(3, seg)),
            (256..300, 300..556, 556..600)
        );
        let at = |t: f64| walk(&e, &sums, seg, t);
        assert_eq!(
            (at(0.0), at(0.99), at(1.0), at(2.5), at(3.5), at(4.0), at(5.5)),
            (
                Landing::At(5),
                Landing::At(5),
                Landing::At(255),
                Landing::At(256),
                Landing::At(299),
                Landing::At(300),
                Landing::At(599)
            )
        );
        assert_eq!(at(6.0), Landing::Beyond);
        remove_weight(&mut e, &mut sums, seg, 300);
        assert_eq!(sums, [2.0, 2.0, 0.0, 1.0]);
        assert_eq!(walk(&e, &sums, seg, 4.0), Landing::At(599));
        assert_eq!(walk(&e, &sums, seg, 5.0), Landing::Beyond);
    }

    #[test]
    fn walk_reports_a_block_whose_sum_rounded_up() {
        // Lane 0 of the block sum adds 1 and 0.75 ulp(1) in f32, which rounds up to 1 + ulp(1); one by
        // one in f64 they stay below a target between the two.
        let ulp = f32::EPSILON as f64;
        let mut e = vec![0.0f32; 256];
        e[0] = 1.0;
        e[16] = (0.75 * ulp) as f32;
        let mut sums = vec![0.0f64; 1];
        block_sums(&e, &mut sums);
        assert_eq!(sums[0], 1.0 + ulp);
        assert_eq!(walk(&e, &sums, 256, 1.0 + 0.9 * ulp), Landing::ShortIn(0));
        assert_eq!(walk(&e, &sums, 256, 1.0 + 0.5 * ulp), Landing::At(16));
    }

    #[test]
    fn a_row_with_its_own_key_draws_the_same_wherever_it_sits() {
        // Four different rows, each with its key: every row's token is the one it gets alone, at any
        // position in the batch; a wrong number of keys is an error.
        let v = 7;
        let rows: Vec<Vec<f32>> =
            (0..4).map(|r| (0..v).map(|i| ((i * 3 + r) % 5) as f32 * 0.4).collect()).collect();
        let keys = [11u64, 22, 33, 44];
        for step in 0..50 {
            let alone: Vec<i64> = (0..4)
                .map(|r| {
                    let mut o = [0i64];
                    sample(&rows[r], v, &Seeds::PerRow(Cow::Owned(vec![keys[r]])), step, &mut o).unwrap();
                    o[0]
                })
                .collect();
            let order = [2usize, 0, 3, 1];
            let flat: Vec<f32> = order.iter().flat_map(|&r| rows[r].clone()).collect();
            let k: Vec<u64> = order.iter().map(|&r| keys[r]).collect();
            let mut out = [0i64; 4];
            sample(&flat, v, &Seeds::PerRow(Cow::Borrowed(&k)), step, &mut out).unwrap();
            for (i, &r) in order.iter().enumerate() {
                assert_eq!(out[i], alone[r], "step {step}, row {r}");
            }
        }
        let err = sample(&rows[0], v, &Seeds::PerRow(Cow::Owned(vec![1, 2])), 0, &mut [0]).unwrap_err();
        assert!(err.to_string().contains("2 per-row keys but there are 1 rows"), "{err}");
    }

    #[test]
    fn all_neg_inf_row_is_an_error() {
        let row = [f32::NEG_INFINITY; 3];
        let err = sample(&row, 3, &Seeds::Shared(0), 0, &mut [0]).unwrap_err();
        assert!(err.to_string().contains("all -inf"));
    }
}
