//! lrfast: fused optimizer updates for the CPU.
//!
//! The kernels are plain Rust over slices: [`optim`] holds the update rules (PyTorch's
//! semantics), [`step`] applies one update in place, in parallel for large arrays and with the
//! best SIMD instruction set the CPU has. The Python bindings live behind the `python` feature.

pub mod clip;
pub mod convert;
pub mod error;
pub mod optim;
pub mod parallel;
pub mod quantize;
pub mod real;
pub mod schedule;
pub mod simd;

#[cfg(feature = "python")]
mod python;

pub use error::Error;
pub use optim::{
    check_call, check_lengths, step, step_many, step_mixed, step_quantized, Optimizer,
};
pub use parallel::MAX_STATE;
pub use parallel::{
    num_threads, set_num_threads, Lanes, MixedLanes, QuantizedLanes, QuantizedSlot,
};
pub use real::{HalfFloat, Real};
pub use schedule::Schedule;
