//! The logits processors: parameters, their validation, and what each does to one row.
//!
//! Constructors validate the ranges transformers 5.23 accepts (same messages where transformers has
//! one) and reject NaN / infinite parameters it would let through. Everything that depends on the
//! vocabulary size or the batch is checked per call by [`Processor::check`], before any row is touched.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use rustc_hash::FxHashMap;

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

    fn try_map<U>(self, name: &str, f: impl Fn(T) -> Result<U>) -> Result<PerRow<U>> {
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
    /// No entries is allowed here (`NoBadWordsLogitsProcessor([[eos]], eos)` bans nothing); the
    /// `SequenceBias` constructor requires some.
    pub fn new(entries: Vec<(Vec<u32>, f32)>, name: &str) -> Result<Self> {
        let mut uniq: Vec<(Vec<u32>, f32)> = Vec::with_capacity(entries.len());
        let mut position: FxHashMap<Vec<u32>, usize> = FxHashMap::default();
        for (seq, bias) in entries {
            if seq.is_empty() {
                continue; // transformers accepts an empty sequence and never applies it
            }
            if bias.is_nan() || bias == f32::INFINITY {
                return Err(Error::param(format!(
                    "`{name}` biases must be finite or -inf, but one is {bias}"
                )));
            }
            match position.get(&seq) {
                Some(&i) => uniq[i].1 = bias,
                None => {
                    position.insert(seq.clone(), uniq.len());
                    uniq.push((seq, bias));
                }
            }
        }
        let max_id = uniq.iter().flat_map(|(s, _)| s.iter().copied()).max().unwrap_or(0);
        let mut single = Vec::new();
        let mut groups: Vec<Vec<(Vec<u32>, u32, f32)>> = Vec::new();
        let mut group_of: FxHashMap<usize, usize> = FxHashMap::default(); // prefix length -> group
        for (mut seq, bias) in uniq {
            let Some(last) = seq.pop() else { continue };
            if seq.is_empty() {
                single.push((last, bias));
            } else {
                let g = *group_of.entry(seq.len()).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len().saturating_sub(1)
                });
                groups[g].push((seq, last, bias));
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
            let suffix = &hist[hist.len().saturating_sub(pl)..]; // pl <= hist.len() here
            contrib.extend(g.iter().filter(|(p, _, _)| p == suffix).map(|(_, t, b)| (*t, *b)));
        }
        if contrib.len() > singles_only {
            // A token can get several biases: sum them in transformers' order before adding.
            contrib.sort_by_key(|c| c.0); // stable: keeps the order within a token
        }
        for group in contrib.chunk_by(|a, b| a.0 == b.0) {
            let bias = group.iter().fold(0.0f32, |acc, c| acc + c.1);
            values.update(group[0].0, |x| x + bias);
        }
    }
}

/// What a processor does to a row (the pipeline plans each call from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Changes a few scores in place (penalties, bans, biases, length rules): each write can be logged
    /// and undone.
    PointUpdate,
    /// Divides every score by a positive number (temperature): order-preserving, so it can stay pending
    /// until a value is needed.
    Scale,
    /// Keeps a subset of the tokens, the others get `filter_value` (the warpers).
    Selective,
}

/// What a processor reads besides the scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Nothing: `input_ids` may be absent (transformers' warpers accept `input_ids=None`).
    Scores,
    /// The history length only.
    Length,
    /// The token ids of the history (the pipeline keeps per-row state for it).
    History,
}

/// [`Processor::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub effect: Effect,
    pub reads: Reads,
}

/// Bounds on the finite scores of a row: each lies in `lo ..= hi` (`lo > hi`: none is finite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
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
    /// `MinLengthLogitsProcessor`: EOS banned while the history is shorter than `min_length`. Like
    /// transformers (`torch.isin` over the vocabulary), ids outside the vocabulary match nothing.
    MinLength { min_length: usize, eos: Vec<u32> },
    /// `MinNewTokensLengthLogitsProcessor`.
    MinNewTokens { prompt_len: usize, min_new: usize, eos: Vec<u32> },
    /// `SuppressTokensLogitsProcessor`.
    SuppressTokens(Vec<u32>),
    /// `SuppressTokensAtBeginLogitsProcessor`: applies when the history length equals `begin` (`None`: a
    /// negative index, never).
    SuppressTokensAtBegin { tokens: Vec<u32>, begin: Option<usize> },
    /// `ExponentialDecayLengthPenalty`; `start` already includes the prompt length (a float, as
    /// transformers keeps it).
    ExponentialDecay { start: f64, factor: f64, eos: Vec<u32> },
}

/// The smallest and largest positive normal float32: a divisor or factor outside them turns ordinary
/// float32 scores into 0, `+inf` or `-inf`.
const F32_NORMAL: (f32, f32) = (f32::MIN_POSITIVE, f32::MAX);

/// A positive parameter that scales float32 scores (temperature, penalty): checked as a float64, applied as
/// a float32, so it has to be a normal float32.
fn as_normal_f32(name: &str, v: f64) -> Result<f32> {
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
fn as_bias_f32(name: &str, token: u32, b: f64) -> Result<f32> {
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

/// A set of token ids matched against the vocabulary, as transformers' `torch.isin(arange(V), ids)`:
/// ids outside the vocabulary (negative, or `>= V` at call time) match nothing. Deduplicated.
fn token_set(ids: &[i64]) -> Vec<u32> {
    let mut seen = rustc_hash::FxHashSet::default();
    ids.iter().filter_map(|&t| u32::try_from(t).ok()).filter(|&t| seen.insert(t)).collect()
}

/// EOS ids that index the scores (`ExponentialDecayLengthPenalty`): non-negative, deduplicated.
fn eos_ids(eos: &[i64]) -> Result<Vec<u32>> {
    token_ids(eos, "eos_token_id")?;
    Ok(token_set(eos))
}

impl Processor {
    pub fn temperature(t: PerRow<f64>) -> Result<Self> {
        Ok(Processor::Temperature(t.try_map("temperature", |t| {
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
        })?))
    }

    /// transformers does not validate `min_tokens_to_keep` here: it only raises `top_k` to it.
    pub fn top_k(k: PerRow<i64>, filter: f32, min_keep: i64) -> Result<Self> {
        let min_keep = min_keep.max(0) as usize;
        Ok(Processor::TopK {
            k: k.try_map("top_k", |k| {
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
            p: p.try_map("top_p", |p| {
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
            p: p.try_map("min_p", |p| {
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
            penalty: penalty.try_map("penalty", |p| {
                if !p.is_finite() || p <= 0.0 {
                    return Err(Error::param(format!(
                        "`penalty` has to be a strictly positive float, but is {p}"
                    )));
                }
                as_normal_f32("penalty", p)
            })?,
            ignore: ignore.try_map("prompt_ignore_length", |n| {
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
        if entries.is_empty() {
            return Err(Error::param(
                "`sequence_bias` has to be a non-empty dictionary, or non-empty list of lists but is {}.",
            ));
        }
        let entries = entries
            .into_iter()
            .map(|(s, b)| {
                let s = token_ids(&s, "sequence_bias")?;
                let b = as_bias_f32("sequence_bias", *s.last().unwrap_or(&0), b)?;
                Ok((s, b))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Processor::SequenceBias(SequenceBias::new(entries, "sequence_bias")?))
    }

    /// transformers `NoBadWordsLogitsProcessor`: single-token entries equal to an EOS id are dropped.
    pub fn bad_words(bad_words_ids: Vec<Vec<i64>>, eos: Option<Vec<i64>>) -> Result<Self> {
        if bad_words_ids.is_empty() {
            return Err(Error::param("`bad_words_ids` has to be a non-empty list, but is []"));
        }
        // Any id may be given as EOS (a negative one matches no entry).
        let eos = eos.map(|e| token_set(&e)).unwrap_or_default();
        let mut entries = Vec::new();
        for w in bad_words_ids {
            let w = token_ids(&w, "bad_words_ids")?;
            if !(w.len() == 1 && eos.contains(&w[0])) {
                entries.push((w, NEG_INF));
            }
        }
        // Every entry an EOS singleton: transformers 5.23 accepts it and bans nothing (its validation looks
        // at `bad_words_ids` before the EOS entries are dropped).
        Ok(Processor::SequenceBias(SequenceBias::new(entries, "bad_words_ids")?))
    }

    pub fn logit_bias(bias: Vec<(i64, f64)>) -> Result<Self> {
        let mut out: Vec<(u32, f32)> = Vec::with_capacity(bias.len());
        let mut position: FxHashMap<u32, usize> = FxHashMap::default();
        for (t, b) in bias {
            let t = token_ids(&[t], "logit_bias")?[0];
            let b = as_bias_f32("logit_bias", t, b)?;
            match position.get(&t) {
                Some(&i) => out[i].1 = b,
                None => {
                    position.insert(t, out.len());
                    out.push((t, b));
                }
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
        Ok(Processor::MinLength { min_length: min_length as usize, eos: token_set(eos) })
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
            eos: token_set(eos),
        })
    }

    /// transformers validates nothing here: ids outside the vocabulary suppress nothing.
    pub fn suppress_tokens(tokens: &[i64]) -> Result<Self> {
        Ok(Processor::SuppressTokens(token_set(tokens)))
    }

    /// A negative `begin` never matches a history length (transformers compares without validating).
    pub fn suppress_tokens_at_begin(tokens: &[i64], begin: i64) -> Result<Self> {
        Ok(Processor::SuppressTokensAtBegin { tokens: token_set(tokens), begin: usize::try_from(begin).ok() })
    }

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
        Ok(Processor::ExponentialDecay { start: start + prompt_len, factor, eos: eos_ids(eos)? })
    }

    /// What the processor does and reads, spelled out for every processor (no default arm: a new
    /// processor must say where it belongs).
    pub fn class(&self) -> Class {
        use Effect::{PointUpdate, Scale, Selective};
        use Reads::{History, Length, Scores};
        let (effect, reads) = match self {
            Processor::Temperature(_) => (Scale, Scores),
            Processor::TopK { .. }
            | Processor::TopP { .. }
            | Processor::MinP { .. }
            | Processor::Typical { .. }
            | Processor::Epsilon { .. }
            | Processor::Eta { .. } => (Selective, Scores),
            Processor::RepetitionPenalty { .. }
            | Processor::PresencePenalty { .. }
            | Processor::FrequencyPenalty { .. }
            | Processor::NoRepeatNGram { .. }
            | Processor::SequenceBias(_) => (PointUpdate, History),
            Processor::LogitBias(_) | Processor::SuppressTokens(_) => (PointUpdate, Scores),
            Processor::MinLength { .. }
            | Processor::MinNewTokens { .. }
            | Processor::SuppressTokensAtBegin { .. }
            | Processor::ExponentialDecay { .. } => (PointUpdate, Length),
        };
        Class { effect, reads }
    }

    /// Whether the processor only changes a few scores in place (penalties, bans, biases, length rules):
    /// such updates can be undone, so they may run before a row is validated.
    pub fn is_point_update(&self) -> bool {
        self.class().effect == Effect::PointUpdate
    }

    /// Whether the processor reads token ids (beyond the history length).
    pub fn uses_history(&self) -> bool {
        self.class().reads == Reads::History
    }

    /// Whether the processor reads `input_ids` at all (its ids or its length).
    pub fn reads_input_ids(&self) -> bool {
        self.class().reads != Reads::Scores
    }

    /// The transformers class this processor implements (for messages).
    pub fn name(&self) -> &'static str {
        match self {
            Processor::Temperature(_) => "TemperatureLogitsWarper",
            Processor::TopK { .. } => "TopKLogitsWarper",
            Processor::TopP { .. } => "TopPLogitsWarper",
            Processor::MinP { .. } => "MinPLogitsWarper",
            Processor::Typical { .. } => "TypicalLogitsWarper",
            Processor::Epsilon { .. } => "EpsilonLogitsWarper",
            Processor::Eta { .. } => "EtaLogitsWarper",
            Processor::RepetitionPenalty { .. } => "RepetitionPenaltyLogitsProcessor",
            Processor::PresencePenalty { .. } => "PresencePenaltyLogitsProcessor",
            Processor::FrequencyPenalty { .. } => "FrequencyPenaltyLogitsProcessor",
            Processor::NoRepeatNGram { .. } => "NoRepeatNGramLogitsProcessor",
            Processor::SequenceBias(_) => "SequenceBiasLogitsProcessor",
            Processor::LogitBias(_) => "LogitBiasLogitsProcessor",
            Processor::MinLength { .. } => "MinLengthLogitsProcessor",
            Processor::MinNewTokens { .. } => "MinNewTokensLengthLogitsProcessor",
            Processor::SuppressTokens(_) => "SuppressTokensLogitsProcessor",
            Processor::SuppressTokensAtBegin { .. } => "SuppressTokensAtBeginLogitsProcessor",
            Processor::ExponentialDecay { .. } => "ExponentialDecayLengthPenalty",
        }
    }

    /// Where the finite scores of row `row` (history length `len`) can lie after this processor, given
    /// where they lay before: a bound, used to prove that a call cannot overflow float32 before anything
    /// is written (the pipeline takes a checked path when it cannot prove it).
    pub fn range_after(&self, r: Range, row: usize, len: usize) -> Range {
        let with_filter = |r: Range, f: f32| {
            if f == NEG_INF {
                r
            } else {
                Range { lo: r.lo.min(f as f64), hi: r.hi.max(f as f64) }
            }
        };
        match self {
            Processor::Temperature(t) => {
                let t = t.get(row) as f64;
                Range { lo: r.lo / t, hi: r.hi / t }
            }
            Processor::TopK { filter, .. }
            | Processor::TopP { filter, .. }
            | Processor::MinP { filter, .. }
            | Processor::Typical { filter, .. }
            | Processor::Epsilon { filter, .. }
            | Processor::Eta { filter, .. } => with_filter(r, *filter),
            Processor::RepetitionPenalty { penalty, .. } => {
                // s < 0 ? s * p : s / p is increasing in s.
                let p = penalty.get(row) as f64;
                let f = |s: f64| if s < 0.0 { s * p } else { s / p };
                Range { lo: r.lo.min(f(r.lo)), hi: r.hi.max(f(r.hi)) }
            }
            Processor::PresencePenalty { penalty, .. } => {
                let p = *penalty as f64;
                Range { lo: r.lo.min(r.lo - p), hi: r.hi.max(r.hi - p) }
            }
            Processor::FrequencyPenalty { penalty, .. } => {
                let d = *penalty as f64 * len as f64; // a count is at most the history length
                Range { lo: r.lo.min(r.lo - d), hi: r.hi.max(r.hi - d) }
            }
            Processor::SequenceBias(sb) => {
                // A token can get several biases: their sums bound what it gets.
                let biases = sb.single.iter().map(|e| e.1).chain(sb.groups.iter().flatten().map(|e| e.2));
                let (neg, pos) = biases
                    .filter(|b| b.is_finite())
                    .fold((0.0f64, 0.0f64), |(n, p), b| (n + (b as f64).min(0.0), p + (b as f64).max(0.0)));
                // A bias sum beyond float32 is itself +inf (and NaN on a -inf score): never provably safe.
                let hi = if pos > f32::MAX as f64 { f64::INFINITY } else { r.hi + pos };
                Range { lo: r.lo + neg, hi }
            }
            Processor::LogitBias(b) => {
                let finite = b.iter().map(|e| e.1 as f64).filter(|b| b.is_finite());
                let (neg, pos) = finite.fold((0.0f64, 0.0f64), |(n, p), b| (n.min(b), p.max(b)));
                Range { lo: r.lo + neg, hi: r.hi + pos }
            }
            Processor::NoRepeatNGram { .. }
            | Processor::MinLength { .. }
            | Processor::MinNewTokens { .. }
            | Processor::SuppressTokens(_)
            | Processor::SuppressTokensAtBegin { .. } => r,
            Processor::ExponentialDecay { start, factor, .. } => {
                let len = len as f64;
                if len <= *start || r.lo > r.hi {
                    return r;
                }
                // The scale as `apply` computes it: not finite (an overflow, or NaN) is never provably safe.
                let scale = (factor.powf(len - *start) - 1.0) as f32;
                if !scale.is_finite() {
                    return Range { lo: f64::NEG_INFINITY, hi: f64::INFINITY };
                }
                let m = r.lo.abs().max(r.hi.abs()) * (1.0 + scale.abs() as f64);
                Range { lo: r.lo.min(-m), hi: r.hi.max(m) }
            }
        }
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
            Processor::ExponentialDecay { eos, .. } => in_vocab("eos_token_id", eos.iter().copied(), vocab),
            // Token sets matched against the vocabulary (ids outside it match nothing), and processors
            // with nothing that depends on the call.
            Processor::MinLength { .. }
            | Processor::MinNewTokens { .. }
            | Processor::SuppressTokens(_)
            | Processor::SuppressTokensAtBegin { .. }
            | Processor::Typical { .. }
            | Processor::Epsilon { .. }
            | Processor::Eta { .. }
            | Processor::PresencePenalty { .. }
            | Processor::FrequencyPenalty { .. }
            | Processor::NoRepeatNGram { .. } => Ok(()),
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
                if (len as i64).saturating_sub(*prompt_len as i64) < *min_new as i64 {
                    ban(row, eos);
                }
            }
            Processor::SuppressTokens(t) => {
                if !t.is_empty() {
                    ban(row, t)
                }
            }
            Processor::SuppressTokensAtBegin { tokens, begin } => {
                if Some(len) == *begin {
                    ban(row, tokens);
                }
            }
            Processor::ExponentialDecay { start, factor, eos } => {
                let len = len as f64;
                if len > *start {
                    // transformers: pow(factor, idx) - 1 in double, then a float32 tensor times it.
                    let scale = (factor.powf(len - *start) - 1.0) as f32;
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

/// Bans `tokens` (a set matched against the vocabulary: ids beyond it are skipped).
fn ban(row: &mut Row, tokens: &[u32]) {
    let mut v = row.points();
    let vocab = v.len();
    for &t in tokens.iter().filter(|&&t| (t as usize) < vocab) {
        v.set(t, NEG_INF);
    }
}
