//! The one definition of each optimizer's interface: its names, hyperparameters (default, valid
//! range, one-line doc), state slots and update rule.
//!
//! Every other layer derives from a [`Spec`]: the Rust constructors validate with it, the Python
//! bindings parse arguments by it, and the Python package builds its functions' signatures and
//! docstrings, the optimizer classes, the test table and the benchmark list from the table that
//! [`ALL`](super::ALL) exposes. Changing a default here changes it everywhere.

use crate::error::Error;
use crate::parallel::MAX_STATE;

/// The most hyperparameters an optimizer has (RMSprop, NAdam: 7).
pub const MAX_HYPERPARAMETERS: usize = 8;

/// A hyperparameter's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Real(f64),
    /// Two reals, such as Adam's `betas`.
    Pair(f64, f64),
    Flag(bool),
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Real(value)
    }
}

impl From<(f64, f64)> for Value {
    fn from((a, b): (f64, f64)) -> Self {
        Value::Pair(a, b)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Flag(value)
    }
}

/// The values a real hyperparameter (or each entry of a pair) may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// Finite and `>= 0`.
    NonNegative,
    /// `0 <= x < 1`: a decay rate such as Adam's betas.
    UnitOpen,
    /// `0 <= x <= 1`: RMSprop's alpha, Adadelta's rho.
    UnitClosed,
    /// `true` or `false`.
    Flag,
}

impl Range {
    /// The range in words, as error messages and docstrings print it.
    pub const fn describe(self) -> &'static str {
        match self {
            Range::NonNegative => "finite and >= 0",
            Range::UnitOpen => "in [0, 1)",
            Range::UnitClosed => "in [0, 1]",
            Range::Flag => "True or False",
        }
    }

    fn contains(self, value: f64) -> bool {
        match self {
            Range::NonNegative => value.is_finite() && value >= 0.0,
            Range::UnitOpen => (0.0..1.0).contains(&value),
            Range::UnitClosed => (0.0..=1.0).contains(&value),
            Range::Flag => false,
        }
    }
}

/// Which part of the library reads a hyperparameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// The update rule.
    Kernel,
    /// Only the value the state starts from (Adagrad's `initial_accumulator_value`): the
    /// optimizer classes take it, the functional kernels do not.
    InitialState,
}

/// One hyperparameter: PyTorch's name and default.
#[derive(Clone, Copy, Debug)]
pub struct Hyperparameter {
    pub name: &'static str,
    pub default: Value,
    pub range: Range,
    pub used_by: Use,
    pub doc: &'static str,
}

impl Hyperparameter {
    /// A hyperparameter of the update rule.
    pub const fn new(name: &'static str, default: Value, range: Range, doc: &'static str) -> Self {
        Hyperparameter {
            name,
            default,
            range,
            used_by: Use::Kernel,
            doc,
        }
    }
}

/// When the update reads and writes a state slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Always,
    /// When the named real hyperparameter is not zero.
    NonZero(&'static str),
    /// When the named flag is set.
    Flag(&'static str),
}

/// One state array of a parameter, in the order the kernels take them (PyTorch's names).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub name: &'static str,
    /// PyTorch's key for this array in the optimizer's state (`sum` for Adagrad's `state_sum`).
    pub torch_key: &'static str,
    pub need: Need,
    /// The hyperparameter whose value the array starts from, if not zero.
    pub initial: Option<&'static str>,
    /// Whether the values can be negative: 8-bit state stores a signed slot with the signed
    /// code map and a never-negative one (a second moment, a sum of squares) with the unsigned
    /// map, which spends the sign bit on precision.
    pub signed: bool,
    /// Why this slot cannot be stored in 8 bits, if it cannot.
    pub full_precision: Option<&'static str>,
    pub doc: &'static str,
}

impl Slot {
    pub const fn new(name: &'static str, need: Need, doc: &'static str) -> Self {
        Slot {
            name,
            torch_key: name,
            need,
            initial: None,
            signed: true,
            full_precision: None,
            doc,
        }
    }

    /// This slot, refused in 8 bits for `reason`.
    pub const fn full_precision(self, reason: &'static str) -> Self {
        Slot {
            full_precision: Some(reason),
            ..self
        }
    }

    /// This slot, marked as never negative.
    pub const fn non_negative(self) -> Self {
        Slot {
            signed: false,
            ..self
        }
    }
}

/// A scalar the optimizer carries from one update to the next besides its arrays (NAdam's
/// `mu_product`): passed in, and returned by the kernel.
#[derive(Clone, Copy, Debug)]
pub struct Carried {
    pub name: &'static str,
    pub doc: &'static str,
}

/// A short runnable example: the keyword arguments of one update of `[1, 1, 1]` with gradient
/// `[0.5, 0.5, 0.5]` and zero state, and the parameter it leaves, as NumPy prints it.
#[derive(Clone, Copy, Debug)]
pub struct Example {
    pub arguments: &'static str,
    pub result: &'static str,
}

/// Everything about an optimizer's interface; the update itself is the `Optimizer` impl.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// lrfast's name: the kernel is `{name}_step`.
    pub name: &'static str,
    /// The `torch.optim` class with the same semantics, and the name of lrfast's class.
    pub torch_name: &'static str,
    /// One line: what the optimizer is.
    pub summary: &'static str,
    /// The update rule, one formula a line, in the notation of `docs/semantics.md`.
    pub rule: &'static [&'static str],
    /// Remarks: conventions that differ between libraries, constraints between options.
    pub notes: &'static [&'static str],
    /// In PyTorch's constructor order; the first is always `lr`.
    pub hyperparameters: &'static [Hyperparameter],
    pub slots: &'static [Slot],
    pub carried: Option<Carried>,
    /// The hyperparameter a cycling schedule's momentum drives (`momentum`, or `betas`, whose
    /// first entry is beta1); `None` where there is no momentum.
    pub momentum: Option<&'static str>,
    pub example: Example,
}

impl Spec {
    /// The hyperparameters the update rule reads, in order.
    pub fn kernel_hyperparameters(&self) -> impl Iterator<Item = &'static Hyperparameter> {
        self.hyperparameters
            .iter()
            .filter(|h| h.used_by == Use::Kernel)
    }

    /// Validates `values`, given for the kernel's hyperparameters in order, and the gradient
    /// factor `grad_scale`.
    pub fn check(
        &'static self,
        values: &[Value],
        grad_scale: f64,
    ) -> Result<Hyperparameters, Error> {
        let expected = self.kernel_hyperparameters().count();
        if values.len() != expected || expected > MAX_HYPERPARAMETERS {
            return Err(Error::Invalid(format!(
                "{} takes {expected} hyperparameters, got {}",
                self.name,
                values.len()
            )));
        }
        for (h, value) in self.kernel_hyperparameters().zip(values) {
            check_value(h, *value)?;
        }
        check_grad_scale(grad_scale)?;
        let mut stored = [Value::Flag(false); MAX_HYPERPARAMETERS];
        stored[..values.len()].copy_from_slice(values);
        Ok(Hyperparameters {
            spec: self,
            values: stored,
            grad_scale,
        })
    }

    /// The defaults, with the `(name, value)` pairs of `given` in their place (any order), and
    /// `grad_scale` 1: the constructor for Rust code.
    pub fn with(&'static self, given: &[(&str, Value)]) -> Result<Hyperparameters, Error> {
        let mut values: Vec<Value> = self.kernel_hyperparameters().map(|h| h.default).collect();
        for &(name, value) in given {
            let index = self
                .kernel_hyperparameters()
                .position(|h| h.name == name)
                .ok_or_else(|| {
                    Error::Invalid(format!("{} has no hyperparameter {name:?}", self.name))
                })?;
            values[index] = value;
        }
        self.check(&values, 1.0)
    }
}

impl Spec {
    /// Checks one value of the hyperparameter `name`, whichever part of the library reads it
    /// (the optimizer classes check Adagrad's `initial_accumulator_value` with this).
    pub fn check_one(&'static self, name: &str, value: Value) -> Result<(), Error> {
        let h = self
            .hyperparameters
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| {
                Error::Invalid(format!("{} has no hyperparameter {name:?}", self.name))
            })?;
        check_value(h, value)
    }
}

fn check_value(h: &Hyperparameter, value: Value) -> Result<(), Error> {
    let out_of_range = |name: String, value: f64| Error::Hyperparameter {
        name,
        value,
        expected: h.range.describe(),
    };
    match (h.default, value) {
        (Value::Flag(_), Value::Flag(_)) => Ok(()),
        (Value::Real(_), Value::Real(x)) if h.range.contains(x) => Ok(()),
        (Value::Real(_), Value::Real(x)) => Err(out_of_range(h.name.to_string(), x)),
        (Value::Pair(..), Value::Pair(a, b)) => {
            for (i, x) in [a, b].into_iter().enumerate() {
                if !h.range.contains(x) {
                    return Err(out_of_range(format!("{}[{i}]", h.name), x));
                }
            }
            Ok(())
        }
        _ => Err(Error::Invalid(format!(
            "{} must be {}",
            h.name,
            match h.default {
                Value::Real(_) => "a real number",
                Value::Pair(..) => "a pair of real numbers",
                Value::Flag(_) => "True or False",
            }
        ))),
    }
}

/// Checks a gradient factor: `>= 0` and finite, or NaN (a clipping factor from a NaN norm, which
/// PyTorch also multiplies in).
fn check_grad_scale(value: f64) -> Result<(), Error> {
    if value.is_nan() || (value.is_finite() && value >= 0.0) {
        Ok(())
    } else {
        Err(Error::Hyperparameter {
            name: "grad_scale".into(),
            value,
            expected: "finite and >= 0 (or NaN)",
        })
    }
}

/// Hyperparameter values checked against their [`Spec`]: the only way to build an optimizer, so
/// no optimizer with an invalid value can exist.
#[derive(Clone, Debug)]
pub struct Hyperparameters {
    spec: &'static Spec,
    values: [Value; MAX_HYPERPARAMETERS],
    grad_scale: f64,
}

impl Hyperparameters {
    fn get(&self, name: &str) -> Value {
        let index = self
            .spec
            .kernel_hyperparameters()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("{} has no hyperparameter {name:?}", self.spec.name));
        self.values[index]
    }

    /// A real hyperparameter. Panics if the spec has no real of that name (a bug in lrfast).
    pub fn real(&self, name: &str) -> f64 {
        match self.get(name) {
            Value::Real(x) => x,
            other => panic!("{name} is not a real: {other:?}"),
        }
    }

    pub fn pair(&self, name: &str) -> (f64, f64) {
        match self.get(name) {
            Value::Pair(a, b) => (a, b),
            other => panic!("{name} is not a pair: {other:?}"),
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        match self.get(name) {
            Value::Flag(x) => x,
            other => panic!("{name} is not a flag: {other:?}"),
        }
    }

    /// Whether each state slot is read and written under these values.
    pub fn used_slots(&self) -> [bool; MAX_STATE] {
        let mut used = [false; MAX_STATE];
        for (slot, s) in self.spec.slots.iter().enumerate() {
            used[slot] = match s.need {
                Need::Always => true,
                Need::NonZero(name) => self.real(name) != 0.0,
                Need::Flag(name) => self.flag(name),
            };
        }
        used
    }

    /// The shared gradient preparation these values ask for.
    pub fn gradient(&self) -> Gradient {
        Gradient {
            factor: if self.flag("maximize") {
                -self.grad_scale
            } else {
                self.grad_scale
            },
        }
    }
}

/// What every optimizer does to the gradient first: `g ← grad_scale·g`, negated to maximize.
/// Negation is exact, so `g·(−s)` rounds as PyTorch's clip (`g·s`) followed by `−g` does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gradient {
    pub factor: f64,
}

// The hyperparameters many optimizers share, written once.

/// `lr`, the learning rate, with the optimizer's default.
pub const fn lr(default: f64) -> Hyperparameter {
    Hyperparameter::new(
        "lr",
        Value::Real(default),
        Range::NonNegative,
        "learning rate",
    )
}

/// `eps`, added to a denominator, with the optimizer's default.
pub const fn eps(default: f64) -> Hyperparameter {
    Hyperparameter::new(
        "eps",
        Value::Real(default),
        Range::NonNegative,
        "added to the denominator for numerical stability",
    )
}

/// Adam's `betas`, the decay rates of the moment averages, defaulting to `(0.9, 0.999)`.
pub const BETAS: Hyperparameter = Hyperparameter::new(
    "betas",
    Value::Pair(0.9, 0.999),
    Range::UnitOpen,
    "decay rates of the first and second moment averages",
);

/// `weight_decay` added to the gradient (L2), defaulting to 0.
pub const WEIGHT_DECAY: Hyperparameter = Hyperparameter::new(
    "weight_decay",
    Value::Real(0.0),
    Range::NonNegative,
    "L2 penalty: weight_decay·p is added to the gradient",
);

/// `decoupled_weight_decay`: apply weight decay as AdamW does.
pub const DECOUPLED_WEIGHT_DECAY: Hyperparameter = Hyperparameter::new(
    "decoupled_weight_decay",
    Value::Flag(false),
    Range::Flag,
    "shrink the parameter by lr·weight_decay (as AdamW) instead of adding the L2 term",
);

/// `maximize`: ascend the gradient.
pub const MAXIMIZE: Hyperparameter = Hyperparameter::new(
    "maximize",
    Value::Flag(false),
    Range::Flag,
    "ascend the gradient instead of descending it",
);
