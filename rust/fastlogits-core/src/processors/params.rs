//! Parameters shared by the families: per-row values and the checks every family uses (one copy each).

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use super::Range;
use crate::error::{Error, Result};
use crate::row::Row;

pub(super) const NEG_INF: f32 = f32::NEG_INFINITY;

/// A parameter that is the same for every row, or given row by row.
#[derive(Debug, Clone, PartialEq)]
pub enum PerRow<T> {
    All(T),
    Rows(Vec<T>),
}

impl<T: Copy> PerRow<T> {
    #[inline]
    pub fn get(&self, row: usize) -> T {
        match self {
            PerRow::All(v) => *v,
            PerRow::Rows(v) => v[row],
        }
    }

    /// Each value checked and converted by `f`; an empty list of rows is an error naming `name`.
    pub(super) fn try_map<U>(self, name: &str, f: impl Fn(T) -> Result<U>) -> Result<PerRow<U>> {
        Ok(match self {
            PerRow::All(v) => PerRow::All(f(v)?),
            PerRow::Rows(v) => {
                if v.is_empty() {
                    return Err(Error::param(format!(
                        "`{name}` is an empty list: give one value, or one value per row of the batch"
                    )));
                }
                PerRow::Rows(v.into_iter().map(f).collect::<Result<_>>()?)
            }
        })
    }

    /// Per-row values must be one per row of the call's batch.
    pub(super) fn check_batch(&self, name: &str, batch: usize) -> Result<()> {
        match self {
            PerRow::Rows(v) if v.len() != batch => Err(Error::shape(format!(
                "`{name}` has {} per-row values but the batch has {batch} rows",
                v.len()
            ))),
            PerRow::Rows(_) | PerRow::All(_) => Ok(()),
        }
    }
}

impl<T> From<T> for PerRow<T> {
    fn from(v: T) -> Self {
        PerRow::All(v)
    }
}

/// The smallest and largest positive normal float32: a divisor or factor outside them turns ordinary
/// float32 scores into 0, `+inf` or `-inf`.
const F32_NORMAL: (f32, f32) = (f32::MIN_POSITIVE, f32::MAX);

/// A positive parameter that scales float32 scores (temperature, penalty): checked as a float64, applied as
/// a float32, so it has to be a normal float32.
pub(super) fn as_normal_f32(name: &str, v: f64) -> Result<f32> {
    let x = v as f32;
    if !x.is_normal() {
        return Err(Error::param(format!(
            "`{name}` (={v}) is outside the float32 range the scores are computed in: it has to be in \
             [{:e}, {:e}]",
            F32_NORMAL.0, F32_NORMAL.1
        )));
    }
    Ok(x)
}

/// A bias added to float32 scores: finite (or `-inf`, a ban) and within the float32 range.
pub(super) fn as_bias_f32(name: &str, token: u32, b: f64) -> Result<f32> {
    if b.is_nan() || b == f64::INFINITY {
        return Err(Error::param(format!(
            "`{name}` biases must be finite or -inf, but the one of token {token} is {b}"
        )));
    }
    let x = b as f32;
    if b.is_finite() && x.is_infinite() {
        return Err(Error::param(format!(
            "`{name}`: the bias of token {token} (={b}) is outside the float32 range the scores are computed \
             in: |bias| has to be at most {:e} (or -inf, a ban)",
            f32::MAX
        )));
    }
    Ok(x)
}

/// The warpers' `filter_value`: finite or `-inf`.
pub(super) fn check_filter(filter: f32) -> Result<f32> {
    if filter.is_nan() || filter == f32::INFINITY {
        return Err(Error::param(format!("`filter_value` must be a finite float or -inf, but is {filter}")));
    }
    Ok(filter)
}

/// The warpers' `min_tokens_to_keep`: at least 1.
pub(super) fn check_min_keep(min_keep: i64) -> Result<usize> {
    if min_keep < 1 {
        return Err(Error::param(format!(
            "`min_tokens_to_keep` has to be a positive integer, but is {min_keep}"
        )));
    }
    Ok(min_keep as usize)
}

/// Where a warper leaves a row's finite scores: the kept ones, and `filter` where it is finite.
pub(super) fn with_filter(r: Range, filter: f32) -> Range {
    if filter == NEG_INF {
        r
    } else {
        Range { lo: r.lo.min(filter as f64), hi: r.hi.max(filter as f64) }
    }
}

/// Token ids that index the scores: non-negative (`name` is the argument named in errors).
pub(super) fn token_ids(ids: &[i64], name: &str) -> Result<Vec<u32>> {
    ids.iter()
        .map(|&t| {
            u32::try_from(t).map_err(|_| {
                Error::param(format!("`{name}` has to be a list of non-negative integers, but contains {t}"))
            })
        })
        .collect()
}

/// A set of token ids matched against the vocabulary, as transformers' `torch.isin(arange(V), ids)`:
/// ids outside the vocabulary (negative, or `>= V` at call time) match nothing. Deduplicated.
pub(super) fn token_set(ids: &[i64]) -> Vec<u32> {
    let mut seen = rustc_hash::FxHashSet::default();
    ids.iter().filter_map(|&t| u32::try_from(t).ok()).filter(|&t| seen.insert(t)).collect()
}

/// Token ids that must lie in the vocabulary at call time.
pub(super) fn in_vocab(name: &str, mut ids: impl Iterator<Item = u32>, vocab: usize) -> Result<()> {
    match ids.find(|&t| t as usize >= vocab) {
        Some(t) => {
            Err(Error::value(format!("`{name}` contains token id {t}, outside the vocabulary [0, {vocab})")))
        }
        None => Ok(()),
    }
}

/// Bans `tokens` (a set matched against the vocabulary: ids beyond it are skipped).
pub(super) fn ban(row: &mut Row, tokens: &[u32]) {
    let mut v = row.points();
    let vocab = v.len();
    for &t in tokens.iter().filter(|&&t| (t as usize) < vocab) {
        v.set(t, NEG_INF);
    }
}
