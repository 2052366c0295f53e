//! Conversions between `f32` and the 16-bit storage types, written to vectorize.
//!
//! `half` is the storage type and the reference these are tested against (exhaustively: every
//! `f32` and every 16-bit pattern, same bits, NaN payloads included). They exist because its slice
//! conversions are slow inside a fused update: float16 goes through a non-inlined F16C call per
//! 8 elements after a run-time feature check, and bfloat16 through a per-element loop (its source
//! says no SIMD yet). Measured with `python benches/bench.py` on the 2-core AVX2 EPYC (single,
//! noisy runs): float16 Adam with a master copy at 2^16 took 99.7 µs with `half`'s conversions
//! (float32 Adam: 39.7 µs), 70 µs with [`f16c`] below; bfloat16 Adam went from 97 to 75 µs.
//!
//! The scalar functions are branch-free (selects), so a kernel's loop compiled for the
//! dispatched SIMD level vectorizes them. That is enough for bfloat16 (a shift one way, an add
//! and a shift the other). float16 needs a dozen instructions per vector each way, which left
//! the conversions, not memory, as the limit (`cargo bench`, float16 Adam without master at 2^24:
//! 22.0 ms, its floor 18.9 ms, 19 GB/s against float32's 30), so on CPUs with F16C [`f16c`]
//! converts 8 elements per instruction (Adam 15.6 ms, floor 14.8 ms).

/// `f32` bits of `2^-24`, the spacing of float16's subnormals.
const F16_SUBNORMAL_UNIT: u32 = 0x3380_0000;
/// 0.5 as `f32` bits: adding it aligns a float16 subnormal's 10 bits at the bottom of the
/// mantissa, rounding to nearest even in the addition itself.
const F16_SUBNORMAL_MAGIC: u32 = 126 << 23;

/// float16 bits to `f32`, exactly; a NaN is made quiet and keeps its payload.
#[inline(always)]
pub fn f16_to_f32(bits: u16) -> f32 {
    let h = u32::from(bits);
    let sign = (h & 0x8000) << 16;
    let magnitude = h & 0x7FFF;
    let normal = (magnitude << 13) + ((127 - 15) << 23);
    let quiet = if magnitude > 0x7C00 { 0x0040_0000 } else { 0 };
    let inf_or_nan = (magnitude << 13) | 0x7F80_0000 | quiet;
    // Subnormals (and zero): magnitude·2^-24, exact in f32.
    let subnormal = ((magnitude as i32) as f32 * f32::from_bits(F16_SUBNORMAL_UNIT)).to_bits();
    let out = if magnitude >= 0x7C00 {
        inf_or_nan
    } else if magnitude < 0x0400 {
        subnormal
    } else {
        normal
    };
    f32::from_bits(out | sign)
}

/// `f32` to float16 bits, rounded to nearest, ties to even; overflow gives infinity, a NaN
/// stays a quiet NaN with the top of its payload.
#[inline(always)]
pub fn f32_to_f16(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = (x >> 16) & 0x8000;
    let magnitude = x & 0x7FFF_FFFF;
    let nan = 0x7E00 | ((magnitude >> 13) & 0x03FF);
    let subnormal = (f32::from_bits(magnitude) + f32::from_bits(F16_SUBNORMAL_MAGIC))
        .to_bits()
        .wrapping_sub(F16_SUBNORMAL_MAGIC);
    // Rebias the exponent, then round on the 13 dropped bits: adding 0xFFF plus the kept
    // mantissa's lowest bit carries exactly when the dropped part is above half, or half with an
    // odd mantissa. A carry out of the mantissa steps the exponent, up to infinity.
    let odd = (magnitude >> 13) & 1;
    let normal = magnitude
        .wrapping_sub((127 - 15) << 23)
        .wrapping_add(0x0FFF + odd)
        >> 13;
    let out = if magnitude > 0x7F80_0000 {
        nan
    } else if magnitude >= (127 + 16) << 23 {
        0x7C00 // ≥ 65536: infinity (65520 up rounds there through `normal`)
    } else if magnitude < 113 << 23 {
        subnormal // below 2^-14
    } else {
        normal
    };
    (out | sign) as u16
}

/// bfloat16 bits to `f32`, exactly; a NaN is made quiet and keeps its payload.
#[inline(always)]
pub fn bf16_to_f32(bits: u16) -> f32 {
    let x = u32::from(bits) << 16;
    let quiet = if x & 0x7FFF_FFFF > 0x7F80_0000 {
        0x0040_0000
    } else {
        0
    };
    f32::from_bits(x | quiet)
}

/// `f32` to bfloat16 bits, rounded to nearest, ties to even; a NaN stays a quiet NaN with the
/// top of its payload.
#[inline(always)]
pub fn f32_to_bf16(value: f32) -> u16 {
    let x = value.to_bits();
    let rounded = x.wrapping_add(0x7FFF + ((x >> 16) & 1)) >> 16;
    let nan = (x >> 16) | 0x0040;
    (if x & 0x7FFF_FFFF > 0x7F80_0000 {
        nan
    } else {
        rounded
    }) as u16
}

/// Slice conversions with the F16C instructions (`vcvtph2ps`, `vcvtps2ph`), which round
/// exactly as [`f16_to_f32`] and [`f32_to_f16`] do (tested over every `f32`).
#[cfg(target_arch = "x86_64")]
pub mod f16c {
    use std::arch::x86_64::{
        __m128i, _mm256_cvtph_ps, _mm256_cvtps_ph, _mm256_loadu_ps, _mm256_storeu_ps,
        _mm_loadu_si128, _mm_storeu_si128, _MM_FROUND_TO_NEAREST_INT,
    };

    /// Whether the CPU has F16C (std caches the answer: an atomic load).
    #[inline(always)]
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("f16c")
    }

    /// Widens float16 bits `src` into `dst` (the shorter length).
    ///
    /// # Safety
    /// The CPU must support F16C ([`available`]).
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn widen(src: &[u16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let vectors = n / 8;
        for v in 0..vectors {
            // SAFETY: elements [8v, 8v + 8) are within both slices (8v + 8 ≤ n); the
            // loads and stores are unaligned ones.
            unsafe {
                let half = _mm_loadu_si128(src.as_ptr().add(8 * v).cast::<__m128i>());
                _mm256_storeu_ps(dst.as_mut_ptr().add(8 * v), _mm256_cvtph_ps(half));
            }
        }
        for i in 8 * vectors..n {
            dst[i] = super::f16_to_f32(src[i]);
        }
    }

    /// Rounds `src` into float16 bits `dst` (the shorter length), to nearest, ties to even.
    ///
    /// # Safety
    /// The CPU must support F16C ([`available`]).
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn narrow(src: &[f32], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        let vectors = n / 8;
        for v in 0..vectors {
            // SAFETY: as in `widen`.
            unsafe {
                let single = _mm256_loadu_ps(src.as_ptr().add(8 * v));
                let half = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(single);
                _mm_storeu_si128(dst.as_mut_ptr().add(8 * v).cast::<__m128i>(), half);
            }
        }
        for i in 8 * vectors..n {
            dst[i] = super::f32_to_f16(src[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};
    use rayon::prelude::*;

    /// Every `f32` bit pattern, in parallel chunks; returns the first mismatch.
    fn first_mismatch(ours: impl Fn(f32) -> u16 + Sync, theirs: impl Fn(f32) -> u16 + Sync) {
        let bad = (0..=u16::MAX).into_par_iter().find_map_any(|high| {
            (0..=u16::MAX).find_map(|low| {
                let x = f32::from_bits((u32::from(high) << 16) | u32::from(low));
                let (a, b) = (ours(x), theirs(x));
                (a != b).then_some((x.to_bits(), a, b))
            })
        });
        assert_eq!(bad, None, "(f32 bits, ours, half's)");
    }

    #[test]
    #[ignore = "exhaustive over all 2^32 f32 values (minutes in a debug build); CI runs it: cargo test --release -- --include-ignored"]
    fn f32_to_f16_matches_half_for_every_f32() {
        first_mismatch(f32_to_f16, |x| f16::from_f32_const(x).to_bits());
    }

    #[test]
    #[ignore = "exhaustive over all 2^32 f32 values (minutes in a debug build); CI runs it: cargo test --release -- --include-ignored"]
    fn f32_to_bf16_matches_half_for_every_f32() {
        first_mismatch(f32_to_bf16, |x| bf16::from_f32_const(x).to_bits());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    #[ignore = "exhaustive over all 2^32 f32 values (minutes in a debug build); CI runs it: cargo test --release -- --include-ignored"]
    fn f16c_rounds_every_f32_as_the_scalar_code() {
        if !f16c::available() {
            return; // this CPU runs the scalar code, tested above
        }
        let bad = (0..=u16::MAX).into_par_iter().find_map_any(|high| {
            let src: Vec<f32> = (0..=u16::MAX)
                .map(|low| f32::from_bits((u32::from(high) << 16) | u32::from(low)))
                .collect();
            let mut out = vec![0u16; src.len()];
            // SAFETY: F16C is available (checked above).
            unsafe { f16c::narrow(&src, &mut out) };
            let mut back = vec![0f32; out.len()];
            // SAFETY: as above.
            unsafe { f16c::widen(&out, &mut back) };
            src.iter().zip(&out).zip(&back).find_map(|((&x, &h), &w)| {
                let ok = h == f32_to_f16(x) && w.to_bits() == f16_to_f32(h).to_bits();
                (!ok).then_some(x.to_bits())
            })
        });
        assert_eq!(bad, None, "f32 bits where F16C and the scalar code differ");
    }

    #[test]
    fn widening_matches_half_for_every_16_bit_pattern() {
        for bits in 0..=u16::MAX {
            let (ours, theirs) = (f16_to_f32(bits), f16::from_bits(bits).to_f32_const());
            assert_eq!(ours.to_bits(), theirs.to_bits(), "float16 {bits:#06x}");
            let (ours, theirs) = (bf16_to_f32(bits), bf16::from_bits(bits).to_f32_const());
            assert_eq!(ours.to_bits(), theirs.to_bits(), "bfloat16 {bits:#06x}");
        }
    }
}
