//! # fastlogits-core
//!
//! Logits processors, samplers and beam-search bookkeeping for autoregressive language models, with
//! the semantics of Hugging Face transformers 5.23 and without its per-step cost.
//!
//! Everything works on plain slices: a batch of scores is a row-major `&mut [f32]` of `B x V`, a batch of
//! token histories a row-major `&[I]` of `B x L` (`I` = `i64`, `i32` or `u32`). Nothing here knows about
//! Python; the `fastlogits-py` crate binds it.
//!
//! ```
//! use fastlogits_core::{Pipeline, Processor, PerRow};
//! let mut p = Pipeline::new(vec![
//!     Processor::repetition_penalty(PerRow::All(1.2), PerRow::All(0)).unwrap(),
//!     Processor::temperature(PerRow::All(0.8)).unwrap(),
//!     Processor::top_k(PerRow::All(2), f32::NEG_INFINITY, 1).unwrap(),
//! ]);
//! let ids: Vec<i64> = vec![0, 3];
//! let mut scores = vec![1.0f32, 0.5, -0.25, 2.0];
//! p.apply(&ids, 2, &mut scores, 4).unwrap();
//! assert_eq!(scores[2], f32::NEG_INFINITY);
//! assert_eq!(scores[3], (2.0f32 / 1.2) / 0.8);
//! ```

pub mod beam;
pub mod error;
pub mod history;
pub mod kernels;
pub mod pipeline;
pub mod pool;
pub mod processors;
pub mod row;
pub mod sampling;
pub mod select;

pub use error::{Error, Result};
pub use pipeline::Pipeline;
pub use pool::{num_threads, set_num_threads};
pub use processors::{Class, Effect, PerRow, Processor, Range, Reads, RowProcessor, Rule, SequenceBias};

/// An integer type token ids come in.
pub trait TokenId: Copy + Send + Sync + 'static {
    fn to_i64(self) -> i64;
}

impl TokenId for i64 {
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self
    }
}

impl TokenId for i32 {
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
}

impl TokenId for u32 {
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
}

/// Number of rows of a `(B, V)` buffer of `len` elements; rejects `V = 0` and empty batches.
pub fn batch_of(len: usize, vocab: usize) -> Result<usize> {
    if vocab == 0 {
        return Err(Error::shape("scores has V = 0 columns: the vocabulary must not be empty"));
    }
    if len % vocab != 0 {
        return Err(Error::shape(format!("scores has {len} elements, not a multiple of V = {vocab}")));
    }
    if len == 0 {
        return Err(Error::shape("scores has no rows: the batch must not be empty"));
    }
    if vocab > u32::MAX as usize {
        return Err(Error::shape(format!("scores has V = {vocab} columns: at most 2**32 - 1 are supported")));
    }
    Ok(len / vocab)
}

/// The error for row `r` given its scan: NaN / `+inf` (naming the first one), or, with
/// `need_finite`, a row that is all `-inf`.
pub fn row_error(r: usize, row: &[f32], scan: kernels::RowScan, need_finite: bool) -> Option<Error> {
    if scan.invalid {
        let (c, x) = row.iter().enumerate().find(|(_, x)| x.is_nan() || **x == f32::INFINITY)?;
        return Some(Error::value(format!(
            "scores[{r}, {c}] is {}: scores must be finite or -inf",
            if x.is_nan() { "NaN" } else { "+inf" }
        )));
    }
    if need_finite && scan.max == f32::NEG_INFINITY {
        return Some(Error::value(format!("row {r} of scores is all -inf: no token is left to choose from")));
    }
    None
}

/// Rejects NaN and `+inf` scores (naming the first one) and, with `need_finite`, rows that are all
/// `-inf`. Read-only; runs before anything is written.
pub fn check_scores(scores: &[f32], vocab: usize, need_finite: bool) -> Result<()> {
    let batch = batch_of(scores.len(), vocab)?;
    pool::check_all(batch, scores.len(), |r| {
        let row = &scores[r * vocab..(r + 1) * vocab];
        row_error(r, row, kernels::scan_row(row), need_finite).map_or(Ok(()), Err)
    })
}

/// Checks a `(batch, seq_len)` id buffer: shape, and, with `values`, every id in `[0, vocab)` (processors
/// that only read the history's length accept any ids, as transformers' do).
pub fn check_ids<I: TokenId>(
    ids: &[I],
    seq_len: usize,
    batch: usize,
    vocab: usize,
    values: bool,
) -> Result<()> {
    if batch.checked_mul(seq_len) != Some(ids.len()) {
        let rows = ids.len().checked_div(seq_len).unwrap_or(0);
        return Err(Error::shape(format!(
            "input_ids has {rows} rows but scores has {batch}: they must have the same batch size"
        )));
    }
    if !values {
        return Ok(());
    }
    let v = vocab as u64;
    // Negative ids wrap to huge unsigned values, so one comparison checks both bounds.
    if ids.iter().fold(true, |ok, &t| ok & ((t.to_i64() as u64) < v)) {
        return Ok(());
    }
    let (i, t) = ids.iter().enumerate().find(|(_, t)| (t.to_i64() as u64) >= v).unwrap();
    Err(Error::value(format!(
        "input_ids[{}, {}] = {} is outside the vocabulary [0, {vocab})",
        i / seq_len,
        i % seq_len,
        t.to_i64()
    )))
}
