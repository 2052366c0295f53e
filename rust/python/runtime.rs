//! Run-time settings: threads and the SIMD level.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{parallel, simd};

/// The SIMD instruction set the kernels run with: "avx512", "avx2", "sse2", "neon" or "scalar".
#[pyfunction]
pub(super) fn simd_level() -> &'static str {
    simd::active().name()
}

/// Limits the SIMD level kernels run at ("sse2"/"neon"/"scalar" = baseline, "avx2", "avx512"),
/// for tests and benchmarks that compare paths; capped at what the CPU has. Returns the level
/// now in force.
#[pyfunction]
pub(super) fn _set_simd_level(name: &str) -> PyResult<&'static str> {
    let level = match name {
        "sse2" | "neon" | "scalar" | "baseline" => simd::SimdLevel::Baseline,
        "avx2" => simd::SimdLevel::Avx2,
        "avx512" => simd::SimdLevel::Avx512,
        "best" => simd::detected(),
        _ => {
            return Err(PyValueError::new_err(format!(
                "name must be baseline, sse2, neon, scalar, avx2, avx512 or best, got {name:?}"
            )))
        }
    };
    Ok(simd::set_active(level).name())
}

/// More threads than any machine lrfast runs on has cores: a larger request is a mistake, and
/// would make rayon spawn them all.
const MAX_THREADS: usize = 4096;

/// Sets how many threads the kernels may use (1 = the calling thread only).
#[pyfunction]
pub(super) fn set_num_threads(threads: &Bound<'_, PyAny>) -> PyResult<()> {
    let refuse = || {
        PyValueError::new_err(format!(
            "threads must be an integer from 1 to {MAX_THREADS}, got {}",
            threads
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into())
        ))
    };
    if threads.is_instance_of::<pyo3::types::PyBool>() {
        return Err(refuse());
    }
    let threads: usize = threads.extract().map_err(|_| refuse())?;
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(refuse());
    }
    parallel::set_num_threads(threads);
    Ok(())
}

/// How many threads the kernels may use (`LRFAST_NUM_THREADS`, else the number of cores).
#[pyfunction]
pub(super) fn get_num_threads() -> usize {
    parallel::num_threads()
}
