use super::{direction, effective_grad, Optimizer};
use crate::error::{grad_scale, non_negative, unit_interval_closed, Error};
use crate::parallel::Lanes;
use crate::real::Real;

/// Adadelta (`torch.optim.Adadelta`): `v ← ρ·v + (1 − ρ)·g²`, `Δ = √(u + eps)/√(v + eps)·g`,
/// `u ← ρ·u + (1 − ρ)·Δ²`, `p ← p − lr·Δ`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adadelta {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
    /// A factor on the gradient, fused into the update (1 for none): clipping to a global
    /// norm without writing the gradients.
    pub grad_scale: f64,
}

impl Optimizer for Adadelta {
    type Scalars = ();

    fn state_slots(&self) -> &'static [&'static str] {
        &["square_avg", "acc_delta"]
    }

    fn uses_slot(&self, _slot: usize) -> bool {
        true
    }

    fn validate(&self) -> Result<(), Error> {
        grad_scale(self.grad_scale)?;
        non_negative("lr", self.lr)?;
        unit_interval_closed("rho", self.rho)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)
    }

    fn scalars(&self, _step: u64) {}

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, _: &(), lanes: Lanes<'_, T>) {
        if self.weight_decay != 0.0 {
            self.piece::<T, true>(lanes)
        } else {
            self.piece::<T, false>(lanes)
        }
    }
}

impl Adadelta {
    #[inline(always)]
    fn piece<T: Real, const L2: bool>(&self, lanes: Lanes<'_, T>) {
        let Lanes {
            param,
            grad,
            state: [square_avg, acc_delta, _],
        } = lanes;
        let n = param.len();
        let (grad, square_avg, acc_delta) = (&grad[..n], &mut square_avg[..n], &mut acc_delta[..n]);
        let lr = T::from_f64(self.lr);
        let rho = T::from_f64(self.rho);
        let one_minus_rho = T::from_f64(1.0 - self.rho);
        let eps = T::from_f64(self.eps);
        let sign = T::from_f64(direction(self.maximize, self.grad_scale));
        let weight_decay = T::from_f64(self.weight_decay);
        for i in 0..n {
            let g = effective_grad::<T, L2>(grad[i], param[i], sign, weight_decay);
            let v = square_avg[i] * rho + one_minus_rho * g * g;
            square_avg[i] = v;
            let delta = (acc_delta[i] + eps).sqrt() / (v + eps).sqrt() * g;
            acc_delta[i] = acc_delta[i] * rho + one_minus_rho * delta * delta;
            param[i] = param[i] - lr * delta;
        }
    }
}
