//! The logits processors: parameters, their validation, and what each does to one row.
//!
//! Constructors validate the ranges transformers 5.23 accepts (same messages where transformers has
//! one) and reject NaN / infinite parameters it would let through. Everything that depends on the
//! vocabulary size or the batch is checked per call by [`Processor::check`], before any row is touched.

use crate::error::{Error, Result};
use crate::history::{DistinctTokens, NGramIndex, State, TokenCounts};
use crate::row::Row;

const NEG_INF: f32 = f32::NEG_INFINITY;

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

    fn try_map<U>(self, f: impl Fn(T) -> Result<U>) -> Result<PerRow<U>> {
        Ok(match self {
            PerRow::All(v) => PerRow::All(f(v)?),
            PerRow::Rows(v) => {
                if v.is_empty() {
                    return Err(Error::param("a per-row parameter array must not be empty"));
                }
                PerRow::Rows(v.into_iter().map(f).collect::<Result<_>>()?)
            }
        })
    }

    fn check_batch(&self, name: &str, batch: usize) -> Result<()> {
        match self {
            PerRow::Rows(v) if v.len() != batch => Err(Error::shape(format!(
                "`{name}` has {} per-row values but the batch has {batch} rows",
                v.len()
            ))),
            _ => Ok(()),
        }
    }
}

impl<T> From<T> for PerRow<T> {
    fn from(v: T) -> Self {
        PerRow::All(v)
    }
}

/// Biases for token sequences, applied when the history ends with all but the last token
/// (transformers `SequenceBiasLogitsProcessor`; `NoBadWordsLogitsProcessor` is this with `-inf`).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceBias {
    /// Single-token entries, in insertion order.
    single: Vec<(u32, f32)>,
    /// Longer entries grouped by prefix length, groups in order of first appearance (as transformers).
    groups: Vec<Vec<(Vec<u32>, u32, f32)>>,
    max_id: u32,
}

impl SequenceBias {
    /// `entries` in dict order; a repeated sequence keeps its first position and its last bias, like a
    /// Python dict. `name` is the argument named in errors.
    pub fn new(entries: Vec<(Vec<u32>, f32)>, name: &str) -> Result<Self> {
        if entries.is_empty() {
            return Err(Error::param(format!("`{name}` has to be a non-empty list, but is empty")));
        }
        let mut uniq: Vec<(Vec<u32>, f32)> = Vec::with_capacity(entries.len());
        for (seq, bias) in entries {
            if seq.is_empty() {
                return Err(Error::param(format!("`{name}` contains an empty token sequence")));
            }
            if bias.is_nan() || bias == f32::INFINITY {
                return Err(Error::param(format!(
                    "`{name}` biases must be finite or -inf, but one is {bias}"
                )));
            }
            match uniq.iter_mut().find(|(s, _)| *s == seq) {
                Some(e) => e.1 = bias,
                None => uniq.push((seq, bias)),
            }
        }
        let max_id = uniq.iter().flat_map(|(s, _)| s.iter().copied()).max().unwrap_or(0);
        let mut single = Vec::new();
        let mut groups: Vec<Vec<(Vec<u32>, u32, f32)>> = Vec::new();
        for (seq, bias) in uniq {
            if seq.len() == 1 {
                single.push((seq[0], bias));
            } else {
                let (last, prefix) = seq.split_last().unwrap();
                match groups.iter_mut().find(|g| g[0].0.len() == prefix.len()) {
                    Some(g) => g.push((prefix.to_vec(), *last, bias)),
                    None => groups.push(vec![(prefix.to_vec(), *last, bias)]),
                }
            }
        }
        Ok(SequenceBias { single, groups, max_id })
    }

    fn apply(&self, row: &mut Row, hist: &[u32]) {
        let (mut values, s) = row.points_and_scratch();
        let contrib = &mut s.contrib;
        contrib.clear();
        contrib.extend_from_slice(&self.single);
        let singles_only = contrib.len();
        for g in &self.groups {
            let pl = g[0].0.len();
            if pl > hist.len() {
                continue;
            }
            let suffix = &hist[hist.len() - pl..];
            contrib.extend(g.iter().filter(|(p, _, _)| p == suffix).map(|(_, t, b)| (*t, *b)));
        }
        if contrib.len() > singles_only {
            // A token can get several biases: sum them in transformers' order before adding.
            contrib.sort_by_key(|c| c.0); // stable: keeps the order within a token
        }
        let mut i = 0;
        while i < contrib.len() {
            let t = contrib[i].0;
            let mut bias = 0.0f32;
            while i < contrib.len() && contrib[i].0 == t {
                bias += contrib[i].1;
                i += 1;
            }
            values.update(t, |x| x + bias);
        }
    }
}

/// One logits processor (see the transformers class named on each variant).
#[derive(Debug, Clone, PartialEq)]
pub enum Processor {
    /// `TemperatureLogitsWarper`.
    Temperature(PerRow<f32>),
    /// `TopKLogitsWarper`; `k` is `max(top_k, min_tokens_to_keep)`.
    TopK { k: PerRow<usize>, filter: f32 },
    /// `TopPLogitsWarper`.
    TopP { p: PerRow<f64>, filter: f32, min_keep: usize },
    /// `MinPLogitsWarper`.
    MinP { p: PerRow<f64>, filter: f32, min_keep: usize },
    /// `TypicalLogitsWarper`.
    Typical { mass: f64, filter: f32, min_keep: usize },
    /// `EpsilonLogitsWarper`.
    Epsilon { eps: f64, filter: f32, min_keep: usize },
    /// `EtaLogitsWarper`.
    Eta { eps: f64, filter: f32, min_keep: usize },
    /// `RepetitionPenaltyLogitsProcessor`: positions `< ignore` (prompt / left padding) are skipped.
    RepetitionPenalty { penalty: PerRow<f32>, ignore: PerRow<usize> },
    /// OpenAI / vLLM presence penalty: `-penalty` for every token generated at least once
    /// (positions `>= prompt_len`).
    PresencePenalty { penalty: f32, prompt_len: usize },
    /// OpenAI / vLLM frequency penalty: `-penalty * count` over generated tokens.
    FrequencyPenalty { penalty: f32, prompt_len: usize },
    /// `NoRepeatNGramLogitsProcessor`.
    NoRepeatNGram { n: usize },
    /// `SequenceBiasLogitsProcessor` / `NoBadWordsLogitsProcessor`.
    SequenceBias(SequenceBias),
    /// `{token: bias}` added to the scores (OpenAI `logit_bias`).
    LogitBias(Vec<(u32, f32)>),
    /// `MinLengthLogitsProcessor`: EOS banned while the history is shorter than `min_length`.
    MinLength { min_length: usize, eos: Vec<u32> },
    /// `MinNewTokensLengthLogitsProcessor`.
    MinNewTokens { prompt_len: usize, min_new: usize, eos: Vec<u32> },
    /// `SuppressTokensLogitsProcessor`.
    SuppressTokens(Vec<u32>),
    /// `SuppressTokensAtBeginLogitsProcessor`: applies when the history length equals `begin`.
    SuppressTokensAtBegin { tokens: Vec<u32>, begin: usize },
    /// `ExponentialDecayLengthPenalty`; `start` already includes the prompt length.
    ExponentialDecay { start: i64, factor: f64, eos: Vec<u32> },
}

fn check_filter(filter: f32) -> Result<f32> {
    if filter.is_nan() || filter == f32::INFINITY {
        return Err(Error::param(format!("`filter_value` must be a finite float or -inf, but is {filter}")));
    }
    Ok(filter)
}

fn check_min_keep(min_keep: i64) -> Result<usize> {
    if min_keep < 1 {
        return Err(Error::param(format!(
            "`min_tokens_to_keep` has to be a positive integer, but is {min_keep}"
        )));
    }
    Ok(min_keep as usize)
}

fn token_ids(ids: &[i64], name: &str) -> Result<Vec<u32>> {
    ids.iter()
        .map(|&t| {
            u32::try_from(t).map_err(|_| {
                Error::param(format!("`{name}` has to be a list of non-negative integers, but contains {t}"))
            })
        })
        .collect()
}

/// EOS ids, deduplicated (they are only ever used as a set).
fn eos_ids(eos: &[i64]) -> Result<Vec<u32>> {
    if eos.is_empty() {
        return Err(Error::param("`eos_token_id` must hold at least one token id"));
    }
    let mut ids = token_ids(eos, "eos_token_id")?;
    let mut seen = Vec::with_capacity(ids.len());
    ids.retain(|t| {
        let new = !seen.contains(t);
        seen.push(*t);
        new
    });
    Ok(ids)
}

impl Processor {
    pub fn temperature(t: PerRow<f64>) -> Result<Self> {
        Ok(Processor::Temperature(t.try_map(|t| {
            if !t.is_finite() || t <= 0.0 {
                let mut msg = format!(
                    "`temperature` (={t}) has to be a strictly positive float, otherwise your next token scores will be invalid."
                );
                if t == 0.0 {
                    msg += " If you're looking for greedy decoding strategies, set `do_sample=False`.";
                }
                return Err(Error::param(msg));
            }
            Ok(t as f32)
        })?))
    }

    /// transformers does not validate `min_tokens_to_keep` here: it only raises `top_k` to it.
    pub fn top_k(k: PerRow<i64>, filter: f32, min_keep: i64) -> Result<Self> {
        let min_keep = min_keep.max(0) as usize;
        Ok(Processor::TopK {
            k: k.try_map(|k| {
                if k <= 0 {
                    return Err(Error::param(format!(
                        "`top_k` has to be a strictly positive integer, but is {k}"
                    )));
                }
                Ok((k as usize).max(min_keep))
            })?,
            filter: check_filter(filter)?,
        })
    }

    pub fn top_p(p: PerRow<f64>, filter: f32, min_keep: i64) -> Result<Self> {
        Ok(Processor::TopP {
            p: p.try_map(|p| {
                if !(0.0..=1.0).contains(&p) {
                    return Err(Error::param(format!("`top_p` has to be a float > 0 and < 1, but is {p}")));
                }
                Ok(p)
            })?,
            filter: check_filter(filter)?,
            min_keep: check_min_keep(min_keep)?,
        })
    }

    pub fn min_p(p: PerRow<f64>, filter: f32, min_keep: i64) -> Result<Self> {
        Ok(Processor::MinP {
            p: p.try_map(|p| {
                if !(0.0..=1.0).contains(&p) {
                    return Err(Error::param(format!(
                        "`min_p` has to be a float in the [0, 1] interval, but is {p}"
                    )));
                }
                Ok(p)
            })?,
            filter: check_filter(filter)?,
            min_keep: check_min_keep(min_keep)?,
        })
    }

    pub fn typical(mass: f64, filter: f32, min_keep: i64) -> Result<Self> {
        if !(mass > 0.0 && mass < 1.0) {
            return Err(Error::param(format!("`typical_p` has to be a float > 0 and < 1, but is {mass}")));
        }
        Ok(Processor::Typical { mass, filter: check_filter(filter)?, min_keep: check_min_keep(min_keep)? })
    }

    pub fn epsilon(eps: f64, filter: f32, min_keep: i64) -> Result<Self> {
        if !(eps > 0.0 && eps < 1.0) {
            return Err(Error::param(format!(
                "`epsilon_cutoff` has to be a float > 0 and < 1, but is {eps}"
            )));
        }
        Ok(Processor::Epsilon { eps, filter: check_filter(filter)?, min_keep: check_min_keep(min_keep)? })
    }

    pub fn eta(eps: f64, filter: f32, min_keep: i64) -> Result<Self> {
        if !(eps > 0.0 && eps < 1.0) {
            return Err(Error::param(format!("`eta_cutoff` has to be a float > 0 and < 1, but is {eps}")));
        }
        Ok(Processor::Eta { eps, filter: check_filter(filter)?, min_keep: check_min_keep(min_keep)? })
    }

    pub fn repetition_penalty(penalty: PerRow<f64>, ignore: PerRow<i64>) -> Result<Self> {
        Ok(Processor::RepetitionPenalty {
            penalty: penalty.try_map(|p| {
                if !p.is_finite() || p <= 0.0 {
                    return Err(Error::param(format!(
                        "`penalty` has to be a strictly positive float, but is {p}"
                    )));
                }
                Ok(p as f32)
            })?,
            ignore: ignore.try_map(|n| {
                usize::try_from(n).map_err(|_| {
                    Error::param(format!("`prompt_ignore_length` has to be a positive integer, but is {n}"))
                })
            })?,
        })
    }

    fn openai_penalty(name: &str, penalty: f64, prompt_len: i64) -> Result<(f32, usize)> {
        if !(-2.0..=2.0).contains(&penalty) {
            return Err(Error::param(format!("`{name}` has to be a float in [-2, 2], but is {penalty}")));
        }
        let prompt_len = usize::try_from(prompt_len).map_err(|_| {
            Error::param(format!("`prompt_length` has to be a non-negative integer, but is {prompt_len}"))
        })?;
        Ok((penalty as f32, prompt_len))
    }

    pub fn presence_penalty(penalty: f64, prompt_len: i64) -> Result<Self> {
        let (penalty, prompt_len) = Self::openai_penalty("presence_penalty", penalty, prompt_len)?;
        Ok(Processor::PresencePenalty { penalty, prompt_len })
    }

    pub fn frequency_penalty(penalty: f64, prompt_len: i64) -> Result<Self> {
        let (penalty, prompt_len) = Self::openai_penalty("frequency_penalty", penalty, prompt_len)?;
        Ok(Processor::FrequencyPenalty { penalty, prompt_len })
    }

    pub fn no_repeat_ngram(n: i64) -> Result<Self> {
        if n <= 0 {
            return Err(Error::param(format!(
                "`ngram_size` has to be a strictly positive integer, but is {n}"
            )));
        }
        Ok(Processor::NoRepeatNGram { n: n as usize })
    }

    /// `entries`: `(token sequence, bias)` in dict order.
    pub fn sequence_bias(entries: Vec<(Vec<i64>, f64)>) -> Result<Self> {
        let entries = entries
            .into_iter()
            .map(|(s, b)| Ok((token_ids(&s, "sequence_bias")?, b as f32)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Processor::SequenceBias(SequenceBias::new(entries, "sequence_bias")?))
    }

    /// transformers `NoBadWordsLogitsProcessor`: single-token entries equal to an EOS id are dropped.
    pub fn bad_words(bad_words_ids: Vec<Vec<i64>>, eos: Option<Vec<i64>>) -> Result<Self> {
        if bad_words_ids.is_empty() {
            return Err(Error::param("`bad_words_ids` has to be a non-empty list, but is []"));
        }
        let eos = eos.map(|e| token_ids(&e, "eos_token_id")).transpose()?.unwrap_or_default();
        let mut entries = Vec::new();
        for w in bad_words_ids {
            let w = token_ids(&w, "bad_words_ids")?;
            if !(w.len() == 1 && eos.contains(&w[0])) {
                entries.push((w, NEG_INF));
            }
        }
        if entries.is_empty() {
            // transformers builds an empty bias dict here, which its validation rejects.
            return Err(Error::param(
                "`sequence_bias` has to be a non-empty dictionary, or non-empty list of lists but is {}.",
            ));
        }
        Ok(Processor::SequenceBias(SequenceBias::new(entries, "bad_words_ids")?))
    }

    pub fn logit_bias(bias: Vec<(i64, f64)>) -> Result<Self> {
        let mut out: Vec<(u32, f32)> = Vec::with_capacity(bias.len());
        for (t, b) in bias {
            let t = token_ids(&[t], "logit_bias")?[0];
            if b.is_nan() || b == f64::INFINITY {
                return Err(Error::param(format!(
                    "`logit_bias` values must be finite or -inf, but one is {b}"
                )));
            }
            match out.iter_mut().find(|e| e.0 == t) {
                Some(e) => e.1 = b as f32,
                None => out.push((t, b as f32)),
            }
        }
        Ok(Processor::LogitBias(out))
    }

    pub fn min_length(min_length: i64, eos: &[i64]) -> Result<Self> {
        if min_length < 0 {
            return Err(Error::param(format!(
                "`min_length` has to be a non-negative integer, but is {min_length}"
            )));
        }
        Ok(Processor::MinLength { min_length: min_length as usize, eos: eos_ids(eos)? })
    }

    pub fn min_new_tokens(prompt_len: i64, min_new: i64, eos: &[i64]) -> Result<Self> {
        for (name, v) in [("prompt_length_to_skip", prompt_len), ("min_new_tokens", min_new)] {
            if v < 0 {
                return Err(Error::param(format!("`{name}` has to be a positive integer, but is {v}")));
            }
        }
        Ok(Processor::MinNewTokens {
            prompt_len: prompt_len as usize,
            min_new: min_new as usize,
            eos: eos_ids(eos)?,
        })
    }

    pub fn suppress_tokens(tokens: &[i64]) -> Result<Self> {
        Ok(Processor::SuppressTokens(token_ids(tokens, "suppress_tokens")?))
    }

    pub fn suppress_tokens_at_begin(tokens: &[i64], begin: i64) -> Result<Self> {
        let begin = usize::try_from(begin).map_err(|_| {
            Error::param(format!("`begin_index` has to be a non-negative integer, but is {begin}"))
        })?;
        Ok(Processor::SuppressTokensAtBegin { tokens: token_ids(tokens, "begin_suppress_tokens")?, begin })
    }

    /// `start` and `factor` are transformers' `exponential_decay_length_penalty` tuple; `prompt_len` is
    /// its `input_ids_seq_length`.
    pub fn exponential_decay(start: i64, factor: f64, eos: &[i64], prompt_len: i64) -> Result<Self> {
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
        Ok(Processor::ExponentialDecay {
            start: start.saturating_add(prompt_len),
            factor,
            eos: eos_ids(eos)?,
        })
    }

    /// Whether the processor only changes a few scores in place (penalties, bans, biases, length rules):
    /// such updates can be undone, so they may run before a row is validated.
    pub fn is_point_update(&self) -> bool {
        !matches!(
            self,
            Processor::Temperature(_)
                | Processor::TopK { .. }
                | Processor::TopP { .. }
                | Processor::MinP { .. }
                | Processor::Typical { .. }
                | Processor::Epsilon { .. }
                | Processor::Eta { .. }
        )
    }

    /// Whether the processor reads token ids (beyond the history length).
    pub fn uses_history(&self) -> bool {
        matches!(
            self,
            Processor::RepetitionPenalty { .. }
                | Processor::PresencePenalty { .. }
                | Processor::FrequencyPenalty { .. }
                | Processor::NoRepeatNGram { .. }
                | Processor::SequenceBias(_)
        )
    }

    /// A fresh per-row state for processors that keep one.
    pub fn new_state(&self, row: usize) -> Option<State> {
        match self {
            Processor::RepetitionPenalty { ignore, .. } => {
                Some(State::Distinct { start: ignore.get(row), set: DistinctTokens::default() })
            }
            Processor::PresencePenalty { prompt_len, .. }
            | Processor::FrequencyPenalty { prompt_len, .. } => {
                Some(State::Counts { start: *prompt_len, counts: TokenCounts::default() })
            }
            Processor::NoRepeatNGram { n } => Some(State::NGram { n: *n, index: NGramIndex::default() }),
            _ => None,
        }
    }

    /// Checks what depends on the call: per-row parameter lengths and token ids against `vocab`.
    pub fn check(&self, batch: usize, vocab: usize) -> Result<()> {
        match self {
            Processor::Temperature(t) => t.check_batch("temperature", batch),
            Processor::TopK { k, .. } => k.check_batch("top_k", batch),
            Processor::TopP { p, .. } => p.check_batch("top_p", batch),
            Processor::MinP { p, .. } => p.check_batch("min_p", batch),
            Processor::RepetitionPenalty { penalty, ignore } => {
                penalty.check_batch("penalty", batch)?;
                ignore.check_batch("prompt_ignore_length", batch)
            }
            Processor::SequenceBias(sb) => {
                if sb.max_id as usize >= vocab {
                    let mut bad: Vec<u32> = sb
                        .single
                        .iter()
                        .map(|e| e.0)
                        .chain(sb.groups.iter().flatten().flat_map(|(p, t, _)| p.iter().copied().chain([*t])))
                        .filter(|&t| t as usize >= vocab)
                        .collect();
                    bad.dedup();
                    return Err(Error::value(format!(
                        "The model vocabulary size is {vocab}, but the following tokens were being biased: {bad:?}"
                    )));
                }
                Ok(())
            }
            Processor::LogitBias(b) => in_vocab("logit_bias", b.iter().map(|e| e.0), vocab),
            Processor::MinLength { eos, .. }
            | Processor::MinNewTokens { eos, .. }
            | Processor::ExponentialDecay { eos, .. } => in_vocab("eos_token_id", eos.iter().copied(), vocab),
            Processor::SuppressTokens(t) => in_vocab("suppress_tokens", t.iter().copied(), vocab),
            Processor::SuppressTokensAtBegin { tokens, .. } => {
                in_vocab("begin_suppress_tokens", tokens.iter().copied(), vocab)
            }
            _ => Ok(()),
        }
    }

    /// Applies the processor to one row. `row_index` selects per-row parameters; `len` is the history
    /// length; `hist` and `state` are maintained by the pipeline for processors that use them.
    pub fn apply(&self, row: &mut Row, row_index: usize, len: usize, hist: &[u32], state: Option<&State>) {
        match self {
            Processor::Temperature(t) => row.temperature(t.get(row_index)),
            Processor::TopK { k, filter } => row.top_k(k.get(row_index), *filter),
            Processor::TopP { p, filter, min_keep } => row.top_p(p.get(row_index), *filter, *min_keep),
            Processor::MinP { p, filter, min_keep } => row.min_p(p.get(row_index), *filter, *min_keep),
            Processor::Typical { mass, filter, min_keep } => row.typical(*mass, *filter, *min_keep),
            Processor::Epsilon { eps, filter, min_keep } => row.prob_floor(|_| *eps, *filter, *min_keep),
            Processor::Eta { eps, filter, min_keep } => {
                // transformers computes eta in float32 from a float32 epsilon.
                let e = *eps as f32;
                row.prob_floor(
                    |st| {
                        let h = st.entropy() as f32;
                        e.min(e.sqrt() * (-h).exp()) as f64
                    },
                    *filter,
                    *min_keep,
                )
            }
            Processor::RepetitionPenalty { penalty, .. } => {
                let Some(State::Distinct { set, .. }) = state else { unreachable!() };
                let p = penalty.get(row_index);
                let mut v = row.points();
                for &t in &set.list {
                    v.update(t, |s| if s < 0.0 { s * p } else { s / p });
                }
            }
            Processor::PresencePenalty { penalty, .. } => {
                let Some(State::Counts { counts, .. }) = state else { unreachable!() };
                let mut v = row.points();
                for &t in counts.counts.keys() {
                    v.update(t, |x| x - *penalty);
                }
            }
            Processor::FrequencyPenalty { penalty, .. } => {
                let Some(State::Counts { counts, .. }) = state else { unreachable!() };
                let mut v = row.points();
                for (&t, &c) in &counts.counts {
                    v.update(t, |x| x - *penalty * c as f32);
                }
            }
            Processor::NoRepeatNGram { n } => {
                let Some(State::NGram { index, .. }) = state else { unreachable!() };
                let banned = index.banned(hist, *n);
                if !banned.is_empty() {
                    let mut v = row.points();
                    for &t in banned {
                        v.set(t, NEG_INF);
                    }
                }
            }
            Processor::SequenceBias(sb) => sb.apply(row, hist),
            Processor::LogitBias(b) => {
                let mut v = row.points();
                for &(t, bias) in b {
                    v.update(t, |x| x + bias);
                }
            }
            Processor::MinLength { min_length, eos } => {
                if len < *min_length {
                    ban(row, eos);
                }
            }
            Processor::MinNewTokens { prompt_len, min_new, eos } => {
                if (len as i64 - *prompt_len as i64) < *min_new as i64 {
                    ban(row, eos);
                }
            }
            Processor::SuppressTokens(t) => {
                if !t.is_empty() {
                    ban(row, t)
                }
            }
            Processor::SuppressTokensAtBegin { tokens, begin } => {
                if len == *begin {
                    ban(row, tokens);
                }
            }
            Processor::ExponentialDecay { start, factor, eos } => {
                let len = len as i64;
                if len > *start {
                    // transformers: pow(factor, idx) - 1 in double, then a float32 tensor times it.
                    let scale = (factor.powf((len - *start) as f64) - 1.0) as f32;
                    let mut v = row.points();
                    for &t in eos {
                        let s = v.get(t);
                        if s.is_finite() {
                            v.set(t, s + s.abs() * scale);
                        }
                    }
                }
            }
        }
    }
}

fn in_vocab(name: &str, mut ids: impl Iterator<Item = u32>, vocab: usize) -> Result<()> {
    match ids.find(|&t| t as usize >= vocab) {
        Some(t) => {
            Err(Error::value(format!("`{name}` contains token id {t}, outside the vocabulary [0, {vocab})")))
        }
        None => Ok(()),
    }
}

fn ban(row: &mut Row, tokens: &[u32]) {
    let mut v = row.points();
    for &t in tokens {
        v.set(t, NEG_INF);
    }
}
