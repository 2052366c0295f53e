//! Slicing: checked and claimed arrays as Rust slices. This file holds the bindings' unsafe
//! code; each block relies on the checks of `kernels::run` / `clipping::with_grads` and the
//! claims of `claims` (whose module docs give the argument in full).

use half::{bf16, f16};
use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::args::{dtype_of, ArrayArg, DType, TensorArgs};
use super::quantized::QuantizedArg;
use crate::{clip, HalfFloat, Lanes, MixedLanes, QuantizedLanes, QuantizedSlot, Real, MAX_STATE};

pub(super) fn not_contiguous(_: numpy::AsSliceError) -> PyErr {
    PyValueError::new_err("arrays must be C-contiguous")
}

/// A checked array as a slice of `T`.
///
/// # Safety
/// `arg` must be C-contiguous, aligned, of dtype `T`, writeable, share no byte with any other
/// slice alive at the same time, and not be in use by another lrfast call: what `run` checks
/// and `claim_tensors` claims. The slice borrows `arg`, whose handle keeps the array alive.
// A `&mut` from a shared `ArrayArg`, as rust-numpy's `as_slice_mut` gives from `&PyArray`: the
// exclusivity comes from the checks and claims above, not from the borrow checker.
#[allow(clippy::mut_from_ref)]
pub(super) unsafe fn slice_mut<'a, T: Element>(arg: &'a ArrayArg<'_>) -> PyResult<&'a mut [T]> {
    let array = arg.array.cast::<PyArrayDyn<T>>()?;
    // SAFETY: as the caller guarantees.
    unsafe { array.as_slice_mut() }.map_err(not_contiguous)
}

/// A checked gradient as a shared slice of `T` (it may be read-only).
///
/// # Safety
/// As for [`slice_mut`], except that `arg` need not be writeable and may only be read.
pub(super) unsafe fn slice<'a, T: Element>(arg: &'a ArrayArg<'_>) -> PyResult<&'a [T]> {
    let array = arg.array.cast::<PyArrayDyn<T>>()?;
    // SAFETY: as the caller guarantees.
    unsafe { array.as_slice() }.map_err(not_contiguous)
}

/// A tensor's state arrays as slices of `T`, in their slots (unused slots empty).
///
/// # Safety
/// As for [`slice_mut`], for every state array of `tensor`.
#[allow(clippy::mut_from_ref)] // see `slice_mut`
pub(super) unsafe fn state_slices<'a, T: Element>(
    tensor: &'a TensorArgs<'_>,
) -> PyResult<[&'a mut [T]; MAX_STATE]> {
    let mut state: [&mut [T]; MAX_STATE] = [&mut [], &mut [], &mut []];
    for (slot, array) in &tensor.states {
        // SAFETY: as the caller guarantees.
        state[*slot] = unsafe { slice_mut(array)? };
    }
    Ok(state)
}

/// The non-empty tensors of a checked and claimed call, as slices of `T`.
pub(super) fn plain_lanes<'a, T: Real + Element>(
    tensors: &'a [TensorArgs<'_>],
) -> PyResult<Vec<Lanes<'a, T>>> {
    tensors
        .iter()
        .filter(|t| t.param.array.len() > 0)
        .map(|tensor| {
            // SAFETY: `run` checked every array's dtype, layout and shape, and `claim_tensors`
            // that they are pairwise disjoint, writeable where written, and not in use by
            // another call.
            unsafe {
                Ok(Lanes {
                    param: slice_mut(&tensor.param)?,
                    grad: slice(&tensor.grad)?,
                    state: state_slices(tensor)?,
                })
            }
        })
        .collect()
}

/// The non-empty tensors of a checked and claimed mixed-precision call: 16-bit parameters and
/// gradients, float32 states and master copies.
pub(super) fn mixed_lanes<'a, H: HalfFloat + Element>(
    tensors: &'a [TensorArgs<'_>],
) -> PyResult<Vec<MixedLanes<'a, H>>> {
    tensors
        .iter()
        .filter(|t| t.param.array.len() > 0)
        .map(|tensor| {
            // SAFETY: as in `plain_lanes`.
            unsafe {
                Ok(MixedLanes {
                    param: slice_mut(&tensor.param)?,
                    grad: slice(&tensor.grad)?,
                    master: tensor.master.as_ref().map(|m| slice_mut(m)).transpose()?,
                    state: state_slices(tensor)?,
                })
            }
        })
        .collect()
}

/// The non-empty tensors of a checked and claimed call with 8-bit state: float32 parameters
/// and gradients, and each used slot's codes and block scales.
pub(super) fn quantized_lanes<'a>(
    tensors: &'a [TensorArgs<'_, QuantizedArg<'_>>],
) -> PyResult<Vec<QuantizedLanes<'a>>> {
    tensors
        .iter()
        .filter(|t| t.param.array.len() > 0)
        .map(|tensor| {
            let mut state = [
                QuantizedSlot::empty(),
                QuantizedSlot::empty(),
                QuantizedSlot::empty(),
            ];
            for (slot, arg) in &tensor.states {
                // SAFETY: `quantized::run` checked every array's dtype, layout and shape, and
                // `claim_arrays` that they are pairwise disjoint, writeable where written, and
                // not in use by another call.
                state[*slot] = unsafe {
                    QuantizedSlot {
                        codes: slice_mut(&arg.codes)?,
                        absmax: slice_mut(&arg.absmax)?,
                    }
                };
            }
            // SAFETY: as above.
            unsafe {
                Ok(QuantizedLanes {
                    param: slice_mut(&tensor.param)?,
                    grad: slice(&tensor.grad)?,
                    state,
                })
            }
        })
        .collect()
}

/// The non-empty gradient arrays of a call, as slices of their dtype.
pub(super) enum GradSlices<'a> {
    F32(Vec<&'a mut [f32]>),
    F64(Vec<&'a mut [f64]>),
    F16(Vec<&'a mut [f16]>),
    BF16(Vec<&'a mut [bf16]>),
}

impl<'a> GradSlices<'a> {
    /// # Safety
    /// `args` must have passed `checked_grads`, be writeable, pairwise disjoint and not in use
    /// by another lrfast call.
    pub(super) unsafe fn new(py: Python<'_>, args: &'a [ArrayArg<'_>]) -> PyResult<Self> {
        #[allow(clippy::mut_from_ref)] // see `slice_mut`
        fn slices<'a, T: Element>(args: &'a [ArrayArg<'_>]) -> PyResult<Vec<&'a mut [T]>> {
            args.iter()
                .filter(|arg| arg.array.len() > 0)
                // SAFETY: as the caller of `GradSlices::new` guarantees.
                .map(|arg| unsafe { slice_mut(arg) })
                .collect()
        }
        let Some(first) = args.first() else {
            return Ok(GradSlices::F32(Vec::new()));
        };
        Ok(match dtype_of(py, first)? {
            DType::F32 => GradSlices::F32(slices(args)?),
            DType::F64 => GradSlices::F64(slices(args)?),
            DType::F16 => GradSlices::F16(slices(args)?),
            DType::BF16 => GradSlices::BF16(slices(args)?),
        })
    }

    pub(super) fn norm(&self, norm_type: f64) -> f64 {
        fn norm<T: clip::Magnitude>(grads: &[&mut [T]], norm_type: f64) -> f64 {
            let views: Vec<&[T]> = grads.iter().map(|g| &**g).collect();
            clip::total_norm(&views, norm_type)
        }
        match self {
            GradSlices::F32(g) => norm(g, norm_type),
            GradSlices::F64(g) => norm(g, norm_type),
            GradSlices::F16(g) => norm(g, norm_type),
            GradSlices::BF16(g) => norm(g, norm_type),
        }
    }

    pub(super) fn scale(&mut self, factor: f64) {
        match self {
            GradSlices::F32(g) => clip::scale(g, factor),
            GradSlices::F64(g) => clip::scale(g, factor),
            GradSlices::F16(g) => clip::scale_half(g, factor),
            GradSlices::BF16(g) => clip::scale_half(g, factor),
        }
    }

    pub(super) fn clamp(&mut self, limit: f64) {
        match self {
            GradSlices::F32(g) => clip::clamp(g, limit),
            GradSlices::F64(g) => clip::clamp(g, limit),
            GradSlices::F16(g) => clip::clamp_half(g, limit),
            GradSlices::BF16(g) => clip::clamp_half(g, limit),
        }
    }
}
