//! Block-wise 8-bit quantization of optimizer state (Dettmers, Lewis, Shleifer and Zettlemoyer,
//! "8-bit Optimizers via Block-wise Quantization", ICLR 2022).
//!
//! A state array is cut, in C order, into blocks of [`BLOCK`] values (the last block may be
//! shorter). A block is stored as its absolute maximum `absmax` (`f32`) and one byte per value:
//! the index of the entry of a 256-entry [`CodeMap`] nearest to `value · (1/absmax)`. Decoding is
//! `map[code] · absmax`. The map is the paper's dynamic tree map: signed for states that change
//! sign (first moments, momentum), unsigned for states that never do (second moments, sums of
//! squares), which then spends the sign bit on precision.
//!
//! Everything here is exact and order-independent: the block maximum, one `f32` reciprocal per
//! block and product per value, a nearest-entry search whose comparisons are exact (against the
//! midpoints between entries, in `f64`), one `f32` product per decoded value. So the codes do
//! not depend on threads or SIMD level, and `lrfast.reference` reproduces them code for code.

use std::sync::OnceLock;

/// Values per quantization block: each block has its own `absmax`.
pub const BLOCK: usize = 256;

/// Entries in a code map: one per byte value.
pub const CODES: usize = 256;

/// The nearest-entry search reads one table entry per value: the value's bucket, the `f32`s
/// sharing its sign, exponent and top [`BUCKET_BITS`] mantissa bits. With 9 bits no bucket of
/// either map holds more than one midpoint between entries (checked when a map is built), so
/// an entry holds the code of the bucket's lowest value, whether a midpoint lies inside, and
/// that midpoint's low bits: comparing those with the value's low bits decides the code.
const BUCKET_BITS: u32 = 9;
/// The bits of an `f32` below its bucket.
const LOW_BITS: u32 = 23 - BUCKET_BITS;
const LOW_MASK: u32 = (1 << LOW_BITS) - 1;
/// The magnitudes searched, as bucket numbers: from `2^-23` (below it every value is nearer to
/// 0 than to any other entry of either map: their smallest are 3.25e-7 and 5.5e-7) to just
/// under 2 (normalized values exceed 1 by a rounding at most). A value outside is clamped into
/// the first or last bucket of its sign, which holds no midpoint and gives the same code.
const LOWEST_BUCKET: u32 = (127 - 23) << BUCKET_BITS;
const HIGHEST_BUCKET: u32 = (128 << BUCKET_BITS) - 1;
/// Buckets per sign, a power of two so that a masked index needs no bounds check.
const SIGN_SPAN: u32 = (HIGHEST_BUCKET - LOWEST_BUCKET + 1).next_power_of_two();
const BUCKETS: usize = 2 * SIGN_SPAN as usize;
/// An entry's flag: a midpoint lies inside its bucket.
const HAS_MIDPOINT: u32 = 1 << 31;

/// The table index of the `f32` with bits `bits`.
#[inline(always)]
fn bucket_of(bits: u32) -> usize {
    let magnitude = ((bits & 0x7fff_ffff) >> LOW_BITS).clamp(LOWEST_BUCKET, HIGHEST_BUCKET);
    ((bits >> 31) * SIGN_SPAN + magnitude - LOWEST_BUCKET) as usize & (BUCKETS - 1)
}

/// A sorted 256-entry code map with the tables that find the nearest entry fast.
pub struct CodeMap {
    /// The entries, sorted ascending, in `[-1, 1]`.
    values: [f32; CODES],
    /// Per bucket ([`bucket_of`]): bits 0-7, the number of midpoints (halfway between entries,
    /// exact in `f64`) below the bucket's lowest value, which is the code of the entry nearest
    /// to it; [`HAS_MIDPOINT`] if a midpoint `m` lies inside; bits 8 and up, the low
    /// [`LOW_BITS`] bits of `m` rounded down to `f32` (for an `f32` `x`, `x > m` exactly when
    /// `x` is above that rounding, no `f32` lying strictly between them).
    buckets: Box<[u32; BUCKETS]>,
    /// The index of the entry `0.0`.
    zero: u8,
    /// The smallest code a positive value may get: 1 (the smallest positive entry) in the
    /// unsigned map, 0 (no floor) in the signed one. See [`CodeMap::encode`].
    positive_floor: u8,
}

impl CodeMap {
    /// The paper's dynamic map for 8 bits (bitsandbytes' `create_dynamic_map(signed,
    /// max_exponent_bits=7)`): for each decade `i = 0..7`, the midpoints of `linspace(0.1, 1,
    /// n_i + 1)` scaled by `10^(i − 6)`, with `n_i = 2^i` (signed, and negated copies) or
    /// `2^(i+1)` (unsigned); then 0 and 1. Computed in `f64`, each entry rounded to `f32`.
    pub fn dynamic(signed: bool) -> CodeMap {
        let mut entries: Vec<f64> = Vec::with_capacity(CODES);
        for decade in 0..7u32 {
            let items = if signed {
                1usize << decade
            } else {
                1 << (decade + 1)
            };
            // numpy.linspace(0.1, 1, items + 1): start + k·step, the last point exactly 1.
            let step = (1.0 - 0.1) / items as f64;
            let point = |k: usize| {
                if k == items {
                    1.0
                } else {
                    0.1 + k as f64 * step
                }
            };
            // 10^(decade − 6) as one correctly rounded division by an exact power of ten.
            let scale = 1.0 / 10f64.powi(6 - decade as i32);
            for k in 0..items {
                let mean = (point(k) + point(k + 1)) / 2.0;
                entries.push(scale * mean);
                if signed {
                    entries.push(-(scale * mean));
                }
            }
        }
        entries.push(0.0);
        entries.push(1.0);
        assert_eq!(entries.len(), CODES, "a dynamic map has 256 entries");
        let mut values = [0.0f32; CODES];
        for (value, entry) in values.iter_mut().zip(&entries) {
            *value = *entry as f32;
        }
        values.sort_by(f32::total_cmp);
        let mut map = CodeMap::from_values(values);
        if !signed {
            map.positive_floor = map.zero + 1;
        }
        map
    }

    fn from_values(values: [f32; CODES]) -> CodeMap {
        let midpoints: Vec<f64> = values
            .windows(2)
            .map(|pair| (pair[0] as f64 + pair[1] as f64) / 2.0)
            .collect();
        let zero = values
            .iter()
            .position(|&v| v == 0.0)
            .expect("0 is an entry") as u8;
        let below = |x: f64| midpoints.partition_point(|&m| m < x);
        let mut buckets = Box::new([0u32; BUCKETS]);
        for sign in [0u32, 1] {
            for bucket in LOWEST_BUCKET..=HIGHEST_BUCKET {
                let bits = (sign << 31) | (bucket << LOW_BITS);
                let (first, last) = (f32::from_bits(bits), f32::from_bits(bits | LOW_MASK));
                let (low, high) = if sign == 1 {
                    (last, first)
                } else {
                    (first, last)
                };
                let count = below(low as f64);
                let inside = &midpoints[count..below(high as f64)];
                assert!(inside.len() <= 1, "a bucket holds at most one midpoint");
                let edge = bucket == LOWEST_BUCKET || bucket == HIGHEST_BUCKET;
                assert!(
                    inside.is_empty() || !edge,
                    "the clamped buckets hold no midpoint"
                );
                let mut entry = count as u32;
                if let Some(&m) = inside.first() {
                    entry |= HAS_MIDPOINT | ((round_down(m).to_bits() & LOW_MASK) << 8);
                }
                buckets[bucket_of(bits)] = entry;
            }
        }
        CodeMap {
            values,
            buckets,
            zero,
            positive_floor: 0,
        }
    }

    /// The entries, sorted ascending.
    pub fn values(&self) -> &[f32; CODES] {
        &self.values
    }

    /// The code of the entry nearest to `x`, a normalized value (finite, within a rounding of
    /// `[-1, 1]`); a tie goes to the lower entry. In the unsigned map a positive value never
    /// becomes 0: it gets at least the smallest positive entry. The unsigned map holds second
    /// moments, which an update divides by; one rounded to 0 under a first moment that is not
    /// (an input that was active in earlier batches and is zero in this one, in a block whose
    /// other values are 10^7 times larger) would turn a step of `lr` into `lr · m / eps`.
    #[inline(always)]
    pub fn encode(&self, x: f32) -> u8 {
        let bits = x.to_bits();
        let entry = self.buckets[bucket_of(bits)];
        let (low, midpoint) = (bits & LOW_MASK, (entry >> 8) & LOW_MASK);
        // Within a bucket a larger low part is a larger magnitude: above the midpoint for a
        // positive value, below it for a negative one.
        let above = if bits >> 31 == 0 {
            low > midpoint
        } else {
            low < midpoint
        };
        let code = (entry & 0xff) + (entry >> 31 & above as u32);
        (code as u8).max(self.positive_floor * (x > 0.0) as u8)
    }

    /// The entry of `code`.
    #[inline(always)]
    pub fn decode(&self, code: u8) -> f32 {
        self.values[code as usize]
    }
}

/// The largest `f32` not above `x` (`+∞` stays `+∞`).
fn round_down(x: f64) -> f32 {
    let nearest = x as f32;
    if nearest as f64 <= x {
        nearest
    } else if nearest > 0.0 {
        f32::from_bits(nearest.to_bits() - 1)
    } else if nearest == 0.0 {
        -f32::from_bits(1)
    } else {
        f32::from_bits(nearest.to_bits() + 1)
    }
}

/// The signed dynamic map, built once.
pub fn signed_map() -> &'static CodeMap {
    static MAP: OnceLock<CodeMap> = OnceLock::new();
    MAP.get_or_init(|| CodeMap::dynamic(true))
}

/// The unsigned dynamic map, built once.
pub fn unsigned_map() -> &'static CodeMap {
    static MAP: OnceLock<CodeMap> = OnceLock::new();
    MAP.get_or_init(|| CodeMap::dynamic(false))
}

/// The map for a state whose values may be negative (`signed`) or not.
pub fn map(signed: bool) -> &'static CodeMap {
    if signed {
        signed_map()
    } else {
        unsigned_map()
    }
}

/// The scale of a block: the largest magnitude of `values`; NaN if any value is not finite (a
/// block holding NaN or ±∞ decodes to NaN throughout: the state has diverged); 0 if it is below
/// the smallest normal `f32` (1.2e-38, whose reciprocal would overflow): such a block is stored
/// as zeros.
#[inline(always)]
pub fn block_absmax(values: &[f32]) -> f32 {
    // The magnitudes' bit patterns order as the magnitudes do (∞ above every finite value, NaN
    // above ∞), and an integer maximum vectorizes where a float one with NaN cannot.
    let largest = values
        .iter()
        .fold(0u32, |largest, x| largest.max(x.to_bits() & 0x7fff_ffff));
    if largest >= f32::INFINITY.to_bits() {
        f32::NAN
    } else if largest < f32::MIN_POSITIVE.to_bits() {
        0.0
    } else {
        f32::from_bits(largest)
    }
}

/// Quantizes one block of `values` into `codes` (as long), returning its scale `absmax`: each
/// value's code is the entry nearest to `value · (1/absmax)`, with `1/absmax` rounded to `f32`
/// once per block. A block of zeros (or of values below 1.2e-38) has scale 0 and a non-finite
/// block scale NaN; both store the code of 0.
#[inline(always)]
pub fn quantize_block(map: &CodeMap, values: &[f32], codes: &mut [u8]) -> f32 {
    let absmax = block_absmax(values);
    let codes = &mut codes[..values.len()];
    if absmax > 0.0 {
        let inverse = 1.0 / absmax;
        let done = vector::encode(map, values, codes, inverse);
        for (code, &x) in codes[done..].iter_mut().zip(&values[done..]) {
            *code = map.encode(x * inverse);
        }
    } else {
        codes.fill(map.zero);
    }
    absmax
}

/// Decodes one block: `values[i] = map[codes[i]] · absmax`.
#[inline(always)]
pub fn dequantize_block(map: &CodeMap, codes: &[u8], absmax: f32, values: &mut [f32]) {
    let done = vector::decode(map, codes, absmax, values);
    for (value, &code) in values[done..].iter_mut().zip(&codes[done..]) {
        *value = map.decode(code) * absmax;
    }
}

/// The table lookups of encoding and decoding as AVX-512 gathers, 16 values at a time, where
/// the active SIMD level is AVX-512 (the compiler does not vectorize them). The arithmetic and
/// comparisons are the scalar code's, so the codes and values are the same bits. Each function
/// returns how many leading elements it did (a multiple of 16); the caller does the rest.
mod vector {
    use super::CodeMap;
    #[cfg(target_arch = "x86_64")]
    use crate::simd::{active, SimdLevel};

    #[inline(always)]
    pub(super) fn encode(map: &CodeMap, values: &[f32], codes: &mut [u8], inverse: f32) -> usize {
        #[cfg(target_arch = "x86_64")]
        match active() {
            // SAFETY: the active level never exceeds what the CPU supports.
            SimdLevel::Avx512 => return unsafe { avx512::encode(map, values, codes, inverse) },
            // SAFETY: as above.
            SimdLevel::Avx2 => return unsafe { avx2::encode(map, values, codes, inverse) },
            SimdLevel::Baseline => {}
        }
        let _ = (map, values, codes, inverse);
        0
    }

    #[inline(always)]
    pub(super) fn decode(map: &CodeMap, codes: &[u8], absmax: f32, values: &mut [f32]) -> usize {
        #[cfg(target_arch = "x86_64")]
        match active() {
            // SAFETY: as above.
            SimdLevel::Avx512 => return unsafe { avx512::decode(map, codes, absmax, values) },
            // SAFETY: as above.
            SimdLevel::Avx2 => return unsafe { avx2::decode(map, codes, absmax, values) },
            SimdLevel::Baseline => {}
        }
        let _ = (map, codes, absmax, values);
        0
    }

    /// The same search 8 values at a time, for CPUs with AVX2 and no AVX-512.
    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use super::super::{CodeMap, BUCKETS, HIGHEST_BUCKET, LOWEST_BUCKET};
        use super::super::{LOW_BITS, LOW_MASK, SIGN_SPAN};
        use std::arch::x86_64::*;

        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn encode(
            map: &CodeMap,
            values: &[f32],
            codes: &mut [u8],
            inverse: f32,
        ) -> usize {
            let n = values.len().min(codes.len()) / 8 * 8;
            let scale = _mm256_set1_ps(inverse);
            let splat = |x: u32| _mm256_set1_epi32(x as i32);
            let (one, low_mask) = (splat(1), splat(LOW_MASK));
            let floor = splat(map.positive_floor as u32);
            let buckets = map.buckets.as_ptr() as *const i32;
            for i in (0..n).step_by(8) {
                // SAFETY: i + 8 <= n <= values.len().
                let x = _mm256_mul_ps(unsafe { _mm256_loadu_ps(values.as_ptr().add(i)) }, scale);
                let bits = _mm256_castps_si256(x);
                let magnitude = _mm256_srli_epi32::<{ LOW_BITS as i32 }>(_mm256_and_si256(
                    bits,
                    splat(0x7fff_ffff),
                ));
                let magnitude = _mm256_min_epu32(
                    _mm256_max_epu32(magnitude, splat(LOWEST_BUCKET)),
                    splat(HIGHEST_BUCKET),
                );
                let sign = _mm256_srli_epi32::<31>(bits);
                let bucket = _mm256_add_epi32(
                    _mm256_mullo_epi32(sign, splat(SIGN_SPAN)),
                    _mm256_sub_epi32(magnitude, splat(LOWEST_BUCKET)),
                );
                let bucket = _mm256_and_si256(bucket, splat(BUCKETS as u32 - 1));
                // SAFETY: bucket < BUCKETS, the table's length.
                let entry = unsafe { _mm256_i32gather_epi32::<4>(buckets, bucket) };
                let first = _mm256_and_si256(entry, splat(0xff));
                let midpoint = _mm256_and_si256(_mm256_srli_epi32::<8>(entry), low_mask);
                let low = _mm256_and_si256(bits, low_mask);
                // Both below 2^14, so the signed comparisons are the unsigned ones.
                let (greater, less) = (
                    _mm256_cmpgt_epi32(low, midpoint),
                    _mm256_cmpgt_epi32(midpoint, low),
                );
                let negative = _mm256_srai_epi32::<31>(bits);
                let above = _mm256_or_si256(
                    _mm256_andnot_si256(negative, greater),
                    _mm256_and_si256(negative, less),
                );
                let inside = _mm256_srai_epi32::<31>(entry); // HAS_MIDPOINT is the top bit
                let passed = _mm256_and_si256(_mm256_and_si256(above, inside), one);
                let code = _mm256_add_epi32(first, passed);
                let positive =
                    _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_setzero_ps()));
                let code = _mm256_max_epu32(code, _mm256_and_si256(positive, floor));
                // Codes are below 256: narrow 8 lanes to 8 bytes (each 128-bit half packs its
                // own four, then the two halves' first four bytes are joined).
                let words = _mm256_packus_epi32(code, code);
                let bytes = _mm256_packus_epi16(words, words);
                let joined = _mm_unpacklo_epi32(
                    _mm256_castsi256_si128(bytes),
                    _mm256_extracti128_si256::<1>(bytes),
                );
                // SAFETY: i + 8 <= n <= codes.len().
                unsafe { _mm_storel_epi64(codes.as_mut_ptr().add(i) as *mut __m128i, joined) };
            }
            n
        }

        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn decode(
            map: &CodeMap,
            codes: &[u8],
            absmax: f32,
            values: &mut [f32],
        ) -> usize {
            let n = values.len().min(codes.len()) / 8 * 8;
            let scale = _mm256_set1_ps(absmax);
            for i in (0..n).step_by(8) {
                // SAFETY: i + 8 <= n <= codes.len(); a code indexes the 256 entries.
                let entries = unsafe {
                    let code = _mm_loadl_epi64(codes.as_ptr().add(i) as *const __m128i);
                    _mm256_i32gather_ps::<4>(map.values.as_ptr(), _mm256_cvtepu8_epi32(code))
                };
                // SAFETY: i + 8 <= n <= values.len().
                unsafe {
                    _mm256_storeu_ps(values.as_mut_ptr().add(i), _mm256_mul_ps(entries, scale))
                };
            }
            n
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx512 {
        use super::super::{CodeMap, BUCKETS, HAS_MIDPOINT, HIGHEST_BUCKET, LOWEST_BUCKET};
        use super::super::{LOW_BITS, LOW_MASK, SIGN_SPAN};
        use std::arch::x86_64::*;

        /// # Safety
        /// The CPU must support AVX-512F.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn encode(
            map: &CodeMap,
            values: &[f32],
            codes: &mut [u8],
            inverse: f32,
        ) -> usize {
            let n = values.len().min(codes.len()) / 16 * 16;
            let scale = _mm512_set1_ps(inverse);
            let splat = |x: u32| _mm512_set1_epi32(x as i32);
            let (one, low_mask, floor) =
                (splat(1), splat(LOW_MASK), splat(map.positive_floor as u32));
            let buckets = map.buckets.as_ptr() as *const i32;
            for i in (0..n).step_by(16) {
                // SAFETY: i + 16 <= n <= values.len().
                let x = _mm512_mul_ps(unsafe { _mm512_loadu_ps(values.as_ptr().add(i)) }, scale);
                let bits = _mm512_castps_si512(x);
                // bucket_of, 16 at a time.
                let magnitude =
                    _mm512_srli_epi32::<LOW_BITS>(_mm512_and_si512(bits, splat(0x7fff_ffff)));
                let magnitude = _mm512_min_epu32(
                    _mm512_max_epu32(magnitude, splat(LOWEST_BUCKET)),
                    splat(HIGHEST_BUCKET),
                );
                let sign = _mm512_srli_epi32::<31>(bits);
                let bucket = _mm512_add_epi32(
                    _mm512_mullo_epi32(sign, splat(SIGN_SPAN)),
                    _mm512_sub_epi32(magnitude, splat(LOWEST_BUCKET)),
                );
                let bucket = _mm512_and_si512(bucket, splat(BUCKETS as u32 - 1));
                // SAFETY: bucket < BUCKETS, the table's length.
                let entry = unsafe { _mm512_i32gather_epi32::<4>(bucket, buckets) };
                let first = _mm512_and_si512(entry, splat(0xff));
                let midpoint = _mm512_and_si512(_mm512_srli_epi32::<8>(entry), low_mask);
                let low = _mm512_and_si512(bits, low_mask);
                let negative = _mm512_test_epi32_mask(bits, splat(1 << 31));
                let inside = _mm512_test_epi32_mask(entry, splat(HAS_MIDPOINT));
                let above = (_mm512_cmpgt_epu32_mask(low, midpoint) & !negative)
                    | (_mm512_cmplt_epu32_mask(low, midpoint) & negative);
                let code = _mm512_mask_add_epi32(first, above & inside, first, one);
                let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_setzero_ps());
                let code = _mm512_mask_max_epu32(code, positive, code, floor);
                // SAFETY: i + 16 <= n <= codes.len().
                unsafe {
                    _mm_storeu_si128(
                        codes.as_mut_ptr().add(i) as *mut __m128i,
                        _mm512_cvtepi32_epi8(code),
                    )
                };
            }
            n
        }

        /// # Safety
        /// The CPU must support AVX-512F.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn decode(
            map: &CodeMap,
            codes: &[u8],
            absmax: f32,
            values: &mut [f32],
        ) -> usize {
            let n = values.len().min(codes.len()) / 16 * 16;
            let scale = _mm512_set1_ps(absmax);
            // The 256 entries in 16 registers; a two-table permute picks from 32 of them by a
            // code's low 5 bits, and its top 3 bits choose the permute: no gather, which is
            // slow (on AMD's Zen 4 a 16-lane gather cost more than this whole selection).
            // SAFETY: each load reads 16 of the 256 entries.
            let table: [__m512; 16] = std::array::from_fn(|k| unsafe {
                _mm512_loadu_ps(map.values.as_ptr().add(16 * k))
            });
            for i in (0..n).step_by(16) {
                // SAFETY: i + 16 <= n <= codes.len().
                let code = unsafe { _mm_loadu_si128(codes.as_ptr().add(i) as *const __m128i) };
                let code = _mm512_cvtepu8_epi32(code);
                let group = _mm512_srli_epi32::<5>(code);
                let mut entries = _mm512_permutex2var_ps(table[0], code, table[1]);
                for k in 1..8 {
                    let chosen = _mm512_cmpeq_epi32_mask(group, _mm512_set1_epi32(k as i32));
                    let candidate = _mm512_permutex2var_ps(table[2 * k], code, table[2 * k + 1]);
                    entries = _mm512_mask_mov_ps(entries, chosen, candidate);
                }
                // SAFETY: i + 16 <= n <= values.len().
                unsafe {
                    _mm512_storeu_ps(values.as_mut_ptr().add(i), _mm512_mul_ps(entries, scale))
                };
            }
            n
        }
    }
}

/// Quantizes `values` block by block into `codes` and `absmax` (`values.len().div_ceil(BLOCK)`
/// scales).
pub fn quantize(map: &CodeMap, values: &[f32], codes: &mut [u8], absmax: &mut [f32]) {
    for ((block, codes), scale) in values
        .chunks(BLOCK)
        .zip(codes.chunks_mut(BLOCK))
        .zip(absmax.iter_mut())
    {
        *scale = quantize_block(map, block, codes);
    }
}

/// Decodes `codes` and `absmax` block by block into `values`.
pub fn dequantize(map: &CodeMap, codes: &[u8], absmax: &[f32], values: &mut [f32]) {
    for ((block, codes), &scale) in values
        .chunks_mut(BLOCK)
        .zip(codes.chunks(BLOCK))
        .zip(absmax.iter())
    {
        dequantize_block(map, codes, scale, block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nearest entry by brute force: the smallest distance, ties to the lower entry.
    fn nearest(map: &CodeMap, x: f32) -> u8 {
        let mut best = 0;
        for k in 1..CODES {
            let (d, e) = (
                (map.values[k] as f64 - x as f64).abs(),
                (map.values[best] as f64 - x as f64).abs(),
            );
            if d < e {
                best = k;
            }
        }
        best as u8
    }

    #[test]
    fn maps_have_the_papers_shape() {
        let signed = signed_map();
        assert_eq!(signed.values[0], -0.99296875);
        assert_eq!(signed.values[CODES - 1], 1.0);
        assert_eq!(signed.values.iter().filter(|&&v| v < 0.0).count(), 127);
        let unsigned = unsigned_map();
        assert_eq!(unsigned.values[0], 0.0);
        assert!(unsigned.values.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((signed.positive_floor, unsigned.positive_floor), (0, 1));
        assert_eq!(unsigned.encode(1e-30), 1);
        assert_eq!(unsigned.encode(0.0), 0);
        assert_eq!(signed.encode(1e-30), signed.zero);
        assert!(signed.values.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn encode_is_the_nearest_entry() {
        for map in [signed_map(), unsigned_map()] {
            // Every entry, every midpoint's neighbours, and a sweep of magnitudes.
            let mut xs: Vec<f32> = map.values.to_vec();
            for k in 0..CODES - 1 {
                let m = ((map.values[k] as f64 + map.values[k + 1] as f64) / 2.0) as f32;
                for ulps in 0..3 {
                    xs.extend([
                        f32::from_bits(m.to_bits() + ulps),
                        f32::from_bits(m.to_bits() - ulps),
                    ]);
                }
            }
            let mut x = 1e-9f32;
            while x <= 1.0 {
                xs.extend([x, -x]);
                x *= 1.0007;
            }
            xs.extend([0.0, -0.0, 1.0, -1.0]);
            for x in xs.into_iter().filter(|x| x.abs() <= 1.0) {
                if x < 0.0 && map.values[0] >= 0.0 {
                    assert_eq!(map.encode(x), map.zero);
                    continue;
                }
                let expected = if x > 0.0 {
                    nearest(map, x).max(map.positive_floor)
                } else {
                    nearest(map, x)
                };
                assert_eq!(map.encode(x), expected, "x = {x:e}");
            }
        }
    }

    #[test]
    fn every_simd_level_gives_the_same_codes_and_values() {
        use crate::simd::{self, SimdLevel};
        let values: Vec<f32> = (0..1000)
            .map(|i| ((i as f32) * 0.61).sin() * 10f32.powi(i % 9 - 6))
            .collect();
        let mut results = Vec::new();
        let best = simd::detected();
        for level in [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512] {
            simd::set_active(level);
            for map in [signed_map(), unsigned_map()] {
                let mut codes = vec![0u8; values.len()];
                let mut absmax = vec![0f32; values.len().div_ceil(BLOCK)];
                quantize(map, &values, &mut codes, &mut absmax);
                let mut back = vec![0f32; values.len()];
                dequantize(map, &codes, &absmax, &mut back);
                let scalar: Vec<u8> = values
                    .chunks(BLOCK)
                    .zip(&absmax)
                    .flat_map(|(block, &scale)| {
                        block.iter().map(move |&x| map.encode(x * (1.0 / scale)))
                    })
                    .collect();
                assert_eq!(codes, scalar, "{level:?}");
                results.push((codes, back));
            }
        }
        simd::set_active(best);
        assert!(results.chunks(2).all(|r| r == &results[..2]));
    }

    #[test]
    fn blocks_round_trip_their_scale_and_zeros() {
        let map = signed_map();
        let values: Vec<f32> = (0..600).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        let mut codes = vec![0u8; 600];
        let mut absmax = vec![0.0f32; 3];
        quantize(map, &values, &mut codes, &mut absmax);
        let mut back = vec![0.0f32; 600];
        dequantize(map, &codes, &absmax, &mut back);
        for (chunk, &scale) in values.chunks(BLOCK).zip(&absmax) {
            assert_eq!(scale, chunk.iter().fold(0.0f32, |a, x| a.max(x.abs())));
        }
        for (x, y) in values.iter().zip(&back) {
            assert!((x - y).abs() <= 0.02 * 3.0, "{x} vs {y}");
        }
        let mut zeros = [7u8; 4];
        assert_eq!(quantize_block(map, &[0.0; 4], &mut zeros), 0.0);
        assert_eq!(zeros, [map.zero; 4]);
        assert!(quantize_block(map, &[1.0, f32::NAN], &mut zeros).is_nan());
        assert!(quantize_block(map, &[1.0, f32::INFINITY], &mut zeros).is_nan());
    }
}
