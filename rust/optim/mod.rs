//! The optimizer updates, one fused pass over the arrays each, following PyTorch's `torch.optim`
//! single-tensor formulas (see `shared/docs/semantics.md`, mirrored in each type's docs).
//!
//! Hyperparameters are `f64`. Per-step scalars (bias corrections, powers `β^t`, decayed rates) are
//! computed once per call in `f64` and rounded to the element type; the elementwise arithmetic then
//! runs in the element type, in the order PyTorch's tensor operations use, so float32 results stay
//! within a few ULPs of PyTorch's.

mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod floor;
mod nadam;
mod radam;
mod rmsprop;
mod sgd;

pub use adadelta::Adadelta;
pub use adagrad::Adagrad;
pub use adam::Adam;
pub use adamax::Adamax;
pub use floor::MemoryFloor;
pub use nadam::NAdam;
pub use radam::RAdam;
pub use rmsprop::RMSprop;
pub use sgd::Sgd;

use crate::error::Error;
use crate::parallel::{for_each_piece, Lanes, MAX_STATE};
use crate::real::Real;
use crate::simd;

/// An optimizer's update rule with its hyperparameters.
pub trait Optimizer: Sync {
    /// Per-call scalars derived from the hyperparameters and the step number.
    type Scalars: Sync;

    /// The names of the state slots, in the order of [`Lanes::state`] (PyTorch's names).
    fn state_slots(&self) -> &'static [&'static str];

    /// Whether these options read and write state slot `slot`.
    fn uses_slot(&self, slot: usize) -> bool;

    /// Checks every hyperparameter and option.
    fn validate(&self) -> Result<(), Error>;

    /// Computes the scalars of update number `step` (1-based, already validated).
    fn scalars(&self, step: u64) -> Self::Scalars;

    /// Updates one piece of the arrays in place.
    fn update_piece<T: Real>(&self, scalars: &Self::Scalars, lanes: Lanes<'_, T>);
}

/// Checks the hyperparameters and `step`, once per call.
pub fn check_call<O: Optimizer>(optimizer: &O, step: u64) -> Result<(), Error> {
    optimizer.validate()?;
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
    let expected = lanes.param.len();
    if lanes.grad.len() != expected {
        return Err(Error::Length {
            name: "grad",
            expected,
            actual: lanes.grad.len(),
        });
    }
    let slots = optimizer.state_slots();
    debug_assert!(slots.len() <= MAX_STATE);
    for (slot, name) in slots.iter().enumerate() {
        if !optimizer.uses_slot(slot) {
            continue;
        }
        let actual = lanes.state[slot].len();
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
    check_call(optimizer, step)?;
    for lanes in &tensors {
        check_lengths(optimizer, lanes)?;
    }
    let scalars = optimizer.scalars(step);
    for_each_piece(tensors, &|piece| {
        update_dispatched(optimizer, &scalars, piece)
    });
    Ok(())
}

/// Runs `update_piece` compiled for the active SIMD level. `update_piece` is
/// `#[inline(always)]`, so each `#[target_feature]` function below holds its own copy of the loop
/// compiled for that instruction set (a closure would not be inlined reliably, and would leave
/// the loop at the baseline).
fn update_dispatched<O: Optimizer, T: Real>(
    optimizer: &O,
    scalars: &O::Scalars,
    lanes: Lanes<'_, T>,
) {
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `simd::active()` never exceeds what the CPU supports.
        simd::SimdLevel::Avx512 => unsafe { update_avx512(optimizer, scalars, lanes) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        simd::SimdLevel::Avx2 => unsafe { update_avx2(optimizer, scalars, lanes) },
        _ => optimizer.update_piece(scalars, lanes),
    }
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_avx2<O: Optimizer, T: Real>(
    optimizer: &O,
    scalars: &O::Scalars,
    lanes: Lanes<'_, T>,
) {
    optimizer.update_piece(scalars, lanes)
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn update_avx512<O: Optimizer, T: Real>(
    optimizer: &O,
    scalars: &O::Scalars,
    lanes: Lanes<'_, T>,
) {
    optimizer.update_piece(scalars, lanes)
}

/// The factor on the gradient: `grad_scale`, negated to maximize (ascend the gradient).
/// Negation is exact, so `g·(−s)` rounds as PyTorch's clip (`g·s`) followed by `−g` does.
fn direction(maximize: bool, grad_scale: f64) -> f64 {
    if maximize {
        -grad_scale
    } else {
        grad_scale
    }
}

/// The gradient an update uses: negated when maximizing, plus L2 weight decay when `L2`.
#[inline(always)]
fn effective_grad<T: Real, const L2: bool>(grad: T, param: T, sign: T, weight_decay: T) -> T {
    let grad = grad * sign;
    if L2 {
        grad + weight_decay * param
    } else {
        grad
    }
}

/// `1 - beta^step` in f64, with `step` an exact integer exponent.
fn bias_correction(beta: f64, step: u64) -> f64 {
    1.0 - beta.powf(step as f64)
}

#[cfg(test)]
mod tests;
