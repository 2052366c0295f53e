//! 8-bit state: `lrfast.QuantizedState` arguments of the kernels, and the block-wise
//! quantization the Python class is built with.

use numpy::{
    dtype, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArrayDyn,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use numpy::PyArrayDescrMethods;

use super::args::{as_array, as_sequence, check_layout, check_like, gather_with};
use super::args::{ArrayArg, Name};
use super::claims::{byte_ranges, claim_arrays, in_flight};
use super::kernels::run_update;
use super::slices::quantized_lanes;
use crate::optim::Defined;
use crate::quantize::{self, BLOCK};
use crate::step_quantized;

/// One 8-bit state argument: the codes (uint8, the parameter's shape), the block scales
/// (float32, one per block of 256) and the map they were made with.
pub(super) struct QuantizedArg<'py> {
    pub codes: ArrayArg<'py>,
    pub absmax: ArrayArg<'py>,
    pub signed: bool,
}

/// `lrfast.quantized.QuantizedState`, imported once.
fn state_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CLASS.import(py, "lrfast.quantized", "QuantizedState")
}

/// Whether a call's states are 8-bit: any given state (or the first of a list) is a
/// `QuantizedState`. The rest are then checked to be ones too.
pub(super) fn in_call(py: Python<'_>, states: &[Option<&Bound<'_, PyAny>>]) -> PyResult<bool> {
    let class = state_class(py)?;
    for object in states.iter().flatten() {
        let first = match as_sequence(object) {
            Some(items) => items.into_iter().next(),
            None => Some((*object).clone()),
        };
        if let Some(first) = first {
            if first.is_instance(class)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn as_quantized<'py>(name: Name, object: &Bound<'py, PyAny>) -> PyResult<QuantizedArg<'py>> {
    if !object.is_instance(state_class(object.py())?)? {
        let type_name = object
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(PyTypeError::new_err(format!(
            "{name} must be an lrfast.QuantizedState, got {type_name}: with 8-bit state, every \
             state of the call is 8-bit"
        )));
    }
    Ok(QuantizedArg {
        codes: as_array(name.part("codes"), &object.getattr("codes")?)?,
        absmax: as_array(name.part("absmax"), &object.getattr("absmax")?)?,
        signed: object.getattr("signed")?.extract()?,
    })
}

/// Checks, claims and updates one call with 8-bit state (one tensor, or lists). A slot its
/// spec keeps in full precision is refused with the spec's reason.
pub(super) fn run<O: Defined>(
    py: Python<'_>,
    optimizer: &O,
    update: u64,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    states: &[Option<&Bound<'_, PyAny>>],
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    if master.is_some_and(|m| !m.is_none()) {
        return Err(PyValueError::new_err(
            "master is for float16 and bfloat16 parameters; 8-bit state updates float32 \
             parameters in place",
        ));
    }
    let slots = optimizer.slots();
    for (slot, spec) in O::SPEC.slots.iter().enumerate() {
        if let (Some(reason), true) = (spec.full_precision, slots.used[slot]) {
            return Err(PyValueError::new_err(format!(
                "{} cannot be stored in 8 bits: {reason}",
                slots.names[slot]
            )));
        }
    }
    let tensors = gather_with(slots, param, grad, states, None, as_quantized)?;
    let f32_descr = dtype::<f32>(py);
    for tensor in &tensors {
        let param = &tensor.param;
        if !param.array.dtype().is_equiv_to(&f32_descr) {
            return Err(PyTypeError::new_err(format!(
                "{} has dtype {}; 8-bit state updates float32 parameters",
                param.name,
                param.array.dtype()
            )));
        }
        check_layout(param)?;
        check_like(&tensor.grad, param, &f32_descr)?;
        for (slot, state) in &tensor.states {
            check_state(state, param, slots.names[*slot], slots.signed[*slot])?;
        }
    }
    let arrays: Vec<(bool, &ArrayArg<'_>)> = tensors
        .iter()
        .flat_map(|tensor| {
            [(true, &tensor.param), (false, &tensor.grad)]
                .into_iter()
                .chain(
                    tensor
                        .states
                        .iter()
                        .flat_map(|(_, s)| [(true, &s.codes), (true, &s.absmax)]),
                )
        })
        .collect();
    let total: usize = tensors.iter().map(|t| t.param.array.len()).sum();
    let registration = claim_arrays(&arrays, total)?;
    let lanes = quantized_lanes(&tensors)?;
    run_update(py, registration.is_some(), || {
        step_quantized(optimizer, update, lanes)
    })
}

/// Checks one 8-bit state against its parameter and its slot.
fn check_state(
    state: &QuantizedArg<'_>,
    param: &ArrayArg<'_>,
    slot: &str,
    signed: bool,
) -> PyResult<()> {
    let py = param.array.py();
    if state.signed != signed {
        let (made, needs) = if signed {
            ("an unsigned", "can be negative: make it with signed=True")
        } else {
            ("a signed", "is never negative: make it with signed=False")
        };
        return Err(PyValueError::new_err(format!(
            "{} holds {made} map, but {slot} {needs}",
            Name::new(state.codes.name.base, state.codes.name.index)
        )));
    }
    let codes = &state.codes;
    if !codes.array.dtype().is_equiv_to(&dtype::<u8>(py))
        || codes.array.shape() != param.array.shape()
    {
        return Err(PyValueError::new_err(format!(
            "{} has dtype {} and shape {:?}; {} needs uint8 and {:?}",
            codes.name,
            codes.array.dtype(),
            codes.array.shape(),
            param.name,
            param.array.shape()
        )));
    }
    check_layout(codes)?;
    let absmax = &state.absmax;
    let blocks = param.array.len().div_ceil(BLOCK);
    if !absmax.array.dtype().is_equiv_to(&dtype::<f32>(py))
        || absmax.array.ndim() != 1
        || absmax.array.len() != blocks
    {
        return Err(PyValueError::new_err(format!(
            "{} has dtype {} and shape {:?}; {} needs float32 and ({blocks},), one scale per \
             block of {BLOCK}",
            absmax.name,
            absmax.array.dtype(),
            absmax.array.shape(),
            param.name,
        )));
    }
    check_layout(absmax)
}

/// Refuses arrays that an update running without the GIL is writing now (another thread's
/// kernel call on this state): reading them would race with its writes. These functions keep
/// the GIL, so no update can start while they read.
fn not_being_updated(arrays: &[(&'static str, &Bound<'_, PyUntypedArray>)]) -> PyResult<()> {
    let args: Vec<ArrayArg<'_>> = arrays
        .iter()
        .map(|(name, array)| ArrayArg {
            name: Name::new(name, None),
            array: (*array).clone(),
        })
        .collect();
    in_flight::check(&byte_ranges(args.iter().map(|arg| (false, arg))))
}

/// Codes (uint8, the values' shape) and block scales (float32).
type Blocks<'py> = (Bound<'py, PyArrayDyn<u8>>, Bound<'py, PyArray1<f32>>);

/// Quantizes `values` (float32, C-contiguous) with the signed or unsigned map: the codes, in
/// `values`' shape, and one scale per block of 256.
#[pyfunction]
pub(super) fn quantize_blocks<'py>(
    py: Python<'py>,
    values: PyReadonlyArrayDyn<'py, f32>,
    signed: bool,
) -> PyResult<Blocks<'py>> {
    let slice = values
        .as_slice()
        .map_err(|_| PyValueError::new_err("values must be C-contiguous"))?;
    not_being_updated(&[("values", values.as_untyped())])?;
    let mut codes = vec![0u8; slice.len()];
    let mut absmax = vec![0.0f32; slice.len().div_ceil(BLOCK)];
    quantize::quantize(quantize::map(signed), slice, &mut codes, &mut absmax);
    let codes = PyArray1::from_vec(py, codes).reshape(values.shape())?;
    Ok((codes, PyArray1::from_vec(py, absmax)))
}

/// Decodes `codes` and `absmax` (as [`quantize_blocks`] makes them) into a new float32 array.
#[pyfunction]
pub(super) fn dequantize_blocks<'py>(
    py: Python<'py>,
    codes: PyReadonlyArrayDyn<'py, u8>,
    absmax: PyReadonlyArray1<'py, f32>,
    signed: bool,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let codes_slice = codes
        .as_slice()
        .map_err(|_| PyValueError::new_err("codes must be C-contiguous"))?;
    not_being_updated(&[
        ("codes", codes.as_untyped()),
        ("absmax", absmax.as_untyped()),
    ])?;
    let absmax = absmax.as_slice()?;
    if absmax.len() != codes_slice.len().div_ceil(BLOCK) {
        return Err(PyValueError::new_err(format!(
            "absmax has {} scales but {} codes need {}",
            absmax.len(),
            codes_slice.len(),
            codes_slice.len().div_ceil(BLOCK)
        )));
    }
    let mut values = vec![0.0f32; codes_slice.len()];
    quantize::dequantize(quantize::map(signed), codes_slice, absmax, &mut values);
    PyArray1::from_vec(py, values).reshape(codes.shape())
}

/// The 256 entries of the signed or unsigned dynamic map, ascending.
#[pyfunction]
pub(super) fn code_map(py: Python<'_>, signed: bool) -> Bound<'_, PyArray1<f32>> {
    PyArray1::from_slice(py, quantize::map(signed).values())
}
