//! Per-row state derived from the token history, updated incrementally.
//!
//! A pipeline keeps, for each row, a copy of the history it last saw. When the next call's history
//! starts with that copy (the usual case: one token appended per step) only the new tokens are fed to
//! the states; otherwise the states are rebuilt from scratch. Checking the copy is one `memcmp`-like
//! pass over the ids, far cheaper than what it saves, and never wrong.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use rustc_hash::FxHashMap;

use crate::TokenId;

/// Distinct tokens at positions `>= start` (repetition penalty).
#[derive(Debug, Default, Clone)]
pub struct DistinctTokens {
    seen: Vec<u64>,
    pub list: Vec<u32>,
}

impl DistinctTokens {
    fn reset(&mut self, vocab: usize) {
        self.seen.clear();
        self.seen.resize(vocab.div_ceil(64), 0);
        self.list.clear();
    }

    fn push(&mut self, t: u32) {
        let (w, b) = ((t / 64) as usize, t % 64);
        if self.seen[w] & (1 << b) == 0 {
            self.seen[w] |= 1 << b;
            self.list.push(t);
        }
    }
}

/// How many times each token occurs at positions `>= start` (presence / frequency penalties).
#[derive(Debug, Default, Clone)]
pub struct TokenCounts {
    pub counts: FxHashMap<u32, u32>,
}

/// For each (n-1)-gram of the history, the distinct tokens that followed it (no-repeat n-gram).
///
/// An (n-1)-gram is keyed by a rolling hash and identified by the position of its first occurrence in
/// the history (compared on lookup, so hash collisions cost time, never correctness): memory is O(L)
/// whatever `n` is, and each new token costs O(1) to index plus one comparison of n-1 ids.
#[derive(Debug, Default, Clone)]
pub struct NGramIndex {
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
    /// Records that the (n-1)-gram `hist[end + 1 - n..end]` (hash `h`) was followed by `hist[end]`.
    fn add(&mut self, hist: &[u32], n: usize, end: usize, h: u64) {
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

    /// Indexes the n-grams ending at positions `from..hist.len()`.
    fn extend(&mut self, hist: &[u32], n: usize, from: usize) {
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
            self.add(hist, n, end, h);
        }
    }

    /// Tokens that would complete an n-gram already in `hist` (empty while `hist.len() < n`).
    pub fn banned(&self, hist: &[u32], n: usize) -> &[u32] {
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

/// The history-derived state one processor keeps for one row.
#[derive(Debug, Clone)]
pub enum State {
    Distinct { start: usize, set: DistinctTokens },
    Counts { start: usize, counts: TokenCounts },
    NGram { n: usize, index: NGramIndex },
}

impl State {
    fn reset(&mut self, vocab: usize) {
        match self {
            State::Distinct { set, .. } => set.reset(vocab),
            State::Counts { counts, .. } => counts.counts.clear(),
            State::NGram { index, .. } => index.groups.clear(),
        }
    }

    /// Feeds the tokens `hist[from..]` (the ones before were fed earlier).
    fn extend(&mut self, hist: &[u32], from: usize) {
        match self {
            State::Distinct { start, set } => {
                for &t in &hist[from.max(*start).min(hist.len())..] {
                    set.push(t);
                }
            }
            State::Counts { start, counts } => {
                for &t in &hist[from.max(*start).min(hist.len())..] {
                    let c = counts.counts.entry(t).or_insert(0);
                    *c = c.saturating_add(1);
                }
            }
            State::NGram { n, index } => index.extend(hist, *n, from),
        }
    }
}

/// What a pipeline remembers about one row between calls.
#[derive(Debug, Clone, Default)]
pub struct RowHistory {
    pub ids: Vec<u32>,
    vocab: usize,
    pub states: Vec<Option<State>>,
}

impl RowHistory {
    pub fn new(states: Vec<Option<State>>) -> Self {
        RowHistory { ids: Vec::new(), vocab: 0, states }
    }

    /// Brings the stored history and states up to `ids` (already validated to lie in `[0, vocab)`).
    /// Returns true if the states were rebuilt rather than extended.
    pub fn sync<I: TokenId>(&mut self, ids: &[I], vocab: usize) -> bool {
        let old = self.ids.len();
        // Block-wise without early exit inside a block, so that the comparison vectorizes.
        let extends = vocab == self.vocab
            && ids.len() >= old
            && ids[..old]
                .chunks(256)
                .zip(self.ids.chunks(256))
                .all(|(a, b)| a.iter().zip(b).fold(true, |same, (&x, &y)| same & (x.to_i64() == y as i64)));
        if extends {
            if ids.len() == old {
                return false;
            }
            self.ids.extend(ids[old..].iter().map(|&t| t.to_i64() as u32));
            for s in self.states.iter_mut().flatten() {
                s.extend(&self.ids, old);
            }
            false
        } else {
            self.vocab = vocab;
            self.ids.clear();
            self.ids.extend(ids.iter().map(|&t| t.to_i64() as u32));
            for s in self.states.iter_mut().flatten() {
                s.reset(vocab);
                s.extend(&self.ids, 0);
            }
            true
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn brute_ngram(hist: &[u32], n: usize) -> Vec<u32> {
        let l = hist.len();
        if l < n {
            return vec![];
        }
        let suffix = &hist[l + 1 - n..];
        let mut out: Vec<u32> =
            (0..=l - n).filter(|&p| &hist[p..p + n - 1] == suffix).map(|p| hist[p + n - 1]).collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn ngram_incremental_equals_rebuild_and_brute_force() {
        for n in 1..5 {
            let toks: Vec<i64> = (0..200).map(|i| (i * 7 % 5 + i % 3) as i64).collect();
            let mut inc = RowHistory::new(vec![Some(State::NGram { n, index: NGramIndex::default() })]);
            for l in 0..toks.len() {
                let rebuilt = inc.sync(&toks[..l], 10);
                assert_eq!(rebuilt, l == 0, "l={l}");
                let Some(State::NGram { index, .. }) = &inc.states[0] else { unreachable!() };
                let mut got = index.banned(&inc.ids, n).to_vec();
                got.sort();
                assert_eq!(got, brute_ngram(&inc.ids, n), "n={n} l={l}");
            }
        }
    }

    #[test]
    fn a_different_history_rebuilds() {
        let mut h = RowHistory::new(vec![Some(State::Distinct { start: 1, set: DistinctTokens::default() })]);
        assert!(h.sync(&[1i64, 2, 3], 8));
        assert!(!h.sync(&[1i64, 2, 3, 2], 8));
        assert!(h.sync(&[5i64, 2, 3, 2, 4], 8));
        let Some(State::Distinct { set, .. }) = &h.states[0] else { unreachable!() };
        assert_eq!(set.list, vec![2, 3, 4]);
    }
}
