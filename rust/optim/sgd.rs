use super::{direction, effective_grad, Optimizer};
use crate::error::{grad_scale, non_negative, Error};
use crate::parallel::Lanes;
use crate::real::Real;

/// Stochastic gradient descent with optional momentum and Nesterov momentum (`torch.optim.SGD`).
///
/// With momentum `μ` and buffer `b`: `b ← g` on the first update, else `b ← μ·b + (1 − dampening)·g`;
/// the direction is `d = g + μ·b` with `nesterov`, else `d = b`. Without momentum `d = g`.
/// Then `p ← p − lr·d`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub maximize: bool,
    /// A factor on the gradient, fused into the update (1 for none): clipping to a global
    /// norm without writing the gradients.
    pub grad_scale: f64,
}

pub struct SgdScalars {
    first: bool,
    lr: f64,
    momentum: f64,
    one_minus_dampening: f64,
    weight_decay: f64,
    sign: f64,
}

impl Optimizer for Sgd {
    type Scalars = SgdScalars;

    fn state_slots(&self) -> &'static [&'static str] {
        &["momentum_buffer"]
    }

    fn uses_slot(&self, _slot: usize) -> bool {
        self.momentum != 0.0
    }

    fn validate(&self) -> Result<(), Error> {
        grad_scale(self.grad_scale)?;
        non_negative("lr", self.lr)?;
        non_negative("momentum", self.momentum)?;
        non_negative("dampening", self.dampening)?;
        non_negative("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::Options(
                "nesterov requires momentum > 0 and dampening = 0",
            ));
        }
        Ok(())
    }

    fn scalars(&self, step: u64) -> SgdScalars {
        SgdScalars {
            first: step == 1,
            lr: self.lr,
            momentum: self.momentum,
            one_minus_dampening: 1.0 - self.dampening,
            weight_decay: self.weight_decay,
            sign: direction(self.maximize, self.grad_scale),
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
        let sign = T::from_f64(s.sign);
        let weight_decay = T::from_f64(s.weight_decay);
        if self.momentum == 0.0 {
            for i in 0..n {
                let g = effective_grad::<T, L2>(grad[i], param[i], sign, weight_decay);
                param[i] = param[i] - lr * g;
            }
            return;
        }
        let [buf, ..] = state;
        let buf = &mut buf[..n];
        let momentum = T::from_f64(s.momentum);
        let keep = T::from_f64(s.one_minus_dampening);
        let nesterov = self.nesterov;
        for i in 0..n {
            let g = effective_grad::<T, L2>(grad[i], param[i], sign, weight_decay);
            let b = if s.first {
                g
            } else {
                buf[i] * momentum + keep * g
            };
            buf[i] = b;
            let d = if nesterov { g + momentum * b } else { b };
            param[i] = param[i] - lr * d;
        }
    }
}
