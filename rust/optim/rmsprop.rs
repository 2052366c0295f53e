use super::spec::{eps, lr, Example, Hyperparameter, Need, Range, Slot, Value};
use super::spec::{MAXIMIZE, WEIGHT_DECAY};
use super::{effective_grad, Defined, Gradient, Hyperparameters, Optimizer, Slots, Spec};
use crate::error::Error;
use crate::parallel::Lanes;
use crate::real::Real;

pub(super) const SPEC: Spec = Spec {
    name: "rmsprop",
    torch_name: "RMSprop",
    summary: "RMSprop (Hinton, 2012), optionally centered and with momentum",
    rule: &[
        "g ← g + weight_decay·p",
        "v ← α·v + (1 − α)·g²",
        "centered: a ← α·a + (1 − α)·g, den = √(v − a²) + eps; else den = √v + eps",
        "momentum μ > 0: b ← μ·b + g/den, p ← p − lr·b; else p ← p − lr·g/den",
    ],
    notes: &["Keras puts epsilon inside the square root; lrfast follows PyTorch."],
    hyperparameters: &[
        lr(1e-2),
        Hyperparameter::new(
            "alpha",
            Value::Real(0.99),
            Range::UnitClosed,
            "smoothing constant α of the squared-gradient average",
        ),
        eps(1e-8),
        WEIGHT_DECAY,
        Hyperparameter::new(
            "momentum",
            Value::Real(0.0),
            Range::NonNegative,
            "momentum factor μ (0: none)",
        ),
        Hyperparameter::new(
            "centered",
            Value::Flag(false),
            Range::Flag,
            "normalize by the variance estimate √(v − a²) instead of √v",
        ),
        MAXIMIZE,
    ],
    slots: &[
        Slot::new("square_avg", Need::Always, "average of squared gradients v").non_negative(),
        Slot::new(
            "momentum_buffer",
            Need::NonZero("momentum"),
            "momentum buffer b (only with momentum)",
        ),
        Slot::new(
            "grad_avg",
            Need::Flag("centered"),
            "average of gradients a (only when centered)",
        )
        .full_precision(
            "centered RMSprop divides by √(v − a²), and rounding v and a in 8 bits each can \
             make v − a² negative (NaN); bitsandbytes refuses it too",
        ),
    ],
    carried: None,
    momentum: Some("momentum"),
    example: Example {
        arguments: "lr=0.01",
        result: "[0.90000004 0.90000004 0.90000004]",
    },
};

/// RMSprop (`torch.optim.RMSprop`): `v ← α·v + (1 − α)·g²`; centered: `a ← α·a + (1 − α)·g`,
/// `den = √(v − a²) + eps`, else `den = √v + eps`; with momentum `b ← μ·b + g/den`, `p ← p − lr·b`,
/// else `p ← p − lr·g/den`.
#[derive(Clone, Debug, PartialEq)]
pub struct RMSprop {
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    gradient: Gradient,
    slots: Slots,
}

impl Defined for RMSprop {
    const SPEC: &'static Spec = &SPEC;

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error> {
        Ok(RMSprop {
            lr: h.real("lr"),
            alpha: h.real("alpha"),
            eps: h.real("eps"),
            weight_decay: h.real("weight_decay"),
            momentum: h.real("momentum"),
            centered: h.flag("centered"),
            gradient: h.gradient(),
            slots: Slots::of(h, &SPEC),
        })
    }
}

impl Optimizer for RMSprop {
    type Scalars = ();

    fn slots(&self) -> Slots {
        self.slots
    }

    fn scalars(&self, _step: u64) {}

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, _: &(), lanes: Lanes<'_, T>) {
        // One loop per option set, each without branches: left to LLVM's loop unswitching, the
        // loop stayed scalar once inlined into the mixed-precision block loop (9x the floor).
        match (
            self.weight_decay != 0.0,
            self.centered,
            self.momentum != 0.0,
        ) {
            (false, false, false) => self.piece::<T, false, false, false>(lanes),
            (false, false, true) => self.piece::<T, false, false, true>(lanes),
            (false, true, false) => self.piece::<T, false, true, false>(lanes),
            (false, true, true) => self.piece::<T, false, true, true>(lanes),
            (true, false, false) => self.piece::<T, true, false, false>(lanes),
            (true, false, true) => self.piece::<T, true, false, true>(lanes),
            (true, true, false) => self.piece::<T, true, true, false>(lanes),
            (true, true, true) => self.piece::<T, true, true, true>(lanes),
        }
    }
}

impl RMSprop {
    #[inline(always)]
    fn piece<T: Real, const L2: bool, const CENTERED: bool, const MOMENTUM: bool>(
        &self,
        lanes: Lanes<'_, T>,
    ) {
        let Lanes {
            param,
            grad,
            state: [square_avg, buf, grad_avg],
        } = lanes;
        let n = param.len();
        let (grad, square_avg) = (&grad[..n], &mut square_avg[..n]);
        let lr = T::from_f64(self.lr);
        let alpha = T::from_f64(self.alpha);
        let one_minus_alpha = T::from_f64(1.0 - self.alpha);
        let eps = T::from_f64(self.eps);
        let momentum = T::from_f64(self.momentum);
        let factor = T::from_f64(self.gradient.factor);
        let weight_decay = T::from_f64(self.weight_decay);
        // Empty slots when unused; indexing them is skipped by the flags below.
        let buf = &mut buf[..if MOMENTUM { n } else { 0 }];
        let grad_avg = &mut grad_avg[..if CENTERED { n } else { 0 }];
        // Loads before stores (see the `optim` module docs).
        for i in 0..n {
            let (p, v) = (param[i], square_avg[i]);
            let a = if CENTERED { grad_avg[i] } else { T::ZERO };
            let b = if MOMENTUM { buf[i] } else { T::ZERO };
            let g = effective_grad::<T, L2>(grad[i], p, factor, weight_decay);
            let v = v * alpha + one_minus_alpha * g * g;
            let (a, den) = if CENTERED {
                let a = alpha * a + one_minus_alpha * g;
                (a, (v - a * a).sqrt() + eps)
            } else {
                (a, v.sqrt() + eps)
            };
            square_avg[i] = v;
            if CENTERED {
                grad_avg[i] = a;
            }
            if MOMENTUM {
                let b = b * momentum + g / den;
                buf[i] = b;
                param[i] = p - lr * b;
            } else {
                param[i] = p - lr * g / den;
            }
        }
    }
}
