//! Gradient clipping and the global gradient norm, over one array or a list.

use half::{bf16, f16};
use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::args::{checked_grads, dtype_of, flag, real, ArrayArg, DType};
use super::claims::{byte_ranges, check_no_overlap, check_writeable, claim, in_flight};
use super::slices::{not_contiguous, GradSlices};
use crate::clip;

// The arguments PyO3 parses for these functions, each refusing `bool` and strings where a
// number is due (and numbers where a flag is), naming itself.
fn max_norm(object: &Bound<'_, PyAny>) -> PyResult<f64> {
    real("max_norm", object)
}

fn norm_type(object: &Bound<'_, PyAny>) -> PyResult<f64> {
    real("norm_type", object)
}

fn clip_value(object: &Bound<'_, PyAny>) -> PyResult<f64> {
    real("clip_value", object)
}

fn error_if_nonfinite(object: &Bound<'_, PyAny>) -> PyResult<bool> {
    flag("error_if_nonfinite", object)
}

/// The global `norm_type`-norm of `grads` (one array or a list), which are only read: what
/// `clip_grad_norm` computes, for clipping fused into an update with `grad_scale`.
#[pyfunction]
#[pyo3(signature = (grads, norm_type=2.0))]
pub(super) fn grad_norm(
    py: Python<'_>,
    grads: &Bound<'_, PyAny>,
    #[pyo3(from_py_with = norm_type)] norm_type: f64,
) -> PyResult<f64> {
    check_norm_type(norm_type)?;
    let args = checked_grads(py, grads)?;
    in_flight::check(&byte_ranges(args.iter().map(|arg| (false, arg))))?;
    fn norm<T: Element + clip::Magnitude>(args: &[ArrayArg<'_>], norm_type: f64) -> PyResult<f64> {
        let mut slices = Vec::with_capacity(args.len());
        for arg in args.iter().filter(|arg| arg.array.len() > 0) {
            let array = arg.array.cast::<PyArrayDyn<T>>()?;
            // SAFETY: contiguous, aligned, of dtype `T` (checked by `checked_grads` and the
            // cast), only read, and no lrfast call is writing them (checked above; the GIL is
            // held throughout, so none can start).
            slices.push(unsafe { array.as_slice() }.map_err(not_contiguous)?);
        }
        Ok(clip::total_norm(&slices, norm_type))
    }
    let Some(first) = args.first() else {
        return Ok(0.0);
    };
    match dtype_of(py, first)? {
        DType::F32 => norm::<f32>(&args, norm_type),
        DType::F64 => norm::<f64>(&args, norm_type),
        DType::F16 => norm::<f16>(&args, norm_type),
        DType::BF16 => norm::<bf16>(&args, norm_type),
    }
}

pub(super) fn check_norm_type(norm_type: f64) -> PyResult<()> {
    if norm_type.is_nan() || norm_type <= 0.0 {
        return Err(PyValueError::new_err(format!(
            "norm_type must be > 0 (or inf), got {norm_type}"
        )));
    }
    Ok(())
}

/// Gathers `grads` (one array or a list) as writeable, contiguous, non-overlapping arrays of
/// one float dtype, not in use by another call, and runs `work` on their slices (without the GIL
/// when they are large).
pub(super) fn with_grads<R: Send>(
    py: Python<'_>,
    grads: &Bound<'_, PyAny>,
    work: impl FnOnce(&mut GradSlices<'_>) -> PyResult<R> + Send,
) -> PyResult<R> {
    let args = checked_grads(py, grads)?;
    for arg in &args {
        check_writeable(arg, "clipping")?;
    }
    check_no_overlap(&args)?;
    let total: usize = args.iter().map(|arg| arg.array.len()).sum();
    let registration = claim(byte_ranges(args.iter().map(|arg| (true, arg))), total)?;
    // SAFETY: checked above: one float dtype, contiguous, aligned, writeable, pairwise disjoint,
    // and claimed against other lrfast calls; `args` keeps the arrays alive.
    let mut slices = unsafe { GradSlices::new(py, &args)? };
    let result = if registration.is_some() {
        py.detach(|| work(&mut slices))
    } else {
        work(&mut slices)
    };
    drop(registration);
    result
}

/// Scales `grads` in place so that their global `norm_type`-norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_` semantics); returns the norm before clipping.
#[pyfunction]
#[pyo3(signature = (grads, max_norm, norm_type=2.0, error_if_nonfinite=false))]
pub(super) fn clip_grad_norm(
    py: Python<'_>,
    grads: &Bound<'_, PyAny>,
    #[pyo3(from_py_with = max_norm)] max_norm: f64,
    #[pyo3(from_py_with = norm_type)] norm_type: f64,
    #[pyo3(from_py_with = error_if_nonfinite)] error_if_nonfinite: bool,
) -> PyResult<f64> {
    if !(max_norm >= 0.0 && max_norm.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "max_norm must be finite and >= 0, got {max_norm}"
        )));
    }
    check_norm_type(norm_type)?;
    with_grads(py, grads, |grads| {
        let norm = grads.norm(norm_type);
        if error_if_nonfinite && !norm.is_finite() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "the total norm of order {norm_type} of the gradients is non-finite ({norm}), \
                 so it cannot be clipped; pass error_if_nonfinite=False to clip anyway"
            )));
        }
        let coef = clip::clip_coefficient(max_norm, norm);
        // `coef` is NaN for a NaN norm: multiplying spreads the NaN, as PyTorch does.
        if coef.is_nan() || coef < 1.0 {
            grads.scale(coef);
        }
        Ok(norm)
    })
}

/// Clamps every gradient element to `[-clip_value, clip_value]` in place (NaN kept).
#[pyfunction]
pub(super) fn clip_grad_value(
    py: Python<'_>,
    grads: &Bound<'_, PyAny>,
    #[pyo3(from_py_with = clip_value)] clip_value: f64,
) -> PyResult<()> {
    if clip_value.is_nan() || clip_value < 0.0 {
        return Err(PyValueError::new_err(format!(
            "clip_value must be >= 0, got {clip_value}"
        )));
    }
    with_grads(py, grads, |grads| {
        grads.clamp(clip_value);
        Ok(())
    })
}
