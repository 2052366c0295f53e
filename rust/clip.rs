//! Gradient clipping: the global norm of many gradient arrays, and scaling or clamping them.
//!
//! The norm is a reduction, and floating-point sums depend on their order. To give the same bits
//! with any number of threads, each array is cut into fixed blocks of [`BLOCK`] elements whatever
//! the thread count; each block is summed in `f64` with independent accumulators, and the block
//! sums are added in array order on one thread.

use rayon::prelude::*;

use crate::real::{max_keep_nan, HalfFloat, Real};

/// Elements per block of the reduction: fixed, so that results never depend on the threads.
pub const BLOCK: usize = 1 << 13;

/// Below this many elements in all, the norm is computed on the calling thread.
const MIN_PARALLEL_LEN: usize = 1 << 17;

/// An element whose magnitude a norm reads, as an `f64` (exact for every type lrfast stores).
pub trait Magnitude: Copy + Sync {
    fn magnitude(self) -> f64;
}

impl Magnitude for f32 {
    #[inline(always)]
    fn magnitude(self) -> f64 {
        f64::from(self).abs()
    }
}

impl Magnitude for f64 {
    #[inline(always)]
    fn magnitude(self) -> f64 {
        self.abs()
    }
}

impl Magnitude for half::f16 {
    #[inline(always)]
    fn magnitude(self) -> f64 {
        // The `const` conversion is plain code; `to_f64` would test for F16C at every element.
        self.to_f64_const().abs()
    }
}

impl Magnitude for half::bf16 {
    #[inline(always)]
    fn magnitude(self) -> f64 {
        self.to_f64_const().abs()
    }
}

/// The sum of `|x|^p` over one block (`p = 2` and `p = 1` without `powf`), or the max of `|x|`
/// when `p` is infinite, in `f64`.
#[inline(always)]
fn block_reduce<T: Magnitude>(block: &[T], p: f64) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let chunks = block.chunks_exact(LANES);
    let tail = chunks.remainder();
    let term = |x: T| -> f64 {
        let a = x.magnitude();
        if p == 2.0 {
            a * a
        } else if p == 1.0 {
            a
        } else {
            a.powf(p)
        }
    };
    if p.is_infinite() {
        let mut best = 0.0f64;
        for &x in block {
            best = max_keep_nan(best, x.magnitude());
        }
        return best;
    }
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += term(x);
        }
    }
    for (a, &x) in acc.iter_mut().zip(tail) {
        *a += term(x);
    }
    // A fixed pairwise order of the accumulators.
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// The `p`-norm of all `grads` together (as PyTorch's `clip_grad_norm_` computes it: the norm
/// of the per-array norms, which is the norm of everything), in `f64`. `p` is positive, `inf`
/// for the largest magnitude.
pub fn total_norm<T: Magnitude>(grads: &[&[T]], p: f64) -> f64 {
    let blocks: Vec<&[T]> = grads.iter().flat_map(|g| g.chunks(BLOCK)).collect();
    let total_len: usize = grads.iter().map(|g| g.len()).sum();
    let partials: Vec<f64> = if total_len >= MIN_PARALLEL_LEN {
        crate::parallel::install(|| blocks.par_iter().map(|b| block_reduce(b, p)).collect())
    } else {
        blocks.iter().map(|b| block_reduce(b, p)).collect()
    };
    if p.is_infinite() {
        partials.into_iter().fold(0.0, max_keep_nan)
    } else {
        let sum: f64 = partials.into_iter().sum();
        if p == 2.0 {
            sum.sqrt()
        } else if p == 1.0 {
            sum
        } else {
            sum.powf(1.0 / p)
        }
    }
}

/// Multiplies every gradient by `factor` (rounded to the element type).
pub fn scale<T: Real>(grads: &mut [&mut [T]], factor: f64) {
    let factor = T::from_f64(factor);
    for g in grads.iter_mut() {
        g.iter_mut().for_each(|x| *x = *x * factor);
    }
}

/// Clamps every gradient element to `[-limit, limit]`, keeping NaN (as `torch.clamp`).
pub fn clamp<T: Real>(grads: &mut [&mut [T]], limit: f64) {
    let (lo, hi) = (T::from_f64(-limit), T::from_f64(limit));
    for g in grads.iter_mut() {
        g.iter_mut().for_each(|x| {
            // Comparisons with NaN are false, so NaN passes through unchanged.
            *x = if *x < lo {
                lo
            } else if *x > hi {
                hi
            } else {
                *x
            }
        });
    }
}

/// [`scale`] for 16-bit gradients: each product in `f32`, rounded back to `H`.
pub fn scale_half<H: HalfFloat>(grads: &mut [&mut [H]], factor: f64) {
    through_f32(grads, |block| scale(&mut [block], factor));
}

/// [`clamp`] for 16-bit gradients, in `f32` (the limit rounded to `f32`, then to `H`).
pub fn clamp_half<H: HalfFloat>(grads: &mut [&mut [H]], limit: f64) {
    through_f32(grads, |block| clamp(&mut [block], limit));
}

/// Applies `op` to the gradients widened to `f32`, a block at a time, and rounds them back.
fn through_f32<H: HalfFloat>(grads: &mut [&mut [H]], op: impl Fn(&mut [f32])) {
    const BLOCK_16: usize = 1024;
    let mut buffer = [0.0f32; BLOCK_16];
    for g in grads.iter_mut() {
        for chunk in g.chunks_mut(BLOCK_16) {
            let block = &mut buffer[..chunk.len()];
            H::widen(chunk, block);
            op(block);
            H::narrow(block, chunk);
        }
    }
}

/// PyTorch's clipping factor: `max_norm / (norm + 1e-6)`, at most 1 (NaN stays NaN).
pub fn clip_coefficient(max_norm: f64, norm: f64) -> f64 {
    let coef = max_norm / (norm + 1e-6);
    if coef > 1.0 {
        1.0
    } else {
        coef
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_match_a_direct_sum_and_do_not_depend_on_threads() {
        let a: Vec<f32> = (0..100_003)
            .map(|i| ((i % 17) as f32 - 8.0) * 0.25)
            .collect();
        let b: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let grads = [&a[..], &b[..]];
        let direct: f64 = a.iter().chain(&b).map(|&x| (x as f64) * (x as f64)).sum();
        let mut seen = Vec::new();
        for threads in [1, 2, 3] {
            crate::parallel::set_num_threads(threads);
            seen.push(total_norm(&grads, 2.0).to_bits());
        }
        crate::parallel::set_num_threads(crate::parallel::default_num_threads());
        assert!(seen.iter().all(|&s| s == seen[0]));
        assert!((f64::from_bits(seen[0]) - direct.sqrt()).abs() < 1e-9);
        assert_eq!(total_norm(&grads, f64::INFINITY), 8.0);
        assert!(
            (total_norm(&grads, 1.0) - a.iter().chain(&b).map(|x| x.abs() as f64).sum::<f64>())
                .abs()
                < 1e-6
        );
    }

    #[test]
    fn nan_propagates_through_both_norms_and_clamp_keeps_it() {
        let mut a = [1.0f64, f64::NAN, -3.0];
        assert!(total_norm(&[&a[..]], 2.0).is_nan());
        assert!(total_norm(&[&a[..]], f64::INFINITY).is_nan());
        clamp(&mut [&mut a[..]], 2.0);
        assert_eq!(a[0], 1.0);
        assert!(a[1].is_nan());
        assert_eq!(a[2], -2.0);
    }

    #[test]
    fn half_gradients_clip_in_f32_and_round_back() {
        use half::{bf16, f16};
        let values = [1.5f32, -3.0, 0.1, 7.0];
        let mut h: Vec<f16> = values.iter().map(|&x| f16::from_f32(x)).collect();
        let widened: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
        let expected = total_norm(&[&widened[..]], 2.0);
        assert_eq!(total_norm(&[&h[..]], 2.0), expected);
        scale_half(&mut [&mut h[..]], 0.5);
        for (x, w) in h.iter().zip(&widened) {
            assert_eq!(*x, f16::from_f32(w * 0.5));
        }
        let mut b: Vec<bf16> = values.iter().map(|&x| bf16::from_f32(x)).collect();
        clamp_half(&mut [&mut b[..]], 2.0);
        let clamped: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
        assert_eq!(clamped, [1.5, -2.0, bf16::from_f32(0.1).to_f32(), 2.0]);
    }
}
