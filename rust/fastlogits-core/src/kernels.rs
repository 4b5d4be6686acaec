//! Vectorizable single-row kernels.
//!
//! Each kernel is written once, as plain Rust that LLVM auto-vectorizes (fixed lane counts, no
//! reassociation left to the compiler, so results do not depend on the vector width), and compiled
//! twice by [`dispatch_fn!`]: for the baseline target and for AVX2 + FMA, chosen at run time. Reductions use
//! [`LANES`] explicit accumulators, so the summation order (and therefore every bit of the result) is
//! the same on both paths and on every machine.

/// Number of independent accumulators in reductions (two AVX2 registers of f32).
pub const LANES: usize = 16;

/// `exp(x)` below this is treated as 0 (it would be subnormal in f32: below 1.2e-38).
const EXP_LO: f32 = -87.33;

macro_rules! dispatch_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[inline]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

pub(crate) use dispatch_fn;

/// `exp(x)` for `x <= 0` (the only range used: logits minus their maximum), ~1 ulp, branch-free so
/// that loops over it vectorize. `-inf` and anything below [`EXP_LO`] give exactly 0.
#[inline(always)]
pub fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = if x < EXP_LO { EXP_LO } else { x };
    let v = xc * LOG2E + MAGIC;
    let n = v - MAGIC;
    let ni = (v.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    // Fused multiply-adds: one instruction each with FMA hardware, correctly rounded `fmaf` without,
    // so every machine computes the same bits.
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5); // Cephes' 5.0000001201e-1 rounds to 0.5 in f32
    let e = p.mul_add(r * r, r) + 1.0;
    let scale = f32::from_bits(((ni + 127) << 23) as u32);
    if x < EXP_LO {
        0.0
    } else {
        e * scale
    }
}

/// Summary of one row read in a single pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowScan {
    /// Largest value (`-inf` if the row is all `-inf`).
    pub max: f32,
    /// True if the row holds a NaN or `+inf`.
    pub invalid: bool,
}

/// Maximum of the row and whether it holds NaN or `+inf`, in one read ([`scan_row_range`] without the
/// minimum; memory-bound either way).
#[inline]
pub fn scan_row(row: &[f32]) -> RowScan {
    let r = scan_row_range(row);
    RowScan { max: r.max, invalid: r.invalid }
}

/// [`RowScan`] plus the smallest finite value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRange {
    /// Largest value (`-inf` if the row is all `-inf`).
    pub max: f32,
    /// Smallest finite value (`+inf` if there is none).
    pub min: f32,
    /// True if the row holds a NaN or `+inf`.
    pub invalid: bool,
}

dispatch_fn! {
    /// Maximum, smallest finite value and whether the row holds NaN or `+inf`, in one read.
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x < inf)` catches NaN and +inf in one compare
    pub fn scan_row_range(row: &[f32]) -> RowRange {
        let mut m = [f32::NEG_INFINITY; LANES];
        let mut lo = [f32::INFINITY; LANES];
        let mut bad = [false; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for j in 0..LANES {
                let x = c[j];
                bad[j] |= !(x < f32::INFINITY);
                m[j] = if x > m[j] { x } else { m[j] };
                lo[j] = if x < lo[j] && x > f32::NEG_INFINITY { x } else { lo[j] };
            }
        }
        let mut out = RowRange { max: f32::NEG_INFINITY, min: f32::INFINITY, invalid: false };
        for j in 0..LANES {
            out.invalid |= bad[j];
            out.max = if m[j] > out.max { m[j] } else { out.max };
            out.min = if lo[j] < out.min { lo[j] } else { out.min };
        }
        for &x in tail {
            out.invalid |= !(x < f32::INFINITY);
            out.max = if x > out.max { x } else { out.max };
            out.min = if x < out.min && x > f32::NEG_INFINITY { x } else { out.min };
        }
        out
    }
}

dispatch_fn! {
    /// Largest value of the row (`-inf` for an empty or all `-inf` row). Assumes no NaN.
    pub fn row_max(row: &[f32]) -> f32 {
        let mut m = [f32::NEG_INFINITY; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for j in 0..LANES {
                m[j] = if c[j] > m[j] { c[j] } else { m[j] };
            }
        }
        let mut max = f32::NEG_INFINITY;
        for v in m.into_iter().chain(tail.iter().copied()) {
            max = if v > max { v } else { max };
        }
        max
    }
}

/// Softmax statistics of a row, all relative to `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpStats {
    /// `sum exp(x - max)`.
    pub sum: f64,
    /// `sum exp(x - max) * (x - max)` (for the entropy), 0 when not requested.
    pub sum_xe: f64,
}

impl ExpStats {
    /// Entropy in nats of softmax(row): `log Z - E[x - max]`.
    pub fn entropy(&self) -> f64 {
        self.sum.ln() - self.sum_xe / self.sum
    }
}

/// Lanes of the exp kernels: one AVX2 register, so the polynomial's constants stay in registers.
const EXP_LANES: usize = 8;
/// The exp kernels move their f32 lane sums to f64 every this many elements.
const FLUSH: usize = 512;

dispatch_fn! {
    /// `exp((x - max) * inv_t)` for every element, written to `out` (same length); returns their sum.
    /// `inv_t` is 1 unless a temperature is pending; `-inf` elements give 0.
    pub fn exp_into(row: &[f32], max: f32, inv_t: f32, out: &mut [f32]) -> f64 {
        assert_eq!(row.len(), out.len());
        let mut acc = 0.0f64;
        for (rb, ob) in row.chunks(FLUSH).zip(out.chunks_mut(FLUSH)) {
            // A map in groups of 16 (two independent 8-lane chains per iteration: the polynomial is
            // latency-bound), then a lane-parallel sum of the block while it is in L1.
            let mut oc = ob.chunks_exact_mut(16);
            let mut rc = rb.chunks_exact(16);
            for (o, x) in (&mut oc).zip(&mut rc) {
                for j in 0..16 {
                    o[j] = exp_nonpos((x[j] - max) * inv_t);
                }
            }
            for (o, &x) in oc.into_remainder().iter_mut().zip(rc.remainder()) {
                *o = exp_nonpos((x - max) * inv_t);
            }
            acc += lane_sum(ob);
        }
        acc
    }
}

/// Sum of a short block (a few hundred values): [`LANES`] f32 partial sums, then f64. The one summation
/// every kernel uses, so that equal inputs give equal sums everywhere.
#[inline(always)]
pub fn lane_sum(v: &[f32]) -> f64 {
    let mut s = [0.0f32; LANES];
    let c = v.chunks_exact(LANES);
    let tail = c.remainder();
    for ch in c {
        for j in 0..LANES {
            s[j] += ch[j];
        }
    }
    s.iter().chain(tail).map(|&x| x as f64).sum()
}

dispatch_fn! {
    /// [`exp_into`] plus `sum exp(d) * d` with `d = (x - max) * inv_t`, for entropies.
    pub fn exp_into_xe(row: &[f32], max: f32, inv_t: f32, out: &mut [f32]) -> ExpStats {
        let sum = exp_into(row, max, inv_t, out);
        let mut acc = 0.0f64;
        for (rb, ob) in row.chunks(FLUSH).zip(out.chunks(FLUSH)) {
            let mut s = [0.0f32; EXP_LANES];
            let rc = rb.chunks_exact(EXP_LANES);
            let rt = rc.remainder();
            for (c, o) in rc.zip(ob.chunks_exact(EXP_LANES)) {
                for j in 0..EXP_LANES {
                    let d = (c[j] - max) * inv_t;
                    // exp(-inf) * -inf must count as 0.
                    s[j] += if o[j] > 0.0 { o[j] * d } else { 0.0 };
                }
            }
            for (x, &e) in rt.iter().zip(&ob[rb.len() - rt.len()..]) {
                acc += if e > 0.0 { (e * ((x - max) * inv_t)) as f64 } else { 0.0 };
            }
            for v in s {
                acc += v as f64;
            }
        }
        ExpStats { sum, sum_xe: acc }
    }
}

dispatch_fn! {
    /// Divide every element by `t` (exactly `x / t`, as torch does for a float32 tensor).
    pub fn div_inplace(row: &mut [f32], t: f32) {
        for x in row.iter_mut() {
            *x /= t;
        }
    }
}

dispatch_fn! {
    /// Set every element `< thr` to `fill`; returns how many elements are kept (`>= thr`).
    pub fn mask_below(row: &mut [f32], thr: f32, fill: f32) -> usize {
        let mut kept = [0u32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for j in 0..LANES {
                let keep = c[j] >= thr;
                kept[j] += keep as u32;
                c[j] = if keep { c[j] } else { fill };
            }
        }
        let mut n: usize = kept.iter().map(|&k| k as usize).sum();
        for x in chunks.into_remainder() {
            if *x >= thr {
                n += 1;
            } else {
                *x = fill;
            }
        }
        n
    }
}

dispatch_fn! {
    /// How many elements are `>= thr`.
    pub fn count_at_least(row: &[f32], thr: f32) -> usize {
        let mut n = [0u32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for j in 0..LANES {
                n[j] += (c[j] >= thr) as u32;
            }
        }
        n.iter().map(|&k| k as usize).sum::<usize>() + tail.iter().filter(|&&x| x >= thr).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_within_two_ulps() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let got = exp_nonpos(x);
            let want = (x as f64).exp();
            let rel = ((got as f64) - want).abs() / want;
            assert!(rel < 2.5e-7, "x={x} got={got} want={want} rel={rel}");
            x += 0.0137;
        }
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert_eq!(exp_nonpos(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpos(-1000.0), 0.0);
    }

    #[test]
    fn scan_detects_nan_and_pos_inf() {
        let mut v: Vec<f32> = (0..100).map(|i| i as f32 * 0.5 - 7.0).collect();
        assert_eq!(scan_row(&v), RowScan { max: 42.5, invalid: false });
        v[37] = f32::NAN;
        assert!(scan_row(&v).invalid);
        v[37] = f32::INFINITY;
        assert!(scan_row(&v).invalid);
        v[37] = f32::NEG_INFINITY;
        assert!(!scan_row(&v).invalid);
        v[99] = f32::NAN; // in the tail
        assert!(scan_row(&v).invalid);
    }

    #[test]
    fn exp_into_sums_like_f64() {
        let v: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
        let m = row_max(&v);
        let mut out = vec![0.0; v.len()];
        let st = exp_into_xe(&v, m, 1.0, &mut out);
        let want: f64 = v.iter().map(|&x| ((x - m) as f64).exp()).sum();
        assert!((st.sum - want).abs() / want < 1e-6);
        let want_xe: f64 = v.iter().map(|&x| ((x - m) as f64).exp() * (x - m) as f64).sum();
        assert!((st.sum_xe - want_xe).abs() / want_xe.abs() < 1e-6);
    }
}

/// Summary of a row's finite values (see [`finite_moments`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// How many values are finite (not `-inf`).
    pub n: usize,
    pub max: f32,
    pub min: f32,
    /// Sum of `x - shift` (see [`finite_moments`]).
    pub sum: f64,
    /// Sum of `(x - shift)^2`.
    pub sq: f64,
}

impl Moments {
    /// No values yet.
    pub const EMPTY: Moments =
        Moments { n: 0, max: f32::NEG_INFINITY, min: f32::INFINITY, sum: 0.0, sq: 0.0 };

    /// Adds one finite value `x` (the sums are of `x - shift`).
    #[inline]
    pub fn add(&mut self, x: f32, shift: f32) {
        let d = (x - shift) as f64;
        self.n += 1;
        self.max = self.max.max(x);
        self.min = self.min.min(x);
        self.sum += d;
        self.sq += d * d;
    }
}

dispatch_fn! {
    /// Over the finite (not `-inf`) values of `row`, in one read: their count, max, min, and the sum and
    /// sum of squares of `x - shift` ([`LANES`] f32 accumulators per block of 512, added up in f64). A
    /// `shift` among the values (say the first finite one) keeps a variance `sq / n - (sum / n)^2` free of
    /// cancellation when the values are far from 0.
    pub fn finite_moments(row: &[f32], shift: f32) -> Moments {
        let mut m = Moments::EMPTY;
        for blk in row.chunks(FLUSH) {
            // Compare-and-select and bit masks (not f32::max / branches) keep every lane an f32 vector.
            let mut n = [0u32; LANES];
            let mut mx = [f32::NEG_INFINITY; LANES];
            let mut mn = [f32::INFINITY; LANES];
            let mut s = [0.0f32; LANES];
            let mut q = [0.0f32; LANES];
            let c = blk.chunks_exact(LANES);
            let tail = c.remainder();
            for ch in c {
                #[allow(clippy::needless_range_loop)]
                for j in 0..LANES {
                    let x = ch[j];
                    let keep = 0u32.wrapping_sub((x > f32::NEG_INFINITY) as u32); // all ones if finite
                    let v = f32::from_bits((x - shift).to_bits() & keep);
                    let y = f32::from_bits((x.to_bits() & keep) | (f32::INFINITY.to_bits() & !keep));
                    n[j] = n[j].wrapping_add(keep & 1);
                    mx[j] = if x > mx[j] { x } else { mx[j] };
                    mn[j] = if y < mn[j] { y } else { mn[j] };
                    s[j] += v;
                    q[j] = v.mul_add(v, q[j]);
                }
            }
            for &x in tail.iter().filter(|x| **x > f32::NEG_INFINITY) {
                m.add(x, shift);
            }
            for j in 0..LANES {
                m.n += n[j] as usize;
                m.max = m.max.max(mx[j]);
                m.min = m.min.min(mn[j]);
                m.sum += s[j] as f64;
                m.sq += q[j] as f64;
            }
        }
        m
    }
}

dispatch_fn! {
    /// `(sum e, sum e * (x - max))` over a row and its weights `e = exp(x - max)` (from [`exp_into`]), for
    /// an entropy `ln Z - xe / Z` that keeps its relative precision near 0 (one dominant token): the
    /// weights of the maximal values (exactly 1) are counted apart, the others summed in f32 lanes per
    /// block of 512 and in f64 across blocks, so the dominant 1.0 never swallows them.
    pub fn entropy_sums(row: &[f32], max: f32, e: &[f32]) -> (f64, f64) {
        let (mut ones, mut z, mut xe) = (0.0f64, 0.0f64, 0.0f64);
        for (rb, eb) in row.chunks(FLUSH).zip(e.chunks(FLUSH)) {
            let (mut n1, mut s, mut q) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
            let rc = rb.chunks_exact(LANES);
            let (rt, et) = (rc.remainder(), &eb[rb.len() - rb.len() % LANES..]);
            for (r, w) in rc.zip(eb.chunks_exact(LANES)) {
                for j in 0..LANES {
                    let one = w[j] >= 1.0;
                    n1[j] += if one { 1.0 } else { 0.0 };
                    s[j] += if one { 0.0 } else { w[j] };
                    // exp(-inf) * -inf must count as 0: the difference is selected first.
                    let d = if w[j] > 0.0 { r[j] - max } else { 0.0 };
                    q[j] = w[j].mul_add(d, q[j]);
                }
            }
            for (&x, &w) in rt.iter().zip(et) {
                if w >= 1.0 {
                    ones += 1.0;
                } else {
                    z += w as f64;
                }
                xe += if w > 0.0 { w as f64 * (x - max) as f64 } else { 0.0 };
            }
            for j in 0..LANES {
                ones += n1[j] as f64;
                z += s[j] as f64;
                xe += q[j] as f64;
            }
        }
        (ones + z, xe)
    }
}

/// The least float32 at or above `x`: for a float32 `v`, `v as f64 >= x` iff `v >= f32_at_least(x)`.
pub fn f32_at_least(x: f64) -> f32 {
    let c = x as f32;
    if (c as f64) < x {
        c.next_up()
    } else {
        c
    }
}
