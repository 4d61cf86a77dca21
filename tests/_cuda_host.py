"""Run the CuPy path's CUDA kernel on the CPU: its source, compiled as C++, one OS thread per lane.

The kernel's own source (:func:`sparse_reg.backends.cupy.kernel_source`) is compiled by the host C++
compiler behind a small header that supplies what CUDA would: ``threadIdx``/``blockIdx``/``blockDim``
(thread-local), the block's shared memory, ``__syncwarp`` and ``__shfl_xor_sync`` (a per-warp
exchange slot and barrier), and ``__half`` as ``_Float16``. Each block of a launch runs as
``blockDim.x`` Python threads, each calling the compiled kernel through :mod:`ctypes` (which releases
the GIL), so the 32 lanes of a warp really meet at every shuffle, as on a GPU.

:func:`emulated_cupy` then swaps CuPy for NumPy and the compiled RawKernel for this one, so the
launch code of :mod:`sparse_reg.backends.cupy` (argument packing, grid, shared-memory size) runs
unchanged.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from sparse_reg.backends import cupy as cupy_path

#: What CUDA provides, for a host compiler (before the kernel source).
PRELUDE = r"""
#include <barrier>
#include <cmath>
#include <cstring>
using namespace std;
#define __device__
#define __forceinline__ inline
#define __global__
#define __shared__
struct sr_dim3 { unsigned x, y, z; };
thread_local sr_dim3 threadIdx;
sr_dim3 blockIdx, blockDim;
extern "C" { alignas(16) unsigned char shared_raw[64 * 1024]; }
static barrier<>* sr_warp_barrier[32];
static double sr_slot[32][32];
static inline void __syncwarp() { sr_warp_barrier[threadIdx.x >> 5]->arrive_and_wait(); }
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int offset) {
    const unsigned warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    sr_slot[warp][lane] = (double)v;  // exact for float and double
    sr_warp_barrier[warp]->arrive_and_wait();
    T other = (T)sr_slot[warp][lane ^ offset];
    sr_warp_barrier[warp]->arrive_and_wait();
    return other;
}
"""

#: The launcher's side (after the kernel source).
EPILOGUE = r"""
extern "C" void sr_begin_block(unsigned block, unsigned threads) {
    blockIdx = {block, 0, 0};
    blockDim = {threads, 1, 1};
    std::memset(shared_raw, 0xff, sizeof shared_raw);  // poison: a read before a write shows
    for (unsigned w = 0; w < threads / 32; ++w) sr_warp_barrier[w] = new barrier<>(32);
}
extern "C" void sr_end_block(unsigned threads) {
    for (unsigned w = 0; w < threads / 32; ++w) delete sr_warp_barrier[w];
}
extern "C" void sr_set_thread(unsigned thread) { threadIdx = {thread, 0, 0}; }
"""

#: ``cuda_fp16.h`` as the half-precision source needs it, on a host with ``_Float16``.
HALF_HEADER = """#pragma once
typedef _Float16 __half;
static inline float __half2float(__half h) { return (float)h; }
static inline __half __float2half(float f) { return (__half)f; }
"""


def compiler() -> str | None:
    """The host C++ compiler, if there is one that takes C++20."""
    return shutil.which("g++") or shutil.which("clang++")


@cache
def host_kernel(in_dtype: str) -> ctypes.CDLL:
    """The kernel for logits of ``in_dtype`` compiled for the host, loaded (cached per process)."""
    source = PRELUDE + cupy_path.kernel_source(in_dtype) + EPILOGUE
    build = Path(tempfile.gettempdir(), "sparse_reg-cuda-host")
    build.mkdir(exist_ok=True)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    library = build / f"sr_fused_{in_dtype}_{digest}.so"
    if not library.exists():
        include = build / "include"
        include.mkdir(exist_ok=True)
        (include / "cuda_fp16.h").write_text(HALF_HEADER)
        source_file = build / f"sr_fused_{in_dtype}_{digest}.cpp"
        source_file.write_text(source)
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        done = subprocess.run([compiler() or "g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
                               "-I", str(include), "-o", str(partial), str(source_file)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"host build of the kernel failed:\n{done.stderr}")
        partial.replace(library)
    return ctypes.CDLL(str(library))


def _ctype(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ctypes.c_void_p(value.ctypes.data)
    if isinstance(value, np.int32):
        return ctypes.c_int(int(value))
    if isinstance(value, np.int64):
        return ctypes.c_longlong(int(value))
    if isinstance(value, np.float64):
        return ctypes.c_double(float(value))
    raise TypeError(f"kernel argument of unexpected type {type(value).__name__}")


class HostRawKernel:
    """Stands for ``cupy.RawKernel``: ``kernel(grid, block, args, shared_mem=...)`` on the CPU."""

    def __init__(self, in_dtype: str) -> None:
        self.lib = host_kernel(in_dtype)

    def __call__(self, grid: tuple[int], block: tuple[int], args: tuple, shared_mem: int = 0) -> None:
        if shared_mem > 64 * 1024:
            raise ValueError(f"shared_mem={shared_mem} exceeds the emulated 64 KiB")
        values = [_ctype(a) for a in args]
        (threads,) = block
        errors: list[BaseException] = []

        def lane(thread: int) -> None:
            try:
                self.lib.sr_set_thread(thread)
                self.lib.sr_fused(*values)
            except BaseException as exc:  # re-raised below, in the launching thread
                errors.append(exc)

        for block_index in range(grid[0]):
            self.lib.sr_begin_block(block_index, threads)
            workers = [threading.Thread(target=lane, args=(t,)) for t in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            self.lib.sr_end_block(threads)
            if errors:
                raise errors[0]


@contextmanager
def emulated_cupy(monkeypatch: Any) -> Iterator[None]:
    """Within the block, ``import cupy`` gives NumPy and every RawKernel launch runs on the host."""
    monkeypatch.setitem(sys.modules, "cupy", np)
    monkeypatch.setattr(cupy_path, "_kernel", HostRawKernel)
    yield
