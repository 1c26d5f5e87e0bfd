"""The x86-64 MXCSR register, read and written from Python through numba (see arithmetic.py).

MXCSR holds the SSE/AVX control bits of the thread that runs the instruction; LLVM's
``stmxcsr`` and ``ldmxcsr`` intrinsics read and write it, and numba compiles the two calls once
(cached on disk, like the kernels). Importing this module imports numba.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _call(builder, name: str, slot) -> None:
    pointer = ir.PointerType(ir.IntType(8))
    signature = ir.FunctionType(ir.VoidType(), [pointer])
    function = builder.module.declare_intrinsic(name, fnty=signature)
    builder.call(function, [builder.bitcast(slot, pointer)])


@intrinsic
def _stmxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(32))
        _call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _ldmxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(32))
        builder.store(args[0], slot)
        _call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.uint32), codegen


@numba.njit(cache=True, nogil=True)
def read() -> int:
    """This thread's MXCSR."""
    return _stmxcsr()


@numba.njit(cache=True, nogil=True)
def write(value: int) -> None:
    """Set this thread's MXCSR to ``value``."""
    _ldmxcsr(numba.uint32(value))
