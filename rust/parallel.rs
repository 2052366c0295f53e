//! Splitting updates over threads.
//!
//! Every kernel is elementwise, so any split gives the same bits; the split only decides speed.
//! lrfast owns its rayon pool so that the number of threads can be changed at run time
//! ([`set_num_threads`]), which rayon's global pool does not allow.

use std::sync::{Arc, OnceLock, RwLock};

use rayon::prelude::*;

use crate::quantize::BLOCK;

/// How many state arrays an optimizer can carry besides the parameter and gradient.
pub const MAX_STATE: usize = 3;

/// The arrays of one update, all of the same length: the parameter (written), the gradient (read)
/// and up to [`MAX_STATE`] state arrays (written). Unused state slots are empty.
pub struct Lanes<'a, T> {
    pub param: &'a mut [T],
    pub grad: &'a [T],
    pub state: [&'a mut [T]; MAX_STATE],
}

/// The arrays of one mixed-precision update: a 16-bit parameter (written) and gradient (read),
/// `f32` state arrays (written, unused slots empty) and, optionally, an `f32` master copy of the
/// parameter (written). With a master copy the update reads the master, not the 16-bit
/// parameter, and writes both; without one it reads the 16-bit parameter.
pub struct MixedLanes<'a, H> {
    pub param: &'a mut [H],
    pub grad: &'a [H],
    pub master: Option<&'a mut [f32]>,
    pub state: [&'a mut [f32]; MAX_STATE],
}

/// A state slot stored in 8 bits: one code per element and one `f32` scale per block of
/// [`BLOCK`] elements (see [`crate::quantize`]). Unused slots are empty.
pub struct QuantizedSlot<'a> {
    pub codes: &'a mut [u8],
    pub absmax: &'a mut [f32],
}

impl QuantizedSlot<'_> {
    /// An unused slot.
    pub fn empty() -> Self {
        QuantizedSlot {
            codes: &mut [],
            absmax: &mut [],
        }
    }
}

/// The arrays of one update with 8-bit state: an `f32` parameter (written) and gradient (read)
/// and up to [`MAX_STATE`] quantized state slots (written).
pub struct QuantizedLanes<'a> {
    pub param: &'a mut [f32],
    pub grad: &'a [f32],
    pub state: [QuantizedSlot<'a>; MAX_STATE],
}

/// Arrays that can be cut into pieces for threads: every array at the same element index.
pub trait Piece: Send + Sized {
    /// Pieces are cut at multiples of this many elements from the start of their tensor.
    const GRAIN: usize = 16;

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits every array at `mid` (unused, empty arrays stay empty).
    fn split_at(self, mid: usize) -> (Self, Self);
}

/// The state slots of one update.
type States<'a, T> = [&'a mut [T]; MAX_STATE];

/// Splits each state slot at `mid`; empty (unused) slots stay empty on both sides.
fn split_states<T>(state: States<'_, T>, mid: usize) -> (States<'_, T>, States<'_, T>) {
    let [s0, s1, s2] = state.map(|s| {
        let at = mid.min(s.len());
        s.split_at_mut(at)
    });
    ([s0.0, s1.0, s2.0], [s0.1, s1.1, s2.1])
}

impl<T: Send + Sync> Piece for Lanes<'_, T> {
    fn len(&self) -> usize {
        self.param.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (p0, p1) = self.param.split_at_mut(mid);
        let (g0, g1) = self.grad.split_at(mid);
        let (s0, s1) = split_states(self.state, mid);
        (
            Lanes {
                param: p0,
                grad: g0,
                state: s0,
            },
            Lanes {
                param: p1,
                grad: g1,
                state: s1,
            },
        )
    }
}

impl Piece for QuantizedLanes<'_> {
    /// Whole quantization blocks: each block's scale stays with its codes.
    const GRAIN: usize = BLOCK;

    fn len(&self) -> usize {
        self.param.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        debug_assert!(
            mid.is_multiple_of(BLOCK) || mid == self.len(),
            "cut inside a block"
        );
        let (p0, p1) = self.param.split_at_mut(mid);
        let (g0, g1) = self.grad.split_at(mid);
        let [s0, s1, s2] = self.state.map(|slot| {
            let codes = slot.codes.split_at_mut(mid.min(slot.codes.len()));
            let blocks = mid.div_ceil(BLOCK).min(slot.absmax.len());
            let absmax = slot.absmax.split_at_mut(blocks);
            (
                QuantizedSlot {
                    codes: codes.0,
                    absmax: absmax.0,
                },
                QuantizedSlot {
                    codes: codes.1,
                    absmax: absmax.1,
                },
            )
        });
        (
            QuantizedLanes {
                param: p0,
                grad: g0,
                state: [s0.0, s1.0, s2.0],
            },
            QuantizedLanes {
                param: p1,
                grad: g1,
                state: [s0.1, s1.1, s2.1],
            },
        )
    }
}

impl<H: Send + Sync> Piece for MixedLanes<'_, H> {
    fn len(&self) -> usize {
        self.param.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (p0, p1) = self.param.split_at_mut(mid);
        let (g0, g1) = self.grad.split_at(mid);
        let (m0, m1) = match self.master {
            Some(master) => {
                let (m0, m1) = master.split_at_mut(mid);
                (Some(m0), Some(m1))
            }
            None => (None, None),
        };
        let (s0, s1) = split_states(self.state, mid);
        (
            MixedLanes {
                param: p0,
                grad: g0,
                master: m0,
                state: s0,
            },
            MixedLanes {
                param: p1,
                grad: g1,
                master: m1,
                state: s1,
            },
        )
    }
}

/// Below this many elements in one call, an update runs on the calling thread: waking another
/// thread costs more than it saves. Measured on the 2-core VM lrfast is developed on (medians of
/// interleaved runs, Adam float32, 1 vs 2 threads): 2 threads were 0.57x as fast at 2^15,
/// 0.94x at 2^16, 1.17x at 2^17, 1.24x at 2^18; waking a sleeping worker costs tens of µs there.
pub const MIN_PARALLEL_LEN: usize = 1 << 17;

/// The pool updates run on; `None` means one thread (the caller's).
static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);
static INIT: OnceLock<()> = OnceLock::new();

/// The default thread count: `LRFAST_NUM_THREADS` if set to a positive integer, else the number
/// of cores.
pub fn default_num_threads() -> usize {
    std::env::var("LRFAST_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn pool() -> Option<Arc<rayon::ThreadPool>> {
    INIT.get_or_init(|| {
        let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = build_pool(default_num_threads());
        }
    });
    POOL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn build_pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    if threads <= 1 {
        return None;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lrfast-{i}"))
        .build()
        .ok()
        .map(Arc::new)
}

/// Sets the number of threads updates may use (1 = the calling thread only).
pub fn set_num_threads(threads: usize) {
    INIT.get_or_init(|| ());
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = build_pool(threads.max(1));
}

/// The number of threads updates may use.
pub fn num_threads() -> usize {
    pool().map_or(1, |p| p.current_num_threads())
}

/// Applies `body` to pieces that together cover every element of `tensors` exactly once, in
/// parallel when there is enough work. The tensors, in order, are dealt into one share of equal
/// element count per thread, cutting a tensor where a share ends, so a thousand small tensors
/// or a list of mixed sizes (a model's) balance by bytes as one large tensor does (one call has
/// one element type).
pub fn for_each_piece<P: Piece>(tensors: Vec<P>, body: &(impl Fn(P) + Sync)) {
    let total: usize = tensors.iter().map(Piece::len).sum();
    let pool = match pool() {
        Some(pool) if total >= MIN_PARALLEL_LEN => pool,
        _ => {
            tensors.into_iter().for_each(body);
            return;
        }
    };
    // One share per thread, as a static OpenMP schedule would: more, smaller shares measured no
    // faster here, and each costs a hand-off.
    let share = total
        .div_ceil(pool.current_num_threads())
        .max(MIN_PARALLEL_LEN / 4);
    let mut shares: Vec<Vec<P>> = Vec::with_capacity(pool.current_num_threads() + 1);
    let mut current = Vec::new();
    let mut room = share;
    for mut lanes in tensors {
        while !lanes.is_empty() {
            if room == 0 {
                shares.push(std::mem::take(&mut current));
                room = share;
            }
            if lanes.len() <= room {
                room -= lanes.len();
                current.push(lanes);
                break;
            }
            // Cut on a multiple of the grain (16 elements: every piece but the last starts
            // 64-byte aligned relative to its array, whatever the element type).
            let cut = room.next_multiple_of(P::GRAIN).min(lanes.len());
            let (head, tail) = lanes.split_at(cut);
            current.push(head);
            room = 0;
            lanes = tail;
        }
    }
    shares.push(current);
    pool.install(|| {
        shares
            .into_par_iter()
            .for_each(|share| share.into_iter().for_each(body))
    });
}

/// Runs `work` inside lrfast's pool (for reductions), or on the calling thread when the pool has
/// one thread.
pub fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}
