use super::{direction, effective_grad, Optimizer};
use crate::error::{grad_scale, non_negative, unit_interval_closed, Error};
use crate::parallel::Lanes;
use crate::real::Real;

/// RMSprop (`torch.optim.RMSprop`): `v ← α·v + (1 − α)·g²`; centered: `a ← α·a + (1 − α)·g`,
/// `den = √(v − a²) + eps`, else `den = √v + eps`; with momentum `b ← μ·b + g/den`, `p ← p − lr·b`,
/// else `p ← p − lr·g/den`.
#[derive(Clone, Debug, PartialEq)]
pub struct RMSprop {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
    /// A factor on the gradient, fused into the update (1 for none): clipping to a global
    /// norm without writing the gradients.
    pub grad_scale: f64,
}

const SQUARE_AVG: usize = 0;
const MOMENTUM_BUFFER: usize = 1;
const GRAD_AVG: usize = 2;

impl Optimizer for RMSprop {
    type Scalars = ();

    fn state_slots(&self) -> &'static [&'static str] {
        &["square_avg", "momentum_buffer", "grad_avg"]
    }

    fn uses_slot(&self, slot: usize) -> bool {
        match slot {
            SQUARE_AVG => true,
            MOMENTUM_BUFFER => self.momentum != 0.0,
            GRAD_AVG => self.centered,
            _ => false,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        grad_scale(self.grad_scale)?;
        non_negative("lr", self.lr)?;
        unit_interval_closed("alpha", self.alpha)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("momentum", self.momentum)
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
        let sign = T::from_f64(direction(self.maximize, self.grad_scale));
        let weight_decay = T::from_f64(self.weight_decay);
        // Empty slots when unused; indexing them is skipped by the flags below.
        let buf = &mut buf[..if MOMENTUM { n } else { 0 }];
        let grad_avg = &mut grad_avg[..if CENTERED { n } else { 0 }];
        for i in 0..n {
            let g = effective_grad::<T, L2>(grad[i], param[i], sign, weight_decay);
            let v = square_avg[i] * alpha + one_minus_alpha * g * g;
            square_avg[i] = v;
            let den = if CENTERED {
                let a = alpha * grad_avg[i] + one_minus_alpha * g;
                grad_avg[i] = a;
                (v - a * a).sqrt() + eps
            } else {
                v.sqrt() + eps
            };
            if MOMENTUM {
                let b = buf[i] * momentum + g / den;
                buf[i] = b;
                param[i] = param[i] - lr * b;
            } else {
                param[i] = param[i] - lr * g / den;
            }
        }
    }
}
