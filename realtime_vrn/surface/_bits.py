"""Bit counts for numba-compiled loops: LLVM's ``cttz``, ``ctlz`` and ``ctpop`` (one instruction each on current
CPUs), through numba's public ``intrinsic`` API. Call them from ``@numba.njit`` code only."""

from __future__ import annotations

from typing import Callable

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

#: cttz / ctlz's flag: a zero input is undefined (the callers never pass one), so no check is emitted.
_ZERO_UNDEFINED = ir.Constant(ir.IntType(1), 1)


def _bit_count(name: str, doc: str, emit: Callable[[ir.IRBuilder, ir.Value], ir.Value]):
    """An intrinsic ``name(x) -> int`` of x's own integer type, its body emitted by ``emit(builder, x)``."""

    def count(typingctx, x):
        if not isinstance(x, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            return emit(builder, args[0])

        return x(x), codegen

    count.__name__, count.__qualname__, count.__doc__ = name, name, doc
    return intrinsic(count)


trailing_zeros = _bit_count(
    "trailing_zeros", "The number of zero bits below the lowest set bit of integer ``x``; undefined for 0.",
    lambda builder, x: builder.cttz(x, _ZERO_UNDEFINED))
leading_zeros = _bit_count(
    "leading_zeros", "The number of zero bits above the highest set bit of integer ``x``; undefined for 0.",
    lambda builder, x: builder.ctlz(x, _ZERO_UNDEFINED))
popcount = _bit_count("popcount", "The number of set bits of integer ``x``.", lambda builder, x: builder.ctpop(x))
