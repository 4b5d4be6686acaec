//! Arrays and arguments from Python: what the core can borrow as it is (anything else is converted by the
//! Python layer), and conversions of Python values to the core's types with messages that name the
//! argument.

use std::borrow::Cow;

use fastlogits_core::sampling::Seeds;
use fastlogits_core::PerRow;
use numpy::{
    PyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyInt;

use crate::errors::{argument_error, type_error};

/// `seed`: an int in [0, 2**64) (one seed for the batch) or a 1-D uint64 array (a key per row).
pub(crate) fn seeds_of(py: Python<'_>, seed: &Bound<'_, PyAny>) -> PyResult<Seeds<'static>> {
    if seed.is_instance_of::<PyInt>() {
        return seed.extract::<u64>().map(Seeds::Shared).map_err(|_| {
            argument_error(py, format!("`seed` has to be an int in [0, 2**64), but is {}", shown(seed)))
        });
    }
    match seed.cast::<PyArray1<u64>>() {
        Ok(keys) => Ok(Seeds::PerRow(Cow::Owned(keys.readonly().as_array().to_vec()))),
        Err(_) => Err(type_error(
            py,
            format!(
                "`seed` has to be an int in [0, 2**64) or a 1-D uint64 array of per-row keys, got {}",
                dtype_name(seed)
            ),
        )),
    }
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

pub(crate) fn scores_ro<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
) -> PyResult<PyReadonlyArray2<'py, f32>> {
    borrow_f32_2d(py, scores, "scores", "(batch, vocab)")
}

pub(crate) enum Ids<'py> {
    I64(PyReadonlyArray2<'py, i64>),
    I32(PyReadonlyArray2<'py, i32>),
}

impl Ids<'_> {
    pub(crate) fn shape(&self) -> (usize, usize) {
        let s = match self {
            Ids::I64(a) => a.shape(),
            Ids::I32(a) => a.shape(),
        };
        (s[0], s[1])
    }
}

/// `scores` borrowed for writing if it is already what the core takes (a C-contiguous, writable 2-D
/// float32 array), else `None`: the Python layer then converts it (torch tensors, other dtypes, views).
pub(crate) fn accept_scores_rw<'py>(
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

pub(crate) fn accept_scores_ro<'py>(scores: &Bound<'py, PyAny>) -> Option<PyReadonlyArray2<'py, f32>> {
    let arr = scores.cast::<PyArray2<f32>>().ok()?;
    if !usable(arr) {
        return None;
    }
    arr.try_readonly().ok()
}

/// `input_ids` borrowed if it is a C-contiguous 2-D int64 / int32 array, else `None` (converted in Python).
pub(crate) fn accept_ids<'py>(ids: &Bound<'py, PyAny>) -> Option<Ids<'py>> {
    if let Ok(a) = ids.cast::<PyArray2<i64>>() {
        return if usable(a) { a.try_readonly().ok().map(Ids::I64) } else { None };
    }
    if let Ok(a) = ids.cast::<PyArray2<i32>>() {
        return if usable(a) { a.try_readonly().ok().map(Ids::I32) } else { None };
    }
    None
}

/// A float (or int) for every row, or one per row.
pub(crate) fn per_row_f64(py: Python<'_>, v: &Bound<'_, PyAny>, name: &str) -> PyResult<PerRow<f64>> {
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

pub(crate) fn per_row_count(py: Python<'_>, v: &Bound<'_, PyAny>, name: &str) -> PyResult<PerRow<i64>> {
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
pub(crate) fn shown(v: &Bound<'_, PyAny>) -> String {
    v.repr().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
}

/// An integer count or length. Python ints beyond the i64 range saturate: such a count means "all of
/// them" (`top_k`, `min_tokens_to_keep`, `ngram_size`, lengths...), exactly as transformers treats an
/// unbounded Python int, and a huge negative one is rejected by the range check that follows.
pub(crate) fn count(py: Python<'_>, v: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    if let Ok(x) = v.extract::<i64>() {
        return Ok(x);
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(if v.lt(0)? { i64::MIN } else { i64::MAX });
    }
    Err(type_error(py, format!("`{name}` has to be an int, but is {}", shown(v))))
}

/// A list of token ids (range-checked by the core); ids beyond the i64 range are reported here.
pub(crate) fn token_list(py: Python<'_>, v: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<i64>> {
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
