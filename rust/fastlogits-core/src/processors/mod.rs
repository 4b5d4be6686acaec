//! The logits processors, by family: [`warpers`] (temperature and the selective warpers), [`penalties`]
//! (repetition, presence, frequency), [`bans`] (n-gram, bad words / sequence biases, logit biases,
//! suppressed tokens) and [`length`] (the rules that depend on the history's length).
//!
//! Each processor is one struct in its family's file with, in one place: its parameters; its constructor
//! on [`Processor`] (the ranges transformers 5.23 accepts, same messages where transformers has one, and
//! NaN / infinite parameters it would let through rejected); and its [`Rule`]: what it is ([`Class`]),
//! what depends on the call ([`Rule::check`]: per-row lengths, ids against the vocabulary), how far it
//! can move a row's scores ([`Rule::range_after`]), its per-row state ([`Rule::State`], typed) and what it
//! does to one row ([`Rule::apply`]).
//!
//! [`Processor`] and [`RowProcessor`] (a processor bound to one row, with that row's state) are generated
//! from the one list in this file by `processors!`: every dispatch is an exhaustive `match`, and a state
//! only ever meets the processor that made it (they travel together in [`RowProcessor`]).
//!
//! Adding a processor: its section in the family's file (struct, constructor, `impl Rule`), one line in
//! the list below, one binding line (`fastlogits-py/src/processors.rs`), one Python class.

// Sizes here come from users (parameters, shapes): arithmetic on them is checked, or bounded where noted.
#![warn(clippy::arithmetic_side_effects)]

use std::fmt::Debug;
use std::sync::Arc;

use crate::error::Result;
use crate::row::Row;

pub mod bans;
pub mod length;
mod params;
pub mod penalties;
pub mod warpers;

pub use bans::{LogitBias, NGramIndex, NoRepeatNGram, SequenceBias, SuppressTokens};
pub use length::{ExponentialDecay, MinLength, MinNewTokens, SuppressTokensAtBegin};
pub use params::PerRow;
pub use penalties::{
    DistinctTokens, Dry, FrequencyPenalty, PresencePenalty, Repeats, RepetitionPenalty, TokenCounts,
};
pub use warpers::{
    DynamicTemperature, Epsilon, Eta, MinP, Temperature, TopH, TopK, TopNSigma, TopP, Typical, Xtc,
};

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
    /// The token ids of the history.
    History,
}

/// [`Rule::CLASS`]: what a processor does and what it reads.
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

/// Where a row is processed: its index in the batch (per-row parameters), its history's length and
/// ids (the ids are empty for chains that do not read them), and, in a call that also draws the tokens,
/// the random streams of the draw and its step (processors that need randomness take theirs from there).
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub row: usize,
    pub len: usize,
    pub hist: &'a [u32],
    pub draw: Option<(&'a crate::sampling::Seeds<'a>, u64)>,
}

/// One logits processor: its class, its per-call checks and bounds, its per-row state and what it does
/// to a row. Nothing has a default: a new processor says all of it.
pub trait Rule: Debug + PartialEq + Send + Sync {
    /// The transformers class it implements (for messages).
    const NAME: &'static str;
    /// What it does and reads.
    const CLASS: Class;
    /// What it keeps per row between calls, derived from the history (`()`: nothing).
    type State: RowState;

    /// A fresh state for row `row` of a new batch.
    fn new_state(&self, row: usize) -> Self::State;

    /// Checks what depends on the call, before any row is touched: per-row parameter lengths, token ids
    /// against `vocab`.
    fn check(&self, batch: usize, vocab: usize) -> Result<()>;

    /// Where the finite scores of row `row` (history length `len`) can lie after this processor, given
    /// where they lay before: a bound, used to prove that a call cannot overflow float32 before anything
    /// is written (the pipeline takes a checked path when it cannot prove it).
    fn range_after(&self, r: Range, row: usize, len: usize) -> Range;

    /// Applies the processor to one row, whose state has been brought up to `at.hist`.
    fn apply(&self, row: &mut Row, at: &At, state: &Self::State);
}

/// A processor's per-row state, kept up to date with the row's history (see [`crate::history`]).
pub trait RowState: Debug + Clone + Send + Sync {
    /// Forgets everything (a new history, over a vocabulary of `vocab` tokens).
    fn reset(&mut self, vocab: usize);
    /// Feeds the tokens `hist[from..]` (the ones before were fed earlier).
    fn extend(&mut self, hist: &[u32], from: usize);
}

/// No state.
impl RowState for () {
    #[inline]
    fn reset(&mut self, _: usize) {}
    #[inline]
    fn extend(&mut self, _: &[u32], _: usize) {}
}

macro_rules! processors {
    ($($(#[doc = $doc:literal])* $v:ident($t:ty),)+) => {
        /// One logits processor (see the transformers class named on each variant). Cheap to clone.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Processor {
            $($(#[doc = $doc])* $v(Arc<$t>),)+
        }

        /// A processor bound to one row of a batch, with that row's state.
        #[derive(Debug, Clone)]
        pub enum RowProcessor {
            $($v(Arc<$t>, <$t as Rule>::State),)+
        }

        $(impl From<$t> for Processor {
            fn from(p: $t) -> Self {
                Processor::$v(Arc::new(p))
            }
        })+

        impl Processor {
            /// The transformers class this processor implements (for messages).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Processor::$v(_) => <$t as Rule>::NAME,)+
                }
            }

            /// What the processor does and reads.
            pub fn class(&self) -> Class {
                match self {
                    $(Processor::$v(_) => <$t as Rule>::CLASS,)+
                }
            }

            /// [`Rule::check`].
            pub fn check(&self, batch: usize, vocab: usize) -> Result<()> {
                match self {
                    $(Processor::$v(p) => p.check(batch, vocab),)+
                }
            }

            /// [`Rule::range_after`].
            pub fn range_after(&self, r: Range, row: usize, len: usize) -> Range {
                match self {
                    $(Processor::$v(p) => p.range_after(r, row, len),)+
                }
            }

            /// The processor bound to row `row` of a new batch, with a fresh state.
            pub fn bind(&self, row: usize) -> RowProcessor {
                match self {
                    $(Processor::$v(p) => RowProcessor::$v(Arc::clone(p), p.new_state(row)),)+
                }
            }
        }

        impl RowProcessor {
            /// [`Rule::apply`] with this row's state.
            #[inline]
            pub fn apply(&self, row: &mut Row, at: &At) {
                match self {
                    $(RowProcessor::$v(p, s) => p.apply(row, at, s),)+
                }
            }

            /// [`RowState::reset`].
            pub fn reset(&mut self, vocab: usize) {
                match self {
                    $(RowProcessor::$v(_, s) => RowState::reset(s, vocab),)+
                }
            }

            /// [`RowState::extend`].
            pub fn extend(&mut self, hist: &[u32], from: usize) {
                match self {
                    $(RowProcessor::$v(_, s) => RowState::extend(s, hist, from),)+
                }
            }
        }
    };
}

processors! {
    /// `TemperatureLogitsWarper`.
    Temperature(Temperature),
    /// `TopKLogitsWarper`.
    TopK(TopK),
    /// `TopPLogitsWarper`.
    TopP(TopP),
    /// `MinPLogitsWarper`.
    MinP(MinP),
    /// `TypicalLogitsWarper`.
    Typical(Typical),
    /// `TopHLogitsWarper`.
    TopH(TopH),
    /// Top-nσ (llama.cpp).
    TopNSigma(TopNSigma),
    /// Dynamic temperature (llama.cpp `temp_ext`).
    DynamicTemperature(DynamicTemperature),
    /// XTC (llama.cpp `xtc`).
    Xtc(Xtc),
    /// `EpsilonLogitsWarper`.
    Epsilon(Epsilon),
    /// `EtaLogitsWarper`.
    Eta(Eta),
    /// `RepetitionPenaltyLogitsProcessor`.
    RepetitionPenalty(RepetitionPenalty),
    /// OpenAI / vLLM presence penalty.
    PresencePenalty(PresencePenalty),
    /// OpenAI / vLLM frequency penalty.
    FrequencyPenalty(FrequencyPenalty),
    /// DRY (llama.cpp `dry`).
    Dry(Dry),
    /// `NoRepeatNGramLogitsProcessor`.
    NoRepeatNGram(NoRepeatNGram),
    /// `SequenceBiasLogitsProcessor` / `NoBadWordsLogitsProcessor`.
    SequenceBias(SequenceBias),
    /// `{token: bias}` added to the scores (OpenAI `logit_bias`).
    LogitBias(LogitBias),
    /// `SuppressTokensLogitsProcessor`.
    SuppressTokens(SuppressTokens),
    /// `MinLengthLogitsProcessor`.
    MinLength(MinLength),
    /// `MinNewTokensLengthLogitsProcessor`.
    MinNewTokens(MinNewTokens),
    /// `SuppressTokensAtBeginLogitsProcessor`.
    SuppressTokensAtBegin(SuppressTokensAtBegin),
    /// `ExponentialDecayLengthPenalty`.
    ExponentialDecay(ExponentialDecay),
}

impl Processor {
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
}
