//! Argument intake: turns Python objects into named, typed, checked array arguments. Nothing
//! here reads or writes array data; every failure names the argument.

use half::{bf16, f16};
use numpy::{dtype, PyArrayDescr, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyList, PyString, PyTuple};

use crate::optim::Slots;
use crate::Error;

/// An argument's name for messages: `exp_avg`, or `exp_avg[3]` inside a list of tensors.
#[derive(Clone, Copy)]
pub(super) struct Name {
    pub base: &'static str,
    pub index: Option<usize>,
    /// The array inside an 8-bit state argument: `exp_avg.codes`, `exp_avg[3].absmax`.
    pub part: Option<&'static str>,
}

impl Name {
    pub(super) fn new(base: &'static str, index: Option<usize>) -> Name {
        Name {
            base,
            index,
            part: None,
        }
    }

    /// The array `part` of this argument.
    pub(super) fn part(self, part: &'static str) -> Name {
        Name {
            part: Some(part),
            ..self
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.base)?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        if let Some(part) = self.part {
            write!(f, ".{part}")?;
        }
        Ok(())
    }
}

/// A torch tensor of an `lrfast.torch` step, for messages: `param_groups[0]['params'][3]`, its
/// gradient, or one of its state tensors.
#[derive(Clone, Copy)]
pub(super) struct TensorName {
    pub group: usize,
    pub index: usize,
    pub role: Role,
}

#[derive(Clone, Copy)]
pub(super) enum Role {
    Param,
    Grad,
    /// A state tensor, by its key in the optimizer's state (`exp_avg`, `step`, `master`, ...).
    State(&'static str),
    /// The codes (`{key}_codes`) and block scales (`{key}_absmax`) of an 8-bit state slot.
    Codes(&'static str),
    Absmax(&'static str),
}

impl std::fmt::Display for TensorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let param = format!("param_groups[{}]['params'][{}]", self.group, self.index);
        match self.role {
            Role::Param => f.write_str(&param),
            Role::Grad => write!(f, "the gradient of {param}"),
            Role::State(key) => write!(f, "state '{key}' of {param}"),
            Role::Codes(key) => write!(f, "state '{key}_codes' of {param}"),
            Role::Absmax(key) => write!(f, "state '{key}_absmax' of {param}"),
        }
    }
}

/// Whatever a call's argument is named by: an array argument or a torch tensor.
#[derive(Clone, Copy)]
pub(super) enum Label {
    Array(Name),
    Tensor(TensorName),
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Array(name) => name.fmt(f),
            Label::Tensor(name) => name.fmt(f),
        }
    }
}

/// One array argument, known to be an ndarray.
pub(super) struct ArrayArg<'py> {
    pub name: Name,
    pub array: Bound<'py, PyUntypedArray>,
}

pub(super) fn as_array<'py>(name: Name, object: &Bound<'py, PyAny>) -> PyResult<ArrayArg<'py>> {
    let array = object.cast::<PyUntypedArray>().map_err(|_| {
        let type_name = object
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("{name} must be a numpy.ndarray, got {type_name}"))
    })?;
    Ok(ArrayArg {
        name,
        array: array.clone(),
    })
}

/// The arrays of one tensor's update: its parameter, gradient and the states its options use
/// (arrays, or 8-bit states).
pub(super) struct TensorArgs<'py, S = ArrayArg<'py>> {
    pub param: ArrayArg<'py>,
    pub grad: ArrayArg<'py>,
    /// (slot, state) for each state slot the options use.
    pub states: Vec<(usize, S)>,
    /// The float32 master copy of a float16 or bfloat16 parameter.
    pub master: Option<ArrayArg<'py>>,
}

/// `update` as a 1-based integer. `bool` and `float` are refused: a step count is an integer.
pub(super) fn parse_step(update: &Bound<'_, PyAny>) -> PyResult<u64> {
    let refuse = || {
        PyValueError::new_err(format!(
            "step must be an integer >= 1, got {}",
            update
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into())
        ))
    };
    if update.is_instance_of::<PyBool>() || update.is_instance_of::<PyFloat>() {
        return Err(refuse());
    }
    // A `u64` extraction fails for negative numbers and for numbers too large, as it should
    // (and, unlike `i128`, it has a fast path under the stable ABI).
    let value: u64 = update.extract().map_err(|_| refuse())?;
    if value >= 1 {
        Ok(value)
    } else {
        Err(refuse())
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum DType {
    F32,
    F64,
    /// NumPy's float16, updated with float32 state.
    F16,
    /// `ml_dtypes.bfloat16`, updated with float32 state.
    BF16,
}

impl DType {
    /// Whether parameters of this type keep their state (and master copy) in float32.
    pub(super) fn is_mixed(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }
}

pub(super) fn dtype_of(py: Python<'_>, arg: &ArrayArg<'_>) -> PyResult<DType> {
    let descr = arg.array.dtype();
    if descr.is_equiv_to(&dtype::<f32>(py)) {
        Ok(DType::F32)
    } else if descr.is_equiv_to(&dtype::<f64>(py)) {
        Ok(DType::F64)
    } else if descr.is_equiv_to(&dtype::<f16>(py)) {
        Ok(DType::F16)
    } else if is_bfloat16(py, &descr) {
        Ok(DType::BF16)
    } else {
        Err(PyTypeError::new_err(format!(
            "{} must have dtype float32, float64, float16 or bfloat16, got {}",
            arg.name, descr
        )))
    }
}

/// Whether `descr` is `ml_dtypes.bfloat16`. rust-numpy looks that dtype up by name and panics
/// if no package provides it, so it is only asked for once an array claims to be one (which
/// means ml_dtypes, or a package like it, is loaded).
pub(super) fn is_bfloat16(py: Python<'_>, descr: &Bound<'_, PyArrayDescr>) -> bool {
    descr.kind() == b'V'
        && descr.itemsize() == 2
        && descr.to_string() == "bfloat16"
        && descr.is_equiv_to(&dtype::<bf16>(py))
}

/// Checks that `arg` has dtype `expected` and the shape of `like` (the parameter), and its
/// layout.
pub(super) fn check_like(
    arg: &ArrayArg<'_>,
    like: &ArrayArg<'_>,
    expected: &Bound<'_, PyArrayDescr>,
) -> PyResult<()> {
    let (descr, like_descr) = (arg.array.dtype(), like.array.dtype());
    if !descr.is_equiv_to(expected) {
        return Err(PyTypeError::new_err(if expected.is_equiv_to(&like_descr) {
            format!(
                "{} has dtype {} but {} has dtype {}",
                arg.name, descr, like.name, like_descr
            )
        } else {
            format!(
                "{} has dtype {descr} but must have dtype {expected}: the state and master copy \
                 of {like_descr} parameters are {expected}",
                arg.name
            )
        }));
    }
    if arg.array.shape() != like.array.shape() {
        return Err(PyValueError::new_err(format!(
            "{} has shape {:?} but {} has shape {:?}",
            arg.name,
            arg.array.shape(),
            like.name,
            like.array.shape()
        )));
    }
    check_layout(arg)
}

pub(super) fn check_layout(arg: &ArrayArg<'_>) -> PyResult<()> {
    if !arg.array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{} must be C-contiguous (use numpy.ascontiguousarray, and update that copy)",
            arg.name
        )));
    }
    if !arg.array.is_aligned() {
        return Err(PyValueError::new_err(format!(
            "{} is not aligned to its dtype",
            arg.name
        )));
    }
    Ok(())
}

/// A list or tuple of tensors, or `None` for a single array.
pub(super) fn as_sequence<'py>(object: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = object.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = object.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    }
}

/// Gathers the tensors of a call: one array each, or equal-length lists of arrays.
pub(super) fn gather<'py>(
    slots: Slots,
    param: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    states: &[Option<&Bound<'py, PyAny>>],
    master: Option<&Bound<'py, PyAny>>,
) -> PyResult<Vec<TensorArgs<'py>>> {
    gather_with(slots, param, grad, states, master, as_array)
}

/// Gathers the tensors of a call as [`gather`] does, with each state argument read by `state`.
pub(super) fn gather_with<'py, S>(
    slots: Slots,
    param: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    states: &[Option<&Bound<'py, PyAny>>],
    master: Option<&Bound<'py, PyAny>>,
    state: impl Fn(Name, &Bound<'py, PyAny>) -> PyResult<S>,
) -> PyResult<Vec<TensorArgs<'py, S>>> {
    let used: Vec<usize> = (0..slots.names.len()).filter(|&s| slots.used[s]).collect();
    check_unused_states(&slots, states, &state)?;
    let slots = slots.names;
    let Some(params) = as_sequence(param) else {
        let name = |base| Name::new(base, None);
        let mut state_args = Vec::with_capacity(used.len());
        for &slot in &used {
            let object = states[slot].ok_or(Error::MissingState(slots[slot]))?;
            state_args.push((slot, state(name(slots[slot]), object)?));
        }
        return Ok(vec![TensorArgs {
            param: as_array(name("param"), param)?,
            grad: as_array(name("grad"), grad)?,
            states: state_args,
            master: master.map(|m| as_array(name("master"), m)).transpose()?,
        }]);
    };
    let n = params.len();
    let list_of = |base: &'static str, object: &Bound<'py, PyAny>| -> PyResult<Vec<_>> {
        let items = as_sequence(object).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "param is a list, so {base} must be a list of {n} arrays too"
            ))
        })?;
        if items.len() != n {
            return Err(PyValueError::new_err(format!(
                "{base} has {} arrays but param has {n}",
                items.len()
            )));
        }
        Ok(items)
    };
    let grads = list_of("grad", grad)?;
    let mut state_lists = Vec::with_capacity(used.len());
    for &slot in &used {
        let object = states[slot].ok_or(Error::MissingState(slots[slot]))?;
        state_lists.push((slot, list_of(slots[slot], object)?));
    }
    let masters = master.map(|m| list_of("master", m)).transpose()?;
    (0..n)
        .map(|i| {
            let name = |base| Name::new(base, Some(i));
            Ok(TensorArgs {
                param: as_array(name("param"), &params[i])?,
                grad: as_array(name("grad"), &grads[i])?,
                states: state_lists
                    .iter()
                    .map(|(slot, list)| Ok((*slot, state(name(slots[*slot]), &list[i])?)))
                    .collect::<PyResult<_>>()?,
                master: masters
                    .as_ref()
                    .map(|list| as_array(name("master"), &list[i]))
                    .transpose()?,
            })
        })
        .collect()
}

/// `grads` (one array or a list) as named array arguments.
pub(super) fn grads_args<'py>(grads: &Bound<'py, PyAny>) -> PyResult<Vec<ArrayArg<'py>>> {
    let (objects, many) = match as_sequence(grads) {
        Some(objects) => (objects, true),
        None => (vec![grads.clone()], false),
    };
    objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            let index = many.then_some(i);
            as_array(Name::new("grads", index), object)
        })
        .collect()
}

/// `grads` (one array or a list) checked to be C-contiguous, aligned arrays of one float dtype.
pub(super) fn checked_grads<'py>(
    py: Python<'py>,
    grads: &Bound<'py, PyAny>,
) -> PyResult<Vec<ArrayArg<'py>>> {
    let args = grads_args(grads)?;
    if let Some(first) = args.first() {
        dtype_of(py, first)?;
        for arg in &args {
            if !arg.array.dtype().is_equiv_to(&first.array.dtype()) {
                return Err(PyTypeError::new_err(format!(
                    "{} has dtype {} but {} has dtype {}",
                    arg.name,
                    arg.array.dtype(),
                    first.name,
                    first.array.dtype()
                )));
            }
            check_layout(arg)?;
        }
    }
    Ok(args)
}

/// Refuses a state argument the options do not use unless `state` reads it (an array or a
/// list of them, or 8-bit states): it is not read, but anything else is a mistake worth
/// reporting.
fn check_unused_states<'py, S>(
    slots: &Slots,
    states: &[Option<&Bound<'py, PyAny>>],
    state: &impl Fn(Name, &Bound<'py, PyAny>) -> PyResult<S>,
) -> PyResult<()> {
    for (slot, given) in states.iter().enumerate() {
        let (Some(object), false) = (given, slots.used.get(slot).copied().unwrap_or(false)) else {
            continue;
        };
        let base = slots.names[slot];
        match as_sequence(object) {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    state(Name::new(base, Some(i)), item)?;
                }
            }
            None => {
                state(Name::new(base, None), object)?;
            }
        }
    }
    Ok(())
}

/// A real number argument; `bool` and strings are refused, naming the argument.
pub(super) fn real(name: &str, object: &Bound<'_, PyAny>) -> PyResult<f64> {
    real_value(object).ok_or_else(|| kind_error(name, "a real number", object))
}

/// `object` as a real number, or `None` for anything else (`bool` and strings included).
pub(super) fn real_value(object: &Bound<'_, PyAny>) -> Option<f64> {
    if object.is_instance_of::<PyFloat>() {
        // The common case, without the generic conversion.
        return object.extract::<f64>().ok();
    }
    if object.is_instance_of::<PyBool>() || object.is_instance_of::<PyString>() {
        return None;
    }
    object.extract::<f64>().ok()
}

/// A flag argument: `True` or `False` (NumPy's bools too), not a number.
pub(super) fn flag(name: &str, object: &Bound<'_, PyAny>) -> PyResult<bool> {
    object
        .extract::<bool>()
        .map_err(|_| kind_error(name, "True or False", object))
}

/// A `TypeError`: argument `name` must be `expected`, shown with what it got.
pub(super) fn kind_error(name: &str, expected: &str, object: &Bound<'_, PyAny>) -> PyErr {
    let shown = object
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    let type_name = object
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    PyTypeError::new_err(format!(
        "{name} must be {expected}, got {shown} ({type_name})"
    ))
}
