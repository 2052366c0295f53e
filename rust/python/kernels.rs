//! The kernels' door: one function updates with any optimizer of `optim::ALL`, parsing its
//! hyperparameters by the optimizer's spec; another exports the specs, from which the Python
//! package builds `lrfast.adam_step` and the rest.

use half::{bf16, f16};
use numpy::{dtype, PyArrayDescrMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};

use super::args::{check_layout, check_like, dtype_of, gather, kind_error, parse_step, real};
use super::args::{flag, real_value, DType};
use super::claims::claim_tensors;
use super::quantized;
use super::schedule::LearningRate;
use super::slices::{mixed_lanes, plain_lanes};
use crate::optim::spec::{Need, Range, Use, Value, MAX_HYPERPARAMETERS};
use crate::optim::{Defined, MemoryFloor, Spec, ALL};
use crate::{step_many, step_mixed, Error, Optimizer, MAX_STATE};

/// Below this many elements the update runs with the GIL held: releasing and re-acquiring it
/// costs more than such a short update.
pub(super) const GIL_RELEASE_LEN: usize = 1 << 13;

/// One update in place with the optimizer `name` (`"adam"`, ...): `states` holds its state
/// arguments in slot order (`None` where not given), `hyperparameters` the values of the spec's
/// kernel hyperparameters after `lr`, in order. Returns the carried scalar (NAdam's
/// `mu_product`) after the update, or `None`.
#[pyfunction]
#[pyo3(signature = (name, param, grad, states, master, step, lr, hyperparameters, grad_scale, carried))]
#[allow(clippy::too_many_arguments)]
pub(super) fn step(
    py: Python<'_>,
    name: &str,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    states: &Bound<'_, PyTuple>,
    master: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: &Bound<'_, PyAny>,
    hyperparameters: &Bound<'_, PyTuple>,
    grad_scale: &Bound<'_, PyAny>,
    carried: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<f64>> {
    let call = Call {
        param,
        grad,
        states,
        master,
        step,
        lr,
        hyperparameters,
        grad_scale,
        carried,
    };
    by_name!(name, O => call.run::<O>(py))
}

/// `$body` with `$O` the optimizer type whose spec is named `$name` (`"adam"`, ...), or an
/// unknown-optimizer error: the one table from kernel names to types.
macro_rules! by_name {
    ($name:expr, $O:ident => $body:expr) => {
        by_name!(@table $name, $O, $body;
            "sgd" => Sgd, "adagrad" => Adagrad, "rmsprop" => RMSprop, "adadelta" => Adadelta,
            "adam" => Adam, "adamw" => AdamW, "adamax" => Adamax, "nadam" => NAdam,
            "radam" => RAdam)
    };
    (@table $name:expr, $O:ident, $body:expr; $($key:literal => $type:ident),+) => {
        match $name {
            $($key => {
                type $O = $crate::optim::$type;
                $body
            })+
            other => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown optimizer {other:?}"
            ))),
        }
    };
}
pub(super) use by_name;

/// The arguments of one [`step`] call.
struct Call<'a, 'py> {
    param: &'a Bound<'py, PyAny>,
    grad: &'a Bound<'py, PyAny>,
    states: &'a Bound<'py, PyTuple>,
    master: Option<&'a Bound<'py, PyAny>>,
    step: &'a Bound<'py, PyAny>,
    lr: &'a Bound<'py, PyAny>,
    hyperparameters: &'a Bound<'py, PyTuple>,
    grad_scale: &'a Bound<'py, PyAny>,
    carried: Option<&'a Bound<'py, PyAny>>,
}

impl Call<'_, '_> {
    fn run<O: Defined>(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        let update = parse_step(self.step)?;
        let spec = O::SPEC;
        let lr: LearningRate = self.lr.extract()?;
        let grad_scale = real("grad_scale", self.grad_scale)?;
        let carried = match (spec.carried, self.carried) {
            (Some(c), Some(object)) if !object.is_none() => Some(real(c.name, object)?),
            _ => None,
        };
        let optimizer: O = optimizer(
            update,
            lr.at(update)?,
            self.hyperparameters,
            grad_scale,
            carried,
        )?;
        if self.states.len() != spec.slots.len() {
            return Err(PyTypeError::new_err(format!(
                "{} takes {} state arguments, got {}",
                spec.name,
                spec.slots.len(),
                self.states.len()
            )));
        }
        let given: Vec<Bound<'_, PyAny>> = self.states.iter().collect();
        let mut states: [Option<&Bound<'_, PyAny>>; MAX_STATE] = [None; MAX_STATE];
        for (slot, object) in states.iter_mut().zip(&given) {
            *slot = (!object.is_none()).then_some(object);
        }
        let update_with = if quantized::in_call(py, &states)? {
            quantized::run::<O>
        } else {
            run::<O>
        };
        update_with(
            py,
            &optimizer,
            update,
            self.param,
            self.grad,
            &states,
            self.master,
        )?;
        Ok(optimizer.carry_out(update))
    }
}

/// The optimizer `O` for update `update` at rate `lr`, with `hyperparameters` (the values of
/// its spec's kernel hyperparameters after `lr`, in order) checked by its spec, and the
/// carried scalar (NAdam's `mu_product`) before the update, if given.
pub(super) fn optimizer<O: Defined>(
    update: u64,
    lr: f64,
    hyperparameters: &Bound<'_, PyTuple>,
    grad_scale: f64,
    carried: Option<f64>,
) -> PyResult<O> {
    let spec = O::SPEC;
    let mut values = Vec::with_capacity(MAX_HYPERPARAMETERS);
    values.push(Value::Real(lr));
    let expected = spec.kernel_hyperparameters().count() - 1;
    if hyperparameters.len() != expected {
        return Err(PyTypeError::new_err(format!(
            "{} takes {expected} hyperparameters after lr, got {}",
            spec.name,
            hyperparameters.len()
        )));
    }
    for (h, object) in spec
        .kernel_hyperparameters()
        .skip(1)
        .zip(hyperparameters.iter())
    {
        values.push(value(h.name, h.default, &object)?);
    }
    let mut optimizer = O::from_hyperparameters(&spec.check(&values, grad_scale)?)?;
    optimizer.carry_in(update, carried)?;
    Ok(optimizer)
}

/// `object` as a value of the kind `default` has.
fn value(name: &str, default: Value, object: &Bound<'_, PyAny>) -> PyResult<Value> {
    match default {
        Value::Real(_) => Ok(Value::Real(real(name, object)?)),
        Value::Flag(_) => flag(name, object).map(Value::Flag),
        Value::Pair(..) => {
            let pair = || kind_error(name, "a sequence of two real numbers", object);
            let (first, second) = if let Ok(tuple) = object.cast::<PyTuple>() {
                if tuple.len() != 2 {
                    return Err(pair());
                }
                (tuple.get_item(0)?, tuple.get_item(1)?)
            } else {
                if object.is_instance_of::<PyString>() || object.len().ok() != Some(2) {
                    return Err(pair());
                }
                (
                    object.get_item(0).map_err(|_| pair())?,
                    object.get_item(1).map_err(|_| pair())?,
                )
            };
            let entry = |i: usize, item: &Bound<'_, PyAny>| {
                real_value(item)
                    .ok_or_else(|| kind_error(&format!("{name}[{i}]"), "a real number", item))
            };
            Ok(Value::Pair(entry(0, &first)?, entry(1, &second)?))
        }
    }
}

/// Checks `value` for the hyperparameter `name` of the optimizer `optimizer`, by its spec, with
/// the kernels' messages: for the values only the optimizer classes read.
#[pyfunction]
pub(super) fn check_hyperparameter(
    optimizer: &str,
    name: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let spec = ALL
        .iter()
        .find(|s| s.name == optimizer)
        .ok_or_else(|| PyValueError::new_err(format!("unknown optimizer {optimizer:?}")))?;
    let h = spec
        .hyperparameters
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| {
            PyValueError::new_err(format!("{optimizer} has no hyperparameter {name:?}"))
        })?;
    spec.check_one(name, self::value(name, h.default, value)?)?;
    Ok(())
}

/// Every optimizer's spec as plain Python data (lists, dicts, strings, numbers), in the order
/// of `optim::ALL`: what `lrfast.optimizers()` reads.
#[pyfunction]
pub(super) fn optimizer_specs(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    for spec in ALL {
        list.append(spec_dict(py, spec)?)?;
    }
    Ok(list)
}

fn value_object(py: Python<'_>, value: Value) -> PyResult<Bound<'_, PyAny>> {
    Ok(match value {
        Value::Real(x) => x.into_pyobject(py)?.into_any(),
        Value::Pair(a, b) => (a, b).into_pyobject(py)?.into_any(),
        Value::Flag(x) => PyBool::new(py, x).to_owned().into_any(),
    })
}

fn spec_dict<'py>(py: Python<'py>, spec: &Spec) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", spec.name)?;
    d.set_item("torch_name", spec.torch_name)?;
    d.set_item("summary", spec.summary)?;
    d.set_item("rule", spec.rule.to_vec())?;
    d.set_item("notes", spec.notes.to_vec())?;
    let hyperparameters = PyList::empty(py);
    for h in spec.hyperparameters {
        let item = PyDict::new(py);
        item.set_item("name", h.name)?;
        item.set_item("default", value_object(py, h.default)?)?;
        item.set_item(
            "range",
            match h.range {
                Range::NonNegative => "non_negative",
                Range::UnitOpen => "unit_open",
                Range::UnitClosed => "unit_closed",
                Range::Flag => "flag",
            },
        )?;
        item.set_item("range_text", h.range.describe())?;
        item.set_item("kernel", h.used_by == Use::Kernel)?;
        item.set_item("doc", h.doc)?;
        hyperparameters.append(item)?;
    }
    d.set_item("hyperparameters", hyperparameters)?;
    let slots = PyList::empty(py);
    for slot in spec.slots {
        let item = PyDict::new(py);
        item.set_item("name", slot.name)?;
        item.set_item("torch_key", slot.torch_key)?;
        let (kind, on) = match slot.need {
            Need::Always => ("always", None),
            Need::NonZero(name) => ("nonzero", Some(name)),
            Need::Flag(name) => ("flag", Some(name)),
        };
        item.set_item("need", kind)?;
        item.set_item("need_of", on)?;
        item.set_item("initial", slot.initial)?;
        item.set_item("signed", slot.signed)?;
        item.set_item("full_precision", slot.full_precision)?;
        item.set_item("doc", slot.doc)?;
        slots.append(item)?;
    }
    d.set_item("slots", slots)?;
    match spec.carried {
        Some(c) => d.set_item("carried", (c.name, c.doc))?,
        None => d.set_item("carried", py.None())?,
    }
    d.set_item("momentum", spec.momentum)?;
    d.set_item("example", (spec.example.arguments, spec.example.result))?;
    Ok(d)
}

/// Checks, claims and updates the arrays of one optimizer step: one tensor, or lists of them.
/// `states` holds the argument for each of the optimizer's state slots, `None` where not given;
/// `master` the float32 master copies of float16 or bfloat16 parameters, if any.
pub(super) fn run<O: Optimizer>(
    py: Python<'_>,
    optimizer: &O,
    update: u64,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    states: &[Option<&Bound<'_, PyAny>>],
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let tensors = gather(optimizer.slots(), param, grad, states, master)?;
    let Some(first) = tensors.first() else {
        return Ok(());
    };
    let kind = dtype_of(py, &first.param)?;
    let param_descr = first.param.array.dtype();
    // Mixed precision keeps the state and the master copy in float32.
    let state_descr = if kind.is_mixed() {
        dtype::<f32>(py)
    } else {
        param_descr.clone()
    };
    for tensor in &tensors {
        // One call updates one dtype: a float parameter unlike param[0] is refused as such.
        if !tensor.param.array.dtype().is_equiv_to(&param_descr) {
            dtype_of(py, &tensor.param)?;
            return Err(PyTypeError::new_err(format!(
                "{} has dtype {} but param[0] has dtype {param_descr}; one call updates one dtype",
                tensor.param.name,
                tensor.param.array.dtype(),
            )));
        }
        check_layout(&tensor.param)?;
        check_like(&tensor.grad, &tensor.param, &param_descr)?;
        for (_, state) in &tensor.states {
            check_like(state, &tensor.param, &state_descr)?;
        }
        if let Some(master) = &tensor.master {
            if !kind.is_mixed() {
                return Err(PyValueError::new_err(format!(
                    "{} is only for float16 and bfloat16 parameters; {param_descr} parameters \
                     are updated in place",
                    master.name
                )));
            }
            check_like(master, &tensor.param, &state_descr)?;
        }
    }
    let registration = claim_tensors(&tensors)?;
    let detach = registration.is_some();
    match kind {
        DType::F32 => {
            let lanes = plain_lanes::<f32>(&tensors)?;
            run_update(py, detach, || step_many(optimizer, update, lanes))
        }
        DType::F64 => {
            let lanes = plain_lanes::<f64>(&tensors)?;
            run_update(py, detach, || step_many(optimizer, update, lanes))
        }
        DType::F16 => {
            let lanes = mixed_lanes::<f16>(&tensors)?;
            run_update(py, detach, || step_mixed(optimizer, update, lanes))
        }
        DType::BF16 => {
            let lanes = mixed_lanes::<bf16>(&tensors)?;
            run_update(py, detach, || step_mixed(optimizer, update, lanes))
        }
    }
}

/// Runs an update, without the GIL when `detach` (its arrays are then registered as in use).
pub(super) fn run_update(
    py: Python<'_>,
    detach: bool,
    work: impl FnOnce() -> Result<(), Error> + Send,
) -> PyResult<()> {
    if detach {
        py.detach(work)?;
    } else {
        work()?;
    }
    Ok(())
}

/// Benchmark baseline: the memory traffic of an optimizer with `len(states)` state arrays
/// (`param += grad; state += grad`), through the same checks, threads and dispatch (and, for
/// float16/bfloat16 parameters, the same widening and rounding, with `master` if given).
#[pyfunction]
#[pyo3(signature = (param, grad, *states, master=None))]
pub(super) fn _memory_floor_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    states: Vec<Bound<'_, PyAny>>,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = MemoryFloor::new(states.len())?;
    let mut slots: [Option<&Bound<'_, PyAny>>; MAX_STATE] = [None; MAX_STATE];
    for (slot, state) in slots.iter_mut().zip(&states) {
        *slot = Some(state);
    }
    run(py, &optimizer, 1, param, grad, &slots, master)
}
