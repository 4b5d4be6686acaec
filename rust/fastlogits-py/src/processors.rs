//! `Processor`: one configured logits processor (constructors only; the core validates the ranges).

use fastlogits_core::{self as core, Processor as CoreProcessor};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::arrays::{count, per_row_count, per_row_f64, token_list};
use crate::errors::{core_err, type_error};

/// One configured logits processor (opaque); build with the static constructors, combine in a
/// [`Pipeline`].
#[pyclass(module = "fastlogits._native", name = "Processor", frozen, from_py_object)]
#[derive(Clone)]
pub(crate) struct PyProcessor {
    pub(crate) inner: CoreProcessor,
}

fn wrap(r: core::Result<CoreProcessor>) -> PyResult<PyProcessor> {
    r.map(|inner| PyProcessor { inner }).map_err(core_err)
}

#[pymethods]
impl PyProcessor {
    #[staticmethod]
    fn temperature(py: Python<'_>, temperature: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(CoreProcessor::temperature(per_row_f64(py, temperature, "temperature")?))
    }

    #[staticmethod]
    fn top_k(
        py: Python<'_>,
        top_k: &Bound<'_, PyAny>,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let k = per_row_count(py, top_k, "top_k")?;
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(CoreProcessor::top_k(k, filter_value, m))
    }

    #[staticmethod]
    fn top_p(
        py: Python<'_>,
        top_p: &Bound<'_, PyAny>,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let p = per_row_f64(py, top_p, "top_p")?;
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(CoreProcessor::top_p(p, filter_value, m))
    }

    #[staticmethod]
    fn min_p(
        py: Python<'_>,
        min_p: &Bound<'_, PyAny>,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let p = per_row_f64(py, min_p, "min_p")?;
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(CoreProcessor::min_p(p, filter_value, m))
    }

    #[staticmethod]
    fn typical(
        py: Python<'_>,
        mass: f64,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(CoreProcessor::typical(mass, filter_value, m))
    }

    #[staticmethod]
    fn top_n_sigma(py: Python<'_>, n: &Bound<'_, PyAny>, filter_value: f32) -> PyResult<Self> {
        let n = per_row_f64(py, n, "top_n_sigma")?;
        wrap(CoreProcessor::top_n_sigma(n, filter_value))
    }

    #[staticmethod]
    fn dynamic_temperature(
        py: Python<'_>,
        temperature: &Bound<'_, PyAny>,
        dynatemp_range: &Bound<'_, PyAny>,
        exponent: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let t = per_row_f64(py, temperature, "temperature")?;
        let r = per_row_f64(py, dynatemp_range, "dynatemp_range")?;
        let e = per_row_f64(py, exponent, "dynatemp_exponent")?;
        wrap(CoreProcessor::dynamic_temperature(t, r, e))
    }

    #[staticmethod]
    fn xtc(
        py: Python<'_>,
        threshold: &Bound<'_, PyAny>,
        probability: &Bound<'_, PyAny>,
        min_tokens_to_keep: &Bound<'_, PyAny>,
        seed: u64,
    ) -> PyResult<Self> {
        let t = per_row_f64(py, threshold, "xtc_threshold")?;
        let p = per_row_f64(py, probability, "xtc_probability")?;
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(CoreProcessor::xtc(t, p, m, seed))
    }

    #[staticmethod]
    fn top_h(top_h: f64, filter_value: f32) -> PyResult<Self> {
        wrap(CoreProcessor::top_h(top_h, filter_value))
    }

    #[staticmethod]
    fn epsilon(
        py: Python<'_>,
        epsilon: f64,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(CoreProcessor::epsilon(epsilon, filter_value, m))
    }

    #[staticmethod]
    fn eta(
        py: Python<'_>,
        epsilon: f64,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(CoreProcessor::eta(epsilon, filter_value, m))
    }

    #[staticmethod]
    fn repetition_penalty(
        py: Python<'_>,
        penalty: &Bound<'_, PyAny>,
        prompt_ignore_length: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let p = per_row_f64(py, penalty, "penalty")?;
        let ignore = per_row_count(py, prompt_ignore_length, "prompt_ignore_length")?;
        wrap(CoreProcessor::repetition_penalty(p, ignore))
    }

    #[staticmethod]
    fn presence_penalty(py: Python<'_>, penalty: f64, prompt_length: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(CoreProcessor::presence_penalty(penalty, count(py, prompt_length, "prompt_length")?))
    }

    #[staticmethod]
    fn frequency_penalty(py: Python<'_>, penalty: f64, prompt_length: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(CoreProcessor::frequency_penalty(penalty, count(py, prompt_length, "prompt_length")?))
    }

    #[staticmethod]
    fn no_repeat_ngram(py: Python<'_>, ngram_size: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(CoreProcessor::no_repeat_ngram(count(py, ngram_size, "ngram_size")?))
    }

    #[staticmethod]
    fn dry(
        py: Python<'_>,
        multiplier: f64,
        base: f64,
        allowed_length: &Bound<'_, PyAny>,
        sequence_breaker_ids: &Bound<'_, PyAny>,
        penalty_last_n: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let allowed = count(py, allowed_length, "dry_allowed_length")?;
        let breakers = token_list(py, sequence_breaker_ids, "sequence_breaker_ids")?;
        let last_n = count(py, penalty_last_n, "dry_penalty_last_n")?;
        wrap(CoreProcessor::dry(multiplier, base, allowed, &breakers, last_n))
    }

    /// `entries`: `[(token ids, bias), ...]` in dict order.
    #[staticmethod]
    fn sequence_bias(py: Python<'_>, entries: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bad = || type_error(py, "`sequence_bias` has to be a list of (token ids, float) pairs");
        let items = entries.try_iter().map_err(|_| bad())?;
        let entries = items
            .map(|e| {
                let (ids, bias): (Bound<'_, PyAny>, f64) = e?.extract().map_err(|_| bad())?;
                Ok((token_list(py, &ids, "sequence_bias")?, bias))
            })
            .collect::<PyResult<Vec<_>>>()?;
        wrap(CoreProcessor::sequence_bias(entries))
    }

    #[staticmethod]
    #[pyo3(signature = (bad_words_ids, eos_token_id=None))]
    fn bad_words(
        py: Python<'_>,
        bad_words_ids: &Bound<'_, PyAny>,
        eos_token_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let items = bad_words_ids
            .try_iter()
            .map_err(|_| type_error(py, "`bad_words_ids` has to be a list of lists of token ids"))?;
        let words = items.map(|w| token_list(py, &w?, "bad_words_ids")).collect::<PyResult<Vec<_>>>()?;
        let eos = eos_token_id.map(|e| token_list(py, e, "eos_token_id")).transpose()?;
        wrap(CoreProcessor::bad_words(words, eos))
    }

    /// `bias`: `[(token id, bias), ...]`.
    #[staticmethod]
    fn logit_bias(py: Python<'_>, bias: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bad = || type_error(py, "`logit_bias` has to be a dict {token_id: float}");
        let items = bias.try_iter().map_err(|_| bad())?;
        let pairs = items
            .map(|e| {
                let (t, b): (Bound<'_, PyAny>, f64) = e?.extract().map_err(|_| bad())?;
                let t = token_list(py, PyTuple::new(py, [t])?.as_any(), "logit_bias")?[0];
                Ok((t, b))
            })
            .collect::<PyResult<Vec<_>>>()?;
        wrap(CoreProcessor::logit_bias(pairs))
    }

    #[staticmethod]
    fn min_length(
        py: Python<'_>,
        min_length: &Bound<'_, PyAny>,
        eos_token_id: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let eos = token_list(py, eos_token_id, "eos_token_id")?;
        wrap(CoreProcessor::min_length(count(py, min_length, "min_length")?, &eos))
    }

    #[staticmethod]
    fn min_new_tokens(
        py: Python<'_>,
        prompt_length_to_skip: &Bound<'_, PyAny>,
        min_new_tokens: &Bound<'_, PyAny>,
        eos_token_id: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let skip = count(py, prompt_length_to_skip, "prompt_length_to_skip")?;
        let n = count(py, min_new_tokens, "min_new_tokens")?;
        let eos = token_list(py, eos_token_id, "eos_token_id")?;
        wrap(CoreProcessor::min_new_tokens(skip, n, &eos))
    }

    #[staticmethod]
    fn suppress_tokens(py: Python<'_>, suppress_tokens: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(CoreProcessor::suppress_tokens(&token_list(py, suppress_tokens, "suppress_tokens")?))
    }

    #[staticmethod]
    fn suppress_tokens_at_begin(
        py: Python<'_>,
        begin_suppress_tokens: &Bound<'_, PyAny>,
        begin_index: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let tokens = token_list(py, begin_suppress_tokens, "begin_suppress_tokens")?;
        wrap(CoreProcessor::suppress_tokens_at_begin(&tokens, count(py, begin_index, "begin_index")?))
    }

    /// `start` and `input_ids_seq_length` may be fractional (transformers adds and subtracts them as is).
    #[staticmethod]
    fn exponential_decay(
        py: Python<'_>,
        start: f64,
        factor: f64,
        eos_token_id: &Bound<'_, PyAny>,
        input_ids_seq_length: f64,
    ) -> PyResult<Self> {
        let eos = token_list(py, eos_token_id, "eos_token_id")?;
        wrap(CoreProcessor::exponential_decay(start, factor, &eos, input_ids_seq_length))
    }

    /// Whether the processor reads `input_ids` (the ids or their length); those that do not accept None.
    #[getter]
    fn reads_input_ids(&self) -> bool {
        self.inner.reads_input_ids()
    }

    /// Whether the processor reads the token ids themselves (not only the history's length).
    #[getter]
    fn reads_history(&self) -> bool {
        self.inner.uses_history()
    }

    /// The transformers class this processor implements.
    #[getter]
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn __repr__(&self) -> String {
        format!("Processor({:?})", self.inner)
    }
}
