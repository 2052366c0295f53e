//! The floating-point element types the kernels are generic over.

use std::fmt::Debug;

use half::slice::HalfFloatSliceExt;
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

impl HalfFloat for half::f16 {
    const NAME: &'static str = "float16";

    #[inline(always)]
    fn widen(src: &[Self], dst: &mut [f32]) {
        // `half` converts 8 at a time with F16C when the CPU has it (detected at run time).
        src.convert_to_f32_slice(dst);
    }

    #[inline(always)]
    fn narrow(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src);
    }
}

impl HalfFloat for half::bf16 {
    const NAME: &'static str = "bfloat16";

    // `half` converts bfloat16 one element at a time (a shift, and rounding on the bits); as
    // loops here they are inlined into the caller and vectorized with it.
    #[inline(always)]
    fn widen(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }

    #[inline(always)]
    fn narrow(src: &[f32], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = half::bf16::from_f32(*s);
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
