use super::spec::{eps, lr, Example, Need, Slot, BETAS, MAXIMIZE, WEIGHT_DECAY};
use super::{bias_correction, effective_grad, Defined, Gradient, Hyperparameters, Optimizer};
use super::{Slots, Spec};
use crate::error::Error;
use crate::parallel::Lanes;
use crate::real::{max_keep_nan, Real};

pub(super) const SPEC: Spec = Spec {
    name: "adamax",
    torch_name: "Adamax",
    summary: "Adamax (Kingma and Ba, 2015): Adam with the infinity norm",
    rule: &[
        "g ← g + weight_decay·p",
        "m ← β1·m + (1 − β1)·g",
        "u ← max(β2·u, |g| + eps) (NaN kept)",
        "p ← p − (lr/(1 − β1^t))·m/u",
    ],
    notes: &[],
    hyperparameters: &[lr(2e-3), BETAS, eps(1e-8), WEIGHT_DECAY, MAXIMIZE],
    slots: &[
        Slot::new("exp_avg", Need::Always, "first moment average m"),
        Slot::new(
            "exp_inf",
            Need::Always,
            "exponentially weighted infinity norm u",
        )
        .non_negative(),
    ],
    carried: None,
    momentum: Some("betas"),
    example: Example {
        arguments: "lr=0.1",
        result: "[0.9 0.9 0.9]",
    },
};

/// Adamax (`torch.optim.Adamax`): `m ← β1·m + (1 − β1)·g`, `u ← max(β2·u, |g| + eps)` (NaN kept),
/// `p ← p − (lr/(1 − β1^t))·m/u`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adamax {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    gradient: Gradient,
    slots: Slots,
}

pub struct AdamaxScalars {
    clr: f64,
    factor: f64,
}

impl Defined for Adamax {
    const SPEC: &'static Spec = &SPEC;

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error> {
        let (beta1, beta2) = h.pair("betas");
        Ok(Adamax {
            lr: h.real("lr"),
            beta1,
            beta2,
            eps: h.real("eps"),
            weight_decay: h.real("weight_decay"),
            gradient: h.gradient(),
            slots: Slots::of(h, &SPEC),
        })
    }
}

impl Optimizer for Adamax {
    type Scalars = AdamaxScalars;

    fn slots(&self) -> Slots {
        self.slots
    }

    fn scalars(&self, step: u64) -> AdamaxScalars {
        AdamaxScalars {
            clr: self.lr / bias_correction(self.beta1, step),
            factor: self.gradient.factor,
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
        let factor = T::from_f64(s.factor);
        let weight_decay = T::from_f64(self.weight_decay);
        // Loads before stores (see the `optim` module docs).
        for i in 0..n {
            let (p, m, u) = (param[i], exp_avg[i], exp_inf[i]);
            let g = effective_grad::<T, L2>(grad[i], p, factor, weight_decay);
            let m = beta1 * m + one_minus_beta1 * g;
            let u = max_keep_nan(u * beta2, g.abs() + eps);
            exp_avg[i] = m;
            exp_inf[i] = u;
            param[i] = p - clr * m / u;
        }
    }
}
