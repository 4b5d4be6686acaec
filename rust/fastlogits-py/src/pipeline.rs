//! `Pipeline`: processors applied in order in one native call, shared safely by Python threads.

use fastlogits_core::{self as core, Pipeline as CorePipeline, Processor as CoreProcessor};
use numpy::{PyArray1, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::{accept_ids, accept_scores_ro, accept_scores_rw, seeds_of, shown, Ids};
use crate::errors::{argument_error, core_err, type_error};
use crate::lock::{Busy, ForkSafeMutex};
use crate::processors::PyProcessor;

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
        return Err(core_err(core::Error::shape(format!(
            "`input_ids` has {ib} rows but `scores` has {b}: they must have the same batch size"
        ))));
    }
    let slice_err = |e: numpy::AsSliceError| argument_error(py, e.to_string());
    let buf = scores.as_slice_mut().map_err(slice_err)?;
    let ids = match ids {
        Ids::I64(a) => IdsRef::I64(a.as_slice().map_err(slice_err)?),
        Ids::I32(a) => IdsRef::I32(a.as_slice().map_err(slice_err)?),
    };
    f(ids, l, buf, v).map_err(core_err)
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
pub(crate) struct PyPipeline {
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
    ///
    /// `seed` / `step`: in a loop that draws afterwards with another sampler, the draw's streams, which
    /// processors that need randomness (XTC) then use (as in `sample`).
    #[pyo3(signature = (input_ids, scores, seed = None, step = 0))]
    fn __call__(
        &self,
        py: Python<'_>,
        input_ids: &Bound<'_, PyAny>,
        scores: &Bound<'_, PyAny>,
        seed: Option<&Bound<'_, PyAny>>,
        step: u64,
    ) -> PyResult<bool> {
        let seeds = seed.map(|s| seeds_of(py, s)).transpose()?;
        let (Some(ids), Some(mut s)) = (accept_ids(input_ids), accept_scores_rw(py, scores)?) else {
            return Ok(false);
        };
        with_inputs(py, &ids, &mut s, |ids, l, buf, v| match (ids, &seeds) {
            (IdsRef::I64(ids), None) => self.with(py, |p| p.apply(ids, l, buf, v)),
            (IdsRef::I32(ids), None) => self.with(py, |p| p.apply(ids, l, buf, v)),
            (IdsRef::I64(ids), Some(k)) => self.with(py, |p| p.apply_seeded(ids, l, buf, v, k, step)),
            (IdsRef::I32(ids), Some(k)) => self.with(py, |p| p.apply_seeded(ids, l, buf, v, k, step)),
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
    /// stream (seed, row, step) (or (keys[row], 0, step) with a uint64 array of per-row keys): what `sample(scores, seed, step)` would draw after `__call__`, in one pass
    /// less. Returns None (and does nothing) when the arrays need converting, as `__call__`. With
    /// `write_scores=False` only the tokens are wanted: `scores` is scratch, its content afterwards
    /// unspecified (a small kept set is then not written out at all).
    #[pyo3(signature = (input_ids, scores, seed, step, write_scores = true))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        scores: &Bound<'py, PyAny>,
        seed: &Bound<'py, PyAny>,
        step: u64,
        write_scores: bool,
    ) -> PyResult<Option<Bound<'py, PyArray1<i64>>>> {
        let seeds = seeds_of(py, seed)?;
        let (Some(ids), Some(mut s)) = (accept_ids(input_ids), accept_scores_rw(py, scores)?) else {
            return Ok(None);
        };
        let mut out = vec![0i64; s.shape()[0]];
        let o = &mut out;
        with_inputs(py, &ids, &mut s, |ids, l, buf, v| match ids {
            IdsRef::I64(ids) => {
                self.with(py, |p| p.apply_and_sample(ids, l, buf, v, &seeds, step, o, write_scores))
            }
            IdsRef::I32(ids) => {
                self.with(py, |p| p.apply_and_sample(ids, l, buf, v, &seeds, step, o, write_scores))
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
        .map_err(core_err)
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
