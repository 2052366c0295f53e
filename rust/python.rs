//! The Python bindings: adapters that check NumPy arrays, borrow them, release the GIL and call
//! the kernels. Every check runs before any array is written, and every failure is a Python
//! exception that names the argument at fault.

use numpy::{
    dtype, Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat};

use crate::optim::{Adadelta, Adagrad, Adam, Adamax, NAdam, RAdam, RMSprop, Sgd};
use crate::{check, simd, step as apply_step, Error, Lanes, Optimizer, Real, MAX_STATE};

/// Below this many elements the update runs with the GIL held: releasing and re-acquiring it
/// costs more than such a short update.
const GIL_RELEASE_LEN: usize = 1 << 13;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

/// One array argument, known to be an ndarray.
struct ArrayArg<'a, 'py> {
    name: &'static str,
    array: &'a Bound<'py, PyUntypedArray>,
}

fn as_array<'a, 'py>(
    name: &'static str,
    object: &'a Bound<'py, PyAny>,
) -> PyResult<ArrayArg<'a, 'py>> {
    let array = object.cast::<PyUntypedArray>().map_err(|_| {
        let type_name = object
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("{name} must be a numpy.ndarray, got {type_name}"))
    })?;
    Ok(ArrayArg { name, array })
}

/// `update` as a 1-based integer. `bool` and `float` are refused: a step count is an integer.
fn parse_step(update: &Bound<'_, PyAny>) -> PyResult<u64> {
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
    let value: i128 = update.extract().map_err(|_| refuse())?;
    u64::try_from(value)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(refuse)
}

#[derive(Clone, Copy)]
enum DType {
    F32,
    F64,
}

fn dtype_of(py: Python<'_>, arg: &ArrayArg<'_, '_>) -> PyResult<DType> {
    let descr = arg.array.dtype();
    if descr.is_equiv_to(&dtype::<f32>(py)) {
        Ok(DType::F32)
    } else if descr.is_equiv_to(&dtype::<f64>(py)) {
        Ok(DType::F64)
    } else {
        Err(PyTypeError::new_err(format!(
            "{} must have dtype float32 or float64, got {}",
            arg.name, descr
        )))
    }
}

/// Checks that `arg` matches the parameter in dtype and shape and is C-contiguous and aligned.
fn check_like_param(arg: &ArrayArg<'_, '_>, param: &ArrayArg<'_, '_>) -> PyResult<()> {
    let (descr, param_descr) = (arg.array.dtype(), param.array.dtype());
    if !descr.is_equiv_to(&param_descr) {
        return Err(PyTypeError::new_err(format!(
            "{} has dtype {} but param has dtype {}",
            arg.name, descr, param_descr
        )));
    }
    if arg.array.shape() != param.array.shape() {
        return Err(PyValueError::new_err(format!(
            "{} has shape {:?} but param has shape {:?}",
            arg.name,
            arg.array.shape(),
            param.array.shape()
        )));
    }
    check_layout(arg)
}

fn check_layout(arg: &ArrayArg<'_, '_>) -> PyResult<()> {
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

/// Refuses two arguments whose bytes overlap, the test `numpy.shares_memory` makes, which for
/// C-contiguous arrays is an intersection of byte ranges.
fn check_no_overlap<T: Element>(
    args: &[(&'static str, &Bound<'_, PyArrayDyn<T>>)],
) -> PyResult<()> {
    let range = |array: &Bound<'_, PyArrayDyn<T>>| {
        let start = array.data() as usize;
        (start, start + array.len() * std::mem::size_of::<T>())
    };
    for (i, (name_a, a)) in args.iter().enumerate() {
        let (a_start, a_end) = range(a);
        for (name_b, b) in &args[i + 1..] {
            let (b_start, b_end) = range(b);
            if a_start < a_end && b_start < b_end && a_start < b_end && b_start < a_end {
                return Err(PyValueError::new_err(format!(
                    "{name_a} and {name_b} share memory; every array of an update must be distinct"
                )));
            }
        }
    }
    Ok(())
}

fn borrow_error(name: &'static str, err: numpy::BorrowError) -> PyErr {
    match err {
        numpy::BorrowError::NotWriteable => PyValueError::new_err(format!(
            "{name} is read-only; the update writes it in place"
        )),
        _ => PyValueError::new_err(format!(
            "{name} is in use by another call (another thread is updating it)"
        )),
    }
}

/// Checks, borrows and updates the arrays of one optimizer step. `states` holds the argument of
/// each of the optimizer's state slots, `None` where it was not given.
fn run<O: Optimizer>(
    py: Python<'_>,
    optimizer: &O,
    update: &Bound<'_, PyAny>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    states: &[Option<&Bound<'_, PyAny>>],
) -> PyResult<()> {
    let update = parse_step(update)?;
    optimizer.validate()?;
    let param = as_array("param", param)?;
    let grad = as_array("grad", grad)?;
    let dtype = dtype_of(py, &param)?;
    check_layout(&param)?;
    check_like_param(&grad, &param)?;
    let mut used = Vec::with_capacity(MAX_STATE);
    for (slot, name) in optimizer.state_slots().iter().enumerate() {
        if !optimizer.uses_slot(slot) {
            continue;
        }
        let object = states[slot].ok_or(Error::MissingState(name))?;
        let arg = as_array(name, object)?;
        check_like_param(&arg, &param)?;
        used.push((slot, arg));
    }
    match dtype {
        DType::F32 => run_typed::<O, f32>(py, optimizer, update, &param, &grad, &used),
        DType::F64 => run_typed::<O, f64>(py, optimizer, update, &param, &grad, &used),
    }
}

fn run_typed<'py, O: Optimizer, T: Real + Element>(
    py: Python<'py>,
    optimizer: &O,
    update: u64,
    param: &ArrayArg<'_, 'py>,
    grad: &ArrayArg<'_, 'py>,
    states: &[(usize, ArrayArg<'_, 'py>)],
) -> PyResult<()> {
    // The dtypes were checked above, so these casts cannot fail.
    let typed = |arg: &ArrayArg<'_, 'py>| -> PyResult<Bound<'py, PyArrayDyn<T>>> {
        Ok(arg.array.cast::<PyArrayDyn<T>>()?.clone())
    };
    let param_array = typed(param)?;
    let grad_array = typed(grad)?;
    let state_arrays = states
        .iter()
        .map(|(_, arg)| typed(arg))
        .collect::<PyResult<Vec<_>>>()?;

    let mut named = vec![("param", &param_array), ("grad", &grad_array)];
    named.extend(states.iter().map(|(_, arg)| arg.name).zip(&state_arrays));
    check_no_overlap(&named)?;
    if param_array.len() == 0 {
        // Nothing to update (and empty arrays may legitimately be one and the same object).
        return Ok(());
    }

    // Borrowing also catches arrays another thread is updating right now (rust-numpy's borrow
    // table is shared by every extension and guarded by the GIL).
    let mut param_rw = param_array
        .try_readwrite()
        .map_err(|e| borrow_error("param", e))?;
    let grad_ro = grad_array
        .try_readonly()
        .map_err(|e| borrow_error("grad", e))?;
    let mut state_rw = Vec::with_capacity(states.len());
    for ((_, arg), array) in states.iter().zip(&state_arrays) {
        state_rw.push(
            array
                .try_readwrite()
                .map_err(|e| borrow_error(arg.name, e))?,
        );
    }

    let not_contiguous = |name: &str| PyValueError::new_err(format!("{name} must be C-contiguous"));
    let mut state: [&mut [T]; MAX_STATE] = [&mut [], &mut [], &mut []];
    for ((slot, arg), borrowed) in states.iter().zip(state_rw.iter_mut()) {
        state[*slot] = borrowed
            .as_slice_mut()
            .map_err(|_| not_contiguous(arg.name))?;
    }
    let lanes = Lanes {
        param: param_rw
            .as_slice_mut()
            .map_err(|_| not_contiguous("param"))?,
        grad: grad_ro.as_slice().map_err(|_| not_contiguous("grad"))?,
        state,
    };
    check(optimizer, update, &lanes)?;
    if lanes.len() >= GIL_RELEASE_LEN {
        py.detach(|| apply_step(optimizer, update, lanes))?;
    } else {
        apply_step(optimizer, update, lanes)?;
    }
    Ok(())
}

/// SGD update in place (`torch.optim.SGD` semantics); see `lrfast.sgd_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, momentum_buffer=None, *, step, lr, momentum=0.0, dampening=0.0,
                    nesterov=false, weight_decay=0.0, maximize=false))]
#[allow(clippy::too_many_arguments)]
fn sgd_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    momentum_buffer: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    maximize: bool,
) -> PyResult<()> {
    let optimizer = Sgd {
        lr,
        momentum,
        dampening,
        nesterov,
        weight_decay,
        maximize,
    };
    run(py, &optimizer, step, param, grad, &[momentum_buffer])
}

/// Adagrad update in place (`torch.optim.Adagrad` semantics); see `lrfast.adagrad_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, state_sum, *, step, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                    eps=1e-10, maximize=false))]
#[allow(clippy::too_many_arguments)]
fn adagrad_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    state_sum: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    eps: f64,
    maximize: bool,
) -> PyResult<()> {
    let optimizer = Adagrad {
        lr,
        lr_decay,
        weight_decay,
        eps,
        maximize,
    };
    run(py, &optimizer, step, param, grad, &[Some(state_sum)])
}

/// RMSprop update in place (`torch.optim.RMSprop` semantics); see `lrfast.rmsprop_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, square_avg, momentum_buffer=None, grad_avg=None, *, step,
                    lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=false,
                    maximize=false))]
#[allow(clippy::too_many_arguments)]
fn rmsprop_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    square_avg: &Bound<'_, PyAny>,
    momentum_buffer: Option<&Bound<'_, PyAny>>,
    grad_avg: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    maximize: bool,
) -> PyResult<()> {
    let optimizer = RMSprop {
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        maximize,
    };
    let states = [Some(square_avg), momentum_buffer, grad_avg];
    run(py, &optimizer, step, param, grad, &states)
}

/// Adadelta update in place (`torch.optim.Adadelta` semantics); see `lrfast.adadelta_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, square_avg, acc_delta, *, step, lr=1.0, rho=0.9, eps=1e-6,
                    weight_decay=0.0, maximize=false))]
#[allow(clippy::too_many_arguments)]
fn adadelta_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    square_avg: &Bound<'_, PyAny>,
    acc_delta: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    rho: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
) -> PyResult<()> {
    let optimizer = Adadelta {
        lr,
        rho,
        eps,
        weight_decay,
        maximize,
    };
    let states = [Some(square_avg), Some(acc_delta)];
    run(py, &optimizer, step, param, grad, &states)
}

#[allow(clippy::too_many_arguments)]
fn adam_like(
    py: Python<'_>,
    decoupled: bool,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    max_exp_avg_sq: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    (beta1, beta2): (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
) -> PyResult<()> {
    let optimizer = Adam {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        amsgrad,
        maximize,
        decoupled,
    };
    let states = [Some(exp_avg), Some(exp_avg_sq), max_exp_avg_sq];
    run(py, &optimizer, step, param, grad, &states)
}

/// Adam update in place (`torch.optim.Adam` semantics); see `lrfast.adam_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=1e-3,
                    betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=false, maximize=false))]
#[allow(clippy::too_many_arguments)]
fn adam_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    max_exp_avg_sq: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
) -> PyResult<()> {
    adam_like(
        py,
        false,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq,
        step,
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        maximize,
    )
}

/// AdamW update in place (`torch.optim.AdamW` semantics); see `lrfast.adamw_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=1e-3,
                    betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=false, maximize=false))]
#[allow(clippy::too_many_arguments)]
fn adamw_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    max_exp_avg_sq: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
) -> PyResult<()> {
    adam_like(
        py,
        true,
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq,
        step,
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        maximize,
    )
}

/// Adamax update in place (`torch.optim.Adamax` semantics); see `lrfast.adamax_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_inf, *, step, lr=2e-3, betas=(0.9, 0.999),
                    eps=1e-8, weight_decay=0.0, maximize=false))]
#[allow(clippy::too_many_arguments)]
fn adamax_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_inf: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    maximize: bool,
) -> PyResult<()> {
    let optimizer = Adamax {
        lr,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        weight_decay,
        maximize,
    };
    let states = [Some(exp_avg), Some(exp_inf)];
    run(py, &optimizer, step, param, grad, &states)
}

/// NAdam update in place (`torch.optim.NAdam` semantics); returns the new `mu_product`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_avg_sq, *, step, lr=2e-3, betas=(0.9, 0.999),
                    eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                    decoupled_weight_decay=false, maximize=false, mu_product=None))]
#[allow(clippy::too_many_arguments)]
fn nadam_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    momentum_decay: f64,
    decoupled_weight_decay: bool,
    maximize: bool,
    mu_product: Option<f64>,
) -> PyResult<f64> {
    let mut optimizer = NAdam {
        lr,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        weight_decay,
        momentum_decay,
        decoupled_weight_decay,
        maximize,
        mu_product: mu_product.unwrap_or(1.0),
    };
    let update = parse_step(step)?;
    if mu_product.is_none() {
        optimizer.validate()?;
        optimizer.mu_product = optimizer.mu_product_before(update);
    }
    let states = [Some(exp_avg), Some(exp_avg_sq)];
    run(py, &optimizer, step, param, grad, &states)?;
    Ok(optimizer.mu_product_after(update))
}

/// RAdam update in place (`torch.optim.RAdam` semantics); see `lrfast.radam_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, betas=(0.9, 0.999),
                    eps=1e-8, weight_decay=0.0, decoupled_weight_decay=false, maximize=false))]
#[allow(clippy::too_many_arguments)]
fn radam_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> PyResult<()> {
    let optimizer = RAdam {
        lr,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        weight_decay,
        decoupled_weight_decay,
        maximize,
    };
    let states = [Some(exp_avg), Some(exp_avg_sq)];
    run(py, &optimizer, step, param, grad, &states)
}

/// The SIMD instruction set the kernels run with: "avx512", "avx2", "sse2", "neon" or "scalar".
#[pyfunction]
fn simd_level() -> &'static str {
    simd::active().name()
}

#[pymodule]
fn _lrfast(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(sgd_step, module)?)?;
    module.add_function(wrap_pyfunction!(adagrad_step, module)?)?;
    module.add_function(wrap_pyfunction!(rmsprop_step, module)?)?;
    module.add_function(wrap_pyfunction!(adadelta_step, module)?)?;
    module.add_function(wrap_pyfunction!(adam_step, module)?)?;
    module.add_function(wrap_pyfunction!(adamw_step, module)?)?;
    module.add_function(wrap_pyfunction!(adamax_step, module)?)?;
    module.add_function(wrap_pyfunction!(nadam_step, module)?)?;
    module.add_function(wrap_pyfunction!(radam_step, module)?)?;
    module.add_function(wrap_pyfunction!(simd_level, module)?)?;
    Ok(())
}
