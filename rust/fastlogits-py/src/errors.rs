//! The exceptions of fastlogits, and the one mapping of core errors to them.
//!
//! `FastLogitsError` is the base of every exception; `InvalidArgumentError` (also a `ValueError`) and
//! `InvalidTypeError` (also a `TypeError`) are what callers catch. Each core [`core::Error`] variant has
//! its own class (polars' pattern), a subclass of `InvalidArgumentError` except `FastLogitsInternalError`
//! (a bug in fastlogits, also a `RuntimeError`).

use fastlogits_core as core;
use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// The classes, created once when the module is imported.
struct Classes {
    argument: Py<PyType>,
    type_: Py<PyType>,
    parameter: Py<PyType>,
    shape: Py<PyType>,
    value: Py<PyType>,
    overflow: Py<PyType>,
    internal: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

/// `type(name, bases, {...})`: lets an exception derive from both our base class and a builtin one.
fn new_exception<'py>(
    m: &Bound<'py, PyModule>,
    name: &str,
    bases: &[Bound<'py, PyType>],
    doc: &str,
) -> PyResult<Bound<'py, PyType>> {
    let py = m.py();
    let dict = PyDict::new(py);
    dict.set_item("__doc__", doc)?;
    dict.set_item("__module__", "fastlogits")?;
    let cls = py.get_type::<PyType>().call1((name, PyTuple::new(py, bases)?, dict))?.cast_into::<PyType>()?;
    m.add(name, &cls)?;
    Ok(cls)
}

/// Creates the classes and adds them to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = new_exception(
        m,
        "FastLogitsError",
        &[py.get_type::<PyException>()],
        "Base class of every error fastlogits raises.",
    )?;
    let argument = new_exception(
        m,
        "InvalidArgumentError",
        &[base.clone(), py.get_type::<PyValueError>()],
        "A bad argument or input value (also a ValueError).",
    )?;
    let type_ = new_exception(
        m,
        "InvalidTypeError",
        &[base.clone(), py.get_type::<PyTypeError>()],
        "An argument of the wrong type, dtype or dimensionality (also a TypeError).",
    )?;
    let sub = |name: &str, doc: &str| new_exception(m, name, std::slice::from_ref(&argument), doc);
    let parameter = sub(
        "ParameterError",
        "A parameter outside the range its processor accepts (an InvalidArgumentError).",
    )?;
    let shape = sub("ShapeError", "Arrays whose shapes do not fit together (an InvalidArgumentError).")?;
    let value = sub(
        "InvalidValueError",
        "Input values without a meaning: NaN or +inf scores, token ids outside the vocabulary, a row with no \
         token left to draw (an InvalidArgumentError).",
    )?;
    let overflow = sub(
        "FloatOverflowError",
        "A processor turned valid scores into NaN / +inf (float32 overflow); the scores are left unchanged \
         (an InvalidArgumentError).",
    )?;
    let internal = new_exception(
        m,
        "FastLogitsInternalError",
        &[base.clone(), py.get_type::<PyRuntimeError>()],
        "A bug in fastlogits (please report it), not a mistake of the caller.",
    )?;
    let classes = Classes {
        argument: argument.unbind(),
        type_: type_.unbind(),
        parameter: parameter.unbind(),
        shape: shape.unbind(),
        value: value.unbind(),
        overflow: overflow.unbind(),
        internal: internal.unbind(),
    };
    let _ = CLASSES.set(py, classes);
    Ok(())
}

fn raise(py: Python<'_>, pick: impl Fn(&Classes) -> &Py<PyType>, msg: String) -> PyErr {
    match CLASSES.get(py) {
        Some(c) => PyErr::from_type(pick(c).bind(py).clone(), msg),
        None => PyRuntimeError::new_err(msg), // (only before the module is initialized)
    }
}

/// A bad argument or input detected in the bindings (`InvalidArgumentError`).
pub(crate) fn argument_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    raise(py, |c| &c.argument, msg.into())
}

/// An argument of the wrong type (`InvalidTypeError`).
pub(crate) fn type_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    raise(py, |c| &c.type_, msg.into())
}

/// A core error, raised as the class of its variant (`result.map_err(core_err)?`).
pub(crate) struct CoreError(pub(crate) core::Error);

pub(crate) fn core_err(e: core::Error) -> PyErr {
    PyErr::from(CoreError(e))
}

impl From<CoreError> for PyErr {
    fn from(CoreError(e): CoreError) -> PyErr {
        Python::attach(|py| {
            let msg = e.to_string();
            match e {
                core::Error::InvalidParameter(_) => raise(py, |c| &c.parameter, msg),
                core::Error::Shape(_) => raise(py, |c| &c.shape, msg),
                core::Error::InvalidValue(_) => raise(py, |c| &c.value, msg),
                core::Error::Overflow(_) => raise(py, |c| &c.overflow, msg),
                core::Error::Internal(_) => raise(py, |c| &c.internal, msg),
            }
        })
    }
}
