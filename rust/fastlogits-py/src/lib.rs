//! Thin PyO3 bindings of `fastlogits-core`: validate and borrow while attached to the interpreter,
//! then run the core with the GIL released (`py.detach`).
//!
//! Arrays must already be C-contiguous, aligned, writable where written, float32 scores and int64/int32
//! ids; the Python package (`fastlogits`) converts everything else (torch tensors, other dtypes, views)
//! before calling here. Errors: see `errors` (one class per core error variant).
//!
//! Modules: `errors` (exceptions, the core error mapping), `arrays` (borrowing arrays, converting
//! arguments), `processors`, `pipeline`, `sampling`, `beam` (the Python classes and functions), `lock`
//! (the fork-safe mutex of shared native objects). This file only registers them.

// Sizes come from users (shapes, counts): arithmetic on them is checked.
#![warn(clippy::arithmetic_side_effects)]

mod arrays;
mod beam;
mod errors;
mod lock;
mod pipeline;
mod processors;
mod sampling;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<processors::PyProcessor>()?;
    m.add_class::<pipeline::PyPipeline>()?;
    m.add_class::<beam::PyBeamSearch>()?;
    m.add_function(wrap_pyfunction!(sampling::sample, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::greedy, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::mirostat_v2, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::log_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::top_logprobs, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(sampling::check_environment, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
