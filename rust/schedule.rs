//! Learning-rate schedules: the rate as a pure function of the scheduler step `t` (0-based, so
//! `rate(0)` is the starting rate), in closed form, following `torch.optim.lr_scheduler` and
//! Keras 3's `keras.optimizers.schedules` (formulas in `docs/semantics.md`).
//!
//! A [`Schedule`] is a value: build it, [`Schedule::validate`] it once, then evaluate it at any
//! step in any order, alone ([`Schedule::rate`]) or over a whole array of steps
//! ([`Schedule::evaluate`], in parallel for long arrays).

use std::f64::consts::PI;
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{non_negative, Error};
use crate::parallel;

/// The error a user-supplied rate function may return (a binding passes its own exceptions
/// through it).
pub type CallbackError = Box<dyn std::error::Error + Send + Sync>;

/// A user-supplied factor `f(t)`: the escape hatch for schedules not in the list.
pub type Callback = Arc<dyn Fn(u64) -> Result<f64, CallbackError> + Send + Sync>;

/// The shape of a cyclical schedule's amplitude from one cycle to the next (PyTorch's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CyclicMode {
    /// The same triangle in every cycle.
    Triangular,
    /// The amplitude halves at each cycle.
    Triangular2,
    /// The amplitude is scaled by `gamma^t`.
    ExpRange,
}

/// How one-cycle moves between its phase endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anneal {
    Cos,
    Linear,
}

/// Every schedule lrfast knows. Rates are in the units of the optimizer's `lr`; steps are
/// scheduler steps from 0. Field names are PyTorch's (or Keras' for the Keras schedules).
#[derive(Clone)]
pub enum Schedule {
    /// `lr` at every step.
    Constant { lr: f64 },
    /// `base_lr·gamma^⌊t/step_size⌋` (PyTorch `StepLR`).
    Step {
        base_lr: f64,
        step_size: u64,
        gamma: f64,
    },
    /// `base_lr·gamma^(milestones ≤ t)` (PyTorch `MultiStepLR`); milestones increasing.
    MultiStep {
        base_lr: f64,
        milestones: Vec<u64>,
        gamma: f64,
    },
    /// `base_lr·gamma^t` (PyTorch `ExponentialLR`).
    Exponential { base_lr: f64, gamma: f64 },
    /// `base_lr/(1 + gamma·t)`: the classic time-based decay.
    InverseTime { base_lr: f64, gamma: f64 },
    /// `base_lr·(s + (e − s)·min(t, T)/T)` (PyTorch `LinearLR`): decay or rise to a level, hold.
    Linear {
        base_lr: f64,
        start_factor: f64,
        end_factor: f64,
        total_iters: u64,
    },
    /// `base_lr·factor` while `t < total_iters`, then `base_lr` (PyTorch `ConstantLR`).
    ConstantThenBase {
        base_lr: f64,
        factor: f64,
        total_iters: u64,
    },
    /// `base_lr·(1 − min(t, T)/T)^power` (PyTorch `PolynomialLR`).
    Polynomial {
        base_lr: f64,
        total_iters: u64,
        power: f64,
    },
    /// `eta_min + (base_lr − eta_min)·(1 + cos(π·t/T_max))/2` (PyTorch `CosineAnnealingLR`).
    Cosine {
        base_lr: f64,
        t_max: u64,
        eta_min: f64,
    },
    /// Cosine annealing restarted every period, periods growing by `t_mult` (PyTorch
    /// `CosineAnnealingWarmRestarts`); lrfast adds `decay`, the peak's factor per restart.
    WarmRestarts {
        base_lr: f64,
        t_0: u64,
        t_mult: u64,
        eta_min: f64,
        decay: f64,
    },
    /// Cyclical rates between `base_lr` and `max_lr` (PyTorch `CyclicLR`).
    Cyclic(Cyclic),
    /// One-cycle (PyTorch `OneCycleLR`).
    OneCycle(OneCycle),
    /// `initial_learning_rate·decay_rate^(t/decay_steps)` (Keras `ExponentialDecay`).
    KerasExponential {
        initial_learning_rate: f64,
        decay_steps: u64,
        decay_rate: f64,
        staircase: bool,
    },
    /// `initial_learning_rate/(1 + decay_rate·t/decay_steps)` (Keras `InverseTimeDecay`).
    KerasInverseTime {
        initial_learning_rate: f64,
        decay_steps: u64,
        decay_rate: f64,
        staircase: bool,
    },
    /// Keras `PolynomialDecay`, optionally cycling.
    KerasPolynomial {
        initial_learning_rate: f64,
        decay_steps: u64,
        end_learning_rate: f64,
        power: f64,
        cycle: bool,
    },
    /// `values[i]` for the first `boundaries[i] ≥ t`, else the last value (Keras
    /// `PiecewiseConstantDecay`).
    PiecewiseConstant {
        boundaries: Vec<u64>,
        values: Vec<f64>,
    },
    /// Keras `CosineDecay`, with its optional linear warmup to `warmup_target`.
    CosineDecay {
        initial_learning_rate: f64,
        decay_steps: u64,
        alpha: f64,
        warmup_target: Option<f64>,
        warmup_steps: u64,
    },
    /// Keras `CosineDecayRestarts`.
    CosineDecayRestarts {
        initial_learning_rate: f64,
        first_decay_steps: u64,
        t_mul: f64,
        m_mul: f64,
        alpha: f64,
    },
    /// Linear warmup from `start_factor·schedule(0)` to `schedule(0)` over `warmup_steps`, then
    /// `schedule(t − warmup_steps)`.
    Warmup {
        schedule: Arc<Schedule>,
        warmup_steps: u64,
        start_factor: f64,
    },
    /// `schedules[i]` from `milestones[i − 1]` on, each counting its own steps from 0.
    Sequential {
        schedules: Vec<Arc<Schedule>>,
        milestones: Vec<u64>,
    },
    /// The product of the factors' rates (PyTorch's chaining, with rates rather than factors).
    Product { factors: Vec<Arc<Schedule>> },
    /// `base_lr·factor(t)` with a user-supplied factor (PyTorch `LambdaLR`).
    Lambda { base_lr: f64, factor: Callback },
}

/// PyTorch `CyclicLR`, with its momentum cycling.
#[derive(Clone, Debug, PartialEq)]
pub struct Cyclic {
    pub base_lr: f64,
    pub max_lr: f64,
    pub step_size_up: u64,
    pub step_size_down: u64,
    pub mode: CyclicMode,
    pub gamma: f64,
    pub base_momentum: f64,
    pub max_momentum: f64,
}

/// PyTorch `OneCycleLR`, with its momentum cycling.
#[derive(Clone, Debug, PartialEq)]
pub struct OneCycle {
    pub max_lr: f64,
    pub total_steps: u64,
    pub pct_start: f64,
    pub anneal: Anneal,
    pub div_factor: f64,
    pub final_div_factor: f64,
    pub three_phase: bool,
    pub base_momentum: f64,
    pub max_momentum: f64,
}

fn at_least_one(name: &'static str, value: u64) -> Result<(), Error> {
    if value >= 1 {
        Ok(())
    } else {
        Err(Error::Hyperparameter {
            name: name.to_string(),
            value: value as f64,
            expected: ">= 1",
        })
    }
}

fn positive(name: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::Hyperparameter {
            name: name.to_string(),
            value,
            expected: "finite and > 0",
        })
    }
}

fn in_range(
    name: &'static str,
    value: f64,
    low: f64,
    high: f64,
    expected: &'static str,
) -> Result<(), Error> {
    if value >= low && value <= high {
        Ok(())
    } else {
        Err(Error::Hyperparameter {
            name: name.to_string(),
            value,
            expected,
        })
    }
}

fn increasing(name: &'static str, values: &[u64]) -> Result<(), Error> {
    if values.windows(2).all(|w| w[0] < w[1]) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{name} must be strictly increasing, got {values:?}"
        )))
    }
}

/// Cosine interpolation from `from` (at `fraction = 0`) to `to` (at `fraction = 1`).
fn cosine_between(from: f64, to: f64, fraction: f64) -> f64 {
    // Halving before the product gives the same bits as PyTorch's `(from − to)·(1 + cos)/2`
    // (a division by 2 is exact) but cannot overflow for rates near f64::MAX.
    to + (from - to) * ((1.0 + cos_pi(fraction)) / 2.0)
}

/// `cos(π·x)`, within an ulp or so of the libm cosine, and cheaper.
///
/// Schedules only ask for the cosine of π times a fraction, so the argument reduction is exact
/// and cheap: fold `x` into [0, 1/4] with the symmetries of `cos(πx)` (every subtraction below
/// is exact by Sterbenz' lemma), then evaluate fdlibm's minimax polynomials for cos and sin on
/// |y| ≤ π/4 (`__kernel_cos`, `__kernel_sin`, with a zero tail). Measured with `cargo bench
/// --bench schedules`: a cosine schedule's `rate` went from 39 to 22 ns.
fn cos_pi(x: f64) -> f64 {
    let mut x = x.abs();
    if x > 2.0 {
        x %= 2.0; // exact; only for arguments no schedule produces in normal use
    }
    if x > 1.0 {
        x = 2.0 - x; // cos(πx) = cos(π(2 − x))
    }
    let (x, sign) = if x > 0.5 { (1.0 - x, -1.0) } else { (x, 1.0) }; // cos(πx) = −cos(π(1 − x))
    if x <= 0.25 {
        sign * kernel_cos(PI * x)
    } else {
        sign * kernel_sin(PI * (0.5 - x)) // cos(πx) = sin(π(1/2 − x))
    }
}

/// fdlibm's `__kernel_cos(x, 0)` for |x| ≤ π/4.
fn kernel_cos(x: f64) -> f64 {
    #[allow(clippy::excessive_precision)] // fdlibm's constants, digit for digit
    const C: [f64; 6] = [
        4.166_666_666_666_660_19e-2,
        -1.388_888_888_887_410_96e-3,
        2.480_158_728_947_672_94e-5,
        -2.755_731_435_139_066_33e-7,
        2.087_572_321_298_174_83e-9,
        -1.135_964_755_778_819_48e-11,
    ];
    let z = x * x;
    let r = z * (C[0] + z * (C[1] + z * (C[2] + z * (C[3] + z * (C[4] + z * C[5])))));
    if x.abs() < 0.3 {
        return 1.0 - (0.5 * z - z * r);
    }
    // 1 − z/2 loses bits when z/2 is near 1/2: subtract a rounded quarter of x² first.
    let qx = if x.abs() > 0.78125 {
        0.28125
    } else {
        f64::from_bits((x.abs().to_bits() - 0x0020_0000_0000_0000) & 0xffff_ffff_0000_0000)
    };
    let hz = 0.5 * z - qx;
    (1.0 - qx) - (hz - z * r)
}

/// fdlibm's `__kernel_sin(x, 0, 0)` for |x| ≤ π/4.
fn kernel_sin(x: f64) -> f64 {
    #[allow(clippy::excessive_precision)] // fdlibm's constants, digit for digit
    const S: [f64; 6] = [
        -1.666_666_666_666_663_24e-1,
        8.333_333_333_322_489_46e-3,
        -1.984_126_982_985_794_93e-4,
        2.755_731_370_707_006_77e-6,
        -2.505_076_025_340_686_34e-8,
        1.589_690_995_211_550_10e-10,
    ];
    let z = x * x;
    let v = z * x;
    let r = S[1] + z * (S[2] + z * (S[3] + z * (S[4] + z * S[5])));
    x + v * (S[0] + z * r)
}

impl Cyclic {
    /// The position in the cycle as a height in [0, 1], and the amplitude's scale.
    fn height_and_scale(&self, t: u64) -> (f64, f64) {
        // In u128: the two halves of a cycle may add up past u64.
        let total = (u128::from(self.step_size_up) + u128::from(self.step_size_down)) as f64;
        let up_ratio = self.step_size_up as f64 / total;
        let t = t as f64;
        let cycle = (1.0 + t / total).floor();
        let x = 1.0 + t / total - cycle;
        let height = if x <= up_ratio {
            x / up_ratio
        } else {
            (x - 1.0) / (up_ratio - 1.0)
        };
        let scale = match self.mode {
            CyclicMode::Triangular => 1.0,
            CyclicMode::Triangular2 => 1.0 / 2f64.powf(cycle - 1.0),
            CyclicMode::ExpRange => self.gamma.powf(t),
        };
        (height, scale)
    }

    fn rate(&self, t: u64) -> f64 {
        let (height, scale) = self.height_and_scale(t);
        self.base_lr + (self.max_lr - self.base_lr) * height * scale
    }

    fn momentum(&self, t: u64) -> f64 {
        let (height, scale) = self.height_and_scale(t);
        self.max_momentum - (self.max_momentum - self.base_momentum) * height * scale
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("base_lr", self.base_lr)?;
        non_negative("max_lr", self.max_lr)?;
        if self.max_lr < self.base_lr {
            return Err(Error::Invalid(format!(
                "max_lr must be >= base_lr, got max_lr={} and base_lr={}",
                self.max_lr, self.base_lr
            )));
        }
        at_least_one("step_size_up", self.step_size_up)?;
        at_least_one("step_size_down", self.step_size_down)?;
        if self.mode == CyclicMode::ExpRange {
            // gamma^t of a gamma above 1 overflows, and 0·∞ at a cycle's end gives NaN.
            in_range(
                "gamma",
                self.gamma,
                0.0,
                1.0,
                "in [0, 1] with mode='exp_range'",
            )?;
        } else {
            non_negative("gamma", self.gamma)?;
        }
        validate_momentum_range(self.base_momentum, self.max_momentum)
    }
}

fn validate_momentum_range(base: f64, max: f64) -> Result<(), Error> {
    non_negative("base_momentum", base)?;
    non_negative("max_momentum", max)?;
    if base > max {
        return Err(Error::Invalid(format!(
            "base_momentum must be <= max_momentum, got base_momentum={base} and max_momentum={max}"
        )));
    }
    Ok(())
}

impl OneCycle {
    /// Phase boundaries (the step at which each ends) and the fraction of the way through the
    /// phase containing `t`, plus its (lr, momentum) endpoints. Past the last step the final
    /// rate holds (PyTorch raises there).
    fn locate(&self, t: u64) -> (f64, [f64; 2], [f64; 2]) {
        let n = self.total_steps as f64;
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let (lo, hi) = (self.base_momentum, self.max_momentum);
        let phases: &[(f64, [f64; 2], [f64; 2])] = if self.three_phase {
            &[
                (self.pct_start * n - 1.0, [initial, self.max_lr], [hi, lo]),
                (
                    2.0 * self.pct_start * n - 2.0,
                    [self.max_lr, initial],
                    [lo, hi],
                ),
                (n - 1.0, [initial, min], [hi, hi]),
            ]
        } else {
            &[
                (self.pct_start * n - 1.0, [initial, self.max_lr], [hi, lo]),
                (n - 1.0, [self.max_lr, min], [lo, hi]),
            ]
        };
        let t = (t as f64).min(n - 1.0);
        let mut start = 0.0;
        for (i, &(end, rates, momenta)) in phases.iter().enumerate() {
            if t <= end || i == phases.len() - 1 {
                // A phase of zero length (pct_start·N = 1) is already at its end.
                let fraction = if end > start {
                    (t - start) / (end - start)
                } else {
                    1.0
                };
                return (fraction, rates, momenta);
            }
            start = end;
        }
        unreachable!("the last phase always matches")
    }

    fn interpolate(&self, [from, to]: [f64; 2], fraction: f64) -> f64 {
        match self.anneal {
            Anneal::Cos => cosine_between(from, to, fraction),
            Anneal::Linear => from + (to - from) * fraction,
        }
    }

    fn rate(&self, t: u64) -> f64 {
        let (fraction, rates, _) = self.locate(t);
        self.interpolate(rates, fraction)
    }

    fn momentum(&self, t: u64) -> f64 {
        let (fraction, _, momenta) = self.locate(t);
        self.interpolate(momenta, fraction)
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("max_lr", self.max_lr)?;
        at_least_one("total_steps", self.total_steps)?;
        in_range("pct_start", self.pct_start, 0.0, 1.0, "in [0, 1]")?;
        positive("div_factor", self.div_factor)?;
        positive("final_div_factor", self.final_div_factor)?;
        validate_momentum_range(self.base_momentum, self.max_momentum)
    }
}

impl Schedule {
    /// Checks every parameter; call once after building a schedule.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Schedule::Constant { lr } => non_negative("lr", *lr),
            Schedule::Step {
                base_lr,
                step_size,
                gamma,
            } => {
                non_negative("base_lr", *base_lr)?;
                at_least_one("step_size", *step_size)?;
                non_negative("gamma", *gamma)
            }
            Schedule::MultiStep {
                base_lr,
                milestones,
                gamma,
            } => {
                non_negative("base_lr", *base_lr)?;
                increasing("milestones", milestones)?;
                non_negative("gamma", *gamma)
            }
            Schedule::Exponential { base_lr, gamma } | Schedule::InverseTime { base_lr, gamma } => {
                non_negative("base_lr", *base_lr)?;
                non_negative("gamma", *gamma)
            }
            Schedule::Linear {
                base_lr,
                start_factor,
                end_factor,
                total_iters,
            } => {
                non_negative("base_lr", *base_lr)?;
                in_range("start_factor", *start_factor, 0.0, 1.0, "in [0, 1]")?;
                in_range("end_factor", *end_factor, 0.0, 1.0, "in [0, 1]")?;
                at_least_one("total_iters", *total_iters)
            }
            Schedule::ConstantThenBase {
                base_lr,
                factor,
                total_iters,
            } => {
                non_negative("base_lr", *base_lr)?;
                in_range("factor", *factor, 0.0, 1.0, "in [0, 1]")?;
                let _ = total_iters; // 0 is allowed: the base rate from the start
                Ok(())
            }
            Schedule::Polynomial {
                base_lr,
                total_iters,
                power,
            } => {
                non_negative("base_lr", *base_lr)?;
                at_least_one("total_iters", *total_iters)?;
                non_negative("power", *power)
            }
            Schedule::Cosine {
                base_lr,
                t_max,
                eta_min,
            } => {
                non_negative("base_lr", *base_lr)?;
                at_least_one("T_max", *t_max)?;
                non_negative("eta_min", *eta_min)
            }
            Schedule::WarmRestarts {
                base_lr,
                t_0,
                t_mult,
                eta_min,
                decay,
            } => {
                non_negative("base_lr", *base_lr)?;
                at_least_one("T_0", *t_0)?;
                at_least_one("T_mult", *t_mult)?;
                non_negative("eta_min", *eta_min)?;
                non_negative("decay", *decay)
            }
            Schedule::Cyclic(cyclic) => cyclic.validate(),
            Schedule::OneCycle(one_cycle) => one_cycle.validate(),
            Schedule::KerasExponential {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                ..
            }
            | Schedule::KerasInverseTime {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                ..
            } => {
                non_negative("initial_learning_rate", *initial_learning_rate)?;
                at_least_one("decay_steps", *decay_steps)?;
                non_negative("decay_rate", *decay_rate)
            }
            Schedule::KerasPolynomial {
                initial_learning_rate,
                decay_steps,
                end_learning_rate,
                power,
                ..
            } => {
                non_negative("initial_learning_rate", *initial_learning_rate)?;
                at_least_one("decay_steps", *decay_steps)?;
                non_negative("end_learning_rate", *end_learning_rate)?;
                non_negative("power", *power)
            }
            Schedule::PiecewiseConstant { boundaries, values } => {
                increasing("boundaries", boundaries)?;
                if values.len() != boundaries.len() + 1 {
                    return Err(Error::Invalid(format!(
                        "values must have one more entry than boundaries, got {} values and {} boundaries",
                        values.len(),
                        boundaries.len()
                    )));
                }
                values.iter().try_for_each(|&v| non_negative("values", v))
            }
            Schedule::CosineDecay {
                initial_learning_rate,
                decay_steps,
                alpha,
                warmup_target,
                ..
            } => {
                non_negative("initial_learning_rate", *initial_learning_rate)?;
                at_least_one("decay_steps", *decay_steps)?;
                in_range("alpha", *alpha, 0.0, 1.0, "in [0, 1]")?;
                warmup_target.map_or(Ok(()), |target| non_negative("warmup_target", target))
            }
            Schedule::CosineDecayRestarts {
                initial_learning_rate,
                first_decay_steps,
                t_mul,
                m_mul,
                alpha,
            } => {
                non_negative("initial_learning_rate", *initial_learning_rate)?;
                at_least_one("first_decay_steps", *first_decay_steps)?;
                // Below 1 the periods shrink to nothing after a finite number of steps, where
                // Keras' formula gives NaN.
                in_range("t_mul", *t_mul, 1.0, f64::MAX, "finite and >= 1")?;
                non_negative("m_mul", *m_mul)?;
                in_range("alpha", *alpha, 0.0, 1.0, "in [0, 1]")
            }
            Schedule::Warmup { start_factor, .. } => {
                in_range("start_factor", *start_factor, 0.0, 1.0, "in [0, 1]")
            }
            Schedule::Sequential {
                schedules,
                milestones,
            } => {
                if schedules.is_empty() || milestones.len() + 1 != schedules.len() {
                    return Err(Error::Invalid(format!(
                        "milestones must have one fewer entry than schedules (at least one), got {} milestones and {} schedules",
                        milestones.len(),
                        schedules.len()
                    )));
                }
                increasing("milestones", milestones)
            }
            Schedule::Product { factors } => {
                if factors.is_empty() {
                    Err(Error::Invalid(
                        "a product needs at least one schedule".into(),
                    ))
                } else {
                    Ok(())
                }
            }
            Schedule::Lambda { base_lr, .. } => non_negative("base_lr", *base_lr),
        }
    }

    /// The rate at scheduler step `t`. Only a user-supplied function can fail.
    pub fn rate(&self, t: u64) -> Result<f64, CallbackError> {
        let tf = t as f64;
        Ok(match self {
            Schedule::Constant { lr } => *lr,
            Schedule::Step {
                base_lr,
                step_size,
                gamma,
            } => base_lr * power(*gamma, t / step_size),
            Schedule::MultiStep {
                base_lr,
                milestones,
                gamma,
            } => {
                let passed = milestones.partition_point(|&m| m <= t);
                base_lr * power(*gamma, passed as u64)
            }
            Schedule::Exponential { base_lr, gamma } => base_lr * gamma.powf(tf),
            Schedule::InverseTime { base_lr, gamma } => base_lr / (1.0 + gamma * tf),
            Schedule::Linear {
                base_lr,
                start_factor,
                end_factor,
                total_iters,
            } => {
                let done = t.min(*total_iters) as f64 / *total_iters as f64;
                base_lr * (start_factor + (end_factor - start_factor) * done)
            }
            Schedule::ConstantThenBase {
                base_lr,
                factor,
                total_iters,
            } => {
                if t < *total_iters {
                    base_lr * factor
                } else {
                    *base_lr
                }
            }
            Schedule::Polynomial {
                base_lr,
                total_iters,
                power,
            } => {
                let done = t.min(*total_iters) as f64 / *total_iters as f64;
                base_lr * (1.0 - done).powf(*power)
            }
            Schedule::Cosine {
                base_lr,
                t_max,
                eta_min,
            } => {
                // The cosine has period 2·T_max: reducing t exactly first keeps the angle exact
                // at any step count (cos(π·t/T_max) of a huge t would amplify its rounding).
                // In u128, as 2·T_max may exceed u64.
                let phase = u128::from(t) % (2 * u128::from(*t_max));
                cosine_between(*base_lr, *eta_min, phase as f64 / *t_max as f64)
            }
            Schedule::WarmRestarts {
                base_lr,
                t_0,
                t_mult,
                eta_min,
                decay,
            } => {
                let (restarts, into_period, period) = warm_restart_position(t, *t_0, *t_mult);
                let peak = base_lr * power(*decay, restarts);
                cosine_between(peak, *eta_min, into_period as f64 / period as f64)
            }
            Schedule::Cyclic(cyclic) => cyclic.rate(t),
            Schedule::OneCycle(one_cycle) => one_cycle.rate(t),
            Schedule::KerasExponential {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                initial_learning_rate * decay_rate.powf(keras_progress(t, *decay_steps, *staircase))
            }
            Schedule::KerasInverseTime {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                initial_learning_rate
                    / (1.0 + decay_rate * keras_progress(t, *decay_steps, *staircase))
            }
            Schedule::KerasPolynomial {
                initial_learning_rate,
                decay_steps,
                end_learning_rate,
                power,
                cycle,
            } => {
                let (s, d) = if *cycle {
                    let cycles = if t == 0 { 1 } else { t.div_ceil(*decay_steps) };
                    // The period in integers, rounded once: t ≤ period, so t/period ≤ 1 after
                    // rounding too. (Rounding the two factors first could make the period
                    // smaller than t near 2^60, and a negative base NaN.)
                    let period = u128::from(*decay_steps) * u128::from(cycles);
                    (tf, period as f64)
                } else {
                    (t.min(*decay_steps) as f64, *decay_steps as f64)
                };
                (initial_learning_rate - end_learning_rate) * (1.0 - s / d).powf(*power)
                    + end_learning_rate
            }
            Schedule::PiecewiseConstant { boundaries, values } => {
                values[boundaries.partition_point(|&b| b < t)]
            }
            Schedule::CosineDecay {
                initial_learning_rate,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => {
                let decayed = |peak: f64, s: u64| {
                    let fraction = s.min(*decay_steps) as f64 / *decay_steps as f64;
                    peak * ((1.0 - alpha) * (1.0 + (PI * fraction).cos()) / 2.0 + alpha)
                };
                match warmup_target {
                    None => decayed(*initial_learning_rate, t),
                    Some(target) if t < *warmup_steps => {
                        initial_learning_rate
                            + (target - initial_learning_rate) * tf / *warmup_steps as f64
                    }
                    Some(target) => decayed(*target, t - warmup_steps),
                }
            }
            Schedule::CosineDecayRestarts {
                initial_learning_rate,
                first_decay_steps,
                t_mul,
                m_mul,
                alpha,
            } => {
                let mut fraction = tf / *first_decay_steps as f64;
                let restarts = if *t_mul == 1.0 {
                    let i = fraction.floor();
                    fraction -= i;
                    i
                } else {
                    // Keras' closed form; for a t_mul so large that fraction·(t_mul − 1)
                    // overflows, its logarithm is taken as a sum (the 1 is negligible there).
                    let grown = 1.0 - fraction * (1.0 - t_mul);
                    let log_grown = if grown.is_finite() {
                        grown.ln()
                    } else {
                        fraction.ln() + (t_mul - 1.0).ln()
                    };
                    let i = (log_grown / t_mul.ln()).floor();
                    let periods = t_mul.powf(i);
                    let done = (1.0 - periods) / (1.0 - t_mul);
                    fraction = (fraction - done) / periods;
                    i
                };
                let cosine = m_mul.powf(restarts) * (1.0 + (PI * fraction).cos()) / 2.0;
                initial_learning_rate * ((1.0 - alpha) * cosine + alpha)
            }
            Schedule::Warmup {
                schedule,
                warmup_steps,
                start_factor,
            } => {
                if t < *warmup_steps {
                    let target = schedule.rate(0)?;
                    target * (start_factor + (1.0 - start_factor) * tf / *warmup_steps as f64)
                } else {
                    schedule.rate(t - warmup_steps)?
                }
            }
            Schedule::Sequential {
                schedules,
                milestones,
            } => {
                let index = milestones.partition_point(|&m| m <= t);
                let start = if index == 0 { 0 } else { milestones[index - 1] };
                schedules[index].rate(t - start)?
            }
            Schedule::Product { factors } => {
                let mut product = 1.0;
                for factor in factors {
                    product *= factor.rate(t)?;
                }
                product
            }
            Schedule::Lambda { base_lr, factor } => base_lr * factor(t)?,
        })
    }

    /// The momentum (or Adam's `beta1`) a cycling schedule pairs with its rate at step `t`:
    /// high when the rate is low, as PyTorch's `cycle_momentum` does. `None` for schedules that
    /// do not cycle momentum.
    pub fn momentum(&self, t: u64) -> Option<f64> {
        match self {
            Schedule::Cyclic(cyclic) => Some(cyclic.momentum(t)),
            Schedule::OneCycle(one_cycle) => Some(one_cycle.momentum(t)),
            _ => None,
        }
    }

    /// Whether evaluating calls a user-supplied function (which may need a lock a binding holds,
    /// so such schedules are evaluated on the calling thread).
    pub fn has_callback(&self) -> bool {
        match self {
            Schedule::Lambda { .. } => true,
            Schedule::Warmup { schedule, .. } => schedule.has_callback(),
            Schedule::Sequential { schedules, .. } => schedules.iter().any(|s| s.has_callback()),
            Schedule::Product { factors } => factors.iter().any(|s| s.has_callback()),
            _ => false,
        }
    }

    /// `rate(t)` for every step of `steps`, over threads for long arrays of a schedule without
    /// a callback (the output is written once, in place, by the threads).
    pub fn evaluate(&self, steps: &[u64]) -> Result<Vec<f64>, CallbackError> {
        if self.has_callback() || steps.len() < EVALUATE_PARALLEL_LEN {
            return steps.iter().map(|&t| self.rate(t)).collect();
        }
        let mut out = Vec::new();
        parallel::install(|| {
            steps
                .par_iter()
                .with_min_len(EVALUATE_CHUNK)
                .map(|&t| match self.rate(t) {
                    Ok(rate) => rate,
                    Err(_) => unreachable!("only user callbacks fail, and they run serially"),
                })
                .collect_into_vec(&mut out)
        });
        Ok(out)
    }
}

/// From this many steps, [`Schedule::evaluate`] spreads the work over threads.
pub const EVALUATE_PARALLEL_LEN: usize = 1 << 15;
const EVALUATE_CHUNK: usize = 1 << 13;

/// `base^exponent` for a count: repeated squaring (a few multiplications, where `powf` costs
/// tens of nanoseconds), as PyTorch's schedulers multiply by `gamma` once per milestone.
fn power(base: f64, exponent: u64) -> f64 {
    match i32::try_from(exponent) {
        Ok(exponent) => base.powi(exponent),
        Err(_) => base.powf(exponent as f64),
    }
}

/// Keras' `step / decay_steps`, floored when `staircase`.
fn keras_progress(t: u64, decay_steps: u64, staircase: bool) -> f64 {
    if staircase {
        (t / decay_steps) as f64
    } else {
        t as f64 / decay_steps as f64
    }
}

/// For warm restarts: (restarts so far, steps into the current period, its length), in integers
/// so that period boundaries are exact at any step count.
fn warm_restart_position(t: u64, t_0: u64, t_mult: u64) -> (u64, u64, u128) {
    if t_mult == 1 {
        return (t / t_0, t % t_0, u128::from(t_0));
    }
    // In u128: the period we are in may be longer than any u64 step. Periods grow
    // geometrically, so this runs at most 64 times.
    let (t, mut restarts, mut start, mut period) = (u128::from(t), 0u64, 0u128, u128::from(t_0));
    while start + period <= t {
        start += period;
        restarts += 1;
        period = period.saturating_mul(u128::from(t_mult));
    }
    (restarts, (t - start) as u64, period)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(schedule: &Schedule, n: u64) -> Vec<f64> {
        (0..n).map(|t| schedule.rate(t).unwrap()).collect()
    }

    #[test]
    fn restarts_and_cosines_are_exact_where_u64_periods_overflow() {
        let warm = |t_0, t_mult| Schedule::WarmRestarts {
            base_lr: 0.1,
            t_0,
            t_mult,
            eta_min: 0.0,
            decay: 1.0,
        };
        // The third period (2^81 steps) is longer than any u64 step: step 2^53 + 1 is near its
        // start, at the peak.
        let rate = warm(2, 1 << 40).rate((1 << 53) + 1).unwrap();
        assert!((rate - 0.1).abs() < 1e-15, "{rate}");
        // The second period, 3·2^63, exceeds u64: the last step is a third into it.
        let rate = warm(1 << 63, 3).rate(u64::MAX).unwrap();
        assert!((rate - 0.075).abs() < 1e-15, "{rate}");
        // 2·T_max exceeds u64: step T_max is the cosine's minimum, not a new period.
        let cosine = |base_lr, t_max| Schedule::Cosine {
            base_lr,
            t_max,
            eta_min: 0.0,
        };
        assert_eq!(cosine(0.1, u64::MAX).rate(u64::MAX).unwrap(), 0.0);
        // A rate near f64::MAX: (from − to)·(1 + cos) would overflow before the halving.
        assert_eq!(cosine(1e308, 10).rate(0).unwrap(), 1e308);
        let keras = Schedule::CosineDecayRestarts {
            initial_learning_rate: 0.1,
            first_decay_steps: 1,
            t_mul: 1e308,
            m_mul: 1.0,
            alpha: 0.0,
        };
        let rate = keras.rate(2).unwrap();
        assert!((rate - 0.1).abs() < 1e-15, "{rate}");
    }

    #[test]
    fn exp_range_refuses_a_growing_gamma() {
        let cyclic = |gamma| {
            Schedule::Cyclic(Cyclic {
                base_lr: 0.1,
                max_lr: 1.0,
                step_size_up: 1,
                step_size_down: 1,
                mode: CyclicMode::ExpRange,
                gamma,
                base_momentum: 0.8,
                max_momentum: 0.9,
            })
        };
        assert!(cyclic(2.0).validate().is_err());
        // Found by the adversarial suite: halves of 2^63 steps each overflowed u64 (NaN).
        let long = Schedule::Cyclic(Cyclic {
            step_size_up: 1 << 63,
            step_size_down: 1 << 63,
            ..match cyclic(1.0) {
                Schedule::Cyclic(c) => c,
                _ => unreachable!(),
            }
        });
        assert_eq!(long.rate(1 << 62).unwrap(), 0.55);
        assert!(cyclic(0.99).validate().is_ok());
        assert!(cyclic(0.99).rate(1_000_000).unwrap().is_finite());
    }

    #[test]
    fn cycling_polynomial_decay_stays_finite_at_huge_steps() {
        // Found by hypothesis: with the period's factors rounded separately, the period came
        // out below the step and a fractional power of a negative number gave NaN.
        let schedule = Schedule::KerasPolynomial {
            initial_learning_rate: 1.0,
            decay_steps: 103,
            end_learning_rate: 0.0,
            power: 1.5,
            cycle: true,
        };
        for t in [1_152_921_504_606_846_912, u64::MAX - 5, 1 << 62] {
            let rate = schedule.rate(t).unwrap();
            assert!((0.0..=1.0).contains(&rate), "{t}: {rate}");
        }
    }

    #[test]
    fn warm_restart_periods_grow() {
        // T_0 = 2, T_mult = 3: periods [0, 2), [2, 8), [8, 26)
        assert_eq!(warm_restart_position(0, 2, 3), (0, 0, 2));
        assert_eq!(warm_restart_position(1, 2, 3), (0, 1, 2));
        assert_eq!(warm_restart_position(2, 2, 3), (1, 0, 6));
        assert_eq!(warm_restart_position(7, 2, 3), (1, 5, 6));
        assert_eq!(warm_restart_position(8, 2, 3), (2, 0, 18));
        // The 65th period (2^64 steps) starts at the last u64 step.
        assert_eq!(warm_restart_position(u64::MAX, 1, 2), (64, 0, 1 << 64));
    }

    #[test]
    fn cos_pi_is_within_an_ulp_of_libm() {
        // The kernels, where libm's own argument is small and accurate: within an ulp.
        let ulps = |ours: f64, libm: f64| {
            (ours - libm).abs() / (f64::EPSILON * libm.abs()).max(f64::MIN_POSITIVE)
        };
        for i in 0..=1_000_000u64 {
            let x = i as f64 / 4_000_000.0; // [0, 1/4]
            assert!(ulps(cos_pi(x), (PI * x).cos()) <= 1.0, "cos at {x}");
            let y = 0.25 + x; // [1/4, 1/2], where 0.5 − y is exact
            assert!(ulps(cos_pi(y), (PI * (0.5 - y)).sin()) <= 1.0, "sin at {y}");
        }
        // Everywhere on [0, 2]: libm's cos(π·x) rounds π·x first (up to 2^-52·π·x off in the
        // angle), so only an absolute comparison at that scale is meaningful.
        for i in 0..=2_000_000u64 {
            let x = i as f64 / 1_000_000.0 + (i % 7) as f64 * 1e-9;
            assert!(
                (cos_pi(x) - (PI * x).cos()).abs() <= 4.0 * f64::EPSILON,
                "at {x}"
            );
        }
        assert_eq!(cos_pi(0.0), 1.0);
        assert_eq!(cos_pi(1.0), -1.0);
        assert_eq!(cos_pi(0.5), 0.0);
        assert_eq!(cos_pi(2.0), 1.0);
        assert_eq!(cos_pi(5.0), -1.0);
    }

    #[test]
    fn step_and_multistep() {
        let step = Schedule::Step {
            base_lr: 1.0,
            step_size: 2,
            gamma: 0.5,
        };
        assert_eq!(rates(&step, 5), [1.0, 1.0, 0.5, 0.5, 0.25]);
        let multi = Schedule::MultiStep {
            base_lr: 1.0,
            milestones: vec![1, 3],
            gamma: 0.1,
        };
        assert_eq!(rates(&multi, 4)[..3], [1.0, 0.1, 0.1]);
    }

    #[test]
    fn warmup_then_sequence() {
        let inner = Arc::new(Schedule::Constant { lr: 2.0 });
        let warm = Schedule::Warmup {
            schedule: inner.clone(),
            warmup_steps: 4,
            start_factor: 0.0,
        };
        assert_eq!(rates(&warm, 6), [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]);
        let sequence = Schedule::Sequential {
            schedules: vec![
                inner,
                Arc::new(Schedule::Exponential {
                    base_lr: 1.0,
                    gamma: 0.5,
                }),
            ],
            milestones: vec![2],
        };
        assert_eq!(rates(&sequence, 4), [2.0, 2.0, 1.0, 0.5]);
    }

    #[test]
    fn evaluate_matches_rate_over_threads() {
        let schedule = Schedule::Cyclic(Cyclic {
            base_lr: 0.1,
            max_lr: 1.0,
            step_size_up: 7,
            step_size_down: 3,
            mode: CyclicMode::Triangular2,
            gamma: 1.0,
            base_momentum: 0.8,
            max_momentum: 0.9,
        });
        let steps: Vec<u64> = (0..100_000).map(|i| i * 7919 % 100_003).collect();
        let out = schedule.evaluate(&steps).unwrap();
        for (&t, &o) in steps.iter().zip(&out) {
            assert_eq!(o.to_bits(), schedule.rate(t).unwrap().to_bits());
        }
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = Schedule::Step {
            base_lr: 0.1,
            step_size: 0,
            gamma: 0.1,
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("step_size"));
        let bad = Schedule::Cyclic(Cyclic {
            base_lr: 1.0,
            max_lr: 0.5,
            step_size_up: 1,
            step_size_down: 1,
            mode: CyclicMode::Triangular,
            gamma: 1.0,
            base_momentum: 0.8,
            max_momentum: 0.9,
        });
        assert!(bad.validate().unwrap_err().to_string().contains("max_lr"));
    }
}
