//! The floating-point element types the kernels are generic over.

use std::fmt::Debug;

use crate::convert;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// An IEEE element type a kernel can update: `f32` or `f64`.
///
/// Kernels do their elementwise arithmetic in `Self` (as PyTorch does for a tensor of that dtype),
/// while per-step scalars are computed once in `f64` and rounded with [`Real::from_f64`].
pub trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    /// Rounds an `f64` scalar to this type (round-to-nearest, as `as` does).
    fn from_f64(value: f64) -> Self;
    fn to_f64(self) -> f64;
    /// The correctly rounded IEEE square root (never an approximation).
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(value: f64) -> Self {
                value as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

impl_real!(f32);
impl_real!(f64);

/// The larger of `a` and `b`, NaN if either is NaN: `torch.maximum`'s rule.
///
/// `f32::max` returns the other operand when one is NaN, which would let AMSGrad and Adamax
/// silently drop a NaN that PyTorch keeps.
#[inline(always)]
pub fn max_keep_nan<T: Real>(a: T, b: T) -> T {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

/// A 16-bit storage type for mixed precision: parameters and gradients are stored in it, and
/// the kernels compute in `f32` on values widened from it (exactly), then round the new
/// parameters back to it (to nearest, ties to even, as NumPy and `ml_dtypes` do).
pub trait HalfFloat: Copy + Debug + Send + Sync + 'static {
    /// The NumPy name of the type.
    const NAME: &'static str;
    /// Widens `src` into `dst` (of the same length); exact.
    fn widen(src: &[Self], dst: &mut [f32]);
    /// Rounds `src` into `dst` (of the same length) to the nearest value, ties to even.
    fn narrow(src: &[f32], dst: &mut [Self]);
}

// The conversions are branch-free loops over `crate::convert`, inlined into each kernel's
// loop and vectorized with it (see that module for why not `half`'s slice conversions).
impl HalfFloat for half::f16 {
    const NAME: &'static str = "float16";

    #[inline(always)]
    fn widen(src: &[Self], dst: &mut [f32]) {
        let bits = half::slice::HalfFloatSliceExt::reinterpret_cast(src);
        #[cfg(target_arch = "x86_64")]
        if convert::f16c::available() {
            // SAFETY: the CPU has F16C.
            return unsafe { convert::f16c::widen(bits, dst) };
        }
        for (d, &s) in dst.iter_mut().zip(bits) {
            *d = convert::f16_to_f32(s);
        }
    }

    #[inline(always)]
    fn narrow(src: &[f32], dst: &mut [Self]) {
        let bits = half::slice::HalfFloatSliceExt::reinterpret_cast_mut(dst);
        #[cfg(target_arch = "x86_64")]
        if convert::f16c::available() {
            // SAFETY: the CPU has F16C.
            return unsafe { convert::f16c::narrow(src, bits) };
        }
        for (d, s) in bits.iter_mut().zip(src) {
            *d = convert::f32_to_f16(*s);
        }
    }
}

impl HalfFloat for half::bf16 {
    const NAME: &'static str = "bfloat16";

    #[inline(always)]
    fn widen(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = convert::bf16_to_f32(s.to_bits());
        }
    }

    #[inline(always)]
    fn narrow(src: &[f32], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = half::bf16::from_bits(convert::f32_to_bf16(*s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_keep_nan_propagates_nan_from_either_side() {
        assert!(max_keep_nan(f32::NAN, 1.0).is_nan());
        assert!(max_keep_nan(1.0, f32::NAN).is_nan());
        assert_eq!(max_keep_nan(1.0_f64, 2.0), 2.0);
        assert_eq!(max_keep_nan(3.0_f64, 2.0), 3.0);
        assert_eq!(max_keep_nan(f64::NEG_INFINITY, -1.0), -1.0);
    }
}
