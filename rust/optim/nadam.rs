use super::spec::{eps, lr, Carried, Example, Hyperparameter, Need, Range, Slot, Value};
use super::spec::{BETAS, DECOUPLED_WEIGHT_DECAY, MAXIMIZE, WEIGHT_DECAY};
use super::{bias_correction, by_weight_decay, decayed, weight_decay_terms, Defined, Gradient};
use super::{Hyperparameters, Slots, Spec};
use super::{Moments, Optimizer};
use crate::error::Error;
use crate::parallel::Lanes;
use crate::real::Real;

pub(super) const SPEC: Spec = Spec {
    name: "nadam",
    torch_name: "NAdam",
    summary: "NAdam (Dozat, 2016): Adam with Nesterov momentum and momentum decay",
    rule: &[
        "g ← g + weight_decay·p (decoupled: p ← p·(1 − lr·weight_decay))",
        "μ_t = β1·(1 − ½·0.96^(t·momentum_decay)), Π_t = μ_1·…·μ_t (mu_product)",
        "m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g², den = √(v/(1 − β2^t)) + eps",
        "p ← p − lr·(1 − μ_t)/(1 − Π_t)·g/den − lr·μ_{t+1}/(1 − Π_t·μ_{t+1})·m/den",
    ],
    notes: &["mu_product is kept in float64 (PyTorch: float32), slightly more accurate."],
    hyperparameters: &[
        lr(2e-3),
        BETAS,
        eps(1e-8),
        WEIGHT_DECAY,
        Hyperparameter::new(
            "momentum_decay",
            Value::Real(4e-3),
            Range::NonNegative,
            "how fast μ_t approaches β1",
        ),
        DECOUPLED_WEIGHT_DECAY,
        MAXIMIZE,
    ],
    slots: &[
        Slot::new("exp_avg", Need::Always, "first moment average m"),
        Slot::new("exp_avg_sq", Need::Always, "second moment average v").non_negative(),
    ],
    carried: Some(Carried {
        name: "mu_product",
        doc: "the product μ_1·…·μ_{t−1} of the updates before this one (None: computed from \
              the step); the new product is returned, for the next call",
    }),
    momentum: Some("betas"),
    example: Example {
        arguments: "lr=0.1",
        result: "[0.8943548 0.8943548 0.8943548]",
    },
};

/// NAdam (`torch.optim.NAdam`), Nesterov-accelerated Adam with momentum decay.
///
/// `μ_t = β1·(1 − ½·0.96^(t·momentum_decay))`; the running product `mu_product` of the `μ`s is a
/// scalar state the caller keeps (in `f64`: PyTorch keeps it in float32, which costs it accuracy).
/// `den = √(v/(1 − β2^t)) + eps`,
/// `p ← p − lr·(1 − μ_t)/(1 − Πμ_t)·g/den − lr·μ_{t+1}/(1 − Πμ_t·μ_{t+1})·m/den`.
#[derive(Clone, Debug, PartialEq)]
pub struct NAdam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    momentum_decay: f64,
    decoupled_weight_decay: bool,
    gradient: Gradient,
    slots: Slots,
    /// The product `μ_1·…·μ_{t−1}` of the updates before this one (1 before the first).
    mu_product: f64,
}

pub struct NAdamScalars {
    grad_coef: f64,
    exp_avg_coef: f64,
    bias_correction2: f64,
    l2: f64,
    shrink: f64,
    factor: f64,
}

/// Below this, `1 − x` and `1 − x·μ` round to 1 in f64: a running product this small no longer
/// changes any update.
const NEGLIGIBLE_PRODUCT: f64 = 1e-30;

impl NAdam {
    /// `μ_t` of update `step`.
    pub fn mu(&self, step: u64) -> f64 {
        self.beta1 * (1.0 - 0.5 * 0.96_f64.powf(step as f64 * self.momentum_decay))
    }

    /// The product `μ_1·…·μ_{step−1}` computed from scratch, for callers that did not keep it.
    ///
    /// The loop is short for any `step`: it stops once the product is negligible (every later
    /// update then computes as if it were 0) or once `μ_t` has reached `β1` exactly in f64
    /// (`0.96^(t·momentum_decay)` below 2^-54; likewise from the start when `momentum_decay`
    /// is 0, where `μ_t = β1/2`), after which the rest of the product is one power.
    pub fn mu_product_before(&self, step: u64) -> f64 {
        let mut product = 1.0;
        let mut t = 1;
        while t < step {
            let mu = self.mu(t);
            if mu == self.mu(t + 1) && (self.momentum_decay == 0.0 || mu == self.beta1) {
                // μ stays the same from here on: the remaining factors are one power.
                return product * mu.powf((step - t) as f64);
            }
            product *= mu;
            if product < NEGLIGIBLE_PRODUCT {
                return product * self.beta1.powf((step - 1 - t) as f64);
            }
            t += 1;
        }
        product
    }

    /// The product of `μ_1 … μ_step`, what `mu_product` becomes after update `step`.
    pub fn mu_product_after(&self, step: u64) -> f64 {
        self.mu_product * self.mu(step)
    }
}

/// The largest `mu_product` taken: 1 plus float32's epsilon. torch.optim keeps the product in a
/// float32 tensor, rounded each step; lrfast.torch hands the kernel that rounded product divided
/// by `μ_t`, which at step 1 (`fl32(μ_1)/μ_1`) may exceed 1 by that rounding. Any product below
/// `1/β1` keeps every denominator `1 − Π·μ` positive, so the margin is safe.
const MU_PRODUCT_MAX: f64 = 1.0 + f32::EPSILON as f64;

impl Defined for NAdam {
    const SPEC: &'static Spec = &SPEC;

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error> {
        let (beta1, beta2) = h.pair("betas");
        Ok(NAdam {
            lr: h.real("lr"),
            beta1,
            beta2,
            eps: h.real("eps"),
            weight_decay: h.real("weight_decay"),
            momentum_decay: h.real("momentum_decay"),
            decoupled_weight_decay: h.flag("decoupled_weight_decay"),
            gradient: h.gradient(),
            slots: Slots::of(h, &SPEC),
            mu_product: 1.0,
        })
    }

    fn carry_in(&mut self, step: u64, value: Option<f64>) -> Result<(), Error> {
        self.mu_product = match value {
            Some(x) if (0.0..=MU_PRODUCT_MAX).contains(&x) => x,
            Some(x) => {
                return Err(Error::Hyperparameter {
                    name: "mu_product".into(),
                    value: x,
                    expected: "in [0, 1 + 2^-23]",
                })
            }
            None => self.mu_product_before(step),
        };
        Ok(())
    }

    fn carry_out(&self, step: u64) -> Option<f64> {
        Some(self.mu_product_after(step))
    }
}

impl Optimizer for NAdam {
    type Scalars = NAdamScalars;

    fn slots(&self) -> Slots {
        self.slots
    }

    fn scalars(&self, step: u64) -> NAdamScalars {
        let mu = self.mu(step);
        let mu_next = self.mu(step + 1);
        let mu_product = self.mu_product * mu;
        let mu_product_next = mu_product * mu_next;
        let (l2, shrink) =
            weight_decay_terms(self.lr, self.weight_decay, self.decoupled_weight_decay);
        NAdamScalars {
            grad_coef: -self.lr * (1.0 - mu) / (1.0 - mu_product),
            exp_avg_coef: (-self.lr * mu_next) / (1.0 - mu_product_next),
            bias_correction2: bias_correction(self.beta2, step),
            l2,
            shrink,
            factor: self.gradient.factor,
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &NAdamScalars, lanes: Lanes<'_, T>) {
        let shrink = self.decoupled_weight_decay && self.weight_decay != 0.0;
        by_weight_decay!(self, s, lanes, l2: s.l2 != 0.0, shrink: shrink)
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
        let moments = Moments::<T>::new(self.beta1, self.beta2);
        let eps = T::from_f64(self.eps);
        let grad_coef = T::from_f64(s.grad_coef);
        let exp_avg_coef = T::from_f64(s.exp_avg_coef);
        let bc2 = T::from_f64(s.bias_correction2);
        let l2 = T::from_f64(s.l2);
        let shrink = T::from_f64(s.shrink);
        let factor = T::from_f64(s.factor);
        // Loads before stores (see the `optim` module docs).
        for i in 0..n {
            let (p, g, m, v) = (param[i], grad[i], exp_avg[i], exp_avg_sq[i]);
            let (p, g) = decayed::<T, L2, SHRINK>(p, g, shrink, factor, l2);
            let (m, v) = moments.next(m, v, g);
            exp_avg[i] = m;
            exp_avg_sq[i] = v;
            let den = (v / bc2).sqrt() + eps;
            // Two rounded additions, as PyTorch's two `addcdiv_` calls.
            let p = p + grad_coef * g / den;
            param[i] = p + exp_avg_coef * m / den;
        }
    }
}
