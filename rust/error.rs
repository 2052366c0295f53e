//! Errors the kernels report before touching any memory.

use std::fmt;

/// Why a kernel refused to run. Every variant names the argument at fault, so a binding can turn
/// it into a message the user can act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A hyperparameter is NaN, infinite or outside its valid range.
    Hyperparameter {
        name: String,
        value: f64,
        expected: &'static str,
    },
    /// `step` is not a 1-based update count.
    Step(u64),
    /// The options need a state array that was not supplied.
    MissingState(&'static str),
    /// Values that are invalid together (`nesterov` without momentum), of the wrong kind, or a
    /// list that is not as it must be; the message names them.
    Invalid(String),
    /// An array's length differs from the parameter's.
    Length {
        name: &'static str,
        expected: usize,
        actual: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Hyperparameter {
                name,
                value,
                expected,
            } => write!(f, "{name} must be {expected}, got {value}"),
            Error::Step(step) => write!(f, "step must be an integer >= 1, got {step}"),
            Error::Invalid(message) => f.write_str(message),
            Error::MissingState(name) => {
                write!(f, "{name} is required by these options but was not given")
            }
            Error::Length {
                name,
                expected,
                actual,
            } => write!(f, "{name} has {actual} elements but param has {expected}"),
        }
    }
}

impl std::error::Error for Error {}

/// Checks `value` is finite and non-negative.
pub(crate) fn non_negative(name: &str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::Hyperparameter {
            name: name.to_string(),
            value,
            expected: "finite and >= 0",
        })
    }
}
