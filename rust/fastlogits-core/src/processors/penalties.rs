//! Penalties on tokens already in the history: repetition (transformers), presence and frequency
//! (OpenAI / vLLM). Each keeps, per row, what it needs from the history, extended token by token.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use rustc_hash::FxHashMap;

use super::params::as_normal_f32;
use super::{At, Class, Effect, PerRow, Processor, Range, Reads, RowState, Rule};
use crate::error::{Error, Result};
use crate::row::Row;

const PENALTY: Class = Class { effect: Effect::PointUpdate, reads: Reads::History };

/// `RepetitionPenaltyLogitsProcessor`: positions `< ignore` (prompt / left padding) are skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct RepetitionPenalty {
    pub penalty: PerRow<f32>,
    pub ignore: PerRow<usize>,
}

/// The distinct tokens of a row's history at positions `>= start` (the repetition penalty's state).
#[derive(Debug, Default, Clone)]
pub struct DistinctTokens {
    start: usize,
    seen: Vec<u64>,
    /// In order of first appearance.
    pub list: Vec<u32>,
}

impl RowState for DistinctTokens {
    fn reset(&mut self, vocab: usize) {
        self.seen.clear();
        self.seen.resize(vocab.div_ceil(64), 0);
        self.list.clear();
    }

    fn extend(&mut self, hist: &[u32], from: usize) {
        for &t in &hist[from.max(self.start).min(hist.len())..] {
            let (w, b) = ((t / 64) as usize, t % 64);
            if self.seen[w] & (1 << b) == 0 {
                self.seen[w] |= 1 << b;
                self.list.push(t);
            }
        }
    }
}

impl Processor {
    pub fn repetition_penalty(penalty: PerRow<f64>, ignore: PerRow<i64>) -> Result<Self> {
        let penalty = penalty.try_map("penalty", |p| {
            if !p.is_finite() || p <= 0.0 {
                return Err(Error::param(format!(
                    "`penalty` has to be a strictly positive float, but is {p}"
                )));
            }
            as_normal_f32("penalty", p)
        })?;
        let ignore = ignore.try_map("prompt_ignore_length", |n| {
            usize::try_from(n).map_err(|_| {
                Error::param(format!("`prompt_ignore_length` has to be a positive integer, but is {n}"))
            })
        })?;
        Ok(RepetitionPenalty { penalty, ignore }.into())
    }
}

impl Rule for RepetitionPenalty {
    const NAME: &'static str = "RepetitionPenaltyLogitsProcessor";
    const CLASS: Class = PENALTY;
    type State = DistinctTokens;

    fn new_state(&self, row: usize) -> DistinctTokens {
        DistinctTokens { start: self.ignore.get(row), ..DistinctTokens::default() }
    }

    fn check(&self, batch: usize, _: usize) -> Result<()> {
        self.penalty.check_batch("penalty", batch)?;
        self.ignore.check_batch("prompt_ignore_length", batch)
    }

    fn range_after(&self, r: Range, row: usize, _: usize) -> Range {
        // s < 0 ? s * p : s / p is increasing in s.
        let p = self.penalty.get(row) as f64;
        let f = |s: f64| if s < 0.0 { s * p } else { s / p };
        Range { lo: r.lo.min(f(r.lo)), hi: r.hi.max(f(r.hi)) }
    }

    fn apply(&self, row: &mut Row, at: &At, seen: &DistinctTokens) {
        let p = self.penalty.get(at.row);
        let mut v = row.points();
        for &t in &seen.list {
            v.update(t, |s| if s < 0.0 { s * p } else { s / p });
        }
    }
}

/// How many times each token occurs in a row's history at positions `>= start` (the state of the
/// presence and frequency penalties).
#[derive(Debug, Default, Clone)]
pub struct TokenCounts {
    start: usize,
    pub counts: FxHashMap<u32, u32>,
}

impl RowState for TokenCounts {
    fn reset(&mut self, _: usize) {
        self.counts.clear();
    }

    fn extend(&mut self, hist: &[u32], from: usize) {
        for &t in &hist[from.max(self.start).min(hist.len())..] {
            let c = self.counts.entry(t).or_insert(0);
            *c = c.saturating_add(1);
        }
    }
}

/// The OpenAI penalties' parameters: the penalty in `[-2, 2]`, the prompt length (its tokens are not
/// counted).
fn openai_penalty(name: &str, penalty: f64, prompt_len: i64) -> Result<(f32, usize)> {
    if !(-2.0..=2.0).contains(&penalty) {
        return Err(Error::param(format!("`{name}` has to be a float in [-2, 2], but is {penalty}")));
    }
    let prompt_len = usize::try_from(prompt_len).map_err(|_| {
        Error::param(format!("`prompt_length` has to be a non-negative integer, but is {prompt_len}"))
    })?;
    Ok((penalty as f32, prompt_len))
}

/// OpenAI / vLLM presence penalty: `-penalty` for every token generated at least once (positions
/// `>= prompt_len`).
#[derive(Debug, Clone, PartialEq)]
pub struct PresencePenalty {
    pub penalty: f32,
    pub prompt_len: usize,
}

impl Processor {
    pub fn presence_penalty(penalty: f64, prompt_len: i64) -> Result<Self> {
        let (penalty, prompt_len) = openai_penalty("presence_penalty", penalty, prompt_len)?;
        Ok(PresencePenalty { penalty, prompt_len }.into())
    }
}

impl Rule for PresencePenalty {
    const NAME: &'static str = "PresencePenaltyLogitsProcessor";
    const CLASS: Class = PENALTY;
    type State = TokenCounts;

    fn new_state(&self, _: usize) -> TokenCounts {
        TokenCounts { start: self.prompt_len, ..TokenCounts::default() }
    }

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        let p = self.penalty as f64;
        Range { lo: r.lo.min(r.lo - p), hi: r.hi.max(r.hi - p) }
    }

    fn apply(&self, row: &mut Row, _: &At, counts: &TokenCounts) {
        let mut v = row.points();
        for &t in counts.counts.keys() {
            v.update(t, |x| x - self.penalty);
        }
    }
}

/// OpenAI / vLLM frequency penalty: `-penalty * count` over generated tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequencyPenalty {
    pub penalty: f32,
    pub prompt_len: usize,
}

impl Processor {
    pub fn frequency_penalty(penalty: f64, prompt_len: i64) -> Result<Self> {
        let (penalty, prompt_len) = openai_penalty("frequency_penalty", penalty, prompt_len)?;
        Ok(FrequencyPenalty { penalty, prompt_len }.into())
    }
}

impl Rule for FrequencyPenalty {
    const NAME: &'static str = "FrequencyPenaltyLogitsProcessor";
    const CLASS: Class = PENALTY;
    type State = TokenCounts;

    fn new_state(&self, _: usize) -> TokenCounts {
        TokenCounts { start: self.prompt_len, ..TokenCounts::default() }
    }

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    fn range_after(&self, r: Range, _: usize, len: usize) -> Range {
        let d = self.penalty as f64 * len as f64; // a count is at most the history length
        Range { lo: r.lo.min(r.lo - d), hi: r.hi.max(r.hi - d) }
    }

    fn apply(&self, row: &mut Row, _: &At, counts: &TokenCounts) {
        let mut v = row.points();
        for (&t, &c) in &counts.counts {
            v.update(t, |x| x - self.penalty * c as f32);
        }
    }
}
