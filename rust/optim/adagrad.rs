use super::spec::{eps, lr, Example, Hyperparameter, Need, Range, Slot, Use, Value};
use super::spec::{MAXIMIZE, WEIGHT_DECAY};
use super::{effective_grad, Defined, Gradient, Hyperparameters, Optimizer, Slots, Spec};
use crate::error::Error;
use crate::parallel::Lanes;
use crate::real::Real;

pub(super) const SPEC: Spec = Spec {
    name: "adagrad",
    torch_name: "Adagrad",
    summary: "Adagrad (Duchi et al., 2011): per-coordinate rates from the sum of squared gradients",
    rule: &[
        "g ← g + weight_decay·p",
        "clr = lr / (1 + (t − 1)·lr_decay)",
        "s ← s + g²",
        "p ← p − clr·g / (√s + eps)",
    ],
    notes: &[],
    hyperparameters: &[
        lr(1e-2),
        Hyperparameter::new(
            "lr_decay",
            Value::Real(0.0),
            Range::NonNegative,
            "decay of the rate with the step count",
        ),
        WEIGHT_DECAY,
        Hyperparameter {
            name: "initial_accumulator_value",
            default: Value::Real(0.0),
            range: Range::NonNegative,
            used_by: Use::InitialState,
            doc: "the value the sum of squares starts from",
        },
        eps(1e-10),
        MAXIMIZE,
    ],
    slots: &[Slot {
        name: "state_sum",
        torch_key: "sum",
        need: Need::Always,
        initial: Some("initial_accumulator_value"),
        signed: false,
        full_precision: None,
        doc: "sum of squared gradients s",
    }],
    carried: None,
    momentum: None,
    example: Example {
        arguments: "lr=0.1",
        result: "[0.9 0.9 0.9]",
    },
};

/// Adagrad (`torch.optim.Adagrad`): `clr = lr / (1 + (t − 1)·lr_decay)`, `s ← s + g²`,
/// `p ← p − clr·g / (√s + eps)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adagrad {
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    eps: f64,
    gradient: Gradient,
    slots: Slots,
}

pub struct AdagradScalars {
    clr: f64,
    weight_decay: f64,
    factor: f64,
}

impl Defined for Adagrad {
    const SPEC: &'static Spec = &SPEC;

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error> {
        Ok(Adagrad {
            lr: h.real("lr"),
            lr_decay: h.real("lr_decay"),
            weight_decay: h.real("weight_decay"),
            eps: h.real("eps"),
            gradient: h.gradient(),
            slots: Slots::of(h, &SPEC),
        })
    }
}

impl Optimizer for Adagrad {
    type Scalars = AdagradScalars;

    fn slots(&self) -> Slots {
        self.slots
    }

    fn scalars(&self, step: u64) -> AdagradScalars {
        AdagradScalars {
            clr: self.lr / (1.0 + (step - 1) as f64 * self.lr_decay),
            weight_decay: self.weight_decay,
            factor: self.gradient.factor,
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &AdagradScalars, lanes: Lanes<'_, T>) {
        if s.weight_decay != 0.0 {
            self.piece::<T, true>(s, lanes)
        } else {
            self.piece::<T, false>(s, lanes)
        }
    }
}

impl Adagrad {
    #[inline(always)]
    fn piece<T: Real, const L2: bool>(&self, s: &AdagradScalars, lanes: Lanes<'_, T>) {
        let Lanes {
            param,
            grad,
            state: [sum, ..],
        } = lanes;
        let n = param.len();
        let (grad, sum) = (&grad[..n], &mut sum[..n]);
        let clr = T::from_f64(s.clr);
        let eps = T::from_f64(self.eps);
        let factor = T::from_f64(s.factor);
        let weight_decay = T::from_f64(s.weight_decay);
        // Loads before stores (see the `optim` module docs).
        for i in 0..n {
            let (p, s) = (param[i], sum[i]);
            let g = effective_grad::<T, L2>(grad[i], p, factor, weight_decay);
            let total = s + g * g;
            sum[i] = total;
            param[i] = p - clr * g / (total.sqrt() + eps);
        }
    }
}
