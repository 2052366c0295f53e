//! `lrfast.torch`'s step: the whole per-tensor walk of an `optimizer.step()` in one call.
//!
//! For every parameter of every group it finds the gradient and the state tensors (in the
//! optimizer's `state` dict, by torch's keys), checks each tensor (a CPU, strided, contiguous,
//! aligned tensor of the right dtype and shape), reads the step counts, groups the tensors into
//! kernel calls (one per group, dtype, step count and carried scalar), checks that no two
//! tensors of the whole step share memory, runs the kernels (without the GIL when large) and
//! counts the steps. The tensors are read through `data_ptr()`, with no NumPy view: in Python
//! the same walk costs tens of microseconds per tensor.
//!
//! A parameter whose state is missing (its first step) is reported back, with nothing written,
//! and the Python layer creates that state and calls again.
//!
//! 8-bit state (`state_bits=8`) is two tensors per slot in place of `{key}`: `{key}_codes`
//! (uint8, the parameter's shape) and `{key}_absmax` (float32, one scale per block of
//! [`BLOCK`]); such a parameter (float32, every slot 8-bit) runs `step_quantized`.
//!
//! # Safety
//!
//! A tensor's memory is `numel` elements of its dtype from `data_ptr()` when it is a CPU,
//! strided, contiguous tensor (what `view` checks, with the alignment). The call holds a
//! reference to every tensor it updates until the kernels are done, and claims their bytes
//! (`claims`) as the NumPy path does, so no other lrfast call touches them meanwhile. As with
//! torch's own in-place operations, another Python thread that resizes or rebinds a tensor's
//! storage while a step runs on it is a data race in the user's program.

use std::collections::HashSet;

use half::{bf16, f16};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

use super::args::{DType, Label, Role, TensorName};
use super::claims::{check_disjoint, claim, InFlight};
use super::kernels::{by_name, optimizer, run_update};
use super::schedule::LearningRate;
use crate::optim::Defined;
use crate::quantize::BLOCK;
use crate::{step_many, step_mixed, step_quantized, Error, HalfFloat, Lanes, MixedLanes, Real};
use crate::{QuantizedLanes, QuantizedSlot, MAX_STATE};

/// One `optimizer.step()` over `groups`, each `(kernel, params, counted, lr, hyperparameters)`:
/// the kernel's name (`"adamw"`), the group's parameter list, whether its state counts steps
/// in `"step"` (torch's SGD keeps no count), its rate (a float or an lrfast schedule) and its
/// other kernel hyperparameters in spec order. `state` is the optimizer's state dict; with
/// `master_weights`, float16 and bfloat16 parameters update a float32 copy `state["master"]`.
/// `fresh` lists the `(group, index)` whose state was created for this step (their step is the
/// first).
///
/// Returns the `(group, index)` of every parameter with a gradient whose state is missing, with
/// nothing written; an empty list once the step has run.
#[pyfunction]
pub(super) fn torch_step(
    py: Python<'_>,
    groups: Vec<Bound<'_, PyTuple>>,
    state: &Bound<'_, PyDict>,
    master_weights: bool,
    fresh: Vec<(usize, usize)>,
) -> PyResult<Vec<(usize, usize)>> {
    let types = Types::new(py)?;
    let mut plan = Plan {
        types,
        state: state.clone(),
        master_weights,
        fresh: fresh.into_iter().collect(),
        keep: Vec::new(),
        ranges: Vec::new(),
        batches: Vec::new(),
        counters: Vec::new(),
        missing: Vec::new(),
        total: 0,
    };
    for (g, group) in groups.iter().enumerate() {
        let kernel = group.get_item(0)?;
        let kernel: String = kernel.extract()?;
        by_name!(kernel.as_str(), O => plan.group::<O>(g, group))?;
    }
    if !plan.missing.is_empty() {
        return Ok(plan.missing);
    }
    check_disjoint(&plan.ranges)?;
    let registration = claim(std::mem::take(&mut plan.ranges), plan.total)?;
    let batches = std::mem::take(&mut plan.batches);
    run_update(py, registration.is_some(), || {
        batches.iter().try_for_each(|batch| batch.run())
    })?;
    for counter in &plan.counters {
        // SAFETY: `view` checked the tensor as `Expect::Scalar` (one aligned float32 or float64
        // element on the CPU), `plan.keep` holds it, and the kernels, the only other writers,
        // are done.
        unsafe { counter.write() };
    }
    drop(registration);
    drop(plan.keep);
    Ok(Vec::new())
}

/// torch's types and dtypes, to recognize tensors by identity.
struct Types<'py> {
    tensor: Bound<'py, PyType>,
    strided: Bound<'py, PyAny>,
    dtypes: [(Bound<'py, PyAny>, DType); 4],
    /// The dtype of 8-bit state codes.
    uint8: Bound<'py, PyAny>,
}

impl<'py> Types<'py> {
    fn new(py: Python<'py>) -> PyResult<Self> {
        let torch = py.import(intern!(py, "torch"))?;
        let get = |name: &str| torch.getattr(name);
        Ok(Types {
            tensor: get("Tensor")?.cast_into::<PyType>()?,
            strided: get("strided")?,
            dtypes: [
                (get("float32")?, DType::F32),
                (get("float64")?, DType::F64),
                (get("float16")?, DType::F16),
                (get("bfloat16")?, DType::BF16),
            ],
            uint8: get("uint8")?,
        })
    }

    fn kind(&self, dtype: &Bound<'py, PyAny>) -> Option<DType> {
        self.dtypes
            .iter()
            .find(|(d, _)| d.is(dtype))
            .map(|(_, kind)| *kind)
    }

    fn dtype_name(&self, kind: DType) -> String {
        let (dtype, _) = self.dtypes.iter().find(|(_, k)| *k == kind).expect("four");
        dtype.to_string()
    }
}

/// A checked tensor's memory: `len` elements of `dtype` from `address`.
#[derive(Clone, Copy)]
struct View {
    address: usize,
    len: usize,
    dtype: DType,
}

fn item_size(dtype: DType) -> usize {
    match dtype {
        DType::F32 => 4,
        DType::F64 => 8,
        DType::F16 | DType::BF16 => 2,
    }
}

/// What a tensor must be: a parameter (any dtype lrfast updates, its gradient and state to
/// follow), like the parameter (`dtype`, as many elements), the block scales of an 8-bit slot
/// (float32, `len` of them), or a one-element step count or carried scalar (float32 or
/// float64). (The codes of an 8-bit slot are bytes, checked by `Plan::codes`.)
#[derive(Clone, Copy)]
enum Expect<'a, 'py> {
    Param,
    Like {
        dtype: DType,
        len: usize,
        param: &'a Bound<'py, PyAny>,
    },
    Scales {
        len: usize,
    },
    Scalar,
}

/// An 8-bit state slot: as many codes (bytes) from `codes` as the parameter has elements, and
/// their block scales.
#[derive(Clone, Copy)]
struct CodesView {
    codes: usize,
    absmax: View,
}

/// A parameter with a gradient, ready for its kernel call.
struct Entry {
    param: View,
    grad: View,
    state: [Option<View>; MAX_STATE],
    /// 8-bit slots, in place of `state` (a parameter's used slots are all one or the other).
    quantized: [Option<CodesView>; MAX_STATE],
    master: Option<View>,
}

impl Entry {
    fn is_quantized(&self) -> bool {
        self.quantized.iter().any(Option::is_some)
    }
}

/// One kernel call, with its optimizer built: what runs once the whole step is checked.
trait Batch: Send + Sync {
    fn run(&self) -> Result<(), Error>;
}

struct Typed<O> {
    optimizer: O,
    update: u64,
    dtype: DType,
    quantized: bool,
    entries: Vec<Entry>,
}

impl<O: Defined + Send> Batch for Typed<O> {
    fn run(&self) -> Result<(), Error> {
        let (optimizer, update, entries) = (&self.optimizer, self.update, &self.entries);
        // SAFETY: every view was checked by `view` (dtype, length, alignment, a
        // contiguous CPU tensor), is held alive by `Plan::keep`, and was claimed after
        // `check_disjoint` found no two views of the step sharing a byte.
        unsafe {
            match self.dtype {
                // `group` lets only float32 parameters have 8-bit state.
                DType::F32 if self.quantized => {
                    step_quantized(optimizer, update, quantized_lanes(entries))
                }
                DType::F32 => step_many(optimizer, update, lanes::<f32>(entries)),
                DType::F64 => step_many(optimizer, update, lanes::<f64>(entries)),
                DType::F16 => step_mixed(optimizer, update, mixed::<f16>(entries)),
                DType::BF16 => step_mixed(optimizer, update, mixed::<bf16>(entries)),
            }
        }
    }
}

/// # Safety
/// `view` must be `view.len` live, aligned elements of `T` that nothing else reads or writes
/// while the slice lives.
unsafe fn slice_mut<'a, T>(view: View) -> &'a mut [T] {
    // SAFETY: as the caller guarantees.
    unsafe { std::slice::from_raw_parts_mut(view.address as *mut T, view.len) }
}

/// # Safety
/// As for [`slice_mut`], except that others may read the elements too.
unsafe fn slice<'a, T>(view: View) -> &'a [T] {
    // SAFETY: as the caller guarantees.
    unsafe { std::slice::from_raw_parts(view.address as *const T, view.len) }
}

/// # Safety
/// As for [`slice_mut`], for every state view of `entry` (of `T`).
// Slices from addresses, not from `entry`: the exclusivity comes from the checks and claims.
#[allow(clippy::mut_from_ref)]
unsafe fn states<T>(entry: &Entry) -> [&mut [T]; MAX_STATE] {
    // SAFETY: as the caller guarantees.
    entry
        .state
        .map(|s| s.map_or(&mut [][..], |view| unsafe { slice_mut(view) }))
}

/// # Safety
/// As for [`slice_mut`], for every view of every entry (all of `T`).
unsafe fn lanes<T: Real>(entries: &[Entry]) -> Vec<Lanes<'_, T>> {
    entries
        .iter()
        // SAFETY: as the caller guarantees.
        .map(|entry| unsafe {
            Lanes {
                param: slice_mut(entry.param),
                grad: slice(entry.grad),
                state: states(entry),
            }
        })
        .collect()
}

/// # Safety
/// As for [`slice_mut`]: float32 parameters and gradients, the codes (bytes) and block scales
/// (float32) of every 8-bit slot.
unsafe fn quantized_lanes(entries: &[Entry]) -> Vec<QuantizedLanes<'_>> {
    entries
        .iter()
        // SAFETY: as the caller guarantees.
        .map(|entry| unsafe {
            QuantizedLanes {
                param: slice_mut(entry.param),
                grad: slice(entry.grad),
                state: entry.quantized.map(|slot| {
                    slot.map_or_else(QuantizedSlot::empty, |slot| QuantizedSlot {
                        codes: std::slice::from_raw_parts_mut(
                            slot.codes as *mut u8,
                            entry.param.len,
                        ),
                        absmax: slice_mut(slot.absmax),
                    })
                }),
            }
        })
        .collect()
}

/// # Safety
/// As for [`slice_mut`]: 16-bit parameters and gradients of `H`, float32 states and masters.
unsafe fn mixed<H: HalfFloat>(entries: &[Entry]) -> Vec<MixedLanes<'_, H>> {
    entries
        .iter()
        // SAFETY: as the caller guarantees.
        .map(|entry| unsafe {
            MixedLanes {
                param: slice_mut(entry.param),
                grad: slice(entry.grad),
                master: entry.master.map(|view| slice_mut(view)),
                state: states(entry),
            }
        })
        .collect()
}

/// A one-element tensor the step writes after its kernels: a step count or NAdam's
/// `mu_product`.
struct Counter {
    view: View,
    value: f64,
}

impl Counter {
    /// # Safety
    /// `self.view` must be one live, aligned element of its dtype (float32 or float64) that
    /// nothing else reads or writes meanwhile.
    unsafe fn write(&self) {
        // SAFETY: as the caller guarantees.
        unsafe {
            match self.view.dtype {
                DType::F64 => *(self.view.address as *mut f64) = self.value,
                _ => *(self.view.address as *mut f32) = self.value as f32,
            }
        }
    }

    /// # Safety
    /// As for [`Counter::write`], for reading.
    unsafe fn read(view: View) -> f64 {
        // SAFETY: as the caller guarantees.
        unsafe {
            match view.dtype {
                DType::F64 => *(view.address as *const f64),
                _ => f64::from(*(view.address as *const f32)),
            }
        }
    }
}

/// The kernel calls of a step, gathered group by group.
struct Plan<'py> {
    types: Types<'py>,
    state: Bound<'py, PyDict>,
    master_weights: bool,
    fresh: HashSet<(usize, usize)>,
    /// Every tensor the kernels read or write, alive until they are done.
    keep: Vec<Bound<'py, PyAny>>,
    ranges: Vec<InFlight>,
    batches: Vec<Box<dyn Batch>>,
    counters: Vec<Counter>,
    missing: Vec<(usize, usize)>,
    /// Elements updated, which decides whether the GIL is released.
    total: usize,
}

/// A group's kernel call under construction: its key, its entries and the counters they bring.
struct Pending {
    dtype: DType,
    update: u64,
    master: bool,
    quantized: bool,
    /// NAdam: the `mu_product` before the update, as stored (its dtype and value).
    carried: Option<(DType, u64)>,
    entries: Vec<Entry>,
    /// The step count tensors and `mu_product` tensors of the entries.
    steps: Vec<View>,
    products: Vec<View>,
}

impl<'py> Plan<'py> {
    /// Checks group `g` and adds its kernel calls.
    fn group<O: Defined + Send + 'static>(
        &mut self,
        g: usize,
        group: &Bound<'py, PyTuple>,
    ) -> PyResult<()> {
        let py = group.py();
        let params = group.get_item(1)?;
        let params = params.cast::<PyList>()?;
        let counted = group.get_item(2)?.is_truthy()?;
        let lr: LearningRate = group.get_item(3)?.extract()?;
        let rest = group.get_item(4)?;
        let rest = rest.cast::<PyTuple>()?;
        let spec = O::SPEC;
        // Which slots these values use (the same at every step), and a check of the values.
        let probe: O = optimizer(1, lr.at(1)?, rest, 1.0, None)?;
        let slots = crate::Optimizer::slots(&probe);
        let keys: Vec<SlotKeys<'py>> = spec
            .slots
            .iter()
            .enumerate()
            .filter(|(s, _)| slots.used[*s])
            .map(|(slot, spec)| SlotKeys {
                slot,
                key: spec.torch_key,
                full_precision: spec.full_precision,
                plain: PyString::intern(py, spec.torch_key),
                codes: PyString::new(py, &format!("{}_codes", spec.torch_key)),
                absmax: PyString::new(py, &format!("{}_absmax", spec.torch_key)),
            })
            .collect();
        let carries = spec.carried.is_some();
        let mut pending: Vec<Pending> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let grad = p.getattr(intern!(py, "grad"))?;
            if grad.is_none() {
                continue;
            }
            let name = |role| TensorName {
                group: g,
                index: i,
                role,
            };
            let (param, p) = self.view(&p, name(Role::Param), Expect::Param)?;
            let state_dtype = if param.dtype.is_mixed() {
                DType::F32
            } else {
                param.dtype
            };
            let (grad, grad_tensor) = self.view(
                &grad,
                name(Role::Grad),
                Expect::Like {
                    dtype: param.dtype,
                    len: param.len,
                    param: &p,
                },
            )?;
            let master_wanted = self.master_weights && param.dtype.is_mixed();
            let needs_state = !keys.is_empty() || counted || carries || master_wanted;
            let entry_state = match self.state.get_item(&p)? {
                Some(s) => Some(s.cast_into::<PyDict>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "the state of {} must be a dict",
                        name(Role::Param)
                    ))
                })?),
                None => None,
            };
            let Some(entry_state) = entry_state.filter(|_| needs_state) else {
                if needs_state {
                    self.missing.push((g, i));
                    continue;
                }
                // No state at all (SGD without momentum): every step is a first step.
                let entry = Entry {
                    param,
                    grad,
                    state: [None; MAX_STATE],
                    quantized: [None; MAX_STATE],
                    master: None,
                };
                self.add(&mut pending, 1, None, entry, [None, None]);
                self.keep.extend([p, grad_tensor]);
                continue;
            };
            let mut held = Vec::new();
            let mut complete = true;
            // A state tensor, checked, or `None` (the parameter's state is then incomplete).
            let mut find = |plan: &mut Self, held: &mut Vec<_>, key, role, expect| {
                let Some(tensor) = entry_state.get_item(key)? else {
                    complete = false;
                    return Ok(None);
                };
                let (view, tensor) = plan.view(&tensor, name(role), expect)?;
                held.push(tensor);
                PyResult::Ok(Some(view))
            };
            let like = |dtype| Expect::Like {
                dtype,
                len: param.len,
                param: &p,
            };
            let mut state = [None; MAX_STATE];
            let mut quantized = [None; MAX_STATE];
            for keys in &keys {
                let (slot, key) = (keys.slot, keys.key);
                if entry_state.contains(&keys.plain)? || !entry_state.contains(&keys.codes)? {
                    let role = Role::State(key);
                    state[slot] = find(self, &mut held, &keys.plain, role, like(state_dtype))?;
                    continue;
                }
                if let Some(reason) = keys.full_precision {
                    return Err(PyValueError::new_err(format!(
                        "{} is 8-bit, but {key} cannot be stored in 8 bits: {reason}",
                        name(Role::Codes(key))
                    )));
                }
                let Some(absmax) = entry_state.get_item(&keys.absmax)? else {
                    return Err(PyValueError::new_err(format!(
                        "{} has no '{key}_absmax' beside it (its block scales)",
                        name(Role::Codes(key))
                    )));
                };
                let codes = entry_state.get_item(&keys.codes)?.expect("contained");
                let (codes, codes_tensor) = self.codes(&codes, name(Role::Codes(key)), &p)?;
                let scales = Expect::Scales {
                    len: param.len.div_ceil(BLOCK),
                };
                let (absmax, absmax_tensor) =
                    self.view(&absmax, name(Role::Absmax(key)), scales)?;
                held.extend([codes_tensor, absmax_tensor]);
                quantized[slot] = Some(CodesView { codes, absmax });
            }
            if quantized.iter().any(Option::is_some) {
                check_quantized(&keys, &state, name, param.dtype)?;
            }
            let master = if master_wanted {
                let role = Role::State("master");
                find(
                    self,
                    &mut held,
                    intern!(py, "master"),
                    role,
                    like(DType::F32),
                )?
            } else {
                None
            };
            let step = if counted {
                let role = Role::State("step");
                find(self, &mut held, intern!(py, "step"), role, Expect::Scalar)?
            } else {
                None
            };
            let product = if carries {
                let role = Role::State("mu_product");
                find(
                    self,
                    &mut held,
                    intern!(py, "mu_product"),
                    role,
                    Expect::Scalar,
                )?
            } else {
                None
            };
            if !complete {
                self.missing.push((g, i));
                continue;
            }
            let update = match step {
                Some(view) => {
                    // SAFETY: `view` checked it: one aligned float32 or float64 CPU element,
                    // which `held` keeps alive.
                    let done = unsafe { Counter::read(view) };
                    if !(done >= 0.0 && done.fract() == 0.0 && done < 2f64.powi(53)) {
                        return Err(PyValueError::new_err(format!(
                            "{} is {done}; a step count is a whole number >= 0",
                            name(Role::State("step"))
                        )));
                    }
                    done as u64 + 1
                }
                // torch's SGD: its momentum buffer exists from the first step on.
                None if self.fresh.contains(&(g, i)) || keys.is_empty() => 1,
                None => 2,
            };
            let carried = product.map(|view| {
                // SAFETY: as for the step count.
                (view.dtype, unsafe { Counter::read(view) }.to_bits())
            });
            let entry = Entry {
                param,
                grad,
                state,
                quantized,
                master,
            };
            self.add(&mut pending, update, carried, entry, [step, product]);
            self.keep.extend([p, grad_tensor]);
            self.keep.extend(held);
        }
        for call in pending {
            self.batch::<O>(&lr, rest, call)?;
        }
        Ok(())
    }

    /// Adds an entry to the pending call with its key, or to a new one, with the step count
    /// and `mu_product` tensors it advances.
    fn add(
        &mut self,
        pending: &mut Vec<Pending>,
        update: u64,
        carried: Option<(DType, u64)>,
        entry: Entry,
        [step, product]: [Option<View>; 2],
    ) {
        let quantized = entry.is_quantized();
        let key = (
            entry.param.dtype,
            update,
            entry.master.is_some(),
            quantized,
            carried,
        );
        let index = pending
            .iter()
            .position(|c| (c.dtype, c.update, c.master, c.quantized, c.carried) == key);
        let call = match index {
            Some(index) => &mut pending[index],
            None => {
                pending.push(Pending {
                    dtype: key.0,
                    update,
                    master: key.2,
                    quantized,
                    carried,
                    entries: Vec::new(),
                    steps: Vec::new(),
                    products: Vec::new(),
                });
                pending.last_mut().expect("just pushed")
            }
        };
        self.total += entry.param.len;
        if entry.param.len > 0 {
            call.entries.push(entry);
        }
        call.steps.extend(step);
        call.products.extend(product);
    }

    /// Builds the optimizer of a pending call and queues it, with the counters it advances.
    fn batch<O: Defined + Send + 'static>(
        &mut self,
        lr: &LearningRate,
        rest: &Bound<'py, PyTuple>,
        call: Pending,
    ) -> PyResult<()> {
        let rate = lr.at(call.update)?;
        let carried = match call.carried {
            None => None,
            Some((dtype, bits)) => {
                // torch keeps mu_product in a tensor and rounds it to that dtype each step; the
                // kernel multiplies the value it is given by μ_t in float64. Giving it torch's
                // rounded product divided by μ_t makes the two agree.
                let unit: O = optimizer(call.update, rate, rest, 1.0, Some(1.0))?;
                let mu = unit.carry_out(call.update).expect("a carried scalar");
                let stored = f64::from_bits(bits);
                let product = match dtype {
                    DType::F64 => stored * mu,
                    // torch multiplies a float32 tensor by a Python float in float32.
                    _ => f64::from(stored as f32 * mu as f32),
                };
                let counters = call.products.iter().map(|&view| Counter {
                    view,
                    value: product,
                });
                self.counters.extend(counters);
                Some(product / mu)
            }
        };
        let optimizer: O = optimizer(call.update, rate, rest, 1.0, carried)?;
        let steps = call.steps.iter().map(|&view| Counter {
            view,
            value: call.update as f64,
        });
        self.counters.extend(steps);
        self.batches.push(Box::new(Typed {
            optimizer,
            update: call.update,
            dtype: call.dtype,
            quantized: call.quantized,
            entries: call.entries,
        }));
        Ok(())
    }

    /// Checks `object` as `expect` says; returns its memory and the tensor to hold (for a
    /// gradient that is not contiguous, a contiguous copy), and registers its bytes for the
    /// step's overlap check.
    fn view(
        &mut self,
        object: &Bound<'py, PyAny>,
        name: TensorName,
        expect: Expect<'_, 'py>,
    ) -> PyResult<(View, Bound<'py, PyAny>)> {
        let py = object.py();
        let named = named(py, name);
        self.check_tensor(object, name)?;
        let dtype_object = object.getattr(intern!(py, "dtype")).map_err(named)?;
        let kind = self.types.kind(&dtype_object);
        let numel: usize = object
            .call_method0(intern!(py, "numel"))
            .map_err(named)?
            .extract()?;
        let shape = || shape_text(object);
        let (dtype, len) = match (expect, kind) {
            (Expect::Param, Some(kind)) => (kind, numel),
            (Expect::Param, None) => {
                return Err(PyTypeError::new_err(format!(
                    "{name} has dtype {dtype_object}; lrfast.torch updates float32, float64, \
                     float16 and bfloat16 parameters"
                )))
            }
            (Expect::Like { dtype, len, .. }, Some(kind)) if kind == dtype && numel == len => {
                (kind, len)
            }
            (Expect::Like { dtype, param, .. }, _) => {
                return Err(PyValueError::new_err(format!(
                    "{name} has dtype {dtype_object} and shape {}; the update needs {} and {}",
                    shape(),
                    self.types.dtype_name(dtype),
                    shape_text(param),
                )))
            }
            (Expect::Scales { len }, Some(DType::F32)) if numel == len && ndim(object)? == 1 => {
                (DType::F32, len)
            }
            (Expect::Scales { len }, _) => {
                return Err(PyValueError::new_err(format!(
                    "{name} has dtype {dtype_object} and shape {}; the update needs \
                     torch.float32 and ({len},), one scale per block of {BLOCK}",
                    shape()
                )))
            }
            (Expect::Scalar, Some(kind @ (DType::F32 | DType::F64))) if numel == 1 => (kind, 1),
            (Expect::Scalar, _) => {
                return Err(PyTypeError::new_err(format!(
                    "{name} must be a float32 or float64 tensor of one element, got \
                     {dtype_object} of shape {}",
                    shape()
                )))
            }
        };
        // A lazily negated parameter (`_neg_view`) would be updated as its negation. (Other
        // tensors are made by autograd or the optimizer; a sparse one fails `is_contiguous`.)
        let param = matches!(name.role, Role::Param);
        if param
            && object
                .call_method0(intern!(py, "is_neg"))
                .map_err(named)?
                .is_truthy()?
        {
            return Err(PyValueError::new_err(format!(
                "{name} is a lazily negated view (its negative bit is set); give \
                 tensor.resolve_neg()"
            )));
        }
        // One element is contiguous whatever its strides.
        let contiguous = !matches!(expect, Expect::Scalar);
        let (address, tensor) = self.memory(object, name, len * item_size(dtype), contiguous)?;
        if !address.is_multiple_of(item_size(dtype)) {
            return Err(PyValueError::new_err(format!(
                "{name} is not aligned to its dtype"
            )));
        }
        let view = View {
            address,
            len,
            dtype,
        };
        Ok((view, tensor))
    }

    /// Checks `object` as the codes of an 8-bit slot of `param` (uint8, its shape); returns
    /// their address and the tensor to hold, and registers their bytes as [`Plan::view`] does.
    fn codes(
        &mut self,
        object: &Bound<'py, PyAny>,
        name: TensorName,
        param: &Bound<'py, PyAny>,
    ) -> PyResult<(usize, Bound<'py, PyAny>)> {
        let py = object.py();
        self.check_tensor(object, name)?;
        let dtype_object = object
            .getattr(intern!(py, "dtype"))
            .map_err(named(py, name))?;
        let shape = object.getattr(intern!(py, "shape"))?;
        if !dtype_object.is(&self.types.uint8) || !shape.eq(param.getattr(intern!(py, "shape"))?)? {
            return Err(PyValueError::new_err(format!(
                "{name} has dtype {dtype_object} and shape {}; 8-bit state needs torch.uint8 \
                 and {}, its parameter's shape",
                shape_text(object),
                shape_text(param),
            )));
        }
        let len: usize = object.call_method0(intern!(py, "numel"))?.extract()?;
        self.memory(object, name, len, true)
    }

    /// Refuses what is not a CPU tensor (and a gradient that is not dense).
    fn check_tensor(&self, object: &Bound<'py, PyAny>, name: TensorName) -> PyResult<()> {
        let py = object.py();
        let named = named(py, name);
        if !object.is_instance(&self.types.tensor)? {
            let type_name = object.get_type().name()?;
            return Err(PyTypeError::new_err(format!(
                "{name} must be a tensor, got {type_name}"
            )));
        }
        if !object
            .getattr(intern!(py, "is_cpu"))
            .map_err(named)?
            .is_truthy()?
        {
            let device = object.getattr(intern!(py, "device")).map_err(named)?;
            return Err(PyValueError::new_err(format!(
                "{name} is on {device}; lrfast.torch updates CPU tensors"
            )));
        }
        if matches!(name.role, Role::Grad) {
            // An embedding's gradient may be sparse.
            let layout = object.getattr(intern!(py, "layout")).map_err(named)?;
            if !layout.is(&self.types.strided) {
                return Err(PyValueError::new_err(format!(
                    "{name} has layout {layout}; lrfast.torch updates dense (strided) tensors, \
                     not sparse ones"
                )));
            }
        }
        Ok(())
    }

    /// The address of a checked tensor's `bytes` and the tensor to hold, registered for the
    /// step's overlap check. With `contiguous`, a tensor that is not is refused, or, for a
    /// gradient (only read), copied.
    fn memory(
        &mut self,
        object: &Bound<'py, PyAny>,
        name: TensorName,
        bytes: usize,
        contiguous: bool,
    ) -> PyResult<(usize, Bound<'py, PyAny>)> {
        let py = object.py();
        let named = named(py, name);
        let mut tensor = object.clone();
        if contiguous
            && !tensor
                .call_method0(intern!(py, "is_contiguous"))
                .map_err(named)?
                .is_truthy()?
        {
            if !matches!(name.role, Role::Grad) {
                return Err(PyValueError::new_err(format!(
                    "{name} is not contiguous; lrfast.torch updates contiguous tensors"
                )));
            }
            tensor = tensor
                .call_method0(intern!(py, "contiguous"))
                .map_err(named)?;
        }
        let address: usize = tensor
            .call_method0(intern!(py, "data_ptr"))
            .map_err(named)?
            .extract()?;
        self.ranges.push(InFlight {
            start: address,
            end: address + bytes,
            writes: !matches!(name.role, Role::Grad),
            name: Label::Tensor(name),
        });
        Ok((address, tensor))
    }
}

/// torch's own errors (`is_contiguous` of a sparse tensor), with the tensor's name.
fn named(py: Python<'_>, name: TensorName) -> impl Fn(PyErr) -> PyErr + Copy + '_ {
    move |e: PyErr| PyErr::from_type(e.get_type(py), format!("{name}: {}", e.value(py)))
}

fn ndim(tensor: &Bound<'_, PyAny>) -> PyResult<usize> {
    tensor.call_method0(intern!(tensor.py(), "dim"))?.extract()
}

/// Checks a parameter's 8-bit state: float32, every used slot 8-bit.
fn check_quantized(
    keys: &[SlotKeys<'_>],
    state: &[Option<View>; MAX_STATE],
    name: impl Fn(Role) -> TensorName,
    dtype: DType,
) -> PyResult<()> {
    if dtype != DType::F32 {
        return Err(PyTypeError::new_err(format!(
            "{} has 8-bit state, but 8-bit state is for float32 parameters",
            name(Role::Param)
        )));
    }
    if let Some(keys) = keys.iter().find(|k| state[k.slot].is_some()) {
        return Err(PyValueError::new_err(format!(
            "{} is float32 beside 8-bit state: a parameter's state is 8-bit in every slot or \
             in none",
            name(Role::State(keys.key))
        )));
    }
    Ok(())
}

/// The state keys of a slot the step uses: `{key}`, or `{key}_codes` and `{key}_absmax` for
/// 8-bit state.
struct SlotKeys<'py> {
    slot: usize,
    key: &'static str,
    full_precision: Option<&'static str>,
    plain: Bound<'py, PyString>,
    codes: Bound<'py, PyString>,
    absmax: Bound<'py, PyString>,
}

/// A tensor's shape for messages: `(4, 3)`.
fn shape_text(tensor: &Bound<'_, PyAny>) -> String {
    tensor
        .getattr("shape")
        .and_then(|shape| {
            PyTuple::new(
                tensor.py(),
                shape.try_iter()?.collect::<PyResult<Vec<_>>>()?,
            )
        })
        .map(|shape| shape.to_string())
        .unwrap_or_else(|_| "?".into())
}
