//! Splitting one update over threads.
//!
//! Every kernel is elementwise, so any split gives the same bits; the split only decides speed.

use crate::real::Real;

/// How many state arrays an optimizer can carry besides the parameter and gradient.
pub const MAX_STATE: usize = 3;

/// The arrays of one update, all of the same length: the parameter (written), the gradient (read)
/// and up to [`MAX_STATE`] state arrays (written). Unused state slots are empty.
pub struct Lanes<'a, T> {
    pub param: &'a mut [T],
    pub grad: &'a [T],
    pub state: [&'a mut [T]; MAX_STATE],
}

impl<'a, T> Lanes<'a, T> {
    pub fn len(&self) -> usize {
        self.param.len()
    }

    pub fn is_empty(&self) -> bool {
        self.param.is_empty()
    }

    /// Splits every array at `mid` (unused, empty state slots stay empty).
    fn split_at(self, mid: usize) -> (Lanes<'a, T>, Lanes<'a, T>) {
        let (p0, p1) = self.param.split_at_mut(mid);
        let (g0, g1) = self.grad.split_at(mid);
        let [s0, s1, s2] = self.state.map(|s| {
            let at = mid.min(s.len());
            s.split_at_mut(at)
        });
        (
            Lanes {
                param: p0,
                grad: g0,
                state: [s0.0, s1.0, s2.0],
            },
            Lanes {
                param: p1,
                grad: g1,
                state: [s0.1, s1.1, s2.1],
            },
        )
    }
}

/// Below this many elements an update runs on the calling thread: handing work to another thread
/// costs more than it saves.
pub const MIN_PARALLEL_LEN: usize = 1 << 15;

/// Applies `body` to pieces of `lanes` that together cover it exactly once, in parallel on
/// rayon's pool when the arrays are large enough to gain from it.
pub fn for_each_piece<T: Real>(lanes: Lanes<'_, T>, body: &(impl Fn(Lanes<'_, T>) + Sync)) {
    let threads = rayon::current_num_threads();
    if threads <= 1 || lanes.len() < MIN_PARALLEL_LEN {
        body(lanes);
        return;
    }
    // A few pieces per thread balance the load when one core is busy with something else.
    let piece = lanes.len().div_ceil(threads * 4).max(MIN_PARALLEL_LEN / 2);
    split_recursively(lanes, piece, body);
}

fn split_recursively<T: Real>(
    lanes: Lanes<'_, T>,
    piece: usize,
    body: &(impl Fn(Lanes<'_, T>) + Sync),
) {
    if lanes.len() <= piece {
        body(lanes);
        return;
    }
    // Split on a multiple of 16 elements so that every piece but the last starts 64-byte aligned
    // relative to the array, whatever the element type.
    let mid = (lanes.len() / 2).next_multiple_of(16).min(lanes.len());
    let (left, right) = lanes.split_at(mid);
    rayon::join(
        || split_recursively(left, piece, body),
        || split_recursively(right, piece, body),
    );
}
