use super::{bias_correction, direction, effective_grad, Optimizer};
use crate::error::{grad_scale, non_negative, unit_interval_open, Error};
use crate::parallel::Lanes;
use crate::real::{max_keep_nan, Real};

/// Adamax (`torch.optim.Adamax`): `m ← β1·m + (1 − β1)·g`, `u ← max(β2·u, |g| + eps)` (NaN kept),
/// `p ← p − (lr/(1 − β1^t))·m/u`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adamax {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
    /// A factor on the gradient, fused into the update (1 for none): clipping to a global
    /// norm without writing the gradients.
    pub grad_scale: f64,
}

pub struct AdamaxScalars {
    clr: f64,
    sign: f64,
}

impl Optimizer for Adamax {
    type Scalars = AdamaxScalars;

    fn state_slots(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_inf"]
    }

    fn uses_slot(&self, _slot: usize) -> bool {
        true
    }

    fn validate(&self) -> Result<(), Error> {
        grad_scale(self.grad_scale)?;
        non_negative("lr", self.lr)?;
        unit_interval_open("betas[0]", self.beta1)?;
        unit_interval_open("betas[1]", self.beta2)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)
    }

    fn scalars(&self, step: u64) -> AdamaxScalars {
        AdamaxScalars {
            clr: self.lr / bias_correction(self.beta1, step),
            sign: direction(self.maximize, self.grad_scale),
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &AdamaxScalars, lanes: Lanes<'_, T>) {
        if self.weight_decay != 0.0 {
            self.piece::<T, true>(s, lanes)
        } else {
            self.piece::<T, false>(s, lanes)
        }
    }
}

impl Adamax {
    #[inline(always)]
    fn piece<T: Real, const L2: bool>(&self, s: &AdamaxScalars, lanes: Lanes<'_, T>) {
        let Lanes {
            param,
            grad,
            state: [exp_avg, exp_inf, _],
        } = lanes;
        let n = param.len();
        let (grad, exp_avg, exp_inf) = (&grad[..n], &mut exp_avg[..n], &mut exp_inf[..n]);
        let beta1 = T::from_f64(self.beta1);
        let one_minus_beta1 = T::from_f64(1.0 - self.beta1);
        let beta2 = T::from_f64(self.beta2);
        let eps = T::from_f64(self.eps);
        let clr = T::from_f64(s.clr);
        let sign = T::from_f64(s.sign);
        let weight_decay = T::from_f64(self.weight_decay);
        for i in 0..n {
            let g = effective_grad::<T, L2>(grad[i], param[i], sign, weight_decay);
            let m = beta1 * exp_avg[i] + one_minus_beta1 * g;
            exp_avg[i] = m;
            let u = max_keep_nan(exp_inf[i] * beta2, g.abs() + eps);
            exp_inf[i] = u;
            param[i] = param[i] - clr * m / u;
        }
    }
}
