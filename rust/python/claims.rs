//! Claims: which arrays a call may write, and the registry that keeps two calls off the same
//! memory.
//!
//! # Why lrfast claims byte ranges itself
//!
//! rust-numpy's borrow flags track arrays, not bytes, and its `readwrite()` panics on a
//! conflict; a panic must never reach the user. More to the point, the flags are a per-process
//! table guarded by the GIL, and the kernels run *without* the GIL: while one thread's update
//! runs detached, another thread may start one on the same arrays. So the bindings keep their
//! own registry:
//!
//! 1. Within a call, [`check_no_overlap`] refuses any two arguments whose bytes intersect (the
//!    test `numpy.shares_memory` makes; for C-contiguous arrays an intersection of byte
//!    ranges), and [`check_writeable`] every read-only array the call writes.
//! 2. Across calls, a call that releases the GIL registers its byte ranges in [`in_flight`]
//!    before it does, and unregisters them when its guard drops (also on panic or error). A call
//!    that overlaps a registered range where either side writes gets `ValueError: ... is in
//!    use`. Calls that keep the GIL only check: no other lrfast call can start while they run.
//!
//! Together these make every `&mut [T]` that `slices` hands to the kernels the only reference
//! to its bytes for as long as the kernel runs, which is what the `unsafe` blocks there rely on.
//! NumPy code that writes the same memory from another thread at the same moment, outside
//! lrfast, is not covered (no library can stop it); it is a data race in the user's program.

use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::args::{ArrayArg, Label, TensorArgs};
use super::kernels::GIL_RELEASE_LEN;

/// The bytes of a C-contiguous array: `[start, end)`.
pub(super) fn byte_range(array: &Bound<'_, PyUntypedArray>) -> (usize, usize) {
    // SAFETY: `as_array_ptr` points to the live array object `array` holds a reference to;
    // only its data pointer field is read.
    let start =
        unsafe { (*numpy::npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).data } as usize;
    (start, start + array.len() * array.dtype().itemsize())
}

/// The indices of two of `arrays` whose bytes overlap where at least one of them is `written`,
/// or `None`. The optimizer classes check a whole step with this before its first kernel call
/// (each call checks only its own arguments), with the sweep [`check_no_overlap`] makes.
#[pyfunction]
pub(super) fn first_overlap(
    arrays: Vec<Bound<'_, PyUntypedArray>>,
    written: Vec<bool>,
) -> PyResult<Option<(usize, usize)>> {
    if arrays.len() != written.len() {
        return Err(PyValueError::new_err(format!(
            "arrays has {} entries but written has {}",
            arrays.len(),
            written.len()
        )));
    }
    if let Some(i) = arrays.iter().position(|array| !array.is_c_contiguous()) {
        return Err(PyValueError::new_err(format!(
            "arrays[{i}] must be C-contiguous"
        )));
    }
    let mut ranges: Vec<(usize, usize, usize)> = arrays
        .iter()
        .enumerate()
        .filter(|(_, array)| array.len() > 0)
        .map(|(i, array)| {
            let (start, end) = byte_range(array);
            (start, end, i)
        })
        .collect();
    ranges.sort_unstable();
    let mut furthest: Option<(usize, usize)> = None;
    for &(start, end, i) in &ranges {
        if let Some((far_end, far)) = furthest {
            if start < far_end && (written[i] || written[far]) {
                return Ok(Some((far, i)));
            }
        }
        if furthest.is_none_or(|(far_end, _)| end > far_end) {
            furthest = Some((end, i));
        }
    }
    Ok(None)
}

/// Refuses two arguments whose bytes overlap: the test `numpy.shares_memory` makes, which for
/// C-contiguous arrays is an intersection of byte ranges.
pub(super) fn check_no_overlap<'a, 'py: 'a>(
    arrays: impl IntoIterator<Item = &'a ArrayArg<'py>>,
) -> PyResult<()> {
    check_disjoint(&byte_ranges(arrays.into_iter().map(|arg| (false, arg))))
}

/// Refuses two of `ranges` that overlap. Sorting the ranges makes it O(n log n), for calls with
/// thousands of arrays.
pub(super) fn check_disjoint(ranges: &[InFlight]) -> PyResult<()> {
    let mut sorted: Vec<&InFlight> = ranges.iter().filter(|r| r.start < r.end).collect();
    sorted.sort_unstable_by_key(|r| r.start);
    // After sorting, an overlap exists iff some range starts before the furthest end so far.
    let mut furthest: Option<&InFlight> = None;
    for &range in &sorted {
        if let Some(far) = furthest {
            if range.start < far.end {
                return Err(PyValueError::new_err(format!(
                    "{} and {} share memory; every array of an update must be distinct",
                    far.name, range.name
                )));
            }
        }
        if furthest.is_none_or(|far| range.end > far.end) {
            furthest = Some(range);
        }
    }
    Ok(())
}

pub(super) fn is_writeable(array: &Bound<'_, PyUntypedArray>) -> bool {
    // SAFETY: `as_array_ptr` points to the live array object `array` holds a reference to, and
    // only its flags field is read.
    let flags = unsafe { (*numpy::npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags };
    flags & numpy::npyffi::NPY_ARRAY_WRITEABLE != 0
}

/// Refuses a read-only array among those an update writes.
pub(super) fn check_writeable(arg: &ArrayArg<'_>, what: &str) -> PyResult<()> {
    if is_writeable(&arg.array) {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "{} is read-only; {what} writes it in place",
            arg.name
        )))
    }
}

/// The arrays that updates running without the GIL are using, so that a second thread cannot
/// update the same memory at the same moment (a torn result); it gets a clear error instead.
pub(super) mod in_flight {
    use super::{Label, PyResult, PyValueError};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Clone, Copy)]
    pub(in crate::python) struct InFlight {
        pub start: usize,
        pub end: usize,
        pub writes: bool,
        pub name: Label,
    }

    static RANGES: Mutex<Vec<(u64, InFlight)>> = Mutex::new(Vec::new());
    /// How many calls are registered: lets the common case (none) skip the lock.
    static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

    /// Unregisters a call's arrays when dropped.
    pub(in crate::python) struct Registration(u64);

    impl Drop for Registration {
        fn drop(&mut self) {
            let mut ranges = RANGES.lock().unwrap_or_else(|e| e.into_inner());
            ranges.retain(|(id, _)| *id != self.0);
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn conflict(ours: &[InFlight], theirs: &[(u64, InFlight)]) -> PyResult<()> {
        for a in ours {
            for (_, b) in theirs {
                if (a.writes || b.writes) && a.start < b.end && b.start < a.end {
                    return Err(PyValueError::new_err(format!(
                        "{} is in use by another call (another thread is updating it)",
                        a.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Fails if another call is using any of `ranges` in a conflicting way.
    pub(in crate::python) fn check(ranges: &[InFlight]) -> PyResult<()> {
        if ACTIVE.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        conflict(ranges, &RANGES.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Checks and registers `ranges` for the duration of the returned guard.
    pub(in crate::python) fn register(ranges: Vec<InFlight>) -> PyResult<Registration> {
        let mut registered = RANGES.lock().unwrap_or_else(|e| e.into_inner());
        conflict(&ranges, &registered)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) as u64;
        registered.extend(ranges.into_iter().map(|r| (id, r)));
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Ok(Registration(id))
    }
}

pub(super) use in_flight::InFlight;

/// The byte ranges of the non-empty `arrays`, each marked as written or only read.
pub(super) fn byte_ranges<'a, 'py: 'a>(
    arrays: impl IntoIterator<Item = (bool, &'a ArrayArg<'py>)>,
) -> Vec<InFlight> {
    arrays
        .into_iter()
        .filter(|(_, arg)| arg.array.len() > 0)
        .map(|(writes, arg)| {
            let (start, end) = byte_range(&arg.array);
            InFlight {
                start,
                end,
                writes,
                name: Label::Array(arg.name),
            }
        })
        .collect()
}

/// Claims `ranges` for an update of `total` elements: large updates, which run without the
/// GIL, register them until the guard drops; small ones keep the GIL and only check.
pub(super) fn claim(
    ranges: Vec<InFlight>,
    total: usize,
) -> PyResult<Option<in_flight::Registration>> {
    if total >= GIL_RELEASE_LEN {
        Ok(Some(in_flight::register(ranges)?))
    } else {
        in_flight::check(&ranges)?;
        Ok(None)
    }
}

/// Checks that no two arrays of a call share memory and that those it writes are writeable,
/// then claims them all against concurrent updates.
pub(super) fn claim_tensors(
    tensors: &[TensorArgs<'_>],
) -> PyResult<Option<in_flight::Registration>> {
    // Every array but the gradients is written.
    let arrays: Vec<(bool, &ArrayArg<'_>)> = tensors
        .iter()
        .flat_map(|tensor| {
            [(true, &tensor.param), (false, &tensor.grad)]
                .into_iter()
                .chain(tensor.states.iter().map(|(_, state)| (true, state)))
                .chain(tensor.master.iter().map(|master| (true, master)))
        })
        .collect();
    let total: usize = tensors.iter().map(|t| t.param.array.len()).sum();
    claim_arrays(&arrays, total)
}

/// Checks that no two of `arrays` share memory and that those marked written are writeable,
/// then claims them for an update of `total` elements.
pub(super) fn claim_arrays(
    arrays: &[(bool, &ArrayArg<'_>)],
    total: usize,
) -> PyResult<Option<in_flight::Registration>> {
    let ranges = byte_ranges(arrays.iter().copied());
    check_disjoint(&ranges)?;
    for (writes, arg) in arrays {
        if *writes {
            check_writeable(arg, "the update")?;
        }
    }
    claim(ranges, total)
}
