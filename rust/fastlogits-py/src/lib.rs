//! Thin PyO3 bindings of `fastlogits-core`: validate and borrow while attached to the interpreter,
//! then run the core with the GIL released (`py.detach`).
//!
//! Arrays must already be C-contiguous, writable where written, float32 scores and int64/int32 ids;
//! the Python package (`fastlogits`) converts everything else (torch tensors, other dtypes, views)
//! before calling here. Errors: [`fastlogits_core::Error`] becomes `InvalidArgumentError` (a
//! `ValueError`), a wrong array type `InvalidTypeError` (a `TypeError`); both derive from
//! `FastLogitsError`.

// Sizes come from users (shapes, counts): arithmetic on them is checked.
#![warn(clippy::arithmetic_side_effects)]

mod beam;
mod lock;

use fastlogits_core::{self as core, PerRow, Pipeline as CorePipeline, Processor as CoreProcessor};
use lock::{Busy, ForkSafeMutex};
use numpy::{
    PyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt, PyTuple, PyType};

static BASE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ARGUMENT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TYPE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `type(name, bases, {...})`: lets an exception derive from both our base class and a builtin one.
fn new_exception<'py>(
    py: Python<'py>,
    name: &str,
    bases: Bound<'py, PyTuple>,
    doc: &str,
) -> PyResult<Bound<'py, PyType>> {
    let dict = PyDict::new(py);
    dict.set_item("__doc__", doc)?;
    dict.set_item("__module__", "fastlogits")?;
    py.get_type::<PyType>().call1((name, bases, dict))?.cast_into::<PyType>().map_err(Into::into)
}

fn error_type<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyType>>) -> Bound<'py, PyType> {
    cell.get(py).expect("fastlogits._native is initialized").bind(py).clone()
}

pub(crate) fn argument_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    PyErr::from_type(error_type(py, &ARGUMENT_ERROR), msg.into())
}

pub(crate) fn type_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    PyErr::from_type(error_type(py, &TYPE_ERROR), msg.into())
}

/// Every core error is a bad argument or bad input: `InvalidArgumentError` (a `ValueError`).
pub(crate) fn map_err(py: Python<'_>, e: core::Error) -> PyErr {
    argument_error(py, e.to_string())
}

pub(crate) fn dtype_name(a: &Bound<'_, PyAny>) -> String {
    a.getattr("dtype")
        .and_then(|d| d.str())
        .map(|s| s.to_string())
        .unwrap_or_else(|_| a.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into()))
}

/// Whether the core can take the array as a slice: C-contiguous, and aligned for its element type
/// (a view at an odd byte offset is not; the Python layer converts such arrays).
pub(crate) fn usable<T: numpy::Element, D: numpy::ndarray::Dimension>(a: &Bound<'_, PyArray<T, D>>) -> bool {
    a.is_c_contiguous() && (a.data() as usize).checked_rem(std::mem::align_of::<T>()) == Some(0)
}

/// Borrows `obj` (the argument `name`) as a C-contiguous 2-D float32 array of the given `shape`.
pub(crate) fn borrow_f32_2d<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    name: &str,
    shape: &str,
) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let arr = obj.cast::<PyArray2<f32>>().map_err(|_| {
        type_error(
            py,
            format!("`{name}` must be a 2-D float32 numpy array of shape {shape}, got {}", dtype_name(obj)),
        )
    })?;
    if !usable(arr) {
        return Err(argument_error(py, format!("`{name}` must be C-contiguous and aligned")));
    }
    arr.try_readonly().map_err(|e| argument_error(py, format!("`{name}` cannot be read: {e}")))
}

fn scores_ro<'py>(py: Python<'py>, scores: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray2<'py, f32>> {
    borrow_f32_2d(py, scores, "scores", "(batch, vocab)")
}

enum Ids<'py> {
    I64(PyReadonlyArray2<'py, i64>),
    I32(PyReadonlyArray2<'py, i32>),
}

impl Ids<'_> {
    fn shape(&self) -> (usize, usize) {
        let s = match self {
            Ids::I64(a) => a.shape(),
            Ids::I32(a) => a.shape(),
        };
        (s[0], s[1])
    }
}

/// `scores` borrowed for writing if it is already what the core takes (a C-contiguous, writable 2-D
/// float32 array), else `None`: the Python layer then converts it (torch tensors, other dtypes, views).
fn accept_scores_rw<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
) -> PyResult<Option<PyReadwriteArray2<'py, f32>>> {
    let Ok(arr) = scores.cast::<PyArray2<f32>>() else {
        return Ok(None);
    };
    if !usable(arr) {
        return Ok(None);
    }
    match arr.try_readwrite() {
        Ok(rw) => Ok(Some(rw)),
        Err(numpy::BorrowError::NotWriteable) => Ok(None),
        Err(e) => Err(argument_error(py, format!("`scores` cannot be borrowed: {e}"))),
    }
}

fn accept_scores_ro<'py>(scores: &Bound<'py, PyAny>) -> Option<PyReadonlyArray2<'py, f32>> {
    let arr = scores.cast::<PyArray2<f32>>().ok()?;
    if !usable(arr) {
        return None;
    }
    arr.try_readonly().ok()
}

/// `input_ids` borrowed if it is a C-contiguous 2-D int64 / int32 array, else `None` (converted in Python).
fn accept_ids<'py>(ids: &Bound<'py, PyAny>) -> Option<Ids<'py>> {
    if let Ok(a) = ids.cast::<PyArray2<i64>>() {
        return if usable(a) { a.try_readonly().ok().map(Ids::I64) } else { None };
    }
    if let Ok(a) = ids.cast::<PyArray2<i32>>() {
        return if usable(a) { a.try_readonly().ok().map(Ids::I32) } else { None };
    }
    None
}

/// A float (or int) for every row, or one per row.
fn per_row_f64(py: Python<'_>, v: &Bound<'_, PyAny>, name: &str) -> PyResult<PerRow<f64>> {
    if let Ok(x) = v.extract::<f64>() {
        return Ok(PerRow::All(x));
    }
    match v.extract::<Vec<f64>>() {
        Ok(rows) => Ok(PerRow::Rows(rows)),
        Err(_) => Err(type_error(
            py,
            format!("`{name}` has to be a float or a list of floats (one per row), but is {}", shown(v)),
        )),
    }
}

fn per_row_count(py: Python<'_>, v: &Bound<'_, PyAny>, name: &str) -> PyResult<PerRow<i64>> {
    if let Ok(x) = count(py, v, name) {
        return Ok(PerRow::All(x));
    }
    let Ok(items) = v.try_iter() else {
        return Err(type_error(
            py,
            format!("`{name}` has to be an int or a list of ints (one per row), but is {}", shown(v)),
        ));
    };
    Ok(PerRow::Rows(items.map(|x| count(py, &x?, name)).collect::<PyResult<_>>()?))
}

/// `repr(v)`, for messages.
fn shown(v: &Bound<'_, PyAny>) -> String {
    v.repr().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
}

/// An integer count or length. Python ints beyond the i64 range saturate: such a count means "all of
/// them" (`top_k`, `min_tokens_to_keep`, `ngram_size`, lengths...), exactly as transformers treats an
/// unbounded Python int, and a huge negative one is rejected by the range check that follows.
fn count(py: Python<'_>, v: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    if let Ok(x) = v.extract::<i64>() {
        return Ok(x);
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(if v.lt(0)? { i64::MIN } else { i64::MAX });
    }
    Err(type_error(py, format!("`{name}` has to be an int, but is {}", shown(v))))
}

/// A list of token ids (range-checked by the core); ids beyond the i64 range are reported here.
fn token_list(py: Python<'_>, v: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<i64>> {
    let items = v.try_iter().map_err(|_| {
        type_error(py, format!("`{name}` has to be a list of token ids, but is {}", shown(v)))
    })?;
    items
        .map(|x| {
            let x = x?;
            x.extract::<i64>().map_err(|_| {
                argument_error(
                    py,
                    format!("`{name}` has to hold token ids in [0, 2**32), but holds {}", shown(&x)),
                )
            })
        })
        .collect()
}

/// One configured logits processor (opaque); build with the static constructors, combine in a
/// [`Pipeline`].
#[pyclass(module = "fastlogits._native", name = "Processor", frozen, from_py_object)]
#[derive(Clone)]
struct PyProcessor {
    inner: CoreProcessor,
}

fn wrap(py: Python<'_>, r: core::Result<CoreProcessor>) -> PyResult<PyProcessor> {
    r.map(|inner| PyProcessor { inner }).map_err(|e| map_err(py, e))
}

#[pymethods]
impl PyProcessor {
    #[staticmethod]
    fn temperature(py: Python<'_>, temperature: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(py, CoreProcessor::temperature(per_row_f64(py, temperature, "temperature")?))
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
        wrap(py, CoreProcessor::top_k(k, filter_value, m))
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
        wrap(py, CoreProcessor::top_p(p, filter_value, m))
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
        wrap(py, CoreProcessor::min_p(p, filter_value, m))
    }

    #[staticmethod]
    fn typical(
        py: Python<'_>,
        mass: f64,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(py, CoreProcessor::typical(mass, filter_value, m))
    }

    #[staticmethod]
    fn epsilon(
        py: Python<'_>,
        epsilon: f64,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(py, CoreProcessor::epsilon(epsilon, filter_value, m))
    }

    #[staticmethod]
    fn eta(
        py: Python<'_>,
        epsilon: f64,
        filter_value: f32,
        min_tokens_to_keep: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let m = count(py, min_tokens_to_keep, "min_tokens_to_keep")?;
        wrap(py, CoreProcessor::eta(epsilon, filter_value, m))
    }

    #[staticmethod]
    fn repetition_penalty(
        py: Python<'_>,
        penalty: &Bound<'_, PyAny>,
        prompt_ignore_length: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let p = per_row_f64(py, penalty, "penalty")?;
        let ignore = per_row_count(py, prompt_ignore_length, "prompt_ignore_length")?;
        wrap(py, CoreProcessor::repetition_penalty(p, ignore))
    }

    #[staticmethod]
    fn presence_penalty(py: Python<'_>, penalty: f64, prompt_length: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(py, CoreProcessor::presence_penalty(penalty, count(py, prompt_length, "prompt_length")?))
    }

    #[staticmethod]
    fn frequency_penalty(py: Python<'_>, penalty: f64, prompt_length: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(py, CoreProcessor::frequency_penalty(penalty, count(py, prompt_length, "prompt_length")?))
    }

    #[staticmethod]
    fn no_repeat_ngram(py: Python<'_>, ngram_size: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(py, CoreProcessor::no_repeat_ngram(count(py, ngram_size, "ngram_size")?))
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
        wrap(py, CoreProcessor::sequence_bias(entries))
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
        wrap(py, CoreProcessor::bad_words(words, eos))
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
        wrap(py, CoreProcessor::logit_bias(pairs))
    }

    #[staticmethod]
    fn min_length(
        py: Python<'_>,
        min_length: &Bound<'_, PyAny>,
        eos_token_id: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let eos = token_list(py, eos_token_id, "eos_token_id")?;
        wrap(py, CoreProcessor::min_length(count(py, min_length, "min_length")?, &eos))
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
        wrap(py, CoreProcessor::min_new_tokens(skip, n, &eos))
    }

    #[staticmethod]
    fn suppress_tokens(py: Python<'_>, suppress_tokens: &Bound<'_, PyAny>) -> PyResult<Self> {
        wrap(py, CoreProcessor::suppress_tokens(&token_list(py, suppress_tokens, "suppress_tokens")?))
    }

    #[staticmethod]
    fn suppress_tokens_at_begin(
        py: Python<'_>,
        begin_suppress_tokens: &Bound<'_, PyAny>,
        begin_index: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let tokens = token_list(py, begin_suppress_tokens, "begin_suppress_tokens")?;
        wrap(py, CoreProcessor::suppress_tokens_at_begin(&tokens, count(py, begin_index, "begin_index")?))
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
        wrap(py, CoreProcessor::exponential_decay(start, factor, &eos, input_ids_seq_length))
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

enum IdsRef<'a> {
    I64(&'a [i64]),
    I32(&'a [i32]),
}

/// Checks that ids and scores agree in batch size and runs `f(ids, seq_len, scores, vocab)`.
fn with_inputs(
    py: Python<'_>,
    ids: &Ids<'_>,
    scores: &mut PyReadwriteArray2<'_, f32>,
    f: impl FnOnce(IdsRef<'_>, usize, &mut [f32], usize) -> core::Result<()>,
) -> PyResult<()> {
    let (b, v) = (scores.shape()[0], scores.shape()[1]);
    let (ib, l) = ids.shape();
    if ib != b {
        return Err(argument_error(
            py,
            format!("`input_ids` has {ib} rows but `scores` has {b}: they must have the same batch size"),
        ));
    }
    let slice_err = |e: numpy::AsSliceError| argument_error(py, e.to_string());
    let buf = scores.as_slice_mut().map_err(slice_err)?;
    let ids = match ids {
        Ids::I64(a) => IdsRef::I64(a.as_slice().map_err(slice_err)?),
        Ids::I32(a) => IdsRef::I32(a.as_slice().map_err(slice_err)?),
    };
    f(ids, l, buf, v).map_err(|e| map_err(py, e))
}

/// Processors applied in order, in one call, in place, rows in parallel, with per-row history state
/// kept between calls.
///
/// Shared by several Python threads: a call never fails because another one is running. A chain without
/// history state runs concurrent calls in parallel (a call that finds the pipeline busy works with
/// scratch state of its own); a chain with history state (penalties, n-gram ban, sequence bias) serves
/// concurrent callers one at a time, waiting with the GIL released, so that its state follows one
/// sequence of calls.
#[pyclass(module = "fastlogits._native", name = "Pipeline", frozen)]
struct PyPipeline {
    procs: Vec<CoreProcessor>,
    inner: ForkSafeMutex<CorePipeline>,
    stateful: bool,
}

impl PyPipeline {
    /// Runs `f` on the pipeline (GIL released), or on a fresh one (state rebuilt from the history: the same
    /// results) for a stateless chain that another thread is using, or when a thread of a parent process
    /// held it at a `fork`.
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut CorePipeline) -> R + Send) -> R {
        py.detach(|| {
            let guard = match self.inner.try_lock() {
                Ok(g) => Some(g),
                Err(Busy::Held) if self.stateful => self.inner.lock(),
                Err(_) => None,
            };
            match guard {
                Some(mut p) => f(&mut p),
                None => f(&mut CorePipeline::new(self.procs.clone())),
            }
        })
    }
}

#[pymethods]
impl PyPipeline {
    #[new]
    fn new(processors: Vec<PyProcessor>) -> Self {
        let procs: Vec<CoreProcessor> = processors.into_iter().map(|p| p.inner).collect();
        let stateful = procs.iter().any(CoreProcessor::uses_history);
        PyPipeline { inner: ForkSafeMutex::new(CorePipeline::new(procs.clone())), procs, stateful }
    }

    /// Applies the chain to `scores` in place given the histories `input_ids` and returns True, when
    /// `scores` is a C-contiguous writable (B, V) float32 array and `input_ids` a C-contiguous (B, L)
    /// int64/int32 array; otherwise returns False without doing anything (the caller converts). On error
    /// `scores` is unchanged.
    fn __call__(
        &self,
        py: Python<'_>,
        input_ids: &Bound<'_, PyAny>,
        scores: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let (Some(ids), Some(mut s)) = (accept_ids(input_ids), accept_scores_rw(py, scores)?) else {
            return Ok(false);
        };
        with_inputs(py, &ids, &mut s, |ids, l, buf, v| match ids {
            IdsRef::I64(ids) => self.with(py, |p| p.apply(ids, l, buf, v)),
            IdsRef::I32(ids) => self.with(py, |p| p.apply(ids, l, buf, v)),
        })?;
        Ok(true)
    }

    /// `out` receives the chain applied to `scores`, which is left unchanged (transformers' processors
    /// return a new tensor). `scores`: C-contiguous (B, V) float32; `out`: a writable C-contiguous float32
    /// array of the same shape; returns False without doing anything when the arrays need converting.
    fn apply_into(
        &self,
        py: Python<'_>,
        input_ids: &Bound<'_, PyAny>,
        scores: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let (Some(ids), Some(src), Some(mut dst)) =
            (accept_ids(input_ids), accept_scores_ro(scores), accept_scores_rw(py, out)?)
        else {
            return Ok(false);
        };
        if src.shape() != dst.shape() {
            return Err(argument_error(
                py,
                format!("`out` has shape {:?} but `scores` has {:?}", dst.shape(), src.shape()),
            ));
        }
        let src = src.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
        with_inputs(py, &ids, &mut dst, |ids, l, buf, v| match ids {
            IdsRef::I64(ids) => self.with(py, |p| p.apply_from(ids, l, src, buf, v)),
            IdsRef::I32(ids) => self.with(py, |p| p.apply_from(ids, l, src, buf, v)),
        })?;
        Ok(true)
    }

    /// Applies the chain in place, then draws one token per row from the processed scores with the
    /// stream (seed, row, step): what `sample(scores, seed, step)` would draw after `__call__`, in one pass
    /// less. Returns None (and does nothing) when the arrays need converting, as `__call__`. With
    /// `write_scores=False` only the tokens are wanted: `scores` is scratch, its content afterwards
    /// unspecified (a small kept set is then not written out at all).
    #[pyo3(signature = (input_ids, scores, seed, step, write_scores = true))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        scores: &Bound<'py, PyAny>,
        seed: u64,
        step: u64,
        write_scores: bool,
    ) -> PyResult<Option<Bound<'py, PyArray1<i64>>>> {
        let (Some(ids), Some(mut s)) = (accept_ids(input_ids), accept_scores_rw(py, scores)?) else {
            return Ok(None);
        };
        let mut out = vec![0i64; s.shape()[0]];
        let o = &mut out;
        with_inputs(py, &ids, &mut s, |ids, l, buf, v| match ids {
            IdsRef::I64(ids) => {
                self.with(py, |p| p.apply_and_sample(ids, l, buf, v, seed, step, o, write_scores))
            }
            IdsRef::I32(ids) => {
                self.with(py, |p| p.apply_and_sample(ids, l, buf, v, seed, step, o, write_scores))
            }
        })?;
        Ok(Some(PyArray1::from_vec(py, out)))
    }

    /// Forgets the per-row histories (the next call rebuilds them).
    fn reset(&self, py: Python<'_>) {
        py.detach(|| {
            if let Some(mut p) = self.inner.lock() {
                p.reset(); // (an orphaned state is never used again: nothing to reset)
            }
        });
    }

    /// After a beam step: row i continues the history of row `indices[i]`.
    fn reorder(&self, py: Python<'_>, indices: &Bound<'_, PyAny>) -> PyResult<()> {
        let idx: Vec<usize> = indices
            .try_iter()
            .map_err(|_| {
                type_error(py, format!("`beam_idx` has to be a list of ints, but is {}", shown(indices)))
            })?
            .map(|i| {
                let i = i?;
                i.extract::<usize>().map_err(|_| {
                    argument_error(
                        py,
                        format!("`beam_idx` has to hold row indices >= 0, but holds {}", shown(&i)),
                    )
                })
            })
            .collect::<PyResult<_>>()?;
        // An orphaned state (see `with`) is never used again: the indices are still checked.
        py.detach(|| match self.inner.lock() {
            Some(mut p) => p.reorder(&idx),
            None => CorePipeline::new(Vec::new()).reorder(&idx),
        })
        .map_err(|e| map_err(py, e))
    }

    /// Whether any processor reads `input_ids` (their ids or their length); if none does, the caller may
    /// pass an empty (B, 0) history.
    #[getter]
    fn reads_input_ids(&self) -> bool {
        self.procs.iter().any(CoreProcessor::reads_input_ids)
    }

    /// Whether any processor reads the token ids themselves; if none does, only the history's length
    /// matters and the ids are neither read nor checked.
    #[getter]
    fn reads_history(&self) -> bool {
        self.stateful
    }

    fn __len__(&self) -> usize {
        self.procs.len()
    }

    fn __repr__(&self) -> String {
        format!("Pipeline({:?})", self.procs)
    }
}

/// One token per row drawn from softmax(scores), from the counter-based stream (seed, row, step);
/// None (nothing done) when `scores` is not a C-contiguous 2-D float32 array (the caller converts).
#[pyfunction]
fn sample<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    seed: u64,
    step: u64,
) -> PyResult<Option<Bound<'py, PyArray1<i64>>>> {
    let Some(s) = accept_scores_ro(scores) else {
        return Ok(None);
    };
    let (b, v) = (s.shape()[0], s.shape()[1]);
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let mut out = vec![0i64; b];
    py.detach(|| core::sampling::sample(buf, v, seed, step, &mut out)).map_err(|e| map_err(py, e))?;
    Ok(Some(PyArray1::from_vec(py, out)))
}

/// Index of the first maximum of each row; an all -inf row raises when `strict`, else gives 0
/// (as `torch.argmax` does).
#[pyfunction]
#[pyo3(signature = (scores, strict=true))]
fn greedy<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    strict: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let s = scores_ro(py, scores)?;
    let (b, v) = (s.shape()[0], s.shape()[1]);
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let mut out = vec![0i64; b];
    py.detach(|| core::sampling::greedy(buf, v, &mut out, strict)).map_err(|e| map_err(py, e))?;
    Ok(PyArray1::from_vec(py, out))
}

/// log_softmax of every row, as a new float32 array.
#[pyfunction]
fn log_softmax<'py>(py: Python<'py>, scores: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let s = scores_ro(py, scores)?;
    let (b, v) = (s.shape()[0], s.shape()[1]);
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let mut out = vec![0f32; s.len()]; // b * v
    py.detach(|| core::sampling::log_softmax(buf, v, &mut out)).map_err(|e| map_err(py, e))?;
    PyArray1::from_vec(py, out).reshape([b, v])
}

/// The n most likely tokens per row: (log-probabilities (B, n) float32, indices (B, n) int64).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn top_logprobs<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    n: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>)> {
    let s = scores_ro(py, scores)?;
    let (b, v) = (s.shape()[0], s.shape()[1]);
    // Checked before the (batch, n) outputs are allocated.
    let n = match usize::try_from(count(py, n, "n")?) {
        Ok(n) if (1..=v).contains(&n) => n,
        _ => return Err(argument_error(py, format!("`n` has to be in [1, V = {v}], but is {}", shown(n)))),
    };
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let len = b.saturating_mul(n); // <= b * v: the size of the scores
    let mut vals = vec![0f32; len];
    let mut idx = vec![0i64; len];
    py.detach(|| core::sampling::top_logprobs(buf, v, n, &mut vals, &mut idx)).map_err(|e| map_err(py, e))?;
    Ok((PyArray1::from_vec(py, vals).reshape([b, n])?, PyArray1::from_vec(py, idx).reshape([b, n])?))
}

/// Sets the number of threads of batched calls (0: the default, FASTLOGITS_NUM_THREADS or the CPUs).
#[pyfunction]
fn set_num_threads(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
    let max = core::pool::MAX_THREADS;
    let n = usize::try_from(count(py, n, "n")?)
        .map_err(|_| argument_error(py, format!("`n` has to be in [0, {max}], but is {}", shown(n))))?;
    core::set_num_threads(n).map_err(|e| map_err(py, e))
}

/// Raises if `FASTLOGITS_NUM_THREADS` is set to something other than an integer in [0, 4096].
#[pyfunction]
fn check_environment(py: Python<'_>) -> PyResult<()> {
    core::pool::threads_from_env().map(|_| ()).map_err(|e| map_err(py, e))
}

/// Number of threads used by batched calls.
#[pyfunction]
fn get_num_threads() -> usize {
    core::num_threads()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = new_exception(
        py,
        "FastLogitsError",
        PyTuple::new(py, [py.get_type::<PyException>()])?,
        "Base class of every error fastlogits raises.",
    )?;
    let arg = new_exception(
        py,
        "InvalidArgumentError",
        PyTuple::new(py, [base.clone(), py.get_type::<PyValueError>()])?,
        "A bad argument or input value (also a ValueError).",
    )?;
    let typ = new_exception(
        py,
        "InvalidTypeError",
        PyTuple::new(py, [base.clone(), py.get_type::<PyTypeError>()])?,
        "An argument of the wrong type, dtype or dimensionality (also a TypeError).",
    )?;
    m.add("FastLogitsError", &base)?;
    m.add("InvalidArgumentError", &arg)?;
    m.add("InvalidTypeError", &typ)?;
    let _ = BASE_ERROR.set(py, base.unbind());
    let _ = ARGUMENT_ERROR.set(py, arg.unbind());
    let _ = TYPE_ERROR.set(py, typ.unbind());

    m.add_class::<PyProcessor>()?;
    m.add_class::<PyPipeline>()?;
    m.add_class::<beam::PyBeamSearch>()?;
    m.add_function(wrap_pyfunction!(sample, m)?)?;
    m.add_function(wrap_pyfunction!(greedy, m)?)?;
    m.add_function(wrap_pyfunction!(log_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(top_logprobs, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(check_environment, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
