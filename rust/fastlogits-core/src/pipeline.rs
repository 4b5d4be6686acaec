//! A chain of processors applied in one call: validated first, then each row once through every
//! processor, in place, rows in parallel.

use crate::error::Result;
use crate::history::RowHistory;
use crate::processors::Processor;
use crate::row::{with_scratch, Row};
use crate::sampling::uniform;
use crate::{batch_of, check_ids, check_scores, pool, Error, TokenId};

/// Processors in order, plus the per-row history state of the ones that need it.
#[derive(Debug, Clone)]
pub struct Pipeline {
    procs: Vec<Processor>,
    rows: Vec<RowHistory>,
    uses_history: bool,
}

impl Pipeline {
    pub fn new(procs: Vec<Processor>) -> Self {
        let uses_history = procs.iter().any(Processor::uses_history);
        Pipeline { procs, rows: Vec::new(), uses_history }
    }

    pub fn processors(&self) -> &[Processor] {
        &self.procs
    }

    /// Forgets the histories seen so far (the next call rebuilds every row's state).
    pub fn reset(&mut self) {
        self.rows.clear();
    }

    fn new_row(&self, r: usize) -> RowHistory {
        RowHistory::new(self.procs.iter().map(|p| p.new_state(r)).collect())
    }

    /// Applies every processor to `scores` (`B x vocab`, row-major) given the histories `ids`
    /// (`B x seq_len`). On error nothing has been modified.
    pub fn apply<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        scores: &mut [f32],
        vocab: usize,
    ) -> Result<()> {
        self.run(ids, seq_len, scores, vocab, None)
    }

    /// [`Pipeline::apply`], then one token per row drawn from the processed scores with the stream
    /// `(seed, row, step)`: the tokens [`crate::sampling::sample`] would draw from the written scores, in one
    /// pass less. Bad input is rejected before anything is written; a row left all `-inf` by the
    /// processors is an error reported after `scores` has been processed.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_and_sample<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        scores: &mut [f32],
        vocab: usize,
        seed: u64,
        step: u64,
        out: &mut [i64],
    ) -> Result<()> {
        let batch = batch_of(scores.len(), vocab)?;
        if out.len() != batch {
            return Err(Error::shape(format!("the output has {} rows but scores has {batch}", out.len())));
        }
        self.run(ids, seq_len, scores, vocab, Some((seed, step, out)))
    }

    fn run<I: TokenId>(
        &mut self,
        ids: &[I],
        seq_len: usize,
        scores: &mut [f32],
        vocab: usize,
        draw: Option<(u64, u64, &mut [i64])>,
    ) -> Result<()> {
        let batch = batch_of(scores.len(), vocab)?;
        check_ids(ids, seq_len, batch, vocab)?;
        for p in &self.procs {
            p.check(batch, vocab)?;
        }
        check_scores(scores, vocab, false)?;

        if self.rows.len() != batch {
            // A new batch: per-row states (and per-row state parameters) start afresh.
            self.rows = (0..batch).map(|r| self.new_row(r)).collect();
        }
        let procs = &self.procs;
        let uses_history = self.uses_history;
        let (seed, step, mut outs) = match draw {
            Some((seed, step, out)) => (seed, step, out.iter_mut().map(Some).collect()),
            None => (0, 0, Vec::new()),
        };
        outs.resize_with(batch, || None);
        type Work<'a> = (&'a mut [f32], &'a mut RowHistory, Option<&'a mut i64>, Option<Error>);
        let mut work: Vec<Work> = scores
            .chunks_mut(vocab)
            .zip(self.rows.iter_mut())
            .zip(outs)
            .map(|((s, m), o)| (s, m, o, None))
            .collect();
        pool::for_each_mut(&mut work, batch * vocab, |r, (buf, mem, out, err)| {
            if uses_history {
                mem.sync(&ids[r * seq_len..(r + 1) * seq_len], vocab);
            }
            let mem = &**mem;
            with_scratch(|s| {
                let mut row = Row::new(buf, s);
                for (p, st) in procs.iter().zip(&mem.states) {
                    p.apply(&mut row, r, seq_len, &mem.ids, st.as_ref());
                }
                match out {
                    Some(o) => match row.finish_and_sample(r, uniform(seed, r as u64, step)) {
                        Ok(t) => **o = t as i64,
                        Err(e) => *err = Some(e),
                    },
                    None => row.finish(),
                }
            });
        });
        match work.into_iter().find_map(|w| w.3) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reorders the per-row states after a beam step: new row `i` continues old row `src[i]`.
    pub fn reorder(&mut self, src: &[usize]) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        if src.len() != self.rows.len() {
            return Err(Error::shape(format!(
                "reorder got {} indices for {} rows",
                src.len(),
                self.rows.len()
            )));
        }
        if let Some(&bad) = src.iter().find(|&&s| s >= self.rows.len()) {
            return Err(Error::value(format!("reorder index {bad} is outside [0, {})", self.rows.len())));
        }
        let old = std::mem::take(&mut self.rows);
        self.rows = src.iter().map(|&s| old[s].clone()).collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PerRow;

    #[test]
    fn error_leaves_buffer_unchanged() {
        let mut p = Pipeline::new(vec![Processor::temperature(PerRow::All(2.0)).unwrap()]);
        let mut scores = vec![1.0, 2.0, 3.0, f32::NAN];
        let before = scores.clone();
        let ids: Vec<i64> = vec![0, 1];
        let err = p.apply(&ids, 1, &mut scores, 2).unwrap_err();
        assert!(err.to_string().contains("scores[1, 1] is NaN"), "{err}");
        assert_eq!(scores[..3], before[..3]);
        let mut scores = vec![1.0, 2.0];
        let err = p.apply(&[5i64], 1, &mut scores, 2).unwrap_err();
        assert!(err.to_string().contains("input_ids[0, 0] = 5"), "{err}");
        assert_eq!(scores, vec![1.0, 2.0]);
    }
}
