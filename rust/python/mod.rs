//! The Python bindings (behind the `python` feature): thin adapters between NumPy arrays and the
//! kernels. Each file has one job:
//!
//! - `args`: argument intake (arrays, dtypes, shapes, layout, lists, the step count);
//! - `claims`: overlap, writeability and the registry of arrays in use (with the safety
//!   argument for the unsafe code);
//! - `slices`: checked, claimed arrays as slices (the unsafe code);
//! - `kernels`: the one door to every optimizer and the export of their specs;
//! - `quantized`: 8-bit state arguments, and quantizing arrays for `lrfast.QuantizedState`;
//! - `clipping`: gradient norms and clipping;
//! - `runtime`: threads and SIMD level;
//! - `schedule`: learning-rate schedules;
//! - `torch`: `lrfast.torch`'s whole step over torch tensors.
//!
//! Every check runs before any array is written, and every failure is a Python exception that
//! names the argument at fault.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::Error;

mod args;
mod claims;
mod clipping;
mod kernels;
mod quantized;
mod runtime;
mod schedule;
mod slices;
mod torch;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

#[pymodule]
fn _lrfast(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add("QUANTIZATION_BLOCK", crate::quantize::BLOCK)?;
    module.add_function(wrap_pyfunction!(kernels::step, module)?)?;
    module.add_function(wrap_pyfunction!(kernels::optimizer_specs, module)?)?;
    module.add_function(wrap_pyfunction!(kernels::check_hyperparameter, module)?)?;
    module.add_function(wrap_pyfunction!(kernels::_memory_floor_step, module)?)?;
    module.add_function(wrap_pyfunction!(claims::first_overlap, module)?)?;
    module.add_function(wrap_pyfunction!(quantized::quantize_blocks, module)?)?;
    module.add_function(wrap_pyfunction!(quantized::dequantize_blocks, module)?)?;
    module.add_function(wrap_pyfunction!(quantized::code_map, module)?)?;
    module.add_function(wrap_pyfunction!(torch::torch_step, module)?)?;
    module.add_function(wrap_pyfunction!(clipping::clip_grad_norm, module)?)?;
    module.add_function(wrap_pyfunction!(clipping::clip_grad_value, module)?)?;
    module.add_function(wrap_pyfunction!(clipping::grad_norm, module)?)?;
    module.add_function(wrap_pyfunction!(runtime::set_num_threads, module)?)?;
    module.add_function(wrap_pyfunction!(runtime::get_num_threads, module)?)?;
    module.add_function(wrap_pyfunction!(runtime::simd_level, module)?)?;
    module.add_function(wrap_pyfunction!(runtime::_set_simd_level, module)?)?;
    module.add_class::<schedule::PySchedule>()?;
    Ok(())
}
