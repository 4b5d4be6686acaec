//! Temperature and the selective warpers (transformers' `*LogitsWarper`s). They read the scores only
//! (`input_ids` may be absent) and keep no state; the row algorithms are in [`crate::row`].

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use super::params::{as_normal_f32, check_filter, check_min_keep, with_filter};
use super::{At, Class, Effect, PerRow, Processor, Range, Reads, Rule};
use crate::error::{Error, Result};
use crate::row::Row;

const SELECTIVE: Class = Class { effect: Effect::Selective, reads: Reads::Scores };

/// `TemperatureLogitsWarper`.
#[derive(Debug, Clone, PartialEq)]
pub struct Temperature {
    pub t: PerRow<f32>,
}

impl Processor {
    pub fn temperature(t: PerRow<f64>) -> Result<Self> {
        let t = t.try_map("temperature", |t| {
            if !t.is_finite() || t <= 0.0 {
                let mut msg = format!(
                    "`temperature` (={t}) has to be a strictly positive float, otherwise your next token scores will be invalid."
                );
                if t == 0.0 {
                    msg += " If you're looking for greedy decoding strategies, set `do_sample=False`.";
                }
                return Err(Error::param(msg));
            }
            as_normal_f32("temperature", t)
        })?;
        Ok(Temperature { t }.into())
    }
}

impl Rule for Temperature {
    const NAME: &'static str = "TemperatureLogitsWarper";
    const CLASS: Class = Class { effect: Effect::Scale, reads: Reads::Scores };
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, batch: usize, _: usize) -> Result<()> {
        self.t.check_batch("temperature", batch)
    }

    fn range_after(&self, r: Range, row: usize, _: usize) -> Range {
        let t = self.t.get(row) as f64;
        Range { lo: r.lo / t, hi: r.hi / t }
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        row.temperature(self.t.get(at.row));
    }
}

/// `TopKLogitsWarper`; `k` is `max(top_k, min_tokens_to_keep)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    pub k: PerRow<usize>,
    pub filter: f32,
}

impl Processor {
    /// transformers does not validate `min_tokens_to_keep` here: it only raises `top_k` to it.
    pub fn top_k(k: PerRow<i64>, filter: f32, min_keep: i64) -> Result<Self> {
        let min_keep = min_keep.max(0) as usize;
        let k = k.try_map("top_k", |k| {
            if k <= 0 {
                return Err(Error::param(format!(
                    "`top_k` has to be a strictly positive integer, but is {k}"
                )));
            }
            Ok((k as usize).max(min_keep))
        })?;
        Ok(TopK { k, filter: check_filter(filter)? }.into())
    }
}

impl Rule for TopK {
    const NAME: &'static str = "TopKLogitsWarper";
    const CLASS: Class = SELECTIVE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, batch: usize, _: usize) -> Result<()> {
        self.k.check_batch("top_k", batch)
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        with_filter(r, self.filter)
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        row.top_k(self.k.get(at.row), self.filter);
    }
}

/// `TopPLogitsWarper`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopP {
    pub p: PerRow<f64>,
    pub filter: f32,
    pub min_keep: usize,
}

impl Processor {
    pub fn top_p(p: PerRow<f64>, filter: f32, min_keep: i64) -> Result<Self> {
        let p = p.try_map("top_p", |p| {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::param(format!("`top_p` has to be a float > 0 and < 1, but is {p}")));
            }
            Ok(p)
        })?;
        Ok(TopP { p, filter: check_filter(filter)?, min_keep: check_min_keep(min_keep)? }.into())
    }
}

impl Rule for TopP {
    const NAME: &'static str = "TopPLogitsWarper";
    const CLASS: Class = SELECTIVE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, batch: usize, _: usize) -> Result<()> {
        self.p.check_batch("top_p", batch)
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        with_filter(r, self.filter)
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        row.top_p(self.p.get(at.row), self.filter, self.min_keep);
    }
}

/// `MinPLogitsWarper`.
#[derive(Debug, Clone, PartialEq)]
pub struct MinP {
    pub p: PerRow<f64>,
    pub filter: f32,
    pub min_keep: usize,
}

impl Processor {
    pub fn min_p(p: PerRow<f64>, filter: f32, min_keep: i64) -> Result<Self> {
        let p = p.try_map("min_p", |p| {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::param(format!(
                    "`min_p` has to be a float in the [0, 1] interval, but is {p}"
                )));
            }
            Ok(p)
        })?;
        Ok(MinP { p, filter: check_filter(filter)?, min_keep: check_min_keep(min_keep)? }.into())
    }
}

impl Rule for MinP {
    const NAME: &'static str = "MinPLogitsWarper";
    const CLASS: Class = SELECTIVE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, batch: usize, _: usize) -> Result<()> {
        self.p.check_batch("min_p", batch)
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        with_filter(r, self.filter)
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        row.min_p(self.p.get(at.row), self.filter, self.min_keep);
    }
}

/// `TopHLogitsWarper` (transformers 5.23).
#[derive(Debug, Clone, PartialEq)]
pub struct TopH {
    pub top_h: f64,
    pub filter: f32,
}

impl Processor {
    pub fn top_h(top_h: f64, filter: f32) -> Result<Self> {
        if !(top_h > 0.0 && top_h <= 1.0) {
            return Err(Error::param(format!("`top_h` must be in the range (0, 1], but is {top_h}")));
        }
        Ok(TopH { top_h, filter: check_filter(filter)? }.into())
    }
}

impl Rule for TopH {
    const NAME: &'static str = "TopHLogitsWarper";
    const CLASS: Class = SELECTIVE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        with_filter(r, self.filter)
    }

    fn apply(&self, row: &mut Row, _: &At, _: &()) {
        row.top_h(self.top_h, self.filter);
    }
}

/// Top-nσ (llama.cpp `top_n_sigma`); no transformers counterpart.
#[derive(Debug, Clone, PartialEq)]
pub struct TopNSigma {
    pub n: PerRow<f64>,
    pub filter: f32,
}

impl Processor {
    pub fn top_n_sigma(n: PerRow<f64>, filter: f32) -> Result<Self> {
        let n = n.try_map("top_n_sigma", |n| {
            if !(n.is_finite() && n > 0.0) {
                return Err(Error::param(format!("`top_n_sigma` has to be a finite float > 0, but is {n}")));
            }
            Ok(n)
        })?;
        Ok(TopNSigma { n, filter: check_filter(filter)? }.into())
    }
}

impl Rule for TopNSigma {
    const NAME: &'static str = "TopNSigmaLogitsWarper";
    const CLASS: Class = SELECTIVE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, batch: usize, _: usize) -> Result<()> {
        self.n.check_batch("top_n_sigma", batch)
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        with_filter(r, self.filter)
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        row.top_n_sigma(self.n.get(at.row), self.filter);
    }
}

/// Dynamic temperature (llama.cpp `temp_ext`); no transformers counterpart.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicTemperature {
    pub t: PerRow<f64>,
    pub range: PerRow<f64>,
    pub exponent: PerRow<f64>,
}

impl Processor {
    pub fn dynamic_temperature(t: PerRow<f64>, range: PerRow<f64>, exponent: PerRow<f64>) -> Result<Self> {
        let finite = |name: &'static str, what: &'static str, ok: fn(f64) -> bool| {
            move |v: f64| {
                if v.is_finite() && ok(v) {
                    Ok(v)
                } else {
                    Err(Error::param(format!("`{name}` has to be {what}, but is {v}")))
                }
            }
        };
        // Both ends of the range must stay float32 temperatures (what the scores are divided by).
        const HALF_MAX: f64 = f32::MAX as f64 / 2.0;
        let t = t.try_map(
            "temperature",
            finite("temperature", "a float in (0, 1.7e38]", |v| v > 0.0 && v <= HALF_MAX),
        )?;
        let range = range.try_map(
            "dynatemp_range",
            finite("dynatemp_range", "a float in [0, 1.7e38]", |v| (0.0..=HALF_MAX).contains(&v)),
        )?;
        let exponent = exponent
            .try_map("dynatemp_exponent", finite("dynatemp_exponent", "a finite float >= 0", |v| v >= 0.0))?;
        Ok(DynamicTemperature { t, range, exponent }.into())
    }
}

impl Rule for DynamicTemperature {
    const NAME: &'static str = "DynamicTemperatureLogitsWarper";
    const CLASS: Class = Class { effect: Effect::Scale, reads: Reads::Scores };
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, batch: usize, _: usize) -> Result<()> {
        self.t.check_batch("temperature", batch)?;
        self.range.check_batch("dynatemp_range", batch)?;
        self.exponent.check_batch("dynatemp_exponent", batch)
    }

    /// Divided by a temperature between the lowest and the highest (or unchanged: the limit 0 keeps the
    /// maximal values only).
    fn range_after(&self, r: Range, row: usize, _: usize) -> Range {
        let (t, range) = (self.t.get(row), self.range.get(row).max(0.0));
        let (low, high) = ((t - range).max(0.0), t + range);
        if low == 0.0 {
            return Range { lo: f64::NEG_INFINITY, hi: f64::INFINITY }; // (the checked path)
        }
        let lo = [r.lo / low, r.lo / high, r.lo].into_iter().fold(f64::INFINITY, f64::min);
        let hi = [r.hi / low, r.hi / high, r.hi].into_iter().fold(f64::NEG_INFINITY, f64::max);
        Range { lo, hi }
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        let r = at.row;
        row.dynamic_temperature(self.t.get(r), self.range.get(r), self.exponent.get(r));
    }
}

/// XTC, "exclude top choices" (llama.cpp `xtc`); no transformers counterpart.
#[derive(Debug, Clone, PartialEq)]
pub struct Xtc {
    pub threshold: PerRow<f64>,
    pub probability: PerRow<f64>,
    pub min_keep: usize,
    /// The stream of a call that does not draw (the draw's streams are used when it does).
    pub seed: u64,
}

/// The element of a row's stream (at a step) that decides whether XTC applies; the draw uses element 0.
const XTC_STREAM_INDEX: u32 = 1;

impl Processor {
    pub fn xtc(threshold: PerRow<f64>, probability: PerRow<f64>, min_keep: i64, seed: u64) -> Result<Self> {
        let unit = |name: &'static str| {
            move |v: f64| {
                if (0.0..=1.0).contains(&v) {
                    Ok(v)
                } else {
                    Err(Error::param(format!("`{name}` has to be a float in [0, 1], but is {v}")))
                }
            }
        };
        let threshold = threshold.try_map("xtc_threshold", unit("xtc_threshold"))?;
        let probability = probability.try_map("xtc_probability", unit("xtc_probability"))?;
        Ok(Xtc { threshold, probability, min_keep: check_min_keep(min_keep)?, seed }.into())
    }
}

impl Rule for Xtc {
    const NAME: &'static str = "XTCLogitsWarper";
    // The history's length is the step of a call that does not draw.
    const CLASS: Class = Class { effect: Effect::Selective, reads: Reads::Length };
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, batch: usize, _: usize) -> Result<()> {
        self.threshold.check_batch("xtc_threshold", batch)?;
        self.probability.check_batch("xtc_probability", batch)
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        r
    }

    /// Applies with probability `probability`: the uniform of the row's stream at this step (the draw's
    /// streams in a call that draws; else `(seed, row, history length)`).
    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        let (threshold, probability) = (self.threshold.get(at.row), self.probability.get(at.row));
        if probability <= 0.0 || threshold > 0.5 {
            return; // never applies / at most one token can qualify
        }
        let u = match at.draw {
            Some((seeds, step)) => seeds.uniforms(at.row, step, XTC_STREAM_INDEX)[0],
            None => crate::sampling::uniforms(self.seed, at.row as u64, at.len as u64, XTC_STREAM_INDEX)[0],
        };
        if u < probability {
            row.xtc(threshold, self.min_keep);
        }
    }
}

/// `TypicalLogitsWarper`.
#[derive(Debug, Clone, PartialEq)]
pub struct Typical {
    pub mass: f64,
    pub filter: f32,
    pub min_keep: usize,
}

impl Processor {
    pub fn typical(mass: f64, filter: f32, min_keep: i64) -> Result<Self> {
        if !(mass > 0.0 && mass < 1.0) {
            return Err(Error::param(format!("`typical_p` has to be a float > 0 and < 1, but is {mass}")));
        }
        Ok(Typical { mass, filter: check_filter(filter)?, min_keep: check_min_keep(min_keep)? }.into())
    }
}

impl Rule for Typical {
    const NAME: &'static str = "TypicalLogitsWarper";
    const CLASS: Class = SELECTIVE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        with_filter(r, self.filter)
    }

    fn apply(&self, row: &mut Row, _: &At, _: &()) {
        row.typical(self.mass, self.filter, self.min_keep);
    }
}

/// `EpsilonLogitsWarper`.
#[derive(Debug, Clone, PartialEq)]
pub struct Epsilon {
    pub eps: f64,
    pub filter: f32,
    pub min_keep: usize,
}

impl Processor {
    pub fn epsilon(eps: f64, filter: f32, min_keep: i64) -> Result<Self> {
        if !(eps > 0.0 && eps < 1.0) {
            return Err(Error::param(format!(
                "`epsilon_cutoff` has to be a float > 0 and < 1, but is {eps}"
            )));
        }
        Ok(Epsilon { eps, filter: check_filter(filter)?, min_keep: check_min_keep(min_keep)? }.into())
    }
}

impl Rule for Epsilon {
    const NAME: &'static str = "EpsilonLogitsWarper";
    const CLASS: Class = SELECTIVE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        with_filter(r, self.filter)
    }

    fn apply(&self, row: &mut Row, _: &At, _: &()) {
        row.prob_floor(|_| self.eps, self.filter, self.min_keep);
    }
}

/// `EtaLogitsWarper`.
#[derive(Debug, Clone, PartialEq)]
pub struct Eta {
    pub eps: f64,
    pub filter: f32,
    pub min_keep: usize,
}

impl Processor {
    pub fn eta(eps: f64, filter: f32, min_keep: i64) -> Result<Self> {
        if !(eps > 0.0 && eps < 1.0) {
            return Err(Error::param(format!("`eta_cutoff` has to be a float > 0 and < 1, but is {eps}")));
        }
        Ok(Eta { eps, filter: check_filter(filter)?, min_keep: check_min_keep(min_keep)? }.into())
    }
}

impl Rule for Eta {
    const NAME: &'static str = "EtaLogitsWarper";
    const CLASS: Class = SELECTIVE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        with_filter(r, self.filter)
    }

    fn apply(&self, row: &mut Row, _: &At, _: &()) {
        // transformers computes eta in float32 from a float32 epsilon.
        let e = self.eps as f32;
        row.prob_floor(
            |st| {
                let h = st.entropy() as f32;
                e.min(e.sqrt() * (-h).exp()) as f64
            },
            self.filter,
            self.min_keep,
        );
    }
}
