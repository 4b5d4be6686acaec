//! Bans and biases of given tokens: no-repeat n-gram, sequence biases (and bad words, which are
//! sequence biases of `-inf`), logit biases, suppressed tokens.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use rustc_hash::FxHashMap;

use super::params::{as_bias_f32, ban, in_vocab, token_ids, token_set, NEG_INF};
use super::{At, Class, Effect, Processor, Range, Reads, RowState, Rule};
use crate::error::{Error, Result};
use crate::row::Row;

/// `NoRepeatNGramLogitsProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct NoRepeatNGram {
    pub n: usize,
}

/// For each (n-1)-gram of a row's history, the distinct tokens that followed it (the no-repeat n-gram
/// state).
///
/// An (n-1)-gram is keyed by a rolling hash and identified by the position of its first occurrence in
/// the history (compared on lookup, so hash collisions cost time, never correctness): memory is O(L)
/// whatever `n` is, and each new token costs O(1) to index plus one comparison of n-1 ids.
#[derive(Debug, Default, Clone)]
pub struct NGramIndex {
    n: usize,
    /// hash -> [(end of the first occurrence of the (n-1)-gram in the history, its distinct followers)]
    groups: FxHashMap<u64, Vec<(usize, Vec<u32>)>>,
}

/// Base of the rolling hash (odd, so multiplication by it is invertible mod 2^64).
const HASH_BASE: u64 = 0x9E37_79B9_7F4A_7C15;

fn window_hash(w: &[u32]) -> u64 {
    w.iter().fold(0u64, |h, &t| h.wrapping_mul(HASH_BASE).wrapping_add(u64::from(t).wrapping_add(1)))
}

/// The (n-1)-gram before position `end` (`n - 1 <= end <= hist.len()`, `n >= 1`).
#[inline]
#[allow(clippy::arithmetic_side_effects)] // end + 1 - n: end >= n - 1 by the callers
fn gram(hist: &[u32], end: usize, n: usize) -> &[u32] {
    &hist[end + 1 - n..end]
}

impl NGramIndex {
    /// An empty index of the (n-1)-grams of a history.
    pub fn new(n: usize) -> Self {
        NGramIndex { n, groups: FxHashMap::default() }
    }

    /// Records that the (n-1)-gram `hist[end + 1 - n..end]` (hash `h`) was followed by `hist[end]`.
    fn add(&mut self, hist: &[u32], end: usize, h: u64) {
        let n = self.n;
        let prefix = gram(hist, end, n);
        let next = hist[end];
        let groups = self.groups.entry(h).or_default();
        match groups.iter_mut().find(|(e, _)| gram(hist, *e, n) == prefix) {
            Some((_, followers)) => {
                if !followers.contains(&next) {
                    followers.push(next);
                }
            }
            None => groups.push((end, vec![next])),
        }
    }

    /// Tokens that would complete an n-gram already in `hist` (empty while `hist.len() < n`).
    pub fn banned(&self, hist: &[u32]) -> &[u32] {
        let n = self.n;
        if hist.len() < n {
            return &[];
        }
        let suffix = gram(hist, hist.len(), n);
        self.groups
            .get(&window_hash(suffix))
            .and_then(|g| g.iter().find(|(e, _)| gram(hist, *e, n) == suffix))
            .map_or(&[], |(_, followers)| followers.as_slice())
    }
}

impl RowState for NGramIndex {
    fn reset(&mut self, _: usize) {
        self.groups.clear();
    }

    /// Indexes the n-grams ending at positions `from..hist.len()`.
    fn extend(&mut self, hist: &[u32], from: usize) {
        let n = self.n;
        let first = from.max(n.saturating_sub(1));
        if first >= hist.len() {
            return;
        }
        // Rolling hash of the window hist[end + 1 - n..end]: drop the oldest id, append the newest.
        let top = (1..n.saturating_sub(1)).fold(1u64, |p, _| p.wrapping_mul(HASH_BASE)); // HASH_BASE^(n-2)
        let mut h = window_hash(gram(hist, first, n));
        for end in first..hist.len() {
            if end > first && n > 1 {
                #[allow(clippy::arithmetic_side_effects)] // end > first >= n - 1 and n > 1
                let (old, new) = (hist[end - n], hist[end - 1]);
                let (old, new) = (u64::from(old).wrapping_add(1), u64::from(new).wrapping_add(1));
                h = h.wrapping_sub(old.wrapping_mul(top)).wrapping_mul(HASH_BASE).wrapping_add(new);
            }
            self.add(hist, end, h);
        }
    }
}

impl Processor {
    pub fn no_repeat_ngram(n: i64) -> Result<Self> {
        if n <= 0 {
            return Err(Error::param(format!(
                "`ngram_size` has to be a strictly positive integer, but is {n}"
            )));
        }
        Ok(NoRepeatNGram { n: n as usize }.into())
    }
}

impl Rule for NoRepeatNGram {
    const NAME: &'static str = "NoRepeatNGramLogitsProcessor";
    const CLASS: Class = Class { effect: Effect::PointUpdate, reads: Reads::History };
    type State = NGramIndex;

    fn new_state(&self, _: usize) -> NGramIndex {
        NGramIndex::new(self.n)
    }

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(())
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        r
    }

    fn apply(&self, row: &mut Row, at: &At, index: &NGramIndex) {
        let banned = index.banned(at.hist);
        if !banned.is_empty() {
            let mut v = row.points();
            for &t in banned {
                v.set(t, NEG_INF);
            }
        }
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

    /// Every bias, single-token entries first.
    fn biases(&self) -> impl Iterator<Item = f32> + '_ {
        self.single.iter().map(|e| e.1).chain(self.groups.iter().flatten().map(|e| e.2))
    }
}

impl Processor {
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
        Ok(SequenceBias::new(entries, "sequence_bias")?.into())
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
        Ok(SequenceBias::new(entries, "bad_words_ids")?.into())
    }
}

impl Rule for SequenceBias {
    const NAME: &'static str = "SequenceBiasLogitsProcessor";
    const CLASS: Class = Class { effect: Effect::PointUpdate, reads: Reads::History };
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, vocab: usize) -> Result<()> {
        if self.max_id as usize >= vocab {
            let mut bad: Vec<u32> = self
                .single
                .iter()
                .map(|e| e.0)
                .chain(self.groups.iter().flatten().flat_map(|(p, t, _)| p.iter().copied().chain([*t])))
                .filter(|&t| t as usize >= vocab)
                .collect();
            bad.dedup();
            return Err(Error::value(format!(
                "The model vocabulary size is {vocab}, but the following tokens were being biased: {bad:?}"
            )));
        }
        Ok(())
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        // A token can get several biases: their sums bound what it gets.
        let (neg, pos) = self
            .biases()
            .filter(|b| b.is_finite())
            .fold((0.0f64, 0.0f64), |(n, p), b| (n + (b as f64).min(0.0), p + (b as f64).max(0.0)));
        // A bias sum beyond float32 is itself +inf (and NaN on a -inf score): never provably safe.
        let hi = if pos > f32::MAX as f64 { f64::INFINITY } else { r.hi + pos };
        Range { lo: r.lo + neg, hi }
    }

    fn apply(&self, row: &mut Row, at: &At, _: &()) {
        let hist = at.hist;
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

/// `{token: bias}` added to the scores (OpenAI `logit_bias`), in insertion order.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitBias {
    pub bias: Vec<(u32, f32)>,
}

impl Processor {
    /// A repeated token keeps its first position and its last bias, like a Python dict.
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
        Ok(LogitBias { bias: out }.into())
    }
}

impl Rule for LogitBias {
    const NAME: &'static str = "LogitBiasLogitsProcessor";
    const CLASS: Class = Class { effect: Effect::PointUpdate, reads: Reads::Scores };
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, vocab: usize) -> Result<()> {
        in_vocab("logit_bias", self.bias.iter().map(|e| e.0), vocab)
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        let finite = self.bias.iter().map(|e| e.1 as f64).filter(|b| b.is_finite());
        let (neg, pos) = finite.fold((0.0f64, 0.0f64), |(n, p), b| (n.min(b), p.max(b)));
        Range { lo: r.lo + neg, hi: r.hi + pos }
    }

    fn apply(&self, row: &mut Row, _: &At, _: &()) {
        let mut v = row.points();
        for &(t, bias) in &self.bias {
            v.update(t, |x| x + bias);
        }
    }
}

/// `SuppressTokensLogitsProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct SuppressTokens {
    pub tokens: Vec<u32>,
}

impl Processor {
    /// transformers validates nothing here: ids outside the vocabulary suppress nothing.
    pub fn suppress_tokens(tokens: &[i64]) -> Result<Self> {
        Ok(SuppressTokens { tokens: token_set(tokens) }.into())
    }
}

impl Rule for SuppressTokens {
    const NAME: &'static str = "SuppressTokensLogitsProcessor";
    const CLASS: Class = Class { effect: Effect::PointUpdate, reads: Reads::Scores };
    type State = ();

    fn new_state(&self, _: usize) {}

    fn check(&self, _: usize, _: usize) -> Result<()> {
        Ok(()) // a set matched against the vocabulary: ids outside it match nothing
    }

    fn range_after(&self, r: Range, _: usize, _: usize) -> Range {
        r
    }

    fn apply(&self, row: &mut Row, _: &At, _: &()) {
        if !self.tokens.is_empty() {
            ban(row, &self.tokens);
        }
    }
}
