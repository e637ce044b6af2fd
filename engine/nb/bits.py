"""A float64's IEEE bits as an int64 and back, inside kernels: what exact float tricks
need (``engine.nb.single.add_n``'s binades, ``sweep.cscv``'s order-preserving keys)."""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["bits_float", "float_bits"]


@intrinsic
def float_bits(typingctx, x):
    """The IEEE bits of a float64, as an int64 (a register move)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def bits_float(typingctx, i):
    """The float64 whose IEEE bits are the int64 ``i``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen
