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

/// "Don't Repeat Yourself" (llama.cpp `dry`, after kobold.cpp); no transformers counterpart. A candidate
/// token that would extend a repeat (the context's suffix matching an earlier part of the context, followed
/// there by that token) of length `m >= allowed_length` loses `multiplier * base ** (m - allowed_length)`
/// (the exponent capped so that the power stays finite: llama.cpp's `88.7228391 / ln base`). Only the last
/// `penalty_last_n` tokens count (-1: all; 0: off). Repeats do not reach back past the latest sequence
/// breaker, and a breaker token itself is never penalized. Breakers are single tokens (llama.cpp also has
/// multi-token restart sequences from strings that span tokens: not supported).
#[derive(Debug, Clone, PartialEq)]
pub struct Dry {
    pub multiplier: f32,
    pub base: f32,
    pub allowed_length: usize,
    /// `None`: the whole history.
    pub last_n: Option<usize>,
    pub breakers: std::sync::Arc<rustc_hash::FxHashSet<u32>>,
}

impl Processor {
    pub fn dry(
        multiplier: f64,
        base: f64,
        allowed_length: i64,
        breakers: &[i64],
        penalty_last_n: i64,
    ) -> Result<Self> {
        let f32_max = f32::MAX as f64;
        if !(0.0..=f32_max).contains(&multiplier) {
            return Err(Error::param(format!(
                "`dry_multiplier` has to be a float in [0, 3.4e38], but is {multiplier}"
            )));
        }
        if !(1.0..=f32_max).contains(&base) {
            return Err(Error::param(format!("`dry_base` has to be a float in [1, 3.4e38], but is {base}")));
        }
        let allowed_length = usize::try_from(allowed_length).ok().filter(|&n| n >= 1).ok_or_else(|| {
            Error::param(format!("`dry_allowed_length` has to be an integer >= 1, but is {allowed_length}"))
        })?;
        let last_n = match penalty_last_n {
            -1 => None,
            n => Some(usize::try_from(n).map_err(|_| {
                Error::param(format!(
                    "`dry_penalty_last_n` has to be -1 (the whole context), 0 (off) or a positive integer, but is {n}"
                ))
            })?),
        };
        let breakers = super::params::token_ids(breakers, "sequence_breaker_ids")?;
        Ok(Dry {
            multiplier: multiplier as f32,
            base: base as f32,
            allowed_length,
            last_n,
            breakers: std::sync::Arc::new(breakers.into_iter().collect()),
        }
        .into())
    }
}

/// A row's repeats, kept up to date token by token (DRY's state): for the history `h` of length `L`, the
/// positions `i < L - 1` whose prefix `h[..=i]` ends with a copy of the history's suffix, and the length of
/// that common suffix (positions with none are absent). Appending token `c` keeps only the positions where
/// `c` occurs, each one longer than its predecessor's: O(occurrences of `c`) per token, not O(L).
#[derive(Debug, Default, Clone)]
pub struct Repeats {
    len: usize,
    occurrences: FxHashMap<u32, Vec<u32>>,
    /// `(position, length)`, by position.
    matches: Vec<(u32, u32)>,
    next: Vec<(u32, u32)>,
    /// The position of the latest breaker.
    last_breaker: Option<usize>,
    breakers: std::sync::Arc<rustc_hash::FxHashSet<u32>>,
}

impl RowState for Repeats {
    fn reset(&mut self, _: usize) {
        self.len = 0;
        self.occurrences.clear();
        self.matches.clear();
        self.last_breaker = None;
    }

    fn extend(&mut self, hist: &[u32], from: usize) {
        for (p, &c) in hist.iter().enumerate().skip(from) {
            self.next.clear();
            if let Some(occ) = self.occurrences.get(&c) {
                // h[i] == c: the suffix match ending at i is the one ending at i - 1, one longer (both
                // lists are by position: one merge-like walk).
                let mut k = 0;
                for &i in occ {
                    let before = match i.checked_sub(1) {
                        Some(j) => {
                            while k < self.matches.len() && self.matches[k].0 < j {
                                k = k.saturating_add(1);
                            }
                            self.matches.get(k).filter(|m| m.0 == j).map_or(0, |m| m.1)
                        }
                        None => 0,
                    };
                    self.next.push((i, before.saturating_add(1)));
                }
            }
            std::mem::swap(&mut self.matches, &mut self.next);
            // Positions are below the history length, which the ids' u32 bound (and memory) keep < 2^32.
            self.occurrences.entry(c).or_default().push(p as u32);
            if self.breakers.contains(&c) {
                self.last_breaker = Some(p);
            }
            self.len = p.saturating_add(1);
        }
    }
}

impl Rule for Dry {
    const NAME: &'static str = "DRYLogitsProcessor";
    const CLASS: Class = PENALTY;
    type State = Repeats;

    fn new_state(&self, _: usize) -> Repeats {
        Repeats { breakers: std::sync::Arc::clone(&self.breakers), ..Repeats::default() }
    }

    fn check(&self, _: usize, vocab: usize) -> Result<()> {
        super::params::in_vocab("sequence_breaker_ids", self.breakers.iter().copied(), vocab)
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        // A penalty is at most multiplier * base ** max_exponent, which stays below f32::MAX.
        let most = self.multiplier as f64 * (self.base as f64).powi(self.max_exponent() as i32);
        Range { lo: r.lo - most, hi: r.hi }
    }

    fn apply(&self, row: &mut Row, at: &At, st: &Repeats) {
        let len = st.len;
        let n = self.last_n.map_or(len, |n| n.min(len));
        if self.multiplier == 0.0 || n <= self.allowed_length {
            return;
        }
        let start = len.saturating_sub(n); // the window's first position
        let rep_limit = match st.last_breaker {
            Some(b) if b >= start => len.saturating_sub(1).saturating_sub(b),
            _ => n,
        };
        if rep_limit < self.allowed_length {
            return;
        }
        // The longest repeat each candidate token would extend: h[i + 1] follows a copy ending at i.
        let mut longest: FxHashMap<u32, usize> = FxHashMap::default();
        for &(i, m) in &st.matches {
            let i = i as usize;
            if i < start {
                continue;
            }
            let m = (m as usize).min(i.saturating_sub(start).saturating_add(1)).min(rep_limit);
            if m < self.allowed_length {
                continue;
            }
            if let Some(&t) = at.hist.get(i.saturating_add(1)) {
                let e = longest.entry(t).or_insert(0);
                *e = (*e).max(m);
            }
        }
        let max_exp = self.max_exponent();
        let mut v = row.points();
        let vocab = v.len();
        for (&t, &m) in &longest {
            if self.breakers.contains(&t) || t as usize >= vocab {
                continue;
            }
            let mut e = m.saturating_sub(self.allowed_length);
            if max_exp > 0 && e > max_exp {
                e = max_exp;
            }
            let penalty = self.multiplier * self.base.powi(e.min(i32::MAX as usize) as i32);
            v.update(t, |x| x - penalty);
        }
    }
}

impl Dry {
    /// llama.cpp's cap on the exponent: `ln(f32::MAX) / ln(base)` (none for a base of about 1).
    fn max_exponent(&self) -> usize {
        if self.base > 1.000001 {
            (88.722_84_f32 / self.base.ln()) as usize
        } else {
            0
        }
    }
}
