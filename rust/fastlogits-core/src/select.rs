//! Selection without sorting the vocabulary.
//!
//! * [`top_candidates`]: every element `>=` the k-th largest (ties included) in one read of the row,
//!   keeping a small buffer that is pruned by `select_nth_unstable` whenever it grows: O(V + k log V).
//!   [`top_k_shifted`] is the same scan of `row + s` cut to exactly `k` (beam search's candidates).
//! * [`scan_finite`]: validation, maximum and the finite entries of a row in one read (the sampler).
//! * [`boundary_by_mass`] / [`Histogram`]: the "smallest prefix, in some key order, whose mass reaches a
//!   target" rule shared by top-p and typical decoding. Tokens are bucketed by key; only the bucket the
//!   target falls in is sorted.

use crate::kernels::{RowScan, LANES};

/// `(token index, value)`.
pub type Cand = (u32, f32);

/// Chunk size of the candidate scan: a chunk whose maximum is below the running threshold is skipped
/// after one vectorized reduction.
const CHUNK: usize = 64;

/// A value a little below `t`, used when candidates are later compared after a division (temperature):
/// `x / T` may round two neighbouring floats to the same value, so elements a few ulps under the
/// threshold can tie with it. 2^-16 relative covers divisors up to ~100; [`top_candidates`]'s caller
/// checks the final margin and falls back to an exact pass when it does not hold.
#[inline]
pub fn lowered(t: f32) -> f32 {
    t - (t.abs() * (1.0 / 65536.0) + f32::MIN_POSITIVE)
}

#[inline]
fn desc(a: &Cand, b: &Cand) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1)
}

/// The k-th largest value of `v` (k >= 1, k <= v.len()); reorders `v`.
pub fn kth_largest(v: &mut [Cand], k: usize) -> f32 {
    debug_assert!(k >= 1 && k <= v.len());
    v.select_nth_unstable_by(k - 1, desc);
    v[k - 1].1
}

/// Bit `j` set iff `chunk[j] >= cut` (chunk of at most 64).
#[inline(always)]
pub fn ge_mask(chunk: &[f32], cut: f32) -> u64 {
    ge_mask_checked(chunk, cut, false).0
}

/// [`ge_mask`], and with `check` whether the chunk holds a NaN or `+inf`.
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x < inf)` catches NaN and +inf in one compare
pub fn ge_mask_checked(chunk: &[f32], cut: f32, check: bool) -> (u64, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if chunk.len() == CHUNK && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available (checked above), the chunk holds 64 floats.
            return unsafe { ge_mask_avx2(chunk, cut, check) };
        }
    }
    let mut m = 0u64;
    let mut bad = false;
    for (j, &x) in chunk.iter().enumerate() {
        m |= ((x >= cut) as u64) << j;
        bad |= check && !(x < f32::INFINITY);
    }
    (m, bad)
}

/// # Safety
/// The CPU supports AVX2, and `chunk` holds 64 floats (eight unaligned 8-float loads read it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn ge_mask_avx2(chunk: &[f32], cut: f32, check: bool) -> (u64, bool) {
    use std::arch::x86_64::*;
    let c = _mm256_set1_ps(cut);
    let inf = _mm256_set1_ps(f32::INFINITY);
    let p = chunk.as_ptr();
    let mut m = 0u64;
    let mut bad = _mm256_setzero_ps();
    for g in 0..8 {
        // SAFETY: 8 * g + 8 <= 64 = chunk.len() (the caller's contract); loadu needs no alignment.
        let v = unsafe { _mm256_loadu_ps(p.add(8 * g)) };
        let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(v, c);
        m |= (_mm256_movemask_ps(ge) as u32 as u64) << (8 * g);
        if check {
            // not(v < inf), unordered: NaN or +inf.
            bad = _mm256_or_ps(bad, _mm256_cmp_ps::<_CMP_NLT_UQ>(v, inf));
        }
    }
    (m, check && _mm256_movemask_ps(bad) != 0)
}

/// The threshold that selects finite values `>= t`: `-inf` becomes the lowest finite float.
#[inline(always)]
pub fn finite_cut(t: f32) -> f32 {
    if t == f32::NEG_INFINITY {
        -f32::MAX
    } else {
        t
    }
}

/// Pushes `(index, value)` of every set bit of `mask` (bits index the chunk starting at `base`).
#[inline(always)]
pub fn push_mask(chunk: &[f32], base: usize, mut mask: u64, out: &mut Vec<Cand>) {
    while mask != 0 {
        let j = mask.trailing_zeros() as usize;
        out.push(((base + j) as u32, chunk[j]));
        mask &= mask - 1;
    }
}

/// Collects into `out` every finite element `>= kth`, where `kth` is the k-th largest value of the row
/// (counting repeats), and returns `kth`. If the row has fewer than `k` finite elements, returns `-inf`
/// and `out` holds all finite elements. With `slack`, `out` also holds elements down to
/// [`lowered`]`(kth)` (see there). `out` is in no particular order.
pub fn top_candidates(row: &[f32], k: usize, slack: bool, out: &mut Vec<Cand>) -> f32 {
    top_candidates_ext(row, k, slack, false, out).0
}

/// One scan of the row from the starting threshold `start`: collects every `(i, v)` with `v >= start`
/// (or [`lowered`]`(start)` with `slack`), pruning the buffer to the elements `>=` its k-th largest value
/// whenever it grows past a cap. `v` is `row[i]`, or with `shift = Some(s)`, `row[i] + s` as rounded in
/// float32 (the sums are compared, not the raw values, so the selection is exact whatever the rounding:
/// `x -> x + s` is monotone but not injective). With `check`, also reports whether the row holds a NaN or
/// `+inf` (tested on the row itself, not on the sums).
#[inline(always)]
fn scan_top(
    row: &[f32],
    shift: Option<f32>,
    k: usize,
    slack: bool,
    start: f32,
    check: bool,
    out: &mut Vec<Cand>,
) -> bool {
    out.clear();
    let low = |t: f32| if slack { lowered(t) } else { t };
    let mut cut = finite_cut(low(start));
    let mut cap = k.saturating_mul(8).max(512);
    let mut bad = false;
    let mut acc = [0.0f32; CHUNK];
    for (ci, chunk) in row.chunks(CHUNK).enumerate() {
        let (vals, m): (&[f32], u64) = match shift {
            None => {
                let (m, b) = ge_mask_checked(chunk, cut, check);
                bad |= b;
                (chunk, m)
            }
            Some(s) => {
                // The sums and the NaN / +inf test vectorize.
                let a = &mut acc[..chunk.len()];
                let mut b = false;
                for (y, &x) in a.iter_mut().zip(chunk) {
                    *y = x + s;
                    b |= x.is_nan() | (x == f32::INFINITY);
                }
                bad |= check & b;
                let m = ge_mask(a, cut);
                (&*a, m)
            }
        };
        if m == 0 {
            continue;
        }
        push_mask(vals, ci * CHUNK, m, out);
        if out.len() >= cap {
            let thr = kth_largest(out, k);
            cut = finite_cut(low(thr));
            out.retain(|c| c.1 >= cut);
            // Many ties keep the buffer large: grow the cap so pruning stays amortized O(1).
            cap = cap.max(2 * out.len());
        }
    }
    bad
}

/// Every finite `(i, v)` (`v` as in [`scan_top`]) with `v >=` the k-th largest (or [`lowered`] from it,
/// with `slack`) into `out`, and more (the buffer is not pruned to the k-th largest); all finite ones if
/// there are fewer than `k`. Without a shift, starts from a sampled threshold ([`sample_cut`]) and scans
/// again from `-inf` if it was too high, so the result never depends on the sample. Returns true (and a
/// meaningless `out`) if `check` and the row holds a NaN or `+inf`.
#[inline(always)]
fn collect_top(
    row: &[f32],
    shift: Option<f32>,
    k: usize,
    slack: bool,
    check: bool,
    out: &mut Vec<Cand>,
) -> bool {
    // The shifted scan (beam search: `B*K` rows read once, often from memory) starts from `-inf`: there
    // the sample's scattered reads cost more than the pushes they save (~4% of a step with 40 rows of
    // 50257, measured).
    let start = match shift {
        None => sample_cut(row, k),
        Some(_) => f32::NEG_INFINITY,
    };
    if scan_top(row, shift, k, slack, start, check, out) {
        return true;
    }
    if out.len() < k && start > f32::NEG_INFINITY {
        // The sampled starting threshold was too high (rare): scan again from -inf.
        scan_top(row, shift, k, slack, f32::NEG_INFINITY, false, out);
    }
    false
}

crate::kernels::dispatch_fn! {
    /// [`top_candidates`]; with `check` the same single read also tells whether the row holds a NaN or
    /// `+inf` (then the result is `(-inf, true)` and `out` is meaningless).
    pub fn top_candidates_ext(row: &[f32], k: usize, slack: bool, check: bool, out: &mut Vec<Cand>) -> (f32, bool) {
        assert!(k >= 1, "k must be >= 1");
        if collect_top(row, None, k, slack, check, out) {
            return (f32::NEG_INFINITY, true);
        }
        if out.len() < k {
            return (f32::NEG_INFINITY, false);
        }
        let kth = kth_largest(out, k);
        let cut = if slack { lowered(kth) } else { kth };
        out.retain(|c| c.1 >= cut);
        (kth, false)
    }
}

/// Value descending, then index ascending: the order of [`top_k_shifted`] (a total order on a row's
/// candidates, whose indices are distinct).
#[inline]
pub fn rank(a: &Cand, b: &Cand) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

crate::kernels::dispatch_fn! {
    /// The `k` best `(i, row[i] + s)` of a row by [`rank`] (`torch.topk` of `row + s` with a
    /// deterministic tie rule), `row[i] + s` rounded in float32, in no particular order, in one read of
    /// the row. `k` is clamped to the row's length; when fewer than `k` sums are finite, the first `-inf`
    /// ones (by index) make up the count. Returns true (and a meaningless `out`) if the row holds a NaN or
    /// `+inf`.
    pub fn top_k_shifted(row: &[f32], s: f32, k: usize, out: &mut Vec<Cand>) -> bool {
        let k = k.min(row.len());
        if k == 0 {
            out.clear();
            return false;
        }
        if collect_top(row, Some(s), k, false, true, out) {
            return true;
        }
        if out.len() > k {
            out.select_nth_unstable_by(k - 1, rank);
            out.truncate(k);
        } else if out.len() < k {
            // Every finite sum is in: the rest are the first `-inf` ones.
            for (i, &x) in row.iter().enumerate() {
                if out.len() == k {
                    break;
                }
                if x + s == f32::NEG_INFINITY {
                    out.push((i as u32, f32::NEG_INFINITY));
                }
            }
        }
        false
    }
}

/// A starting threshold for the k-largest scan, from a sample of 1024 elements (16 contiguous blocks of
/// 64 spread over the row: 64 cache lines, cheap even when the row is not in cache): the j-th largest
/// sample, with j chosen so that ~3k (and at least ~6 samples' worth of) elements of the row are expected
/// above it. If fewer than k turn out to be (rare for a row in random order; possible for structured
/// rows) the scan starts over from `-inf`, so the result never depends on the sample. `-inf` when the row
/// is too small for sampling to pay.
fn sample_cut(row: &[f32], k: usize) -> f32 {
    const BLOCKS: usize = 16;
    const S: usize = BLOCKS * CHUNK;
    let n = row.len();
    if n < 16 * S || k > n / 64 {
        return f32::NEG_INFINITY;
    }
    let j = (3 * k * S).div_ceil(n).max(6);
    let spacing = n / BLOCKS;
    let samples = (0..BLOCKS).flat_map(|b| row[b * spacing..b * spacing + CHUNK].iter().copied());
    if j <= 16 {
        // The j largest samples, ascending, by insertion (cheapest for small j).
        let mut top = [f32::NEG_INFINITY; 16];
        let top = &mut top[..j];
        for x in samples {
            if x > top[0] {
                let mut p = 0;
                while p + 1 < j && top[p + 1] < x {
                    top[p] = top[p + 1];
                    p += 1;
                }
                top[p] = x;
            }
        }
        return top[0];
    }
    let mut sample = [0.0f32; S];
    for (v, x) in sample.iter_mut().zip(samples) {
        *v = x;
    }
    *sample.select_nth_unstable_by(j - 1, |a, b| b.total_cmp(a)).1
}

crate::kernels::dispatch_fn! {
    /// Pushes `(i, x)` for every finite `x >= thr`; returns false (with `out` incomplete) as soon as
    /// more than `cap` are found.
    pub fn collect_at_least(row: &[f32], thr: f32, cap: usize, out: &mut Vec<Cand>) -> bool {
        out.clear();
        let cut = finite_cut(thr);
        for (ci, chunk) in row.chunks(CHUNK).enumerate() {
            let m = ge_mask(chunk, cut);
            if m != 0 {
                push_mask(chunk, ci * CHUNK, m, out);
                if out.len() > cap {
                    return false;
                }
            }
        }
        true
    }
}

crate::kernels::dispatch_fn! {
    /// One read of the row: its maximum, whether it holds NaN / `+inf`, and its finite entries (in index
    /// order) into `out` as long as there are at most `cap` of them. Returns the scan and whether `out`
    /// is complete.
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x < inf)` catches NaN and +inf in one compare
    pub fn scan_finite(row: &[f32], cap: usize, out: &mut Vec<Cand>) -> (RowScan, bool) {
        out.clear();
        let mut complete = true;
        let mut m = [f32::NEG_INFINITY; LANES];
        let mut bad = [false; LANES];
        let chunks = row.chunks_exact(CHUNK);
        let tail = chunks.remainder();
        for (ci, chunk) in chunks.enumerate() {
            let c: &[f32; CHUNK] = chunk.try_into().unwrap();
            for k in 0..CHUNK / LANES {
                for j in 0..LANES {
                    let x = c[k * LANES + j];
                    bad[j] |= !(x < f32::INFINITY);
                    m[j] = if x > m[j] { x } else { m[j] };
                }
            }
            if complete {
                let mask = ge_mask(chunk, -f32::MAX);
                if mask != 0 {
                    push_mask(chunk, ci * CHUNK, mask, out);
                    complete = out.len() <= cap;
                }
            }
        }
        let mut max = m.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
        let mut invalid = bad.iter().any(|&b| b);
        let base = row.len() - tail.len();
        for (j, &x) in tail.iter().enumerate() {
            invalid |= !(x < f32::INFINITY);
            max = if x > max { x } else { max };
            if complete && x > f32::NEG_INFINITY {
                out.push(((base + j) as u32, x));
                complete = out.len() <= cap;
            }
        }
        (RowScan { max, invalid }, complete)
    }
}

/// Number of buckets of the mass histogram and their width in key units (nats): keys beyond
/// `BUCKETS / SCALE` share the last bucket.
pub const BUCKETS: usize = 4096;
pub const SCALE: f32 = 256.0;

/// The bucket of tokens that take no part (their score is `-inf`).
pub const SKIP: u16 = BUCKETS as u16;

#[inline(always)]
fn bucket(key: f32) -> u16 {
    // Clamped to [0, BUCKETS - 1] (NaN to 0, +inf to the last bucket) so that the unchecked conversion
    // (which vectorizes, unlike `as`) is always in range.
    let b = (key * SCALE).max(0.0).min((BUCKETS - 1) as f32);
    // SAFETY: `b` is finite and in [0, 4095].
    unsafe { b.to_int_unchecked::<i32>() as u16 }
}

crate::kernels::dispatch_fn! {
    /// Bucket of every token by its distance below the maximum, `(max - x) * inv_t` (top-p: buckets in
    /// decreasing probability); `-inf` tokens get [`SKIP`]. Monotone: equal scores share a bucket.
    pub fn buckets_below_max(row: &[f32], max: f32, inv_t: f32, out: &mut [u16]) {
        for (o, &x) in out.iter_mut().zip(row) {
            let b = bucket((max - x) * inv_t);
            *o = if x == f32::NEG_INFINITY { SKIP } else { b };
        }
    }
}

/// The typical-decoding key of a score: `|(x - max) * inv_t - mu|`.
#[inline(always)]
pub fn typical_key(x: f32, max: f32, inv_t: f32, mu: f32) -> f32 {
    ((x - max) * inv_t - mu).abs()
}

crate::kernels::dispatch_fn! {
    /// Bucket of every token by its typical-decoding key; `-inf` tokens get [`SKIP`].
    pub fn buckets_typical(row: &[f32], max: f32, inv_t: f32, mu: f32, out: &mut [u16]) {
        for (o, &x) in out.iter_mut().zip(row) {
            let b = bucket(typical_key(x, max, inv_t, mu));
            *o = if x == f32::NEG_INFINITY { SKIP } else { b };
        }
    }
}

/// Mass and count of tokens per key bucket, built from per-token buckets (see [`buckets_below_max`])
/// and masses. Four interleaved partial histograms keep consecutive tokens of one bucket from
/// serializing on one memory location.
#[derive(Default)]
pub struct Histogram {
    /// Per-token bucket, filled by the caller before [`Histogram::build`].
    pub buckets: Vec<u16>,
    mass: Vec<f64>,
    count: Vec<u32>,
}

/// Where the cumulative mass crosses the target: bucket index, and mass and count before it.
#[derive(Debug, Clone, Copy)]
pub struct Crossing {
    pub bucket: usize,
    pub mass_before: f64,
    pub count_before: usize,
}

const WAYS: usize = 4;
const SLOTS: usize = BUCKETS + 1;

impl Histogram {
    /// `buckets` sized for a row of `n` tokens (contents to be written by the caller).
    pub fn prepare(&mut self, n: usize) -> &mut [u16] {
        self.buckets.resize(n, SKIP);
        &mut self.buckets
    }

    /// Accumulates `e[i]` into bucket `buckets[i]`.
    pub fn build(&mut self, e: &[f32]) {
        self.mass.clear();
        self.mass.resize(WAYS * SLOTS, 0.0);
        self.count.clear();
        self.count.resize(WAYS * SLOTS, 0);
        let (mass, count) = (&mut self.mass, &mut self.count);
        let mut i = 0;
        for (b4, e4) in self.buckets.chunks_exact(WAYS).zip(e.chunks_exact(WAYS)) {
            for w in 0..WAYS {
                let h = w * SLOTS + b4[w] as usize;
                mass[h] += e4[w] as f64;
                count[h] += 1;
            }
            i += WAYS;
        }
        for (&b, &x) in self.buckets[i..].iter().zip(&e[i..]) {
            mass[b as usize] += x as f64;
            count[b as usize] += 1;
        }
        for w in 1..WAYS {
            for b in 0..BUCKETS {
                mass[b] += mass[w * SLOTS + b];
                count[b] += count[w * SLOTS + b];
            }
        }
    }

    /// First bucket at which the cumulative mass reaches `target` and the cumulative count reaches
    /// `min_count`; `None` if the totals never do (then every token is kept).
    pub fn crossing(&self, target: f64, min_count: usize) -> Option<Crossing> {
        let mut mass = 0.0f64;
        let mut count = 0usize;
        for b in 0..BUCKETS {
            let m = mass + self.mass[b];
            let c = count + self.count[b] as usize;
            if m >= target && c >= min_count && self.count[b] > 0 {
                return Some(Crossing { bucket: b, mass_before: mass, count_before: count });
            }
            mass = m;
            count = c;
        }
        None
    }

    /// Indices of the tokens in bucket `b` (whole blocks without one are skipped).
    pub fn members(&self, b: usize) -> impl Iterator<Item = usize> + '_ {
        let b = b as u16;
        self.buckets.chunks(64).enumerate().filter(move |(_, c)| c.contains(&b)).flat_map(move |(k, c)| {
            c.iter().enumerate().filter(move |(_, &x)| x == b).map(move |(j, _)| k * 64 + j)
        })
    }
}

/// A token in a mass walk: its sort key (ascending = first) and its unnormalized probability.
#[derive(Debug, Clone, Copy)]
pub struct MassItem {
    pub key: f32,
    pub e: f32,
}

/// Walks `items` in ascending key order, starting from `mass_before` / `count_before` (the tokens with
/// smaller keys that are not in `items`), and returns the key of the first item at which the cumulative
/// mass (inclusive) reaches `target` and the count reaches `min_count`. Every token with a key `<=` the
/// returned key is kept by the callers (ties with the boundary are kept, so the order among ties does not
/// change the result). `None` if never reached.
///
/// Selection, not a sort: halving partitions (`select_nth_unstable`) narrow the range that holds the
/// boundary, and only the last few dozen items are sorted. `items` is left partially ordered.
pub fn boundary_by_mass(
    items: &mut [MassItem],
    mass_before: f64,
    count_before: usize,
    target: f64,
    min_count: usize,
) -> Option<f32> {
    let reached = |mass: f64, count: usize| mass >= target && count >= min_count;
    let by_key = |a: &MassItem, b: &MassItem| a.key.total_cmp(&b.key);
    let (mut lo, mut hi) = (0, items.len());
    let (mut mass, mut count) = (mass_before, count_before);
    // Invariant: every item before `lo` precedes `items[lo..hi]`, which precedes every item from `hi` on;
    // the walk has not reached the boundary before `lo`, and has by `hi` if it ever does.
    while hi - lo > 32 {
        let seg = &mut items[lo..hi];
        let mid = seg.len() / 2;
        seg.select_nth_unstable_by(mid, by_key);
        let m: f64 = seg[..=mid].iter().map(|it| it.e as f64).sum();
        if reached(mass + m, count + mid + 1) {
            hi = lo + mid + 1;
        } else {
            mass += m;
            count += mid + 1;
            lo += mid + 1;
        }
    }
    let seg = &mut items[lo..hi];
    seg.sort_unstable_by(by_key);
    for (j, it) in seg.iter().enumerate() {
        mass += it.e as f64;
        if reached(mass, count + j + 1) {
            return Some(it.key);
        }
    }
    None
}

/// The largest key of `items` (`None` if empty).
pub fn max_key(items: &[MassItem]) -> Option<f32> {
    items.iter().map(|it| it.key).max_by(f32::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 20.0 - 10.0
            })
            .collect()
    }

    #[test]
    fn top_candidates_matches_sort() {
        for &(n, k) in &[(1usize, 1usize), (10, 3), (1000, 50), (50257, 50), (5000, 4000), (300, 299)] {
            let v = lcg(n, n as u64 + k as u64);
            let mut out = Vec::new();
            let kth = top_candidates(&v, k, false, &mut out);
            let mut s = v.clone();
            s.sort_by(|a, b| b.total_cmp(a));
            assert_eq!(kth, s[k - 1]);
            let want = v.iter().filter(|&&x| x >= kth).count();
            assert_eq!(out.len(), want);
            assert!(out.iter().all(|&(i, x)| v[i as usize] == x && x >= kth));
        }
    }

    /// A row with every 23rd score `-inf`, and with `coarse`, only 7 distinct finite values (many ties).
    fn tied_row(n: usize, seed: u64, coarse: bool) -> Vec<f32> {
        lcg(n, seed)
            .into_iter()
            .enumerate()
            .map(|(i, x)| match (i * 7 + seed as usize) % 23 {
                0 => f32::NEG_INFINITY,
                _ if coarse => (x / 3.0).round() * 0.5,
                _ => x,
            })
            .collect()
    }

    #[test]
    fn top_k_shifted_equals_full_sort() {
        for &(v, k, s) in &[
            (50257usize, 10usize, -3.5f32),
            (50257, 1, 0.0),
            (50257, 40, -1.0e9),
            (1000, 999, -1.0e9),
            (700, 40, f32::NEG_INFINITY),
            (5, 8, 1.0),
        ] {
            for coarse in [false, true] {
                let row = tied_row(v, (v + k) as u64, coarse);
                let mut out = Vec::new();
                assert!(!top_k_shifted(&row, s, k, &mut out));
                out.sort_by(rank);
                let mut all: Vec<Cand> = row.iter().enumerate().map(|(i, &x)| (i as u32, x + s)).collect();
                all.sort_by(rank);
                all.truncate(k.min(v));
                assert_eq!(out, all, "v={v} k={k} s={s} coarse={coarse}");
            }
        }
        for at in [0usize, 57, 63, 64, 99] {
            let mut row = vec![0.0f32; 100];
            assert!(!top_k_shifted(&row, 0.0, 3, &mut Vec::new()));
            row[at] = f32::NAN;
            assert!(top_k_shifted(&row, 0.0, 3, &mut Vec::new()), "NaN at {at}");
            row[at] = f32::INFINITY;
            assert!(top_k_shifted(&row, 0.0, 3, &mut Vec::new()), "+inf at {at}");
            assert!(top_k_shifted(&row, f32::NEG_INFINITY, 3, &mut Vec::new()), "+inf - inf at {at}");
            row[at] = f32::NEG_INFINITY;
            assert!(!top_k_shifted(&row, 0.0, 3, &mut Vec::new()));
        }
        // A NaN / +inf in a row long enough for the sampled threshold, past the samples.
        let mut row = tied_row(50257, 3, false);
        row[50000] = f32::INFINITY;
        assert!(top_k_shifted(&row, -2.0, 10, &mut Vec::new()));
        // Sums that overflow to -inf count as -inf, sums rounded together as ties.
        let row = [-3.0e38f32, 0.0, -3.0e38, 1.0];
        let mut out = Vec::new();
        assert!(!top_k_shifted(&row, -3.0e38, 4, &mut out));
        out.sort_by(rank);
        assert_eq!(out, vec![(1, -3.0e38), (3, -3.0e38), (0, f32::NEG_INFINITY), (2, f32::NEG_INFINITY)]);
    }

    #[test]
    fn top_candidates_ties_and_neg_inf() {
        let v = vec![1.0, 2.0, 2.0, 2.0, f32::NEG_INFINITY, 0.5];
        let mut out = Vec::new();
        assert_eq!(top_candidates(&v, 2, false, &mut out), 2.0);
        assert_eq!(out.len(), 3);
        let v = vec![f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY];
        assert_eq!(top_candidates(&v, 2, false, &mut out), f32::NEG_INFINITY);
        assert_eq!(out, vec![(1, 3.0)]);
        let v = vec![7.0f32; 5000];
        assert_eq!(top_candidates(&v, 3, false, &mut out), 7.0);
        assert_eq!(out.len(), 5000);
    }

    #[test]
    fn boundary_walk() {
        let mut items: Vec<MassItem> =
            [(0.3, 1.0), (0.1, 2.0), (0.2, 3.0)].iter().map(|&(key, e)| MassItem { key, e }).collect();
        assert_eq!(boundary_by_mass(&mut items, 0.0, 0, 4.5, 1), Some(0.2));
        assert_eq!(boundary_by_mass(&mut items, 0.0, 0, 0.5, 3), Some(0.3));
        assert_eq!(boundary_by_mass(&mut items, 0.0, 0, 7.0, 1), None);
    }

    #[test]
    fn boundary_by_selection_equals_the_sorted_walk() {
        for (n, seed) in [(33usize, 1u64), (100, 2), (512, 3), (5000, 4)] {
            let keys = lcg(n, seed);
            let es = lcg(n, seed + 100);
            let base: Vec<MassItem> = keys
                .iter()
                .zip(&es)
                // a few ties, and masses in [0, 1]
                .map(|(&k, &e)| MassItem { key: (k * 4.0).round() / 4.0, e: (e + 10.0) / 20.0 })
                .collect();
            let total: f64 = base.iter().map(|it| it.e as f64).sum();
            for frac in [0.0, 0.1, 0.5, 0.9, 0.999, 1.5] {
                for min_count in [1, 7, n / 2, n + 1] {
                    let mut sorted = base.clone();
                    sorted.sort_by(|a, b| a.key.total_cmp(&b.key));
                    let mut mass = 0.25;
                    let expect = sorted.iter().enumerate().find_map(|(j, it)| {
                        mass += it.e as f64;
                        (mass >= frac * total && 3 + j + 1 >= min_count).then_some(it.key)
                    });
                    let mut items = base.clone();
                    let got = boundary_by_mass(&mut items, 0.25, 3, frac * total, min_count);
                    assert_eq!(got, expect, "n {n} frac {frac} min_count {min_count}");
                }
            }
        }
    }
}
