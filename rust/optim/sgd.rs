use super::spec::{lr, Example, Hyperparameter, Need, Range, Slot, Value, MAXIMIZE, WEIGHT_DECAY};
use super::{effective_grad, Defined, Gradient, Hyperparameters, Optimizer, Slots, Spec};
use crate::error::Error;
use crate::parallel::Lanes;
use crate::real::Real;

pub(super) const SPEC: Spec = Spec {
    name: "sgd",
    torch_name: "SGD",
    summary: "stochastic gradient descent with optional (Nesterov) momentum",
    rule: &[
        "g ← g + weight_decay·p",
        "b ← g on the first update, else b ← μ·b + (1 − dampening)·g (with momentum μ > 0)",
        "d = g + μ·b with nesterov, b with momentum, else g",
        "p ← p − lr·d",
    ],
    notes: &["nesterov requires momentum > 0 and dampening = 0."],
    hyperparameters: &[
        lr(1e-3),
        Hyperparameter::new(
            "momentum",
            Value::Real(0.0),
            Range::NonNegative,
            "momentum factor μ (0: none)",
        ),
        Hyperparameter::new(
            "dampening",
            Value::Real(0.0),
            Range::NonNegative,
            "dampening of the gradient's share of the momentum",
        ),
        WEIGHT_DECAY,
        Hyperparameter::new(
            "nesterov",
            Value::Flag(false),
            Range::Flag,
            "use Nesterov momentum",
        ),
        MAXIMIZE,
    ],
    slots: &[Slot::new(
        "momentum_buffer",
        Need::NonZero("momentum"),
        "momentum buffer b (only with momentum)",
    )],
    carried: None,
    momentum: Some("momentum"),
    example: Example {
        arguments: "lr=0.1",
        result: "[0.95 0.95 0.95]",
    },
};

/// Stochastic gradient descent with optional momentum and Nesterov momentum (`torch.optim.SGD`).
///
/// With momentum `μ` and buffer `b`: `b ← g` on the first update, else `b ← μ·b + (1 − dampening)·g`;
/// the direction is `d = g + μ·b` with `nesterov`, else `d = b`. Without momentum `d = g`.
/// Then `p ← p − lr·d`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    gradient: Gradient,
    slots: Slots,
}

pub struct SgdScalars {
    first: bool,
    lr: f64,
    momentum: f64,
    one_minus_dampening: f64,
    weight_decay: f64,
    factor: f64,
}

impl Defined for Sgd {
    const SPEC: &'static Spec = &SPEC;

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self, Error> {
        let sgd = Sgd {
            lr: h.real("lr"),
            momentum: h.real("momentum"),
            dampening: h.real("dampening"),
            nesterov: h.flag("nesterov"),
            weight_decay: h.real("weight_decay"),
            gradient: h.gradient(),
            slots: Slots::of(h, &SPEC),
        };
        if sgd.nesterov && (sgd.momentum <= 0.0 || sgd.dampening != 0.0) {
            return Err(Error::Invalid(
                "nesterov requires momentum > 0 and dampening = 0".into(),
            ));
        }
        Ok(sgd)
    }
}

impl Optimizer for Sgd {
    type Scalars = SgdScalars;

    fn slots(&self) -> Slots {
        self.slots
    }

    fn scalars(&self, step: u64) -> SgdScalars {
        SgdScalars {
            first: step == 1,
            lr: self.lr,
            momentum: self.momentum,
            one_minus_dampening: 1.0 - self.dampening,
            weight_decay: self.weight_decay,
            factor: self.gradient.factor,
        }
    }

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, s: &SgdScalars, lanes: Lanes<'_, T>) {
        if s.weight_decay != 0.0 {
            self.piece::<T, true>(s, lanes)
        } else {
            self.piece::<T, false>(s, lanes)
        }
    }
}

impl Sgd {
    #[inline(always)]
    fn piece<T: Real, const L2: bool>(&self, s: &SgdScalars, lanes: Lanes<'_, T>) {
        let Lanes { param, grad, state } = lanes;
        let n = param.len();
        let grad = &grad[..n];
        let lr = T::from_f64(s.lr);
        let factor = T::from_f64(s.factor);
        let weight_decay = T::from_f64(s.weight_decay);
        if self.momentum == 0.0 {
            for i in 0..n {
                let p = param[i];
                let g = effective_grad::<T, L2>(grad[i], p, factor, weight_decay);
                param[i] = p - lr * g;
            }
            return;
        }
        let [buf, ..] = state;
        let buf = &mut buf[..n];
        let momentum = T::from_f64(s.momentum);
        let keep = T::from_f64(s.one_minus_dampening);
        let nesterov = self.nesterov;
        // Loads before stores (see the `optim` module docs).
        for i in 0..n {
            let (p, b) = (param[i], buf[i]);
            let g = effective_grad::<T, L2>(grad[i], p, factor, weight_decay);
            let b = if s.first { g } else { b * momentum + keep * g };
            let d = if nesterov { g + momentum * b } else { b };
            buf[i] = b;
            param[i] = p - lr * d;
        }
    }
}
