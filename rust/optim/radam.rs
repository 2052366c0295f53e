use super::spec::WEIGHT_DECAY;
use super::spec::{eps, lr, Example, Need, Slot, BETAS, DECOUPLED_WEIGHT_DECAY, MAXIMIZE};
use super::{bias_correction, by_weight_decay, decayed, weight_decay_terms, Defined, Gradient};
use super::{Hyperparameters, Slots, Spec};
use super::{Moments, Optimizer};
use crate::error::Error;
use crate::parallel::Lanes;
use crate::real::Real;

pub(super) const SPEC: Spec = Spec {
    name: "radam",
    torch_name: "RAdam",
    summary: "RAdam (Liu et al., 2020): Adam with a rectified variance",
    rule: &[
        "g ← g + weight_decay·p (decoupled: p ← p·(1 − lr·weight_decay))",
        "m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g², m̂ = m/(1 − β1^t)",
        "ρ∞ = 2/(1 − β2) − 1, ρ_t = ρ∞ − 2t·β2^t/(1 − β2^t)",
        "ρ_t > 5: r = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t)), \
         p ← p − lr·m̂·r·√(1 − β2^t)/(√v + eps)",
        "otherwise p ← p − lr·m̂",
    ],
    notes: &[],
    hyperparameters: &[
        lr(1e-3),
        BETAS,
        eps(1e-8),
        WEIGHT_DECAY,
        DECOUPLED_WEIGHT_DECAY,
        MAXIMIZE,
    ],
    slots: &[
        Slot::new("exp_avg", Need::Always, "first moment average m"),
        Slot::new("exp_avg_sq", Need::Always, "second moment average v").non_negative(),
    ],
    carried: None,
    momentum: Some("betas"),
    example: Example {
        arguments: "lr=0.1",
        result: "[0.95 0.95 0.95]",
    },
};

/// RAdam (`torch.optim.RAdam`), Adam with a rectified variance.
///
/// `m̂ = m/(1 − β1^t)`, `ρ∞ = 2/(1 − β2) − 1`, `ρ_t = ρ∞ − 2t·β2^t/(1 − β2^t)`. If `ρ_t > 5`:
/// `r = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t))` and
/// `p ← p − lr·m̂·r·√(1 − β2^t)/(√v + eps)`; otherwise `p ← p − lr·m̂`.
#[derive(Clone, Debug, PartialEq)]
pub struct RAdam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled_weight_decay: bool,
    gradient: Gradient,
    slots: Slots,
}

pub struct RAdamScalars {
    bias_correction1: f64,
    bias_correction2_sqrt: f64,
    /// The rectification `r`, or `None` while the variance is not yet tractable (`ρ_t ≤ 5`).
    rect: Option<f64>,
    l2: f64,
    shrink: f64,
    factor: f64,
}

impl Defined for RAdam {
    const SPEC: &'static Spec = &SPEC;

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error> {
        let (beta1, beta2) = h.pair("betas");
        Ok(RAdam {
            lr: h.real("lr"),
            beta1,
            beta2,
            eps: h.real("eps"),
            weight_decay: h.real("weight_decay"),
            decoupled_weight_decay: h.flag("decoupled_weight_decay"),
            gradient: h.gradient(),
            slots: Slots::of(h, &SPEC),
        })
    }
}

impl Optimizer for RAdam {
    type Scalars = RAdamScalars;

    fn slots(&self) -> Slots {
        self.slots
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
        let (l2, shrink) =
            weight_decay_terms(self.lr, self.weight_decay, self.decoupled_weight_decay);
        RAdamScalars {
            bias_correction1: bias_correction(self.beta1, step),
            bias_correction2_sqrt: bias_correction2.sqrt(),
            rect,
            l2,
            shrink,
            factor: self.gradient.factor,
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &RAdamScalars, lanes: Lanes<'_, T>) {
        let shrink = self.decoupled_weight_decay && self.weight_decay != 0.0;
        by_weight_decay!(self, s, lanes, l2: s.l2 != 0.0, shrink: shrink)
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
        let moments = Moments::<T>::new(self.beta1, self.beta2);
        let eps = T::from_f64(self.eps);
        let lr = T::from_f64(self.lr);
        let bc1 = T::from_f64(s.bias_correction1);
        let bc2_sqrt = T::from_f64(s.bias_correction2_sqrt);
        let l2 = T::from_f64(s.l2);
        let shrink = T::from_f64(s.shrink);
        let factor = T::from_f64(s.factor);
        let rect = s.rect.map(T::from_f64);
        // Loads before stores (see the `optim` module docs).
        for i in 0..n {
            let (p, g, m, v) = (param[i], grad[i], exp_avg[i], exp_avg_sq[i]);
            let (p, g) = decayed::<T, L2, SHRINK>(p, g, shrink, factor, l2);
            let (m, v) = moments.next(m, v, g);
            exp_avg[i] = m;
            exp_avg_sq[i] = v;
            let m_hat = m / bc1;
            param[i] = match rect {
                Some(r) => p - m_hat * lr * (bc2_sqrt / (v.sqrt() + eps)) * r,
                None => p - m_hat * lr,
            };
        }
    }
}
