use super::{bias_correction, direction, effective_grad, Optimizer};
use crate::error::{grad_scale, non_negative, unit_interval_open, Error};
use crate::parallel::Lanes;
use crate::real::Real;

/// RAdam (`torch.optim.RAdam`), Adam with a rectified variance.
///
/// `m̂ = m/(1 − β1^t)`, `ρ∞ = 2/(1 − β2) − 1`, `ρ_t = ρ∞ − 2t·β2^t/(1 − β2^t)`. If `ρ_t > 5`:
/// `r = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t))` and
/// `p ← p − lr·m̂·r·√(1 − β2^t)/(√v + eps)`; otherwise `p ← p − lr·m̂`.
#[derive(Clone, Debug, PartialEq)]
pub struct RAdam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled_weight_decay: bool,
    pub maximize: bool,
    /// A factor on the gradient, fused into the update (1 for none): clipping to a global
    /// norm without writing the gradients.
    pub grad_scale: f64,
}

pub struct RAdamScalars {
    bias_correction1: f64,
    bias_correction2_sqrt: f64,
    /// The rectification `r`, or `None` while the variance is not yet tractable (`ρ_t ≤ 5`).
    rect: Option<f64>,
    l2: f64,
    shrink: f64,
    sign: f64,
}

impl Optimizer for RAdam {
    type Scalars = RAdamScalars;

    fn state_slots(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
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

    fn scalars(&self, step: u64) -> RAdamScalars {
        let t = step as f64;
        let bias_correction2 = bias_correction(self.beta2, step);
        let rho_inf = 2.0 / (1.0 - self.beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * self.beta2.powf(t) / bias_correction2;
        let rect = (rho_t > 5.0).then(|| {
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt()
        });
        let (l2, shrink) = if self.decoupled_weight_decay {
            (0.0, 1.0 - self.lr * self.weight_decay)
        } else {
            (self.weight_decay, 1.0)
        };
        RAdamScalars {
            bias_correction1: bias_correction(self.beta1, step),
            bias_correction2_sqrt: bias_correction2.sqrt(),
            rect,
            l2,
            shrink,
            sign: direction(self.maximize, self.grad_scale),
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &RAdamScalars, lanes: Lanes<'_, T>) {
        let shrink = self.decoupled_weight_decay && self.weight_decay != 0.0;
        match (s.l2 != 0.0, shrink) {
            (true, _) => self.piece::<T, true, false>(s, lanes),
            (false, true) => self.piece::<T, false, true>(s, lanes),
            (false, false) => self.piece::<T, false, false>(s, lanes),
        }
    }
}

impl RAdam {
    #[inline(always)]
    fn piece<T: Real, const L2: bool, const SHRINK: bool>(
        &self,
        s: &RAdamScalars,
        lanes: Lanes<'_, T>,
    ) {
        let Lanes {
            param,
            grad,
            state: [exp_avg, exp_avg_sq, _],
        } = lanes;
        let n = param.len();
        let (grad, exp_avg, exp_avg_sq) = (&grad[..n], &mut exp_avg[..n], &mut exp_avg_sq[..n]);
        let beta1 = T::from_f64(self.beta1);
        let one_minus_beta1 = T::from_f64(1.0 - self.beta1);
        let beta2 = T::from_f64(self.beta2);
        let one_minus_beta2 = T::from_f64(1.0 - self.beta2);
        let eps = T::from_f64(self.eps);
        let lr = T::from_f64(self.lr);
        let bc1 = T::from_f64(s.bias_correction1);
        let bc2_sqrt = T::from_f64(s.bias_correction2_sqrt);
        let l2 = T::from_f64(s.l2);
        let shrink = T::from_f64(s.shrink);
        let sign = T::from_f64(s.sign);
        let rect = s.rect.map(T::from_f64);
        for i in 0..n {
            let p = if SHRINK { param[i] * shrink } else { param[i] };
            let g = effective_grad::<T, L2>(grad[i], p, sign, l2);
            let m = beta1 * exp_avg[i] + one_minus_beta1 * g;
            exp_avg[i] = m;
            let v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g;
            exp_avg_sq[i] = v;
            let m_hat = m / bc1;
            param[i] = match rect {
                Some(r) => p - m_hat * lr * (bc2_sqrt / (v.sqrt() + eps)) * r,
                None => p - m_hat * lr,
            };
        }
    }
}
