use super::{Optimizer, Slots};
use crate::error::Error;
use crate::parallel::{Lanes, MAX_STATE};
use crate::real::Real;

/// The memory floor: not an optimizer but the benchmark baseline for one. It reads the parameter,
/// the gradient and `states` state arrays and writes the parameter and the states (`p += g`,
/// `s += g`), exactly the traffic of an optimizer with that many states, with trivial arithmetic.
/// Its time, through the same dispatch, threads and bindings, is the physical limit for that
/// access pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryFloor {
    states: usize,
}

impl MemoryFloor {
    /// The floor of an optimizer with `states` state arrays (at most [`MAX_STATE`]).
    pub fn new(states: usize) -> Result<Self, Error> {
        if states <= MAX_STATE {
            Ok(MemoryFloor { states })
        } else {
            Err(Error::Invalid(format!(
                "the memory floor takes at most {MAX_STATE} state arrays, got {states}"
            )))
        }
    }
}

impl Optimizer for MemoryFloor {
    type Scalars = ();

    fn slots(&self) -> Slots {
        Slots {
            names: ["state0", "state1", "state2"],
            used: std::array::from_fn(|slot| slot < self.states),
            signed: [true; MAX_STATE],
        }
    }

    fn scalars(&self, _step: u64) {}

    // Inlined into `dispatch`'s target-feature functions, so that the loop is compiled
    // for the dispatched instruction set rather than the baseline.
    #[inline(always)]
    fn update_piece<T: Real>(&self, _: &(), lanes: Lanes<'_, T>) {
        // One fused pass, like the optimizers: each element of each array is touched once, and
        // each iteration loads before it stores (see the `optim` module docs).
        let Lanes {
            param,
            grad,
            state: [a, b, c],
        } = lanes;
        let n = param.len();
        let grad = &grad[..n];
        match self.states {
            0 => {
                for i in 0..n {
                    param[i] = param[i] + grad[i];
                }
            }
            1 => {
                let a = &mut a[..n];
                for i in 0..n {
                    let (p, g, a0) = (param[i], grad[i], a[i]);
                    param[i] = p + g;
                    a[i] = a0 + g;
                }
            }
            2 => {
                let (a, b) = (&mut a[..n], &mut b[..n]);
                for i in 0..n {
                    let (p, g, a0, b0) = (param[i], grad[i], a[i], b[i]);
                    param[i] = p + g;
                    a[i] = a0 + g;
                    b[i] = b0 + g;
                }
            }
            _ => {
                let (a, b, c) = (&mut a[..n], &mut b[..n], &mut c[..n]);
                for i in 0..n {
                    let (p, g, a0, b0, c0) = (param[i], grad[i], a[i], b[i], c[i]);
                    param[i] = p + g;
                    a[i] = a0 + g;
                    b[i] = b0 + g;
                    c[i] = c0 + g;
                }
            }
        }
    }
}
