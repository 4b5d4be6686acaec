//! Rules that depend on the history's length only (its ids are never read): minimum lengths, tokens
//! suppressed at the first generated position, the exponential decay length penalty.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use super::params::{ban, in_vocab, token_ids, token_set};
use super::{At, Class, Effect, Processor, Range, Reads, Rule};
use crate::error::{Error, Result};
use crate::row::Row;

const LENGTH_RULE: Class = Class { effect: Effect::PointUpdate, reads: Reads::Length };

/// `MinLengthLogitsProcessor`: EOS banned while the history is shorter than `min_length`. Like
/// transformers (`torch.isin` over the vocabulary), ids outside the vocabulary match nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct MinLength {
    pub min_length: usize,
    pub eos: Vec<u32>,
}

impl Processor {
    pub fn min_length(min_length: i64, eos: &[i64]) -> Result<Self> {
        if min_length < 0 {
            return Err(Error::param(format!(
                "`min_length` has to be a non-negative integer, but is {min_length}"
            )));
        }
        Ok(MinLength { min_length: min_length as usize, eos: token_set(eos) }.into())
    }
}

impl Rule for MinLength {
    const NAME: &'static str = "MinLengthLogitsProcessor";
    const CLASS: Class = LENGTH_RULE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(()) // a set matched against the vocabulary
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        r
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        if at.len < self.min_length {
            ban(row, &self.eos);
        }
    }
}

/// `MinNewTokensLengthLogitsProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct MinNewTokens {
    pub prompt_len: usize,
    pub min_new: usize,
    pub eos: Vec<u32>,
}

impl Processor {
    pub fn min_new_tokens(prompt_len: i64, min_new: i64, eos: &[i64]) -> Result<Self> {
        for (name, v) in [("prompt_length_to_skip", prompt_len), ("min_new_tokens", min_new)] {
            if v < 0 {
                return Err(Error::param(format!("`{name}` has to be a positive integer, but is {v}")));
            }
        }
        Ok(MinNewTokens { prompt_len: prompt_len as usize, min_new: min_new as usize, eos: token_set(eos) }
            .into())
    }
}

impl Rule for MinNewTokens {
    const NAME: &'static str = "MinNewTokensLengthLogitsProcessor";
    const CLASS: Class = LENGTH_RULE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(()) // a set matched against the vocabulary
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        r
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        if (at.len as i64).saturating_sub(self.prompt_len as i64) < self.min_new as i64 {
            ban(row, &self.eos);
        }
    }
}

/// `SuppressTokensAtBeginLogitsProcessor`: applies when the history length equals `begin` (`None`: a
/// negative index, never).
#[derive(Debug, Clone, PartialEq)]
pub struct SuppressTokensAtBegin {
    pub tokens: Vec<u32>,
    pub begin: Option<usize>,
}

impl Processor {
    /// A negative `begin` never matches a history length (transformers compares without validating).
    pub fn suppress_tokens_at_begin(tokens: &[i64], begin: i64) -> Result<Self> {
        Ok(SuppressTokensAtBegin { tokens: token_set(tokens), begin: usize::try_from(begin).ok() }.into())
    }
}

impl Rule for SuppressTokensAtBegin {
    const NAME: &'static str = "SuppressTokensAtBeginLogitsProcessor";
    const CLASS: Class = LENGTH_RULE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(()) // a set matched against the vocabulary
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        r
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        if Some(at.len) == self.begin {
            ban(row, &self.tokens);
        }
    }
}

/// `ExponentialDecayLengthPenalty`; `start` already includes the prompt length (a float, as transformers
/// keeps it).
#[derive(Debug, Clone, PartialEq)]
pub struct ExponentialDecay {
    pub start: f64,
    pub factor: f64,
    pub eos: Vec<u32>,
}

impl ExponentialDecay {
    /// transformers: `pow(factor, idx) - 1` in double, then a float32 tensor times it.
    fn scale(&self, len: f64) -> f32 {
        (self.factor.powf(len - self.start) - 1.0) as f32
    }
}

impl Processor {
    /// `start` and `factor` are transformers' `exponential_decay_length_penalty` tuple; `prompt_len` is
    /// its `input_ids_seq_length`. Both may be fractional, as in transformers (the exponent then is).
    pub fn exponential_decay(start: f64, factor: f64, eos: &[i64], prompt_len: f64) -> Result<Self> {
        if !start.is_finite() || !prompt_len.is_finite() {
            return Err(Error::param(format!(
                "`exponential_decay_length_penalty` start ({start}) and `input_ids_seq_length` ({prompt_len}) \
                 have to be finite numbers"
            )));
        }
        if !factor.is_finite() {
            return Err(Error::param(format!(
                "`exponential_decay_length_penalty` factor has to be a finite float, but is {factor}"
            )));
        }
        if eos.iter().any(|&t| t < 0) {
            return Err(Error::param(format!(
                "`eos_token_id` has to be a list of positive integers, but is {eos:?}"
            )));
        }
        token_ids(eos, "eos_token_id")?;
        Ok(ExponentialDecay { start: start + prompt_len, factor, eos: token_set(eos) }.into())
    }
}

impl Rule for ExponentialDecay {
    const NAME: &'static str = "ExponentialDecayLengthPenalty";
    const CLASS: Class = LENGTH_RULE;
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, vocab: usize) -> Result<()> {
        in_vocab("eos_token_id", self.eos.iter().copied(), vocab) // EOS ids index the scores here
    }

    fn range_after(&self, r: Range, _: usize, len: usize) -> Range {
        let len = len as f64;
        if len <= self.start || r.lo > r.hi {
            return r;
        }
        // The scale as `apply` computes it: not finite (an overflow, or NaN) is never provably safe.
        let scale = self.scale(len);
        if !scale.is_finite() {
            return Range { lo: f64::NEG_INFINITY, hi: f64::INFINITY };
        }
        let m = r.lo.abs().max(r.hi.abs()) * (1.0 + scale.abs() as f64);
        Range { lo: r.lo.min(-m), hi: r.hi.max(m) }
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        let len = at.len as f64;
        if len > self.start {
            let scale = self.scale(len);
            let mut v = row.points();
            for &t in &self.eos {
                let s = v.get(t);
                if s.is_finite() {
                    v.set(t, s + s.abs() * scale);
                }
            }
        }
    }
}
