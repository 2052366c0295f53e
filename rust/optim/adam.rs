use super::spec::{eps, lr, Example, Hyperparameter, Need, Range, Slot, Value};
use super::spec::{BETAS, MAXIMIZE, WEIGHT_DECAY};
use super::{bias_correction, by_weight_decay, decayed, weight_decay_terms, Defined, Moments};
use super::{Gradient, Hyperparameters, Spec};
use super::{Optimizer, Slots};
use crate::error::Error;
use crate::parallel::Lanes;
use crate::real::{max_keep_nan, Real};

const AMSGRAD: Hyperparameter = Hyperparameter::new(
    "amsgrad",
    Value::Flag(false),
    Range::Flag,
    "use the running maximum of the second moment (AMSGrad)",
);
const SLOTS: [Slot; 3] = [
    Slot::new("exp_avg", Need::Always, "first moment average m"),
    Slot::new("exp_avg_sq", Need::Always, "second moment average v").non_negative(),
    Slot::new(
        "max_exp_avg_sq",
        Need::Flag("amsgrad"),
        "running maximum of v (AMSGrad)",
    )
    .non_negative(),
];

pub(super) const SPEC: Spec = Spec {
    name: "adam",
    torch_name: "Adam",
    summary: "Adam (Kingma and Ba, 2015), optionally AMSGrad",
    rule: &[
        "g ← g + weight_decay·p",
        "m ← β1·m + (1 − β1)·g",
        "v ← β2·v + (1 − β2)·g²",
        "v̂ ← max(v̂, v) with amsgrad (NaN kept), else v̂ = v",
        "p ← p − (lr/bc1)·m / (√v̂/√bc2 + eps), with bc_i = 1 − β_i^t",
    ],
    notes: &["Keras puts eps differently (√bc2/bc1 · m/(√v + eps), default epsilon=1e-7)."],
    hyperparameters: &[lr(1e-3), BETAS, eps(1e-8), WEIGHT_DECAY, AMSGRAD, MAXIMIZE],
    slots: &SLOTS,
    carried: None,
    momentum: Some("betas"),
    example: Example {
        arguments: "lr=0.1",
        result: "[0.90000004 0.90000004 0.90000004]",
    },
};

pub(super) const SPEC_ADAMW: Spec = Spec {
    name: "adamw",
    torch_name: "AdamW",
    summary: "AdamW: Adam with decoupled weight decay (Loshchilov and Hutter, 2019)",
    rule: &[
        "p ← p·(1 − lr·weight_decay)",
        "then Adam's update of m, v (and v̂), without the L2 term",
    ],
    notes: &[],
    hyperparameters: &[
        lr(1e-3),
        BETAS,
        eps(1e-8),
        Hyperparameter::new(
            "weight_decay",
            Value::Real(1e-2),
            Range::NonNegative,
            "decoupled weight decay: the parameter shrinks by lr·weight_decay",
        ),
        AMSGRAD,
        MAXIMIZE,
    ],
    slots: &SLOTS,
    carried: None,
    momentum: Some("betas"),
    example: Example {
        arguments: "lr=0.1",
        result: "[0.89900005 0.89900005 0.89900005]",
    },
};

/// Adam and AMSGrad (`torch.optim.Adam`), and with `DECOUPLED` AdamW (`torch.optim.AdamW`).
///
/// `m ← β1·m + (1 − β1)·g`, `v ← β2·v + (1 − β2)·g²`; with `amsgrad`, `v̂ ← max(v̂, v)` (NaN kept)
/// stands for `v` below; `p ← p − (lr/bc1)·m / (√v/√bc2 + eps)` with `bc_i = 1 − β_i^t`.
/// AdamW first scales `p ← p·(1 − lr·weight_decay)` instead of adding `weight_decay·p` to the
/// gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamFamily<const DECOUPLED: bool> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    gradient: Gradient,
    slots: Slots,
}

/// Adam (`torch.optim.Adam`), optionally AMSGrad.
pub type Adam = AdamFamily<false>;

/// AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay.
pub type AdamW = AdamFamily<true>;

pub struct AdamScalars {
    step_size: f64,
    bias_correction2_sqrt: f64,
    /// Coupled (L2) decay added to the gradient; zero for AdamW.
    l2: f64,
    /// AdamW's factor `1 − lr·weight_decay`; one for Adam.
    shrink: f64,
    factor: f64,
}

impl<const DECOUPLED: bool> Defined for AdamFamily<DECOUPLED> {
    const SPEC: &'static Spec = if DECOUPLED { &SPEC_ADAMW } else { &SPEC };

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error> {
        let (beta1, beta2) = h.pair("betas");
        Ok(AdamFamily {
            lr: h.real("lr"),
            beta1,
            beta2,
            eps: h.real("eps"),
            weight_decay: h.real("weight_decay"),
            amsgrad: h.flag("amsgrad"),
            gradient: h.gradient(),
            slots: Slots::of(h, Self::SPEC),
        })
    }
}

impl<const DECOUPLED: bool> Optimizer for AdamFamily<DECOUPLED> {
    type Scalars = AdamScalars;

    fn slots(&self) -> Slots {
        self.slots
    }

    fn scalars(&self, step: u64) -> AdamScalars {
        let (l2, shrink) = weight_decay_terms(self.lr, self.weight_decay, DECOUPLED);
        AdamScalars {
            step_size: self.lr / bias_correction(self.beta1, step),
            bias_correction2_sqrt: bias_correction(self.beta2, step).sqrt(),
            l2,
            shrink,
            factor: self.gradient.factor,
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &AdamScalars, lanes: Lanes<'_, T>) {
        let shrink = DECOUPLED && self.weight_decay != 0.0;
        by_weight_decay!(self, s, lanes, l2: s.l2 != 0.0, shrink: shrink)
    }
}

impl<const DECOUPLED: bool> AdamFamily<DECOUPLED> {
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
        let moments = Moments::<T>::new(self.beta1, self.beta2);
        let eps = T::from_f64(self.eps);
        let step_size = T::from_f64(s.step_size);
        let bc2_sqrt = T::from_f64(s.bias_correction2_sqrt);
        let l2 = T::from_f64(s.l2);
        let shrink = T::from_f64(s.shrink);
        let factor = T::from_f64(s.factor);
        // Loads before stores (see the `optim` module docs).
        if self.amsgrad {
            let max_exp_avg_sq = &mut max_exp_avg_sq[..n];
            for i in 0..n {
                let (p, g) = (param[i], grad[i]);
                let (m, v, v_max) = (exp_avg[i], exp_avg_sq[i], max_exp_avg_sq[i]);
                let (p, g) = decayed::<T, L2, SHRINK>(p, g, shrink, factor, l2);
                let (m, v) = moments.next(m, v, g);
                let v_max = max_keep_nan(v_max, v);
                exp_avg[i] = m;
                exp_avg_sq[i] = v;
                max_exp_avg_sq[i] = v_max;
                param[i] = p - step_size * m / (v_max.sqrt() / bc2_sqrt + eps);
            }
        } else {
            for i in 0..n {
                let (p, g, m, v) = (param[i], grad[i], exp_avg[i], exp_avg_sq[i]);
                let (p, g) = decayed::<T, L2, SHRINK>(p, g, shrink, factor, l2);
                let (m, v) = moments.next(m, v, g);
                exp_avg[i] = m;
                exp_avg_sq[i] = v;
                param[i] = p - step_size * m / (v.sqrt() / bc2_sqrt + eps);
            }
        }
    }
}
