use super::{bias_correction, direction, effective_grad, Optimizer};
use crate::error::{grad_scale, non_negative, unit_interval_open, Error};
use crate::parallel::Lanes;
use crate::real::Real;

/// NAdam (`torch.optim.NAdam`), Nesterov-accelerated Adam with momentum decay.
///
/// `μ_t = β1·(1 − ½·0.96^(t·momentum_decay))`; the running product `mu_product` of the `μ`s is a
/// scalar state the caller keeps (in `f64`: PyTorch keeps it in float32, which costs it accuracy).
/// `den = √(v/(1 − β2^t)) + eps`,
/// `p ← p − lr·(1 − μ_t)/(1 − Πμ_t)·g/den − lr·μ_{t+1}/(1 − Πμ_t·μ_{t+1})·m/den`.
#[derive(Clone, Debug, PartialEq)]
pub struct NAdam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum_decay: f64,
    pub decoupled_weight_decay: bool,
    pub maximize: bool,
    /// A factor on the gradient, fused into the update (1 for none): clipping to a global
    /// norm without writing the gradients.
    pub grad_scale: f64,
    /// The product `μ_1·…·μ_{t−1}` of the updates before this one (1 before the first).
    pub mu_product: f64,
}

pub struct NAdamScalars {
    grad_coef: f64,
    exp_avg_coef: f64,
    bias_correction2: f64,
    l2: f64,
    shrink: f64,
    sign: f64,
}

impl NAdam {
    /// `μ_t` of update `step`.
    pub fn mu(&self, step: u64) -> f64 {
        self.beta1 * (1.0 - 0.5 * 0.96_f64.powf(step as f64 * self.momentum_decay))
    }

    /// The product `μ_1·…·μ_{step−1}` computed from scratch, for callers that did not keep it.
    /// It stops early once the product underflows to zero, where it stays.
    pub fn mu_product_before(&self, step: u64) -> f64 {
        let mut product = 1.0;
        for t in 1..step {
            product *= self.mu(t);
            if product == 0.0 {
                break;
            }
        }
        product
    }

    /// The product of `μ_1 … μ_step`, what `mu_product` becomes after update `step`.
    pub fn mu_product_after(&self, step: u64) -> f64 {
        self.mu_product * self.mu(step)
    }
}

impl Optimizer for NAdam {
    type Scalars = NAdamScalars;

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
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("momentum_decay", self.momentum_decay)?;
        if !((0.0..=1.0).contains(&self.mu_product)) {
            return Err(Error::Hyperparameter {
                name: "mu_product",
                value: self.mu_product,
                expected: "in [0, 1]",
            });
        }
        Ok(())
    }

    fn scalars(&self, step: u64) -> NAdamScalars {
        let mu = self.mu(step);
        let mu_next = self.mu(step + 1);
        let mu_product = self.mu_product * mu;
        let mu_product_next = mu_product * mu_next;
        let (l2, shrink) = if self.decoupled_weight_decay {
            (0.0, 1.0 - self.lr * self.weight_decay)
        } else {
            (self.weight_decay, 1.0)
        };
        NAdamScalars {
            grad_coef: -self.lr * (1.0 - mu) / (1.0 - mu_product),
            exp_avg_coef: (-self.lr * mu_next) / (1.0 - mu_product_next),
            bias_correction2: bias_correction(self.beta2, step),
            l2,
            shrink,
            sign: direction(self.maximize, self.grad_scale),
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &NAdamScalars, lanes: Lanes<'_, T>) {
        let shrink = self.decoupled_weight_decay && self.weight_decay != 0.0;
        match (s.l2 != 0.0, shrink) {
            (true, _) => self.piece::<T, true, false>(s, lanes),
            (false, true) => self.piece::<T, false, true>(s, lanes),
            (false, false) => self.piece::<T, false, false>(s, lanes),
        }
    }
}

impl NAdam {
    #[inline(always)]
    fn piece<T: Real, const L2: bool, const SHRINK: bool>(
        &self,
        s: &NAdamScalars,
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
        let grad_coef = T::from_f64(s.grad_coef);
        let exp_avg_coef = T::from_f64(s.exp_avg_coef);
        let bc2 = T::from_f64(s.bias_correction2);
        let l2 = T::from_f64(s.l2);
        let shrink = T::from_f64(s.shrink);
        let sign = T::from_f64(s.sign);
        for i in 0..n {
            let p = if SHRINK { param[i] * shrink } else { param[i] };
            let g = effective_grad::<T, L2>(grad[i], p, sign, l2);
            let m = beta1 * exp_avg[i] + one_minus_beta1 * g;
            exp_avg[i] = m;
            let v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g;
            exp_avg_sq[i] = v;
            let den = (v / bc2).sqrt() + eps;
            // Two rounded additions, as PyTorch's two `addcdiv_` calls.
            let p = p + grad_coef * g / den;
            param[i] = p + exp_avg_coef * m / den;
        }
    }
}
