use super::{direction, effective_grad, Optimizer};
use crate::error::{grad_scale, non_negative, Error};
use crate::parallel::Lanes;
use crate::real::Real;

/// Adagrad (`torch.optim.Adagrad`): `clr = lr / (1 + (t − 1)·lr_decay)`, `s ← s + g²`,
/// `p ← p − clr·g / (√s + eps)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adagrad {
    pub lr: f64,
    pub lr_decay: f64,
    pub weight_decay: f64,
    pub eps: f64,
    pub maximize: bool,
    /// A factor on the gradient, fused into the update (1 for none): clipping to a global
    /// norm without writing the gradients.
    pub grad_scale: f64,
}

pub struct AdagradScalars {
    clr: f64,
    weight_decay: f64,
    sign: f64,
}

impl Optimizer for Adagrad {
    type Scalars = AdagradScalars;

    fn state_slots(&self) -> &'static [&'static str] {
        &["state_sum"]
    }

    fn uses_slot(&self, _slot: usize) -> bool {
        true
    }

    fn validate(&self) -> Result<(), Error> {
        grad_scale(self.grad_scale)?;
        non_negative("lr", self.lr)?;
        non_negative("lr_decay", self.lr_decay)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("eps", self.eps)
    }

    fn scalars(&self, step: u64) -> AdagradScalars {
        AdagradScalars {
            clr: self.lr / (1.0 + (step - 1) as f64 * self.lr_decay),
            weight_decay: self.weight_decay,
            sign: direction(self.maximize, self.grad_scale),
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
        let sign = T::from_f64(s.sign);
        let weight_decay = T::from_f64(s.weight_decay);
        for i in 0..n {
            let g = effective_grad::<T, L2>(grad[i], param[i], sign, weight_decay);
            let total = sum[i] + g * g;
            sum[i] = total;
            param[i] = param[i] - clr * g / (total.sqrt() + eps);
        }
    }
}
