"""8-bit optimizer state: block-wise quantization (Dettmers et al., ICLR 2022).

A :class:`QuantizedState` holds one state array (Adam's ``exp_avg``, SGD's ``momentum_buffer``,
...) in a quarter of float32's memory: the array is cut in C order into blocks of 256 values
(the last block may be shorter), and each block is stored as its absolute maximum ``absmax``
(float32) and one byte per value, the index of the entry of a 256-entry map nearest to
``value · (1/absmax)``. Decoding is ``map[code] · absmax``. A block holding NaN or ±∞ gets the
scale NaN (it decodes to NaN: the state has diverged); one whose largest magnitude is below
1.2e-38 is stored as zeros. The map is the paper's dynamic map, signed for states that change
sign and unsigned (twice the precision) for states that never do;
``lrfast.spec(name).slots[i].signed`` says which a slot needs. One rule departs from plain
nearest rounding: in the unsigned map a positive value is never stored as 0 but as the smallest
positive entry (3.25e-7 of its block's scale). Updates divide by second moments; one rounded
to 0 under a first moment that is not (an input seen in earlier batches and absent from this
one) would make a step of ``lr · m / eps``, and did, on the demo's digits, without this rule.
Tensors of any size may be 8-bit; the optimizer classes keep float32 state for tensors under
4,096 elements, where the saving is a few kilobytes (bitsandbytes' rule).

Every kernel takes QuantizedState objects in place of its state arrays, for float32
parameters: each block is decoded in registers, updated by the float32 rule, re-encoded with
the scale of its new values, in one pass over memory::

    >>> p = np.ones(1000, np.float32); g = np.full(1000, 0.5, np.float32)
    >>> m = lrfast.QuantizedState.zeros(p.shape, signed=True)
    >>> v = lrfast.QuantizedState.zeros(p.shape, signed=False)
    >>> lrfast.adam_step(p, g, m, v, step=1, lr=0.1)
    >>> print(p[:3], m.dequantize()[:3])
    [0.90000004 0.90000004 0.90000004] [0.05 0.05 0.05]

The codes do not depend on the thread count or the SIMD level; :mod:`lrfast.reference`
(``quantize_blocks``, ``dequantize_blocks``) reproduces them code for code in NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from . import _lrfast

__all__ = ["BLOCK", "QuantizedState", "code_map"]

BLOCK: int = _lrfast.QUANTIZATION_BLOCK
"""Values per block (256): each block of a state has its own scale."""


def code_map(signed: bool) -> npt.NDArray[np.float32]:
    """The 256 entries of the signed or unsigned dynamic map, ascending (a new array)."""
    return _lrfast.code_map(bool(signed))


class QuantizedState:
    """One optimizer state array stored in 8 bits per value, with a float32 scale per block.

    Attributes:
        codes: uint8 array of the state's shape: each value's index in the map.
        absmax: float32 array of ``ceil(size / 256)`` block scales.
        signed: whether the values may be negative (the signed map) or not (the unsigned one).

    Build one with :meth:`zeros` or :meth:`from_array`; read it with :meth:`dequantize`.
    Kernels update ``codes`` and ``absmax`` in place. Pickling keeps both bit for bit.
    """

    __slots__ = ("absmax", "codes", "signed")

    codes: npt.NDArray[np.uint8]
    absmax: npt.NDArray[np.float32]
    signed: bool

    def __init__(
        self, codes: npt.NDArray[np.uint8], absmax: npt.NDArray[np.float32], signed: bool
    ) -> None:
        """Wraps existing ``codes`` and ``absmax`` (as :meth:`zeros` or a checkpoint makes them),
        checked: uint8 codes, one float32 scale per block of 256, both C-contiguous."""
        codes = np.asarray(codes)
        absmax = np.asarray(absmax)
        if codes.dtype != np.uint8 or not codes.flags.c_contiguous:
            raise TypeError(
                f"codes must be a C-contiguous uint8 array, got {codes.dtype} "
                f"({'contiguous' if codes.flags.c_contiguous else 'not contiguous'})"
            )
        blocks = -(-codes.size // BLOCK)
        if absmax.dtype != np.float32 or absmax.shape != (blocks,):
            raise ValueError(
                f"absmax must be float32 of shape ({blocks},) for {codes.size} values "
                f"(one scale per block of {BLOCK}), got {absmax.dtype} {absmax.shape}"
            )
        if not absmax.flags.c_contiguous:
            raise ValueError("absmax must be C-contiguous")
        if not isinstance(signed, (bool, np.bool_)):
            raise TypeError(f"signed must be True or False, got {signed!r}")
        self.codes = codes
        self.absmax = absmax
        self.signed = bool(signed)

    @classmethod
    def zeros(cls, shape: Union[int, Sequence[int]], *, signed: bool) -> QuantizedState:
        """A state of zeros of ``shape``."""
        zero = int(np.flatnonzero(code_map(signed) == 0.0)[0])
        codes = np.full(shape, zero, np.uint8)
        return cls(codes, np.zeros(-(-codes.size // BLOCK), np.float32), signed)

    @classmethod
    def from_array(cls, values: npt.ArrayLike, *, signed: bool) -> QuantizedState:
        """``values`` (converted to float32) quantized block by block. With ``signed=False``
        negative values are stored as 0."""
        array = np.ascontiguousarray(values, dtype=np.float32)
        codes, absmax = _lrfast.quantize_blocks(array, bool(signed))
        return cls(codes, absmax, signed)

    def dequantize(self) -> npt.NDArray[np.float32]:
        """The values as a new float32 array: ``map[codes] · absmax`` per block."""
        return _lrfast.dequantize_blocks(self.codes, self.absmax, self.signed)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    @property
    def size(self) -> int:
        return int(self.codes.size)

    @property
    def nbytes(self) -> int:
        """Bytes of memory the state holds: one per value plus four per block."""
        return int(self.codes.nbytes + self.absmax.nbytes)

    def copy(self) -> QuantizedState:
        """An independent copy (new arrays)."""
        return QuantizedState(self.codes.copy(), self.absmax.copy(), self.signed)

    def __getstate__(self) -> dict[str, Any]:
        return {"codes": self.codes, "absmax": self.absmax, "signed": self.signed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        QuantizedState.__init__(self, state["codes"], state["absmax"], state["signed"])

    def __eq__(self, other: object) -> bool:
        """Equal when the codes, scales and map are identical (bit for bit; NaN scales equal)."""
        if not isinstance(other, QuantizedState):
            return NotImplemented
        return (
            self.signed == other.signed
            and self.codes.shape == other.codes.shape
            and np.array_equal(self.codes, other.codes)
            and np.array_equal(self.absmax.view(np.uint32), other.absmax.view(np.uint32))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "signed" if self.signed else "unsigned"
        return f"QuantizedState(shape={self.shape}, {kind}, {self.nbytes} bytes)"
