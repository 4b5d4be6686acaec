//! `BeamSearch`: the beam search bookkeeping of `fastlogits_core::beam`, one `step` per decoding step.

use crate::lock::ForkSafeMutex;
use fastlogits_core::beam::{BeamConfig, BeamSearch as CoreBeamSearch, EarlyStopping};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString};

use crate::arrays::{borrow_f32_2d, dtype_name, seeds_of, usable};
use crate::errors::{argument_error, core_err, type_error};

/// Beam search state of `batch_size` entries x `num_beams` beams (transformers' `_beam_search`).
///
/// Shared by several threads, calls are served one at a time (the search is one sequence of steps).
#[pyclass(module = "fastlogits._native", name = "BeamSearch", frozen)]
pub(crate) struct PyBeamSearch {
    inner: ForkSafeMutex<CoreBeamSearch>,
}

impl PyBeamSearch {
    /// Runs `f` on the search, waiting (GIL released) while another thread uses it. A search a thread of
    /// the parent process was using at a `fork` cannot be continued in the child: an error.
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut CoreBeamSearch) -> R + Send) -> PyResult<R> {
        py.detach(|| self.inner.lock().map(|mut g| f(&mut g))).ok_or_else(|| {
            argument_error(py, "this BeamSearch was in use by another thread when the process forked")
        })
    }
}

fn early_stopping(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<EarlyStopping> {
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(if b.is_true() { EarlyStopping::True } else { EarlyStopping::False });
    }
    if let Ok(s) = v.cast::<PyString>() {
        if s.to_str()? == "never" {
            return Ok(EarlyStopping::Never);
        }
    }
    let shown = v.str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into());
    Err(argument_error(py, format!("`early_stopping` must be a boolean or 'never', but is {shown}.")))
}

fn borrow_prompt<'py>(py: Python<'py>, prompt: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray2<'py, i64>> {
    let arr = prompt.cast::<PyArray2<i64>>().map_err(|_| {
        type_error(
            py,
            format!(
                "`prompt` must be a 2-D int64 numpy array of shape (batch_size * num_beams, length), got {}",
                dtype_name(prompt)
            ),
        )
    })?;
    if !usable(arr) {
        return Err(argument_error(py, "`prompt` must be C-contiguous and aligned"));
    }
    arr.try_readonly().map_err(|e| argument_error(py, format!("`prompt` cannot be read: {e}")))
}

fn borrow_log_probs<'py>(
    py: Python<'py>,
    log_probs: &Bound<'py, PyAny>,
) -> PyResult<PyReadonlyArray2<'py, f32>> {
    borrow_f32_2d(py, log_probs, "log_probs", "(batch_size * num_beams, vocab)")
}

type StepResult<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, bool);
type FinalResult<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray1<f32>>, Bound<'py, PyArray2<i64>>);

#[pymethods]
impl PyBeamSearch {
    /// `prompt`: the (batch_size * num_beams, L) int64 prompt, already expanded to one row per beam.
    #[new]
    #[pyo3(signature = (
        prompt, num_beams, max_length, length_penalty=1.0, early_stopping=None,
        num_return_sequences=1, eos_token_id=None, pad_token_id=None, do_sample=false, seed=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        num_beams: usize,
        max_length: usize,
        length_penalty: f64,
        early_stopping: Option<&Bound<'_, PyAny>>,
        num_return_sequences: usize,
        eos_token_id: Option<Vec<i64>>,
        pad_token_id: Option<i64>,
        do_sample: bool,
        seed: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let seed = match seed {
            Some(s) => seeds_of(py, s)?,
            None => fastlogits_core::sampling::Seeds::Shared(0),
        };
        let es = match early_stopping {
            None => EarlyStopping::False,
            Some(v) => self::early_stopping(py, v)?,
        };
        let p = borrow_prompt(py, prompt)?;
        let (rows, len) = (p.shape()[0], p.shape()[1]);
        if num_beams == 0 {
            return Err(argument_error(py, "`num_beams` has to be a positive integer, but is 0"));
        }
        if rows == 0 || rows.checked_rem(num_beams) != Some(0) {
            return Err(argument_error(
                py,
                format!(
                    "`prompt` has {rows} rows: it must hold batch_size * num_beams rows (num_beams = {num_beams}), \
                     batch_size >= 1"
                ),
            ));
        }
        let cfg = BeamConfig {
            batch_size: rows.checked_div(num_beams).unwrap_or(0), // num_beams > 0
            num_beams,
            length_penalty,
            early_stopping: es,
            num_return_sequences,
            eos_token_ids: eos_token_id.unwrap_or_default(),
            pad_token_id,
            max_length,
            do_sample,
            seed,
        };
        let ids = p.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
        let inner = CoreBeamSearch::new(cfg, ids, len).map_err(core_err)?;
        Ok(PyBeamSearch { inner: ForkSafeMutex::new(inner) })
    }

    /// One decoding step. `log_probs`: float32 (batch_size * num_beams, V), C-contiguous, the
    /// log-softmax of the logits after the processors. Returns (next_tokens, beam_idx, done).
    fn step<'py>(&self, py: Python<'py>, log_probs: &Bound<'py, PyAny>) -> PyResult<StepResult<'py>> {
        let lp = borrow_log_probs(py, log_probs)?;
        let (rows, v) = (lp.shape()[0], lp.shape()[1]);
        let buf = lp.as_slice().map_err(|e| argument_error(py, e.to_string()))?;
        let out = self.with(py, |inner| {
            if rows != inner.rows() {
                return Err(fastlogits_core::Error::shape(format!(
                    "`log_probs` has {rows} rows but the beam search has batch_size * num_beams = {} rows",
                    inner.rows()
                )));
            }
            inner.step(buf, v)
        })?;
        let out = out.map_err(core_err)?;
        Ok((PyArray1::from_vec(py, out.next_tokens), PyArray1::from_vec(py, out.beam_idx), out.done))
    }

    /// The running sequences, int64 (batch_size * num_beams, cur_len): the processors' input_ids.
    fn running_sequences<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let (seqs, rows, len) =
            self.with(py, |inner| (inner.running_sequences().to_vec(), inner.rows(), inner.cur_len()))?;
        PyArray1::from_vec(py, seqs).reshape([rows, len])
    }

    /// The running beams' accumulated scores, float32 (batch_size * num_beams,).
    fn running_scores<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        Ok(PyArray1::from_vec(py, self.with(py, |inner| inner.running_scores().to_vec())?))
    }

    /// (sequences int64 (B * num_return_sequences, L), sequences_scores float32 (B * n,),
    /// beam_indices int64 (B * n, generated), -1 padded), as `generate` returns them.
    fn finalize<'py>(&self, py: Python<'py>) -> PyResult<FinalResult<'py>> {
        let f = self.with(py, |inner| inner.finalize())?;
        Ok((
            PyArray1::from_vec(py, f.sequences).reshape([f.rows, f.seq_len])?,
            PyArray1::from_vec(py, f.sequences_scores),
            PyArray1::from_vec(py, f.beam_indices).reshape([f.rows, f.generated])?,
        ))
    }

    /// Length of the running sequences (prompt included).
    fn cur_len(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |inner| inner.cur_len())
    }

    /// True once a step has ended the search.
    fn is_done(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |inner| inner.is_done())
    }

    /// Per batch entry: its finished hypotheses can no longer change.
    fn entries_done(&self, py: Python<'_>) -> PyResult<Vec<bool>> {
        self.with(py, |inner| inner.entries_done())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |inner| {
            let c = inner.config();
            format!(
                "BeamSearch(batch_size={}, num_beams={}, cur_len={}, max_length={}, done={})",
                c.batch_size,
                c.num_beams,
                inner.cur_len(),
                c.max_length,
                inner.is_done()
            )
        })
    }
}
