//! Per-row state derived from the token history, updated incrementally.
//!
//! A pipeline keeps, for each row, a copy of the history it last saw. When the next call's history
//! starts with that copy (the usual case: one token appended per step) only the new tokens are fed to
//! the states; otherwise the states are rebuilt from scratch. Checking the copy is one `memcmp`-like
//! pass over the ids, far cheaper than what it saves, and never wrong.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use crate::processors::RowProcessor;
use crate::TokenId;

/// What a pipeline remembers about one row between calls.
#[derive(Debug, Clone, Default)]
pub struct RowHistory {
    pub ids: Vec<u32>,
    vocab: usize,
}

impl RowHistory {
    /// Brings the stored history, and the states of the row's processors `chain`, up to `ids` (already
    /// validated to lie in `[0, vocab)`). Returns true if the states were rebuilt rather than extended.
    pub fn sync<I: TokenId>(&mut self, ids: &[I], vocab: usize, chain: &mut [RowProcessor]) -> bool {
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
            for p in chain.iter_mut() {
                p.extend(&self.ids, old);
            }
            false
        } else {
            self.vocab = vocab;
            self.ids.clear();
            self.ids.extend(ids.iter().map(|&t| t.to_i64() as u32));
            for p in chain.iter_mut() {
                p.reset(vocab);
                p.extend(&self.ids, 0);
            }
            true
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::processors::{NGramIndex, PerRow, Processor};

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

    fn ngram_state(p: &RowProcessor) -> &NGramIndex {
        match p {
            RowProcessor::NoRepeatNGram(_, index) => index,
            other => panic!("not a no-repeat n-gram processor: {other:?}"),
        }
    }

    #[test]
    fn ngram_incremental_equals_rebuild_and_brute_force() {
        for n in 1..5 {
            let toks: Vec<i64> = (0..200).map(|i| (i * 7 % 5 + i % 3) as i64).collect();
            let mut chain = vec![Processor::no_repeat_ngram(n as i64).unwrap().bind(0)];
            let mut inc = RowHistory::default();
            for l in 0..toks.len() {
                let rebuilt = inc.sync(&toks[..l], 10, &mut chain);
                assert_eq!(rebuilt, l == 0, "l={l}");
                let mut got = ngram_state(&chain[0]).banned(&inc.ids).to_vec();
                got.sort();
                assert_eq!(got, brute_ngram(&inc.ids, n), "n={n} l={l}");
            }
        }
    }

    #[test]
    fn a_different_history_rebuilds() {
        let rep = Processor::repetition_penalty(PerRow::All(2.0), PerRow::All(1)).unwrap();
        let mut chain = vec![rep.bind(0)];
        let mut h = RowHistory::default();
        assert!(h.sync(&[1i64, 2, 3], 8, &mut chain));
        assert!(!h.sync(&[1i64, 2, 3, 2], 8, &mut chain));
        assert!(h.sync(&[5i64, 2, 3, 2, 4], 8, &mut chain));
        let RowProcessor::RepetitionPenalty(_, seen) = &chain[0] else { panic!("{:?}", chain[0]) };
        assert_eq!(seen.list, vec![2, 3, 4]);
    }
}
