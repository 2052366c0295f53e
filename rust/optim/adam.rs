use super::{bias_correction, direction, effective_grad, Optimizer};
use crate::error::{grad_scale, non_negative, unit_interval_open, Error};
use crate::parallel::Lanes;
use crate::real::{max_keep_nan, Real};

/// Adam, AdamW and AMSGrad (`torch.optim.Adam` / `AdamW`).
///
/// `m ← β1·m + (1 − β1)·g`, `v ← β2·v + (1 − β2)·g²`; with `amsgrad`, `v̂ ← max(v̂, v)` (NaN kept)
/// stands for `v` below; `p ← p − (lr/bc1)·m / (√v/√bc2 + eps)` with `bc_i = 1 − β_i^t`.
/// `decoupled` (AdamW) first scales `p ← p·(1 − lr·weight_decay)` instead of adding
/// `weight_decay·p` to the gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    /// A factor on the gradient, fused into the update (1 for none): clipping to a global
    /// norm without writing the gradients.
    pub grad_scale: f64,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
}

pub struct AdamScalars {
    step_size: f64,
    bias_correction2_sqrt: f64,
    /// Coupled (L2) decay added to the gradient; zero for AdamW.
    l2: f64,
    /// AdamW's factor `1 − lr·weight_decay`; one for Adam.
    shrink: f64,
    sign: f64,
}

const MAX_EXP_AVG_SQ: usize = 2;

impl Optimizer for Adam {
    type Scalars = AdamScalars;

    fn state_slots(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    }

    fn uses_slot(&self, slot: usize) -> bool {
        slot != MAX_EXP_AVG_SQ || self.amsgrad
    }

    fn validate(&self) -> Result<(), Error> {
        grad_scale(self.grad_scale)?;
        non_negative("lr", self.lr)?;
        unit_interval_open("betas[0]", self.beta1)?;
        unit_interval_open("betas[1]", self.beta2)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)
    }

    fn scalars(&self, step: u64) -> AdamScalars {
        let (l2, shrink) = if self.decoupled {
            (0.0, 1.0 - self.lr * self.weight_decay)
        } else {
            (self.weight_decay, 1.0)
        };
        AdamScalars {
            step_size: self.lr / bias_correction(self.beta1, step),
            bias_correction2_sqrt: bias_correction(self.beta2, step).sqrt(),
            l2,
            shrink,
            sign: direction(self.maximize, self.grad_scale),
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &AdamScalars, lanes: Lanes<'_, T>) {
        match (s.l2 != 0.0, self.decoupled && self.weight_decay != 0.0) {
            (true, _) => self.piece::<T, true, false>(s, lanes),
            (false, true) => self.piece::<T, false, true>(s, lanes),
            (false, false) => self.piece::<T, false, false>(s, lanes),
        }
    }
}

impl Adam {
    #[inline(always)]
    fn piece<T: Real, const L2: bool, const SHRINK: bool>(
        &self,
        s: &AdamScalars,
        lanes: Lanes<'_, T>,
    ) {
        let Lanes {
            param,
            grad,
            state: [exp_avg, exp_avg_sq, max_exp_avg_sq],
        } = lanes;
        let n = param.len();
        let (grad, exp_avg, exp_avg_sq) = (&grad[..n], &mut exp_avg[..n], &mut exp_avg_sq[..n]);
        let beta1 = T::from_f64(self.beta1);
        let one_minus_beta1 = T::from_f64(1.0 - self.beta1);
        let beta2 = T::from_f64(self.beta2);
        let one_minus_beta2 = T::from_f64(1.0 - self.beta2);
        let eps = T::from_f64(self.eps);
        let step_size = T::from_f64(s.step_size);
        let bc2_sqrt = T::from_f64(s.bias_correction2_sqrt);
        let l2 = T::from_f64(s.l2);
        let shrink = T::from_f64(s.shrink);
        let sign = T::from_f64(s.sign);
        // The moment updates shared by both loops; returns the (AdamW-shrunk) parameter.
        let update = |p: T, g: T, m: &mut T, v: &mut T| -> T {
            let p = if SHRINK { p * shrink } else { p };
            let g = effective_grad::<T, L2>(g, p, sign, l2);
            *m = beta1 * *m + one_minus_beta1 * g;
            *v = *v * beta2 + one_minus_beta2 * g * g;
            p
        };
        if self.amsgrad {
            let max_exp_avg_sq = &mut max_exp_avg_sq[..n];
            for i in 0..n {
                let p = update(param[i], grad[i], &mut exp_avg[i], &mut exp_avg_sq[i]);
                let v_max = max_keep_nan(max_exp_avg_sq[i], exp_avg_sq[i]);
                max_exp_avg_sq[i] = v_max;
                param[i] = p - step_size * exp_avg[i] / (v_max.sqrt() / bc2_sqrt + eps);
            }
        } else {
            for i in 0..n {
                let p = update(param[i], grad[i], &mut exp_avg[i], &mut exp_avg_sq[i]);
                param[i] = p - step_size * exp_avg[i] / (exp_avg_sq[i].sqrt() / bc2_sqrt + eps);
            }
        }
    }
}
