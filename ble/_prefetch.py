"""``prefetch(arr, i)``: a software prefetch of ``arr[i]`` (of row ``i`` of a 2-D array) for numba kernels.

numba has no prefetch builtin; this intrinsic emits LLVM's ``llvm.prefetch`` (read, highest temporal
locality, data cache: ``prefetcht0`` on x86-64), which tells the CPU to start loading the cache line
of ``arr[i]`` (of ``arr[i, 0]`` for a 2-D array) without waiting for it and without faulting.  Used
for group prefetching by the ID matching (:mod:`tracing.core.matching`, through
``tracing.core._prefetch``) and by the simulator's day maps (:mod:`sim.scanning.accumulate`): the
hash-table slots of a group of records are requested all at once, then read, so their cache misses
overlap instead of queueing behind one another.  ``arr`` is a 1-D or 2-D numba array (any dtype,
records included), ``i`` an integer index; the caller keeps ``0 <= i < len(arr)`` (no bounds check,
no wrap-around of negative indices).  A no-op for the result of any computation: only timing changes.

``llvmlite`` is numba's own code generator (a required dependency of numba), not a further one.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

__all__ = ["prefetch"]


@intrinsic
def prefetch(typingctx, arr, i):
    """``prefetch(arr, i)`` in a numba kernel: request the cache line of ``arr[i]`` (1-D array) or of
    ``arr[i, 0]`` (2-D array), integer ``i`` in range; returns nothing."""
    if not (isinstance(arr, types.Array) and arr.ndim in (1, 2) and isinstance(i, types.Integer)):
        return None
    sig = types.void(arr, i)

    def codegen(context, builder, signature, args):
        aryty, ity = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], ity, types.intp)
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx] + [zero] * (aryty.ndim - 1),
                                       wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, rw = 0: read, locality = 3: keep in all cache levels, cache type = 1: data)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen
