"""Bit counts for numba-compiled loops: LLVM's ``cttz``, ``ctlz`` and ``ctpop`` (one instruction each on current
CPUs), through numba's public ``intrinsic`` API. Call them from ``@numba.njit`` code only."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def trailing_zeros(typingctx, x):
    """The number of zero bits below the lowest set bit of integer ``x``; undefined for 0 (never pass it)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return x(x), codegen


@intrinsic
def leading_zeros(typingctx, x):
    """The number of zero bits above the highest set bit of integer ``x`` (its width's); undefined for 0."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 1))

    return x(x), codegen


@intrinsic
def popcount(typingctx, x):
    """The number of set bits of integer ``x``."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return x(x), codegen
