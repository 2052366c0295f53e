//! The Python bindings: adapters that check NumPy arrays, claim them against concurrent updates,
//! release the GIL and call the kernels. Every check runs before any array is written, and every
//! failure is a Python exception that names the argument at fault.

use half::{bf16, f16};
use numpy::{
    dtype, Element, PyArrayDescr, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyList, PyTuple};

use crate::optim::{Adadelta, Adagrad, Adam, Adamax, MemoryFloor, NAdam, RAdam, RMSprop, Sgd};
use crate::{
    clip, parallel, simd, step_many, step_mixed, Error, HalfFloat, Lanes, MixedLanes, Optimizer,
    Real, MAX_STATE,
};

mod schedule;
use schedule::{LearningRate, PySchedule};

/// Below this many elements the update runs with the GIL held: releasing and re-acquiring it
/// costs more than such a short update.
const GIL_RELEASE_LEN: usize = 1 << 13;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

/// An argument's name for messages: `exp_avg`, or `exp_avg[3]` inside a list of tensors.
#[derive(Clone, Copy)]
struct Name {
    base: &'static str,
    index: Option<usize>,
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.base),
            None => f.write_str(self.base),
        }
    }
}

/// One array argument, known to be an ndarray.
struct ArrayArg<'py> {
    name: Name,
    array: Bound<'py, PyUntypedArray>,
}

fn as_array<'py>(name: Name, object: &Bound<'py, PyAny>) -> PyResult<ArrayArg<'py>> {
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

/// The arrays of one tensor's update: its parameter, gradient and the states its options use.
struct TensorArgs<'py> {
    param: ArrayArg<'py>,
    grad: ArrayArg<'py>,
    /// (slot, array) for each state slot the options use.
    states: Vec<(usize, ArrayArg<'py>)>,
    /// The float32 master copy of a float16 or bfloat16 parameter.
    master: Option<ArrayArg<'py>>,
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
enum DType {
    F32,
    F64,
    /// NumPy's float16, updated with float32 state.
    F16,
    /// `ml_dtypes.bfloat16`, updated with float32 state.
    BF16,
}

impl DType {
    /// Whether parameters of this type keep their state (and master copy) in float32.
    fn is_mixed(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }
}

fn dtype_of(py: Python<'_>, arg: &ArrayArg<'_>) -> PyResult<DType> {
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
fn is_bfloat16(py: Python<'_>, descr: &Bound<'_, PyArrayDescr>) -> bool {
    descr.kind() == b'V'
        && descr.itemsize() == 2
        && descr.to_string() == "bfloat16"
        && descr.is_equiv_to(&dtype::<bf16>(py))
}

/// Checks that `arg` has dtype `expected` and the shape of `like` (the parameter), and its
/// layout.
fn check_like(
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

fn check_layout(arg: &ArrayArg<'_>) -> PyResult<()> {
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

/// The bytes of a C-contiguous array: `[start, end)`.
fn byte_range(array: &Bound<'_, PyUntypedArray>) -> (usize, usize) {
    // SAFETY: `as_array_ptr` points to the live array object `array` holds a reference to;
    // only its data pointer field is read.
    let start =
        unsafe { (*numpy::npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).data } as usize;
    (start, start + array.len() * array.dtype().itemsize())
}

/// Refuses two arguments whose bytes overlap: the test `numpy.shares_memory` makes, which for
/// C-contiguous arrays is an intersection of byte ranges. Sorting the ranges makes it
/// O(n log n), for calls with thousands of arrays.
fn check_no_overlap<'a, 'py: 'a>(
    arrays: impl IntoIterator<Item = &'a ArrayArg<'py>>,
) -> PyResult<()> {
    let mut ranges: Vec<(usize, usize, Name)> = arrays
        .into_iter()
        .filter(|arg| arg.array.len() > 0)
        .map(|arg| {
            let (start, end) = byte_range(&arg.array);
            (start, end, arg.name)
        })
        .collect();
    ranges.sort_unstable_by_key(|&(start, _, _)| start);
    // After sorting, an overlap exists iff some range starts before the furthest end so far.
    let mut furthest: Option<(usize, Name)> = None;
    for &(start, end, name) in &ranges {
        if let Some((far_end, far_name)) = furthest {
            if start < far_end {
                return Err(PyValueError::new_err(format!(
                    "{far_name} and {name} share memory; every array of an update must be distinct"
                )));
            }
        }
        if furthest.is_none_or(|(far_end, _)| end > far_end) {
            furthest = Some((end, name));
        }
    }
    Ok(())
}

fn not_contiguous(_: numpy::AsSliceError) -> PyErr {
    PyValueError::new_err("arrays must be C-contiguous")
}

fn is_writeable(array: &Bound<'_, PyUntypedArray>) -> bool {
    // SAFETY: `as_array_ptr` points to the live array object `array` holds a reference to, and
    // only its flags field is read.
    let flags = unsafe { (*numpy::npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags };
    flags & numpy::npyffi::NPY_ARRAY_WRITEABLE != 0
}

/// Refuses a read-only array among those an update writes.
fn check_writeable(arg: &ArrayArg<'_>, what: &str) -> PyResult<()> {
    if is_writeable(&arg.array) {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "{} is read-only; {what} writes it in place",
            arg.name
        )))
    }
}

/// The arrays that updates running without the GIL are using, so that a second thread cannot
/// update the same memory at the same moment (a torn result); it gets a clear error instead.
mod in_flight {
    use super::{Name, PyResult, PyValueError};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Clone, Copy)]
    pub(super) struct InFlight {
        pub start: usize,
        pub end: usize,
        pub writes: bool,
        pub name: Name,
    }

    static RANGES: Mutex<Vec<(u64, InFlight)>> = Mutex::new(Vec::new());
    /// How many calls are registered: lets the common case (none) skip the lock.
    static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

    /// Unregisters a call's arrays when dropped.
    pub(super) struct Registration(u64);

    impl Drop for Registration {
        fn drop(&mut self) {
            let mut ranges = RANGES.lock().unwrap_or_else(|e| e.into_inner());
            ranges.retain(|(id, _)| *id != self.0);
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn conflict(ours: &[InFlight], theirs: &[(u64, InFlight)]) -> PyResult<()> {
        for a in ours {
            for (_, b) in theirs {
                if (a.writes || b.writes) && a.start < b.end && b.start < a.end {
                    return Err(PyValueError::new_err(format!(
                        "{} is in use by another call (another thread is updating it)",
                        a.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Fails if another call is using any of `ranges` in a conflicting way.
    pub(super) fn check(ranges: &[InFlight]) -> PyResult<()> {
        if ACTIVE.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        conflict(ranges, &RANGES.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Checks and registers `ranges` for the duration of the returned guard.
    pub(super) fn register(ranges: Vec<InFlight>) -> PyResult<Registration> {
        let mut registered = RANGES.lock().unwrap_or_else(|e| e.into_inner());
        conflict(&ranges, &registered)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) as u64;
        registered.extend(ranges.into_iter().map(|r| (id, r)));
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Ok(Registration(id))
    }
}

use in_flight::InFlight;

/// The byte ranges of the non-empty `arrays`, each marked as written or only read.
fn byte_ranges<'a, 'py: 'a>(
    arrays: impl IntoIterator<Item = (bool, &'a ArrayArg<'py>)>,
) -> Vec<InFlight> {
    arrays
        .into_iter()
        .filter(|(_, arg)| arg.array.len() > 0)
        .map(|(writes, arg)| {
            let (start, end) = byte_range(&arg.array);
            InFlight {
                start,
                end,
                writes,
                name: arg.name,
            }
        })
        .collect()
}

/// Claims `ranges` for an update of `total` elements: large updates, which run without the
/// GIL, register them until the guard drops; small ones keep the GIL and only check.
fn claim(ranges: Vec<InFlight>, total: usize) -> PyResult<Option<in_flight::Registration>> {
    if total >= GIL_RELEASE_LEN {
        Ok(Some(in_flight::register(ranges)?))
    } else {
        in_flight::check(&ranges)?;
        Ok(None)
    }
}

/// A list or tuple of tensors, or `None` for a single array.
fn as_sequence<'py>(object: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = object.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = object.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    }
}

/// Gathers the tensors of a call: one array each, or equal-length lists of arrays.
fn gather<'py, O: Optimizer>(
    optimizer: &O,
    param: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    states: &[Option<&Bound<'py, PyAny>>],
    master: Option<&Bound<'py, PyAny>>,
) -> PyResult<Vec<TensorArgs<'py>>> {
    let slots = optimizer.state_slots();
    let used: Vec<usize> = (0..slots.len())
        .filter(|&s| optimizer.uses_slot(s))
        .collect();
    let Some(params) = as_sequence(param) else {
        let name = |base| Name { base, index: None };
        let mut state_args = Vec::with_capacity(used.len());
        for &slot in &used {
            let object = states[slot].ok_or(Error::MissingState(slots[slot]))?;
            state_args.push((slot, as_array(name(slots[slot]), object)?));
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
            let name = |base| Name {
                base,
                index: Some(i),
            };
            Ok(TensorArgs {
                param: as_array(name("param"), &params[i])?,
                grad: as_array(name("grad"), &grads[i])?,
                states: state_lists
                    .iter()
                    .map(|(slot, list)| Ok((*slot, as_array(name(slots[*slot]), &list[i])?)))
                    .collect::<PyResult<_>>()?,
                master: masters
                    .as_ref()
                    .map(|list| as_array(name("master"), &list[i]))
                    .transpose()?,
            })
        })
        .collect()
}

/// Checks, claims and updates the arrays of one optimizer step: one tensor, or lists of them.
/// `states` holds the argument for each of the optimizer's state slots, `None` where not given;
/// `master` the float32 master copies of float16 or bfloat16 parameters, if any.
fn run<O: Optimizer>(
    py: Python<'_>,
    optimizer: &O,
    update: &Bound<'_, PyAny>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    states: &[Option<&Bound<'_, PyAny>>],
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let update = parse_step(update)?;
    optimizer.validate()?;
    let tensors = gather(optimizer, param, grad, states, master)?;
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
fn run_update(
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

/// Checks that no two arrays of a call share memory and that those it writes are writeable,
/// then claims them all against concurrent updates.
fn claim_tensors(tensors: &[TensorArgs<'_>]) -> PyResult<Option<in_flight::Registration>> {
    // Every array but the gradients is written.
    let arrays: Vec<(bool, &ArrayArg<'_>)> = tensors
        .iter()
        .flat_map(|tensor| {
            [(true, &tensor.param), (false, &tensor.grad)]
                .into_iter()
                .chain(tensor.states.iter().map(|(_, state)| (true, state)))
                .chain(tensor.master.iter().map(|master| (true, master)))
        })
        .collect();
    check_no_overlap(arrays.iter().map(|(_, arg)| *arg))?;
    for (writes, arg) in &arrays {
        if *writes {
            check_writeable(arg, "the update")?;
        }
    }
    let total: usize = tensors.iter().map(|t| t.param.array.len()).sum();
    claim(byte_ranges(arrays), total)
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
unsafe fn slice_mut<'a, T: Element>(arg: &'a ArrayArg<'_>) -> PyResult<&'a mut [T]> {
    let array = arg.array.cast::<PyArrayDyn<T>>()?;
    // SAFETY: as the caller guarantees.
    unsafe { array.as_slice_mut() }.map_err(not_contiguous)
}

/// A checked gradient as a shared slice of `T` (it may be read-only).
///
/// # Safety
/// As for [`slice_mut`], except that `arg` need not be writeable and may only be read.
unsafe fn slice<'a, T: Element>(arg: &'a ArrayArg<'_>) -> PyResult<&'a [T]> {
    let array = arg.array.cast::<PyArrayDyn<T>>()?;
    // SAFETY: as the caller guarantees.
    unsafe { array.as_slice() }.map_err(not_contiguous)
}

/// A tensor's state arrays as slices of `T`, in their slots (unused slots empty).
///
/// # Safety
/// As for [`slice_mut`], for every state array of `tensor`.
#[allow(clippy::mut_from_ref)] // see `slice_mut`
unsafe fn state_slices<'a, T: Element>(
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
fn plain_lanes<'a, T: Real + Element>(
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
fn mixed_lanes<'a, H: HalfFloat + Element>(
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

/// SGD update in place (`torch.optim.SGD` semantics); see `lrfast.sgd_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, momentum_buffer=None, *, step, lr, momentum=0.0, dampening=0.0,
                    nesterov=false, weight_decay=0.0, maximize=false, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn sgd_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    momentum_buffer: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = Sgd {
        lr: lr.at(step)?,
        momentum,
        dampening,
        nesterov,
        weight_decay,
        maximize,
        grad_scale,
    };
    run(
        py,
        &optimizer,
        step,
        param,
        grad,
        &[momentum_buffer],
        master,
    )
}

/// Adagrad update in place (`torch.optim.Adagrad` semantics); see `lrfast.adagrad_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, state_sum, *, step, lr=LearningRate::Fixed(0.01), lr_decay=0.0, weight_decay=0.0,
                    eps=1e-10, maximize=false, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn adagrad_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    state_sum: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    lr_decay: f64,
    weight_decay: f64,
    eps: f64,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = Adagrad {
        lr: lr.at(step)?,
        lr_decay,
        weight_decay,
        eps,
        maximize,
        grad_scale,
    };
    run(
        py,
        &optimizer,
        step,
        param,
        grad,
        &[Some(state_sum)],
        master,
    )
}

/// RMSprop update in place (`torch.optim.RMSprop` semantics); see `lrfast.rmsprop_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, square_avg, momentum_buffer=None, grad_avg=None, *, step,
                    lr=LearningRate::Fixed(0.01), alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=false,
                    maximize=false, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn rmsprop_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    square_avg: &Bound<'_, PyAny>,
    momentum_buffer: Option<&Bound<'_, PyAny>>,
    grad_avg: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = RMSprop {
        lr: lr.at(step)?,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        maximize,
        grad_scale,
    };
    let states = [Some(square_avg), momentum_buffer, grad_avg];
    run(py, &optimizer, step, param, grad, &states, master)
}

/// Adadelta update in place (`torch.optim.Adadelta` semantics); see `lrfast.adadelta_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, square_avg, acc_delta, *, step, lr=LearningRate::Fixed(1.0), rho=0.9, eps=1e-6,
                    weight_decay=0.0, maximize=false, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn adadelta_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    square_avg: &Bound<'_, PyAny>,
    acc_delta: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    rho: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = Adadelta {
        lr: lr.at(step)?,
        rho,
        eps,
        weight_decay,
        maximize,
        grad_scale,
    };
    let states = [Some(square_avg), Some(acc_delta)];
    run(py, &optimizer, step, param, grad, &states, master)
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
    lr: LearningRate,
    (beta1, beta2): (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = Adam {
        lr: lr.at(step)?,
        beta1,
        beta2,
        eps,
        weight_decay,
        amsgrad,
        maximize,
        grad_scale,
        decoupled,
    };
    let states = [Some(exp_avg), Some(exp_avg_sq), max_exp_avg_sq];
    run(py, &optimizer, step, param, grad, &states, master)
}

/// Adam update in place (`torch.optim.Adam` semantics); see `lrfast.adam_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=LearningRate::Fixed(1e-3),
                    betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=false, maximize=false, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn adam_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    max_exp_avg_sq: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
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
        grad_scale,
        master,
    )
}

/// AdamW update in place (`torch.optim.AdamW` semantics); see `lrfast.adamw_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr=LearningRate::Fixed(1e-3),
                    betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=false, maximize=false, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn adamw_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    max_exp_avg_sq: Option<&Bound<'_, PyAny>>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
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
        grad_scale,
        master,
    )
}

/// Adamax update in place (`torch.optim.Adamax` semantics); see `lrfast.adamax_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_inf, *, step, lr=LearningRate::Fixed(2e-3), betas=(0.9, 0.999),
                    eps=1e-8, weight_decay=0.0, maximize=false, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn adamax_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_inf: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = Adamax {
        lr: lr.at(step)?,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        weight_decay,
        maximize,
        grad_scale,
    };
    let states = [Some(exp_avg), Some(exp_inf)];
    run(py, &optimizer, step, param, grad, &states, master)
}

/// NAdam update in place (`torch.optim.NAdam` semantics); returns the new `mu_product`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_avg_sq, *, step, lr=LearningRate::Fixed(2e-3), betas=(0.9, 0.999),
                    eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                    decoupled_weight_decay=false, maximize=false, mu_product=None, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn nadam_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    momentum_decay: f64,
    decoupled_weight_decay: bool,
    maximize: bool,
    mu_product: Option<f64>,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<f64> {
    let mut optimizer = NAdam {
        lr: lr.at(step)?,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        weight_decay,
        momentum_decay,
        decoupled_weight_decay,
        maximize,
        grad_scale,
        mu_product: mu_product.unwrap_or(1.0),
    };
    let update = parse_step(step)?;
    if mu_product.is_none() {
        optimizer.validate()?;
        optimizer.mu_product = optimizer.mu_product_before(update);
    }
    let states = [Some(exp_avg), Some(exp_avg_sq)];
    run(py, &optimizer, step, param, grad, &states, master)?;
    Ok(optimizer.mu_product_after(update))
}

/// RAdam update in place (`torch.optim.RAdam` semantics); see `lrfast.radam_step`.
#[pyfunction]
#[pyo3(signature = (param, grad, exp_avg, exp_avg_sq, *, step, lr=LearningRate::Fixed(1e-3), betas=(0.9, 0.999),
                    eps=1e-8, weight_decay=0.0, decoupled_weight_decay=false, maximize=false, grad_scale=1.0, master=None))]
#[allow(clippy::too_many_arguments)]
fn radam_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    lr: LearningRate,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled_weight_decay: bool,
    maximize: bool,
    grad_scale: f64,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = RAdam {
        lr: lr.at(step)?,
        beta1: betas.0,
        beta2: betas.1,
        eps,
        weight_decay,
        decoupled_weight_decay,
        maximize,
        grad_scale,
    };
    let states = [Some(exp_avg), Some(exp_avg_sq)];
    run(py, &optimizer, step, param, grad, &states, master)
}

/// `grads` (one array or a list) as named array arguments.
fn grads_args<'py>(grads: &Bound<'py, PyAny>) -> PyResult<Vec<ArrayArg<'py>>> {
    let (objects, many) = match as_sequence(grads) {
        Some(objects) => (objects, true),
        None => (vec![grads.clone()], false),
    };
    objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            let index = many.then_some(i);
            as_array(
                Name {
                    base: "grads",
                    index,
                },
                object,
            )
        })
        .collect()
}

/// The global `norm_type`-norm of `grads` (one array or a list), which are only read: what
/// `clip_grad_norm` computes, for clipping fused into an update with `grad_scale`.
#[pyfunction]
#[pyo3(signature = (grads, norm_type=2.0))]
fn grad_norm(py: Python<'_>, grads: &Bound<'_, PyAny>, norm_type: f64) -> PyResult<f64> {
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

/// `grads` (one array or a list) checked to be C-contiguous, aligned arrays of one float dtype.
fn checked_grads<'py>(py: Python<'py>, grads: &Bound<'py, PyAny>) -> PyResult<Vec<ArrayArg<'py>>> {
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

/// The non-empty gradient arrays of a call, as slices of their dtype.
enum GradSlices<'a> {
    F32(Vec<&'a mut [f32]>),
    F64(Vec<&'a mut [f64]>),
    F16(Vec<&'a mut [f16]>),
    BF16(Vec<&'a mut [bf16]>),
}

impl<'a> GradSlices<'a> {
    /// # Safety
    /// `args` must have passed `checked_grads`, be writeable, pairwise disjoint and not in use
    /// by another lrfast call.
    unsafe fn new(py: Python<'_>, args: &'a [ArrayArg<'_>]) -> PyResult<Self> {
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

    fn norm(&self, norm_type: f64) -> f64 {
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

    fn scale(&mut self, factor: f64) {
        match self {
            GradSlices::F32(g) => clip::scale(g, factor),
            GradSlices::F64(g) => clip::scale(g, factor),
            GradSlices::F16(g) => clip::scale_half(g, factor),
            GradSlices::BF16(g) => clip::scale_half(g, factor),
        }
    }

    fn clamp(&mut self, limit: f64) {
        match self {
            GradSlices::F32(g) => clip::clamp(g, limit),
            GradSlices::F64(g) => clip::clamp(g, limit),
            GradSlices::F16(g) => clip::clamp_half(g, limit),
            GradSlices::BF16(g) => clip::clamp_half(g, limit),
        }
    }
}

fn check_norm_type(norm_type: f64) -> PyResult<()> {
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
fn with_grads<R: Send>(
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
fn clip_grad_norm(
    py: Python<'_>,
    grads: &Bound<'_, PyAny>,
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
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
fn clip_grad_value(py: Python<'_>, grads: &Bound<'_, PyAny>, clip_value: f64) -> PyResult<()> {
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

/// Benchmark baseline: the memory traffic of an optimizer with `len(states)` state arrays
/// (`param += grad; state += grad`), through the same checks, threads and dispatch (and, for
/// float16/bfloat16 parameters, the same widening and rounding, with `master` if given).
#[pyfunction]
#[pyo3(signature = (param, grad, *states, master=None))]
fn _memory_floor_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    grad: &Bound<'_, PyAny>,
    states: Vec<Bound<'_, PyAny>>,
    master: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let optimizer = MemoryFloor {
        states: states.len(),
    };
    optimizer.validate()?;
    let mut slots: [Option<&Bound<'_, PyAny>>; MAX_STATE] = [None; MAX_STATE];
    for (slot, state) in slots.iter_mut().zip(&states) {
        *slot = Some(state);
    }
    let one = 1_u64.into_pyobject(py)?;
    run(py, &optimizer, one.as_any(), param, grad, &slots, master)
}

/// The SIMD instruction set the kernels run with: "avx512", "avx2", "sse2", "neon" or "scalar".
#[pyfunction]
fn simd_level() -> &'static str {
    simd::active().name()
}

/// Limits the SIMD level kernels run at ("sse2"/"neon"/"scalar" = baseline, "avx2", "avx512"),
/// for tests and benchmarks that compare paths; capped at what the CPU has. Returns the level
/// now in force.
#[pyfunction]
fn _set_simd_level(name: &str) -> PyResult<&'static str> {
    let level = match name {
        "sse2" | "neon" | "scalar" | "baseline" => simd::SimdLevel::Baseline,
        "avx2" => simd::SimdLevel::Avx2,
        "avx512" => simd::SimdLevel::Avx512,
        "best" => simd::detected(),
        _ => {
            return Err(PyValueError::new_err(format!(
                "name must be baseline, sse2, neon, scalar, avx2, avx512 or best, got {name:?}"
            )))
        }
    };
    Ok(simd::set_active(level).name())
}

/// Sets how many threads the kernels may use (1 = the calling thread only).
#[pyfunction]
fn set_num_threads(threads: usize) -> PyResult<()> {
    if threads == 0 {
        return Err(PyValueError::new_err("threads must be >= 1, got 0"));
    }
    parallel::set_num_threads(threads);
    Ok(())
}

/// How many threads the kernels may use (`LRFAST_NUM_THREADS`, else the number of cores).
#[pyfunction]
fn get_num_threads() -> usize {
    parallel::num_threads()
}

#[pymodule]
fn _lrfast(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(set_num_threads, module)?)?;
    module.add_function(wrap_pyfunction!(get_num_threads, module)?)?;
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
    module.add_function(wrap_pyfunction!(_memory_floor_step, module)?)?;
    module.add_function(wrap_pyfunction!(clip_grad_norm, module)?)?;
    module.add_function(wrap_pyfunction!(clip_grad_value, module)?)?;
    module.add_function(wrap_pyfunction!(grad_norm, module)?)?;
    module.add_function(wrap_pyfunction!(_set_simd_level, module)?)?;
    module.add_class::<PySchedule>()?;
    Ok(())
}
