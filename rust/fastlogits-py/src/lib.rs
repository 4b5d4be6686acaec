//! Thin PyO3 bindings of `fastlogits-core`: validate and borrow while attached to the interpreter,
//! then run the core with the GIL released (`py.detach`).
//!
//! Arrays must already be C-contiguous, writable where written, float32 scores and int64/int32 ids;
//! the Python package (`fastlogits`) converts everything else (torch tensors, other dtypes, views)
//! before calling here. Errors: [`fastlogits_core::Error`] becomes `InvalidArgumentError` (a
//! `ValueError`), a wrong array type `InvalidTypeError` (a `TypeError`); both derive from
//! `FastLogitsError`.

mod beam;

use fastlogits_core::{self as core, PerRow, Pipeline as CorePipeline, Processor as CoreProcessor};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

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
    if !arr.is_c_contiguous() {
        return Err(argument_error(py, format!("`{name}` must be C-contiguous")));
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
    if !arr.is_c_contiguous() {
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
    if !arr.is_c_contiguous() {
        return None;
    }
    arr.try_readonly().ok()
}

/// `input_ids` borrowed if it is a C-contiguous 2-D int64 / int32 array, else `None` (converted in Python).
fn accept_ids<'py>(ids: &Bound<'py, PyAny>) -> Option<Ids<'py>> {
    if let Ok(a) = ids.cast::<PyArray2<i64>>() {
        return a.is_c_contiguous().then(|| Ids::I64(a.readonly()));
    }
    if let Ok(a) = ids.cast::<PyArray2<i32>>() {
        return a.is_c_contiguous().then(|| Ids::I32(a.readonly()));
    }
    None
}

/// A float (or int) for every row, or one per row.
fn per_row_f64(v: &Bound<'_, PyAny>) -> PyResult<PerRow<f64>> {
    if let Ok(x) = v.extract::<f64>() {
        return Ok(PerRow::All(x));
    }
    Ok(PerRow::Rows(v.extract::<Vec<f64>>()?))
}

fn per_row_i64(v: &Bound<'_, PyAny>) -> PyResult<PerRow<i64>> {
    if let Ok(x) = v.extract::<i64>() {
        return Ok(PerRow::All(x));
    }
    Ok(PerRow::Rows(v.extract::<Vec<i64>>()?))
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
        wrap(py, CoreProcessor::temperature(per_row_f64(temperature)?))
    }

    #[staticmethod]
    fn top_k(
        py: Python<'_>,
        top_k: &Bound<'_, PyAny>,
        filter_value: f32,
        min_tokens_to_keep: i64,
    ) -> PyResult<Self> {
        wrap(py, CoreProcessor::top_k(per_row_i64(top_k)?, filter_value, min_tokens_to_keep))
    }

    #[staticmethod]
    fn top_p(
        py: Python<'_>,
        top_p: &Bound<'_, PyAny>,
        filter_value: f32,
        min_tokens_to_keep: i64,
    ) -> PyResult<Self> {
        wrap(py, CoreProcessor::top_p(per_row_f64(top_p)?, filter_value, min_tokens_to_keep))
    }

    #[staticmethod]
    fn min_p(
        py: Python<'_>,
        min_p: &Bound<'_, PyAny>,
        filter_value: f32,
        min_tokens_to_keep: i64,
    ) -> PyResult<Self> {
        wrap(py, CoreProcessor::min_p(per_row_f64(min_p)?, filter_value, min_tokens_to_keep))
    }

    #[staticmethod]
    fn typical(py: Python<'_>, mass: f64, filter_value: f32, min_tokens_to_keep: i64) -> PyResult<Self> {
        wrap(py, CoreProcessor::typical(mass, filter_value, min_tokens_to_keep))
    }

    #[staticmethod]
    fn epsilon(py: Python<'_>, epsilon: f64, filter_value: f32, min_tokens_to_keep: i64) -> PyResult<Self> {
        wrap(py, CoreProcessor::epsilon(epsilon, filter_value, min_tokens_to_keep))
    }

    #[staticmethod]
    fn eta(py: Python<'_>, epsilon: f64, filter_value: f32, min_tokens_to_keep: i64) -> PyResult<Self> {
        wrap(py, CoreProcessor::eta(epsilon, filter_value, min_tokens_to_keep))
    }

    #[staticmethod]
    fn repetition_penalty(
        py: Python<'_>,
        penalty: &Bound<'_, PyAny>,
        prompt_ignore_length: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        wrap(py, CoreProcessor::repetition_penalty(per_row_f64(penalty)?, per_row_i64(prompt_ignore_length)?))
    }

    #[staticmethod]
    fn presence_penalty(py: Python<'_>, penalty: f64, prompt_length: i64) -> PyResult<Self> {
        wrap(py, CoreProcessor::presence_penalty(penalty, prompt_length))
    }

    #[staticmethod]
    fn frequency_penalty(py: Python<'_>, penalty: f64, prompt_length: i64) -> PyResult<Self> {
        wrap(py, CoreProcessor::frequency_penalty(penalty, prompt_length))
    }

    #[staticmethod]
    fn no_repeat_ngram(py: Python<'_>, ngram_size: i64) -> PyResult<Self> {
        wrap(py, CoreProcessor::no_repeat_ngram(ngram_size))
    }

    #[staticmethod]
    fn sequence_bias(py: Python<'_>, entries: Vec<(Vec<i64>, f64)>) -> PyResult<Self> {
        wrap(py, CoreProcessor::sequence_bias(entries))
    }

    #[staticmethod]
    #[pyo3(signature = (bad_words_ids, eos_token_id=None))]
    fn bad_words(
        py: Python<'_>,
        bad_words_ids: Vec<Vec<i64>>,
        eos_token_id: Option<Vec<i64>>,
    ) -> PyResult<Self> {
        wrap(py, CoreProcessor::bad_words(bad_words_ids, eos_token_id))
    }

    #[staticmethod]
    fn logit_bias(py: Python<'_>, bias: Vec<(i64, f64)>) -> PyResult<Self> {
        wrap(py, CoreProcessor::logit_bias(bias))
    }

    #[staticmethod]
    fn min_length(py: Python<'_>, min_length: i64, eos_token_id: Vec<i64>) -> PyResult<Self> {
        wrap(py, CoreProcessor::min_length(min_length, &eos_token_id))
    }

    #[staticmethod]
    fn min_new_tokens(
        py: Python<'_>,
        prompt_length_to_skip: i64,
        min_new_tokens: i64,
        eos_token_id: Vec<i64>,
    ) -> PyResult<Self> {
        wrap(py, CoreProcessor::min_new_tokens(prompt_length_to_skip, min_new_tokens, &eos_token_id))
    }

    #[staticmethod]
    fn suppress_tokens(py: Python<'_>, suppress_tokens: Vec<i64>) -> PyResult<Self> {
        wrap(py, CoreProcessor::suppress_tokens(&suppress_tokens))
    }

    #[staticmethod]
    fn suppress_tokens_at_begin(
        py: Python<'_>,
        begin_suppress_tokens: Vec<i64>,
        begin_index: i64,
    ) -> PyResult<Self> {
        wrap(py, CoreProcessor::suppress_tokens_at_begin(&begin_suppress_tokens, begin_index))
    }

    #[staticmethod]
    fn exponential_decay(
        py: Python<'_>,
        start: i64,
        factor: f64,
        eos_token_id: Vec<i64>,
        input_ids_seq_length: i64,
    ) -> PyResult<Self> {
        wrap(py, CoreProcessor::exponential_decay(start, factor, &eos_token_id, input_ids_seq_length))
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
#[pyclass(module = "fastlogits._native", name = "Pipeline")]
struct PyPipeline {
    inner: CorePipeline,
}

#[pymethods]
impl PyPipeline {
    #[new]
    fn new(processors: Vec<PyProcessor>) -> Self {
        PyPipeline { inner: CorePipeline::new(processors.into_iter().map(|p| p.inner).collect()) }
    }

    /// Applies the chain to `scores` in place given the histories `input_ids` and returns True, when
    /// `scores` is a C-contiguous writable (B, V) float32 array and `input_ids` a C-contiguous (B, L)
    /// int64/int32 array; otherwise returns False without doing anything (the caller converts). On error
    /// `scores` is unchanged.
    fn __call__(
        &mut self,
        py: Python<'_>,
        input_ids: &Bound<'_, PyAny>,
        scores: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let (Some(ids), Some(mut s)) = (accept_ids(input_ids), accept_scores_rw(py, scores)?) else {
            return Ok(false);
        };
        let inner = &mut self.inner;
        with_inputs(py, &ids, &mut s, |ids, l, buf, v| match ids {
            IdsRef::I64(ids) => py.detach(|| inner.apply(ids, l, buf, v)),
            IdsRef::I32(ids) => py.detach(|| inner.apply(ids, l, buf, v)),
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
        &mut self,
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
        let inner = &mut self.inner;
        let o = &mut out;
        with_inputs(py, &ids, &mut s, |ids, l, buf, v| match ids {
            IdsRef::I64(ids) => {
                py.detach(|| inner.apply_and_sample(ids, l, buf, v, seed, step, o, write_scores))
            }
            IdsRef::I32(ids) => {
                py.detach(|| inner.apply_and_sample(ids, l, buf, v, seed, step, o, write_scores))
            }
        })?;
        Ok(Some(PyArray1::from_vec(py, out)))
    }

    /// Forgets the per-row histories (the next call rebuilds them).
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// After a beam step: row i continues the history of row `indices[i]`.
    fn reorder(&mut self, py: Python<'_>, indices: Vec<i64>) -> PyResult<()> {
        let idx: Vec<usize> = indices
            .iter()
            .map(|&i| {
                usize::try_from(i).map_err(|_| argument_error(py, format!("reorder index {i} is negative")))
            })
            .collect::<PyResult<_>>()?;
        self.inner.reorder(&idx).map_err(|e| map_err(py, e))
    }

    fn __len__(&self) -> usize {
        self.inner.processors().len()
    }

    fn __repr__(&self) -> String {
        format!("Pipeline({:?})", self.inner.processors())
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
    let mut out = vec![0f32; b * v];
    py.detach(|| core::sampling::log_softmax(buf, v, &mut out)).map_err(|e| map_err(py, e))?;
    PyArray1::from_vec(py, out).reshape([b, v])
}

/// The n most likely tokens per row: (log-probabilities (B, n) float32, indices (B, n) int64).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn top_logprobs<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    n: usize,
) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>)> {
    let s = scores_ro(py, scores)?;
    let (b, v) = (s.shape()[0], s.shape()[1]);
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let mut vals = vec![0f32; b * n];
    let mut idx = vec![0i64; b * n];
    py.detach(|| core::sampling::top_logprobs(buf, v, n, &mut vals, &mut idx)).map_err(|e| map_err(py, e))?;
    Ok((PyArray1::from_vec(py, vals).reshape([b, n])?, PyArray1::from_vec(py, idx).reshape([b, n])?))
}

/// Sets the number of threads of batched calls (0: the default, FASTLOGITS_NUM_THREADS or the CPUs).
#[pyfunction]
fn set_num_threads(py: Python<'_>, n: usize) -> PyResult<()> {
    core::set_num_threads(n).map_err(|e| map_err(py, e))
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
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
