"""The CuPy path's CUDA kernel compiles, with no GPU present, for every target and launch dtype.

NVRTC (the runtime compiler CuPy itself uses) comes from the ``nvidia-cuda-nvrtc-cu12`` wheel of the
``test`` extra and is driven through its C API with :mod:`ctypes`: it needs no driver and no device.
The CUDA headers the half-precision source includes (``cuda_fp16.h``) come from the
``nvidia-cuda-runtime-cu12`` wheel, as CuPy passes the toolkit's include directory on a GPU machine.
Each source is compiled to machine code (a cubin) for ``sm_80`` (A100) and ``sm_90`` (H100, H200),
with the options CuPy is given; a compile error fails with NVRTC's log.
"""

from __future__ import annotations

import ctypes
import importlib.util
import platform
from pathlib import Path

import pytest

from sparse_reg.backends import cupy as cupy_path

ARCHITECTURES = ("sm_80", "sm_90")


def _wheel_file(package: str, pattern: str) -> Path | None:
    """The first file matching ``pattern`` in the installed NVIDIA wheel ``nvidia.<package>``."""
    try:
        spec = importlib.util.find_spec(f"nvidia.{package}")
    except ModuleNotFoundError:
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(location).glob(pattern))
        if found:
            return found[0]
    return None


def _missing(wheel: str) -> str:
    return (f"{wheel} not installed: the test extra installs it on Linux x86_64 only "
            f"(this is {platform.system()} {platform.machine()})")


@pytest.fixture(scope="module")
def nvrtc() -> ctypes.CDLL:
    library = _wheel_file("cuda_nvrtc", "lib/libnvrtc.so.*")
    if library is None:
        pytest.skip(_missing("nvidia-cuda-nvrtc-cu12"))
    lib = ctypes.CDLL(str(library))
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


@pytest.fixture(scope="module")
def cuda_include() -> Path:
    header = _wheel_file("cuda_runtime", "include/cuda_fp16.h")
    if header is None:
        pytest.skip(_missing("nvidia-cuda-runtime-cu12"))
    return header.parent


def _check(lib: ctypes.CDLL, status: int, call: str) -> None:
    if status != 0:
        raise RuntimeError(f"{call} failed: {lib.nvrtcGetErrorString(status).decode()}")


def compile_cubin(lib: ctypes.CDLL, source: str, name: str, options: list[str]) -> tuple[bytes, str]:
    """Compile ``source`` with NVRTC; return the cubin and the log, or fail with the log."""
    program = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        encoded = [option.encode() for option in options]
        status = lib.nvrtcCompileProgram(program, len(encoded), (ctypes.c_char_p * len(encoded))(*encoded))
        size = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        log = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
        text = log.value.decode(errors="replace")
        if status != 0:
            pytest.fail(f"NVRTC could not compile {name} ({' '.join(options)}): "
                        f"{lib.nvrtcGetErrorString(status).decode()}\n{text}", pytrace=False)
        _check(lib, lib.nvrtcGetCUBINSize(program, ctypes.byref(size)), "nvrtcGetCUBINSize")
        cubin = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
        return cubin.raw, text
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def test_nvrtc_reports_a_compile_error_with_its_log(nvrtc):
    """The harness itself: a broken source fails, and the failure carries NVRTC's log."""
    with pytest.raises(pytest.fail.Exception, match=r"(?s)could not compile broken\.cu.*undefined"):
        compile_cubin(nvrtc, 'extern "C" __global__ void k() { undefined_name(); }', "broken.cu",
                      ["--gpu-architecture=sm_80"])


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("in_dtype", cupy_path.KERNEL_DTYPES)
def test_kernel_compiles(nvrtc, cuda_include, in_dtype, arch):
    source = cupy_path.kernel_source(in_dtype)
    options = [*cupy_path.KERNEL_OPTIONS, f"--gpu-architecture={arch}", f"--include-path={cuda_include}"]
    cubin, log = compile_cubin(nvrtc, source, f"sr_fused_{in_dtype}.cu", options)
    assert cubin.startswith(b"\x7fELF"), "NVRTC returned no ELF cubin"
    entry = cupy_path.KERNEL_NAME
    assert entry.encode() in cubin, f"the entry point {entry} is missing from the {arch} cubin; log:\n{log}"
