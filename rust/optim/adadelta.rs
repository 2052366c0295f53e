use super::spec::{eps, lr, Example, Hyperparameter, Need, Range, Slot, Value};
use super::spec::{MAXIMIZE, WEIGHT_DECAY};
use super::{effective_grad, Defined, Gradient, Hyperparameters, Optimizer, Slots, Spec};
use crate::error::Error;
use crate::parallel::Lanes;
use crate::real::Real;

pub(super) const SPEC: Spec = Spec {
    name: "adadelta",
    torch_name: "Adadelta",
    summary: "Adadelta (Zeiler, 2012): steps scaled by the ratio of update and gradient averages",
    rule: &[
        "g ← g + weight_decay·p",
        "v ← ρ·v + (1 − ρ)·g²",
        "Δ = √(u + eps) / √(v + eps) · g",
        "u ← ρ·u + (1 − ρ)·Δ²",
        "p ← p − lr·Δ",
    ],
    notes: &[],
    hyperparameters: &[
        lr(1.0),
        Hyperparameter::new(
            "rho",
            Value::Real(0.9),
            Range::UnitClosed,
            "decay rate ρ of both averages",
        ),
        eps(1e-6),
        WEIGHT_DECAY,
        MAXIMIZE,
    ],
    slots: &[
        Slot::new("square_avg", Need::Always, "average of squared gradients v").non_negative(),
        Slot::new("acc_delta", Need::Always, "average of squared updates u").non_negative(),
    ],
    carried: None,
    momentum: None,
    example: Example {
        arguments: "lr=1.0",
        result: "[0.9968378 0.9968378 0.9968378]",
    },
};

/// Adadelta (`torch.optim.Adadelta`): `v ← ρ·v + (1 − ρ)·g²`, `Δ = √(u + eps)/√(v + eps)·g`,
/// `u ← ρ·u + (1 − ρ)·Δ²`, `p ← p − lr·Δ`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adadelta {
    lr: f64,
    rho: f64,
    eps: f64,
    weight_decay: f64,
    gradient: Gradient,
    slots: Slots,
}

impl Defined for Adadelta {
    const SPEC: &'static Spec = &SPEC;

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error> {
        Ok(Adadelta {
            lr: h.real("lr"),
            rho: h.real("rho"),
            eps: h.real("eps"),
            weight_decay: h.real("weight_decay"),
            gradient: h.gradient(),
            slots: Slots::of(h, &SPEC),
        })
    }
}

impl Optimizer for Adadelta {
    type Scalars = ();

    fn slots(&self) -> Slots {
        self.slots
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
        let factor = T::from_f64(self.gradient.factor);
        let weight_decay = T::from_f64(self.weight_decay);
        // Loads before stores (see the `optim` module docs).
        for i in 0..n {
            let (p, v, u) = (param[i], square_avg[i], acc_delta[i]);
            let g = effective_grad::<T, L2>(grad[i], p, factor, weight_decay);
            let v = v * rho + one_minus_rho * g * g;
            let delta = (u + eps).sqrt() / (v + eps).sqrt() * g;
            square_avg[i] = v;
            acc_delta[i] = u * rho + one_minus_rho * delta * delta;
            param[i] = p - lr * delta;
        }
    }
}
