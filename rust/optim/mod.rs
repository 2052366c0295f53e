//! The optimizer updates, one fused pass over the arrays each, following PyTorch's `torch.optim`
//! single-tensor formulas (`docs/semantics.md`). Each optimizer's interface (names, defaults,
//! ranges, state slots, the update rule in words) is its [`Spec`], in [`ALL`]; its update is the
//! [`Optimizer`] impl beside it.
//!
//! Hyperparameters are `f64`. Per-step scalars (bias corrections, powers `β^t`, decayed rates) are
//! computed once per call in `f64` and rounded to the element type; the elementwise arithmetic then
//! runs in the element type, in the order PyTorch's tensor operations use, so float32 results stay
//! within a few ULPs of PyTorch's.
//!
//! # Loads before stores
//!
//! Every loop iteration reads all its inputs before it writes any output. Arrays allocated alike
//! (`np.zeros_like`, torch's allocator) start at the same offset within a 4 KiB page, so element
//! `i` of each array has the same low 12 address bits; x86 CPUs stall a load that follows a
//! store with the same low 12 bits until the store's address is known (4K aliasing). A loop that
//! stored `m[i]` and then loaded `v[i]` ran Adam at 1.7x its memory floor on such arrays; loads
//! first makes the speed independent of placement, with the same arithmetic and bits.

mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod floor;
mod nadam;
mod radam;
mod rmsprop;
mod sgd;
pub mod spec;

pub use adadelta::Adadelta;
pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use adamax::Adamax;
pub use floor::MemoryFloor;
pub use nadam::NAdam;
pub use radam::RAdam;
pub use rmsprop::RMSprop;
pub use sgd::Sgd;
pub use spec::{Gradient, Hyperparameters, Spec, Value};

use crate::error::Error;
use crate::parallel::{for_each_piece, Lanes, MixedLanes, QuantizedLanes, MAX_STATE};
use crate::quantize::{self, BLOCK};
use crate::real::{HalfFloat, Real};
use crate::simd;

/// Every optimizer lrfast defines, in the order the documentation lists them.
pub const ALL: [&Spec; 9] = [
    &sgd::SPEC,
    &adagrad::SPEC,
    &rmsprop::SPEC,
    &adadelta::SPEC,
    &adam::SPEC,
    &adam::SPEC_ADAMW,
    &adamax::SPEC,
    &nadam::SPEC,
    &radam::SPEC,
];

/// An optimizer's update rule with its hyperparameters. Values of these types are built from
/// validated [`Hyperparameters`] (see [`Defined`]), so an update never sees an invalid one.
pub trait Optimizer: Sync {
    /// Per-call scalars derived from the hyperparameters and the step number.
    type Scalars: Sync;

    /// The state slots, in the order of [`Lanes::state`], and which of them these options use.
    fn slots(&self) -> Slots;

    /// Computes the scalars of update number `step` (1-based, already validated).
    fn scalars(&self, step: u64) -> Self::Scalars;

    /// Updates one piece of the arrays in place.
    fn update_piece<T: Real>(&self, scalars: &Self::Scalars, lanes: Lanes<'_, T>);
}

/// An optimizer whose interface is a [`Spec`]: built only from hyperparameters checked by it.
pub trait Defined: Optimizer + Sized {
    const SPEC: &'static Spec;

    /// Builds the optimizer from checked values, refusing combinations the spec's ranges cannot
    /// express (Nesterov momentum without momentum).
    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error>;

    /// The defaults with `given` (`(name, value)` pairs) in their place, checked.
    fn new(given: &[(&str, Value)]) -> Result<Self, Error> {
        Self::from_hyperparameters(&Self::SPEC.with(given)?)
    }

    /// Sets the carried scalar (the spec's `carried`) before update `step`: `None` computes it
    /// from scratch. Optimizers without one ignore it.
    fn carry_in(&mut self, _step: u64, _value: Option<f64>) -> Result<(), Error> {
        Ok(())
    }

    /// The carried scalar after update `step`, for the next call; `None` if there is none.
    fn carry_out(&self, _step: u64) -> Option<f64> {
        None
    }
}

/// State slot names and which slots the options use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slots {
    pub names: [&'static str; MAX_STATE],
    pub used: [bool; MAX_STATE],
    /// Whether each slot's values can be negative ([`spec::Slot::signed`]).
    pub signed: [bool; MAX_STATE],
}

impl Slots {
    /// The slots of `h`'s spec, used as its values say.
    pub fn of(h: &Hyperparameters, spec: &Spec) -> Slots {
        let mut names = [""; MAX_STATE];
        let mut signed = [true; MAX_STATE];
        for (slot, s) in spec.slots.iter().enumerate() {
            names[slot] = s.name;
            signed[slot] = s.signed;
        }
        Slots {
            names,
            used: h.used_slots(),
            signed,
        }
    }
}

/// Checks `step`, once per call (the hyperparameters were checked when the optimizer was built).
pub fn check_call(step: u64) -> Result<(), Error> {
    if step < 1 {
        return Err(Error::Step(step));
    }
    Ok(())
}

/// Checks one tensor's array lengths against its parameter, and that every state the options
/// use is there, without touching any array.
pub fn check_lengths<O: Optimizer, T: Real>(
    optimizer: &O,
    lanes: &Lanes<'_, T>,
) -> Result<(), Error> {
    check_array_lengths(
        optimizer,
        lanes.param.len(),
        lanes.grad.len(),
        lanes.state.each_ref().map(|s| s.len()),
    )
}

fn check_array_lengths<O: Optimizer>(
    optimizer: &O,
    expected: usize,
    grad: usize,
    states: [usize; MAX_STATE],
) -> Result<(), Error> {
    if grad != expected {
        return Err(Error::Length {
            name: "grad",
            expected,
            actual: grad,
        });
    }
    let slots = optimizer.slots();
    for (slot, name) in slots.names.iter().enumerate() {
        if !slots.used[slot] {
            continue;
        }
        let actual = states[slot];
        if actual != expected {
            return Err(if actual == 0 {
                Error::MissingState(name)
            } else {
                Error::Length {
                    name,
                    expected,
                    actual,
                }
            });
        }
    }
    Ok(())
}

/// Applies update number `step` (1-based) to `lanes` in place, in parallel for large arrays.
///
/// Nothing is written unless every check passes.
pub fn step<O: Optimizer, T: Real>(
    optimizer: &O,
    step: u64,
    lanes: Lanes<'_, T>,
) -> Result<(), Error> {
    step_many(optimizer, step, vec![lanes])
}

/// Applies update number `step` to several tensors in one call, spreading the work over threads
/// across and within tensors. Every tensor is checked before any is written.
pub fn step_many<O: Optimizer, T: Real>(
    optimizer: &O,
    step: u64,
    tensors: Vec<Lanes<'_, T>>,
) -> Result<(), Error> {
    check_call(step)?;
    for lanes in &tensors {
        check_lengths(optimizer, lanes)?;
    }
    let scalars = optimizer.scalars(step);
    for_each_piece(tensors, &|lanes| {
        dispatch(Plain {
            optimizer,
            scalars: &scalars,
            lanes,
        })
    });
    Ok(())
}

/// Applies update number `step` to 16-bit parameters and gradients with `f32` state (and
/// optional `f32` master copies), as [`step_many`] does for one type.
///
/// The arithmetic is the `f32` kernel's, on the widened gradient and on the master copy (or the
/// widened parameter): the result is bit-identical to widening, stepping in `f32` and rounding
/// the new parameter to `H`. The widened values of a block of [`MIXED_BLOCK`] elements live on
/// the stack, so memory is still read and written once.
pub fn step_mixed<O: Optimizer, H: HalfFloat>(
    optimizer: &O,
    step: u64,
    tensors: Vec<MixedLanes<'_, H>>,
) -> Result<(), Error> {
    check_call(step)?;
    for lanes in &tensors {
        let expected = lanes.param.len();
        let states = lanes.state.each_ref().map(|s| s.len());
        check_array_lengths(optimizer, expected, lanes.grad.len(), states)?;
        if let Some(master) = &lanes.master {
            if master.len() != expected {
                return Err(Error::Length {
                    name: "master",
                    expected,
                    actual: master.len(),
                });
            }
        }
    }
    let scalars = optimizer.scalars(step);
    for_each_piece(tensors, &|lanes| {
        dispatch(Mixed {
            optimizer,
            scalars: &scalars,
            lanes,
        })
    });
    Ok(())
}

/// Applies update number `step` to `f32` parameters with 8-bit block-wise state (see
/// [`crate::quantize`]), as [`step_many`] does with `f32` state.
///
/// Each block of [`BLOCK`] elements is decoded into `f32` buffers on the stack, updated by the
/// optimizer's own `f32` rule (the same code as [`step_many`]'s), and encoded again with the
/// scale of its new values: one pass over memory, and the parameter update uses the `f32` state
/// before it is rounded, as in the paper. A slot's map follows its spec: signed, or unsigned for
/// values that are never negative.
pub fn step_quantized<O: Optimizer>(
    optimizer: &O,
    step: u64,
    tensors: Vec<QuantizedLanes<'_>>,
) -> Result<(), Error> {
    check_call(step)?;
    for lanes in &tensors {
        let expected = lanes.param.len();
        let codes = lanes.state.each_ref().map(|s| s.codes.len());
        check_array_lengths(optimizer, expected, lanes.grad.len(), codes)?;
        let slots = optimizer.slots();
        for (slot, state) in lanes.state.iter().enumerate() {
            if slots.used[slot] && state.absmax.len() != expected.div_ceil(BLOCK) {
                return Err(Error::Invalid(format!(
                    "{} has {} block scales but {expected} elements need {}",
                    slots.names[slot],
                    state.absmax.len(),
                    expected.div_ceil(BLOCK)
                )));
            }
        }
    }
    let scalars = optimizer.scalars(step);
    for_each_piece(tensors, &|lanes| {
        dispatch(Quantized {
            optimizer,
            scalars: &scalars,
            lanes,
        })
    });
    Ok(())
}

/// Elements per block of a mixed-precision update: the `f32` copies of a block's parameters and
/// gradients (8 KiB) stay in the L1 cache between widening and rounding.
pub const MIXED_BLOCK: usize = 1024;

/// One piece of work whose loop is compiled for the active SIMD level by [`dispatch`].
trait Kernel {
    /// Runs the piece; must be `#[inline(always)]` so that it is compiled into each
    /// `#[target_feature]` function of [`dispatch`].
    fn run(self);
}

/// An update of one piece in its own type.
struct Plain<'a, 'l, O: Optimizer, T> {
    optimizer: &'a O,
    scalars: &'a O::Scalars,
    lanes: Lanes<'l, T>,
}

impl<O: Optimizer, T: Real> Kernel for Plain<'_, '_, O, T> {
    #[inline(always)]
    fn run(self) {
        self.optimizer.update_piece(self.scalars, self.lanes)
    }
}

/// A mixed-precision update of one piece, block by block through `f32` buffers.
struct Mixed<'a, 'l, O: Optimizer, H> {
    optimizer: &'a O,
    scalars: &'a O::Scalars,
    lanes: MixedLanes<'l, H>,
}

impl<O: Optimizer, H: HalfFloat> Kernel for Mixed<'_, '_, O, H> {
    #[inline(always)]
    fn run(self) {
        let MixedLanes {
            param,
            grad,
            mut master,
            mut state,
        } = self.lanes;
        let mut grad32 = [0.0f32; MIXED_BLOCK];
        let mut param32 = [0.0f32; MIXED_BLOCK];
        let n = param.len();
        let mut start = 0;
        while start < n {
            let end = (start + MIXED_BLOCK).min(n);
            let len = end - start;
            H::widen(&grad[start..end], &mut grad32[..len]);
            let param_block: &mut [f32] = match master.as_deref_mut() {
                Some(master) => &mut master[start..end],
                None => {
                    H::widen(&param[start..end], &mut param32[..len]);
                    &mut param32[..len]
                }
            };
            let state_block = state.each_mut().map(|s| {
                if s.is_empty() {
                    &mut [][..]
                } else {
                    &mut s[start..end]
                }
            });
            self.optimizer.update_piece(
                self.scalars,
                Lanes {
                    param: &mut *param_block,
                    grad: &grad32[..len],
                    state: state_block,
                },
            );
            H::narrow(param_block, &mut param[start..end]);
            start = end;
        }
    }
}

/// An update of one piece with 8-bit state, block by block through `f32` buffers.
struct Quantized<'a, 'l, O: Optimizer> {
    optimizer: &'a O,
    scalars: &'a O::Scalars,
    lanes: QuantizedLanes<'l>,
}

impl<O: Optimizer> Kernel for Quantized<'_, '_, O> {
    #[inline(always)]
    fn run(self) {
        let QuantizedLanes {
            param,
            grad,
            mut state,
        } = self.lanes;
        let slots = self.optimizer.slots();
        let maps = slots.signed.map(quantize::map);
        let mut buffers = [[0.0f32; BLOCK]; MAX_STATE];
        let n = param.len();
        for (block, start) in (0..n).step_by(BLOCK).enumerate() {
            let end = (start + BLOCK).min(n);
            let len = end - start;
            for (((slot, buffer), map), &used) in
                state.iter().zip(&mut buffers).zip(&maps).zip(&slots.used)
            {
                if used {
                    let codes = &slot.codes[start..end];
                    quantize::dequantize_block(map, codes, slot.absmax[block], &mut buffer[..len]);
                }
            }
            let [b0, b1, b2] = &mut buffers;
            let mut views = [&mut b0[..len], &mut b1[..len], &mut b2[..len]];
            for (view, &used) in views.iter_mut().zip(&slots.used) {
                if !used {
                    *view = &mut [];
                }
            }
            self.optimizer.update_piece(
                self.scalars,
                Lanes {
                    param: &mut param[start..end],
                    grad: &grad[start..end],
                    state: views,
                },
            );
            for (((slot, buffer), map), &used) in
                state.iter_mut().zip(&buffers).zip(&maps).zip(&slots.used)
            {
                if used {
                    let codes = &mut slot.codes[start..end];
                    slot.absmax[block] = quantize::quantize_block(map, &buffer[..len], codes);
                }
            }
        }
    }
}

/// Runs `kernel` compiled for the active SIMD level. [`Kernel::run`] is `#[inline(always)]`,
/// so each `#[target_feature]` function below holds its own copy of the loop compiled for that
/// instruction set (a closure would not be inlined reliably, and would leave the loop at the
/// baseline).
fn dispatch<K: Kernel>(kernel: K) {
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `simd::active()` never exceeds what the CPU supports.
        simd::SimdLevel::Avx512 => unsafe { run_avx512(kernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        simd::SimdLevel::Avx2 => unsafe { run_avx2(kernel) },
        _ => kernel.run(),
    }
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<K: Kernel>(kernel: K) {
    kernel.run()
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<K: Kernel>(kernel: K) {
    kernel.run()
}

/// The gradient an update uses: times the [`Gradient`] factor (clipping, the sign to maximize),
/// plus L2 weight decay when `L2`.
#[inline(always)]
fn effective_grad<T: Real, const L2: bool>(grad: T, param: T, factor: T, weight_decay: T) -> T {
    let grad = grad * factor;
    if L2 {
        grad + weight_decay * param
    } else {
        grad
    }
}

/// The parameter and gradient an update of the Adam family (Adam, AdamW, NAdam, RAdam) uses:
/// the parameter shrunk by `shrink` first when `SHRINK` (decoupled weight decay), the gradient
/// as [`effective_grad`] makes it.
#[inline(always)]
fn decayed<T: Real, const L2: bool, const SHRINK: bool>(
    param: T,
    grad: T,
    shrink: T,
    factor: T,
    l2: T,
) -> (T, T) {
    let param = if SHRINK { param * shrink } else { param };
    (param, effective_grad::<T, L2>(grad, param, factor, l2))
}

/// Calls `$optimizer.piece::<T, L2, SHRINK>($scalars, $lanes)` with the loop variant the weight
/// decay needs (L2 in the gradient, the parameter shrunk, or neither), so that each loop is
/// compiled without the branch.
macro_rules! by_weight_decay {
    ($optimizer:ident, $scalars:expr, $lanes:expr, l2: $l2:expr, shrink: $shrink:expr) => {
        match ($l2, $shrink) {
            (true, _) => $optimizer.piece::<T, true, false>($scalars, $lanes),
            (false, true) => $optimizer.piece::<T, false, true>($scalars, $lanes),
            (false, false) => $optimizer.piece::<T, false, false>($scalars, $lanes),
        }
    };
}
use by_weight_decay;

/// The first and second moment averages of the Adam family, in the element type:
/// `m ← β1·m + (1 − β1)·g` and `v ← β2·v + (1 − β2)·g²`, rounded as PyTorch's `lerp_` and
/// `mul_(β2).addcmul_(g, g, 1 − β2)` are.
#[derive(Clone, Copy)]
struct Moments<T> {
    beta1: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
}

impl<T: Real> Moments<T> {
    #[inline(always)]
    fn new(beta1: f64, beta2: f64) -> Self {
        Moments {
            beta1: T::from_f64(beta1),
            one_minus_beta1: T::from_f64(1.0 - beta1),
            beta2: T::from_f64(beta2),
            one_minus_beta2: T::from_f64(1.0 - beta2),
        }
    }

    /// The new `m` and `v` after the gradient `g`.
    #[inline(always)]
    fn next(&self, m: T, v: T, g: T) -> (T, T) {
        (
            self.beta1 * m + self.one_minus_beta1 * g,
            v * self.beta2 + self.one_minus_beta2 * g * g,
        )
    }
}

/// Weight decay as the update applies it: `(l2, shrink)`, the coupled (L2) rate added to the
/// gradient and the factor `1 − lr·weight_decay` on the parameter (decoupled, AdamW's). One of
/// them is always neutral (0 or 1).
fn weight_decay_terms(lr: f64, weight_decay: f64, decoupled: bool) -> (f64, f64) {
    if decoupled {
        (0.0, 1.0 - lr * weight_decay)
    } else {
        (weight_decay, 1.0)
    }
}

/// `1 - beta^step` in f64, with `step` an exact integer exponent.
fn bias_correction(beta: f64, step: u64) -> f64 {
    1.0 - beta.powf(step as f64)
}

#[cfg(test)]
mod tests;
