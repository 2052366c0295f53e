//! Runtime choice of the instruction set a kernel's loop is compiled for.
//!
//! Each kernel loop is one generic `#[inline(always)]` body; `optim::dispatch` calls it
//! inside a function compiled with `#[target_feature]` for the level chosen here, so one portable
//! binary uses AVX2 or AVX-512 where they exist. FMA is deliberately never enabled: without it every level
//! rounds exactly like the scalar code, so results are bit-identical across instruction sets.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level a kernel loop can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline = 1,
    /// x86-64 AVX2 (256-bit vectors).
    Avx2 = 2,
    /// x86-64 AVX-512F (512-bit vectors).
    Avx512 = 3,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => {
                if cfg!(target_arch = "aarch64") {
                    "neon"
                } else if cfg!(target_arch = "x86_64") {
                    "sse2"
                } else {
                    "scalar"
                }
            }
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    fn from_u8(value: u8) -> Option<SimdLevel> {
        match value {
            1 => Some(SimdLevel::Baseline),
            2 => Some(SimdLevel::Avx2),
            3 => Some(SimdLevel::Avx512),
            _ => None,
        }
    }
}

/// The best level this CPU supports.
pub fn detected() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return SimdLevel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

/// 0 means "not chosen yet": the first call picks [`detected`].
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The level kernels run at now.
pub fn active() -> SimdLevel {
    match SimdLevel::from_u8(ACTIVE.load(Ordering::Relaxed)) {
        Some(level) => level,
        None => {
            let level = detected();
            ACTIVE.store(level as u8, Ordering::Relaxed);
            level
        }
    }
}

/// Limits kernels to `level` (for tests and benchmarks comparing paths). Returns the level now in
/// force, which is `level` capped at what the CPU supports.
pub fn set_active(level: SimdLevel) -> SimdLevel {
    let level = level.min(detected());
    ACTIVE.store(level as u8, Ordering::Relaxed);
    level
}
