//! Choosing tokens (seeded sampling, greedy, log-softmax, top-n log-probabilities) and the thread count.

use fastlogits_core as core;
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{accept_scores_ro, count, scores_ro, seeds_of, shown};
use crate::errors::{argument_error, core_err};

/// One token per row drawn from softmax(scores), from the counter-based stream (seed, row, step), or
/// (keys[row], 0, step) with a key per row; None (nothing done) when `scores` is not a C-contiguous 2-D
/// float32 array (the caller converts).
#[pyfunction]
pub(crate) fn sample<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    seed: &Bound<'py, PyAny>,
    step: u64,
) -> PyResult<Option<Bound<'py, PyArray1<i64>>>> {
    let seeds = seeds_of(py, seed)?;
    let Some(s) = accept_scores_ro(scores) else {
        return Ok(None);
    };
    let (b, v) = (s.shape()[0], s.shape()[1]);
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let mut out = vec![0i64; b];
    py.detach(|| core::sampling::sample(buf, v, &seeds, step, &mut out)).map_err(core_err)?;
    Ok(Some(PyArray1::from_vec(py, out)))
}

/// Index of the first maximum of each row; an all -inf row raises when `strict`, else gives 0
/// (as `torch.argmax` does).
#[pyfunction]
#[pyo3(signature = (scores, strict=true))]
pub(crate) fn greedy<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    strict: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let s = scores_ro(py, scores)?;
    let (b, v) = (s.shape()[0], s.shape()[1]);
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let mut out = vec![0i64; b];
    py.detach(|| core::sampling::greedy(buf, v, &mut out, strict)).map_err(core_err)?;
    Ok(PyArray1::from_vec(py, out))
}

/// Mirostat 2.0 draws (one token per row); `mu`: the rows' float32 state, updated in place.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn mirostat_v2<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    seed: &Bound<'py, PyAny>,
    step: u64,
    tau: f32,
    eta: f32,
    mu: &Bound<'py, PyArray1<f32>>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let seeds = seeds_of(py, seed)?;
    let s = scores_ro(py, scores)?;
    let (b, v) = (s.shape()[0], s.shape()[1]);
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let mut m = mu.try_readwrite().map_err(|e| argument_error(py, format!("`mu`: {e}")))?;
    let m = m.as_slice_mut().map_err(|e| argument_error(py, format!("`mu`: {e}")))?;
    let mut out = vec![0i64; b];
    py.detach(|| core::sampling::mirostat_v2(buf, v, &seeds, step, tau, eta, m, &mut out))
        .map_err(core_err)?;
    Ok(PyArray1::from_vec(py, out))
}

/// log_softmax of every row, as a new float32 array.
#[pyfunction]
pub(crate) fn log_softmax<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let s = scores_ro(py, scores)?;
    let (b, v) = (s.shape()[0], s.shape()[1]);
    let buf = s.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
    let mut out = vec![0f32; s.len()]; // b * v
    py.detach(|| core::sampling::log_softmax(buf, v, &mut out)).map_err(core_err)?;
    PyArray1::from_vec(py, out).reshape([b, v])
}

/// The n most likely tokens per row: (log-probabilities (B, n) float32, indices (B, n) int64).
#[pyfunction]
#[allow(clippy::type_complexity)]
pub(crate) fn top_logprobs<'py>(
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
    py.detach(|| core::sampling::top_logprobs(buf, v, n, &mut vals, &mut idx)).map_err(core_err)?;
    Ok((PyArray1::from_vec(py, vals).reshape([b, n])?, PyArray1::from_vec(py, idx).reshape([b, n])?))
}

/// Sets the number of threads of batched calls (0: the default, FASTLOGITS_NUM_THREADS or the CPUs).
#[pyfunction]
pub(crate) fn set_num_threads(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
    let max = core::pool::MAX_THREADS;
    let n = usize::try_from(count(py, n, "n")?)
        .map_err(|_| argument_error(py, format!("`n` has to be in [0, {max}], but is {}", shown(n))))?;
    core::set_num_threads(n).map_err(core_err)
}

/// Raises if `FASTLOGITS_NUM_THREADS` is set to something other than an integer in [0, 4096].
#[pyfunction]
pub(crate) fn check_environment() -> PyResult<()> {
    core::pool::threads_from_env().map(|_| ()).map_err(core_err)
}

/// Number of threads used by batched calls.
#[pyfunction]
pub(crate) fn get_num_threads() -> usize {
    core::num_threads()
}
