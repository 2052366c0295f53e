//! Bindings of the schedules: `lrfast._lrfast.Schedule`, the base class of the Python schedule
//! classes, and the `lr=` argument of every kernel (a float or a schedule).
//!
//! A Python schedule class calls `_build(kind, params)` once from its `__init__`; the parameters
//! are read here by name, the schedule validated, and from then on `__call__`, `_evaluate` and
//! the kernels evaluate it in Rust.

use std::sync::{Arc, OnceLock};

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyTuple};

use crate::schedule::{Anneal, CallbackError, Cyclic, CyclicMode, OneCycle, Schedule};

/// The base class of `lrfast.schedules.Schedule`: holds the Rust schedule.
#[pyclass(subclass, frozen, module = "lrfast._lrfast", name = "Schedule")]
pub(super) struct PySchedule {
    inner: OnceLock<Arc<Schedule>>,
}

/// A user function's exception comes back as itself; any other failure as a ValueError.
fn callback_error(err: CallbackError) -> PyErr {
    match err.downcast::<PyErr>() {
        Ok(err) => *err,
        Err(err) => PyValueError::new_err(err.to_string()),
    }
}

/// A scheduler step: an integer >= 0 (`bool` and `float` refused, as for `step`).
fn parse_schedule_step(step: &Bound<'_, PyAny>) -> PyResult<u64> {
    if !step.is_instance_of::<PyBool>() && !step.is_instance_of::<PyFloat>() {
        if let Ok(value) = step.extract::<u64>() {
            return Ok(value);
        }
    }
    Err(PyValueError::new_err(format!(
        "step must be an integer >= 0, got {}",
        step.repr()?
    )))
}

impl PySchedule {
    fn schedule(&self) -> PyResult<&Arc<Schedule>> {
        self.inner
            .get()
            .ok_or_else(|| PyRuntimeError::new_err("this schedule was not built (call _build)"))
    }
}

/// Reads the parameters of one schedule kind from a dict, by name.
struct Params<'a, 'py> {
    dict: &'a Bound<'py, PyDict>,
}

impl<'py> Params<'_, 'py> {
    fn item(&self, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.dict
            .get_item(name)?
            .ok_or_else(|| PyTypeError::new_err(format!("missing schedule parameter {name}")))
    }

    fn float(&self, name: &str) -> PyResult<f64> {
        let item = self.item(name)?;
        if item.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a number, got a bool"
            )));
        }
        item.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "{name} must be a number, got {}",
                item.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })
    }

    fn optional_float(&self, name: &str) -> PyResult<Option<f64>> {
        if self.item(name)?.is_none() {
            Ok(None)
        } else {
            self.float(name).map(Some)
        }
    }

    fn count_of(name: &str, item: &Bound<'py, PyAny>) -> PyResult<u64> {
        if item.is_instance_of::<PyBool>() || item.is_instance_of::<PyFloat>() {
            return Err(PyTypeError::new_err(format!(
                "{name} must be an integer, got {}",
                item.repr()?
            )));
        }
        let value: i128 = item
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("{name} must be an integer")))?;
        u64::try_from(value).map_err(|_| {
            PyValueError::new_err(format!("{name} must be an integer >= 0, got {value}"))
        })
    }

    fn count(&self, name: &str) -> PyResult<u64> {
        Self::count_of(name, &self.item(name)?)
    }

    fn counts(&self, name: &str) -> PyResult<Vec<u64>> {
        let mut out = Vec::new();
        for item in self.item(name)?.try_iter()? {
            out.push(Self::count_of(name, &item?)?);
        }
        Ok(out)
    }

    fn floats(&self, name: &str) -> PyResult<Vec<f64>> {
        self.item(name)?
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("{name} must be a sequence of numbers")))
    }

    fn flag(&self, name: &str) -> PyResult<bool> {
        self.item(name)?
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("{name} must be a bool")))
    }

    fn schedule_of(name: &str, item: &Bound<'py, PyAny>) -> PyResult<Arc<Schedule>> {
        let schedule = item.cast::<PySchedule>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{name} must be an lrfast schedule, got {}",
                item.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?;
        Ok(schedule.get().schedule()?.clone())
    }

    fn schedule(&self, name: &str) -> PyResult<Arc<Schedule>> {
        Self::schedule_of(name, &self.item(name)?)
    }

    fn schedules(&self, name: &str) -> PyResult<Vec<Arc<Schedule>>> {
        let mut out = Vec::new();
        for item in self.item(name)?.try_iter()? {
            out.push(Self::schedule_of(name, &item?)?);
        }
        Ok(out)
    }

    fn choice<T: Copy>(&self, name: &str, choices: &[(&str, T)]) -> PyResult<T> {
        let item = self.item(name)?;
        let value: String = item.extract().unwrap_or_default();
        choices
            .iter()
            .find(|(n, _)| *n == value)
            .map(|&(_, t)| t)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                PyValueError::new_err(format!(
                    "{name} must be one of {names:?}, got {}",
                    item.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })
    }
}

/// Builds the Rust schedule of class `kind` from its parameters (the Python class's names).
fn build(kind: &str, p: &Params<'_, '_>) -> PyResult<Schedule> {
    Ok(match kind {
        "Constant" => Schedule::Constant { lr: p.float("lr")? },
        "StepLR" => Schedule::Step {
            base_lr: p.float("base_lr")?,
            step_size: p.count("step_size")?,
            gamma: p.float("gamma")?,
        },
        "MultiStepLR" => Schedule::MultiStep {
            base_lr: p.float("base_lr")?,
            milestones: p.counts("milestones")?,
            gamma: p.float("gamma")?,
        },
        "ExponentialLR" => Schedule::Exponential {
            base_lr: p.float("base_lr")?,
            gamma: p.float("gamma")?,
        },
        "InverseTimeLR" => Schedule::InverseTime {
            base_lr: p.float("base_lr")?,
            gamma: p.float("gamma")?,
        },
        "LinearLR" => Schedule::Linear {
            base_lr: p.float("base_lr")?,
            start_factor: p.float("start_factor")?,
            end_factor: p.float("end_factor")?,
            total_iters: p.count("total_iters")?,
        },
        "ConstantLR" => Schedule::ConstantThenBase {
            base_lr: p.float("base_lr")?,
            factor: p.float("factor")?,
            total_iters: p.count("total_iters")?,
        },
        "PolynomialLR" => Schedule::Polynomial {
            base_lr: p.float("base_lr")?,
            total_iters: p.count("total_iters")?,
            power: p.float("power")?,
        },
        "CosineAnnealingLR" => Schedule::Cosine {
            base_lr: p.float("base_lr")?,
            t_max: p.count("T_max")?,
            eta_min: p.float("eta_min")?,
        },
        "CosineAnnealingWarmRestarts" => Schedule::WarmRestarts {
            base_lr: p.float("base_lr")?,
            t_0: p.count("T_0")?,
            t_mult: p.count("T_mult")?,
            eta_min: p.float("eta_min")?,
            decay: p.float("decay")?,
        },
        "CyclicLR" => {
            let step_size_up = p.count("step_size_up")?;
            let down = p.item("step_size_down")?;
            Schedule::Cyclic(Cyclic {
                base_lr: p.float("base_lr")?,
                max_lr: p.float("max_lr")?,
                step_size_up,
                step_size_down: if down.is_none() {
                    step_size_up
                } else {
                    Params::count_of("step_size_down", &down)?
                },
                mode: p.choice(
                    "mode",
                    &[
                        ("triangular", CyclicMode::Triangular),
                        ("triangular2", CyclicMode::Triangular2),
                        ("exp_range", CyclicMode::ExpRange),
                    ],
                )?,
                gamma: p.float("gamma")?,
                base_momentum: p.float("base_momentum")?,
                max_momentum: p.float("max_momentum")?,
            })
        }
        "OneCycleLR" => Schedule::OneCycle(OneCycle {
            max_lr: p.float("max_lr")?,
            total_steps: p.count("total_steps")?,
            pct_start: p.float("pct_start")?,
            anneal: p.choice(
                "anneal_strategy",
                &[("cos", Anneal::Cos), ("linear", Anneal::Linear)],
            )?,
            div_factor: p.float("div_factor")?,
            final_div_factor: p.float("final_div_factor")?,
            three_phase: p.flag("three_phase")?,
            base_momentum: p.float("base_momentum")?,
            max_momentum: p.float("max_momentum")?,
        }),
        "ExponentialDecay" => Schedule::KerasExponential {
            initial_learning_rate: p.float("initial_learning_rate")?,
            decay_steps: p.count("decay_steps")?,
            decay_rate: p.float("decay_rate")?,
            staircase: p.flag("staircase")?,
        },
        "InverseTimeDecay" => Schedule::KerasInverseTime {
            initial_learning_rate: p.float("initial_learning_rate")?,
            decay_steps: p.count("decay_steps")?,
            decay_rate: p.float("decay_rate")?,
            staircase: p.flag("staircase")?,
        },
        "PolynomialDecay" => Schedule::KerasPolynomial {
            initial_learning_rate: p.float("initial_learning_rate")?,
            decay_steps: p.count("decay_steps")?,
            end_learning_rate: p.float("end_learning_rate")?,
            power: p.float("power")?,
            cycle: p.flag("cycle")?,
        },
        "PiecewiseConstantDecay" => Schedule::PiecewiseConstant {
            boundaries: p.counts("boundaries")?,
            values: p.floats("values")?,
        },
        "CosineDecay" => Schedule::CosineDecay {
            initial_learning_rate: p.float("initial_learning_rate")?,
            decay_steps: p.count("decay_steps")?,
            alpha: p.float("alpha")?,
            warmup_target: p.optional_float("warmup_target")?,
            warmup_steps: p.count("warmup_steps")?,
        },
        "CosineDecayRestarts" => Schedule::CosineDecayRestarts {
            initial_learning_rate: p.float("initial_learning_rate")?,
            first_decay_steps: p.count("first_decay_steps")?,
            t_mul: p.float("t_mul")?,
            m_mul: p.float("m_mul")?,
            alpha: p.float("alpha")?,
        },
        "Warmup" => Schedule::Warmup {
            schedule: p.schedule("schedule")?,
            warmup_steps: p.count("steps")?,
            start_factor: p.float("start_factor")?,
        },
        "SequentialLR" => Schedule::Sequential {
            schedules: p.schedules("schedules")?,
            milestones: p.counts("milestones")?,
        },
        "Product" => Schedule::Product {
            factors: p.schedules("schedules")?,
        },
        "LambdaLR" => {
            let function: Py<PyAny> = p.item("lr_lambda")?.unbind();
            if !function.bind(p.dict.py()).is_callable() {
                return Err(PyTypeError::new_err("lr_lambda must be callable"));
            }
            Schedule::Lambda {
                base_lr: p.float("base_lr")?,
                factor: Arc::new(move |t| {
                    Python::attach(|py| -> Result<f64, CallbackError> {
                        // `?` boxes the PyErr itself, so `callback_error` can unbox it.
                        let value = function.call1(py, (t,))?;
                        Ok(value.extract::<f64>(py)?)
                    })
                }),
            }
        }
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown schedule kind {kind:?}"
            )))
        }
    })
}

#[pymethods]
impl PySchedule {
    /// An unbuilt schedule; the subclass's `__init__` builds it.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PySchedule {
            inner: OnceLock::new(),
        }
    }

    /// Builds the schedule of class `kind` from `params`, validating every parameter. Once.
    fn _build(&self, kind: &str, params: &Bound<'_, PyDict>) -> PyResult<()> {
        let schedule = build(kind, &Params { dict: params })?;
        schedule.validate()?;
        self.inner
            .set(Arc::new(schedule))
            .map_err(|_| PyRuntimeError::new_err("a schedule is built once"))
    }

    /// The learning rate at scheduler step `step` (0-based: `schedule(0)` is the first rate).
    fn __call__(&self, step: &Bound<'_, PyAny>) -> PyResult<f64> {
        let step = parse_schedule_step(step)?;
        self.schedule()?.rate(step).map_err(callback_error)
    }

    /// The momentum paired with the rate at `step` by cycling schedules, else None.
    fn momentum(&self, step: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let step = parse_schedule_step(step)?;
        Ok(self.schedule()?.momentum(step))
    }

    /// Rates at every step of a 1-d uint64 array, in one call (threads for long arrays).
    fn _evaluate<'py>(
        &self,
        py: Python<'py>,
        steps: PyReadonlyArray1<'py, u64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let schedule = self.schedule()?.clone();
        let steps = steps.as_slice()?;
        let out = if schedule.has_callback() {
            schedule.evaluate(steps)
        } else {
            py.detach(|| schedule.evaluate(steps))
        }
        .map_err(callback_error)?;
        Ok(PyArray1::from_vec(py, out))
    }
}

/// The `lr=` argument of a kernel: a float, or a schedule evaluated at scheduler step
/// `step − 1` in the same call (so update 1 uses `schedule(0)`).
pub(super) enum LearningRate {
    Fixed(f64),
    Scheduled(Arc<Schedule>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for LearningRate {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(schedule) = obj.cast::<PySchedule>() {
            return Ok(LearningRate::Scheduled(schedule.get().schedule()?.clone()));
        }
        obj.extract::<f64>().map(LearningRate::Fixed).map_err(|_| {
            PyTypeError::new_err(format!(
                "lr must be a float or an lrfast schedule, got {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })
    }
}

impl LearningRate {
    /// The rate for update `update` (1-based, as `args::parse_step` checks it).
    pub(super) fn at(&self, update: u64) -> PyResult<f64> {
        match self {
            LearningRate::Fixed(lr) => Ok(*lr),
            LearningRate::Scheduled(schedule) => schedule.rate(update - 1).map_err(callback_error),
        }
    }
}
