r"""CuPy path: one RawKernel launch that reads each row of logits once and writes its gradient once.

One warp owns one row. The row is loaded once into shared memory (in the compute dtype), and every
further sweep (max, sum of exponentials, penalty and loss statistics, gradient) reads it from there;
only rows too wide for shared memory are re-read from global memory, where they mostly hit L2.
Row statistics are warp reductions (register shuffles), so no block-wide barrier is needed.

The mathematics is the core's (:mod:`sparse_reg.regularizer`), with :math:`\ell = \log s`,
:math:`W_k = s_k^p` (:math:`\operatorname{clip}(s_k, c, 1)^p` in clamp mode),
:math:`A_k = 1[s_k \ge c]`, :math:`Q = \sum_k A_k W_k` and :math:`G = \partial L/\partial\ell`:

.. math::
   \frac{\partial J}{\partial u_j} = \lambda p A_j W_j + G_j - s_j\Bigl(\lambda p Q + \sum_k G_k\Bigr),

then :math:`1/\tau` and, with normalisation, :math:`(d - n\,(n\cdot d))/\lVert z\rVert`. Every
built-in base loss is :math:`\alpha L_1 + \beta L_2` with :math:`L_1, L_2` from the fixed list
:data:`KERNEL_TERMS`, named by each loss's :attr:`~sparse_reg.BaseLoss.kernel`; the kernel selects
them by integer codes, so one compiled kernel per dtype serves them all. The
per-loss formulas mirror :mod:`sparse_reg.losses` line for line (same log-domain forms, same
guards) and are checked against it by the test suite.

:math:`\lambda` may be a 0-D device array: the kernel reads it from device memory, so changing it
never synchronises or recompiles. CuPy is imported lazily: this module imports without a GPU.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from sparse_reg._numerics import NORM_EPS
from sparse_reg.errors import BackendUnavailableError
from sparse_reg.losses import RCE_SCALE, BaseLoss
from sparse_reg.regularizer import Objective, SRTerms
from sparse_reg.regularizer import sr_terms as core_sr_terms

__all__ = [
    "KERNEL_DTYPES",
    "KERNEL_NAME",
    "KERNEL_OPTIONS",
    "available",
    "from_host",
    "fused_terms",
    "host_view",
    "kernel_source",
    "require_device",
    "sr_terms",
    "supports",
    "torch_terms",
]

#: The kernel's loss terms, in the order of their integer codes (``L_CE`` is 1, ...). A loss names
#: its terms in :attr:`sparse_reg.BaseLoss.kernel`; the ``#define`` lines are generated from this.
KERNEL_TERMS: tuple[str, ...] = (
    "NONE", "CE", "FOCAL", "GCE", "MAE", "MSE", "RCE", "NCE", "NFL", "NGCE", "NMAE",
)
_CODE = {term: code for code, term in enumerate(KERNEL_TERMS)}

#: Warps (rows) per thread block, and the shared memory one block may use for its cached rows.
WARPS_PER_BLOCK = 4
SHARED_BYTES = 48 * 1024

_SOURCE = r"""
// Fused sparse-regularized loss: value, penalty and gradient of one row per warp.
// in_t: the logits' and gradient's dtype; acc_t: the compute dtype (float for half input).
#ifdef SR_HALF
#include <cuda_fp16.h>
#define TO_ACC(x) __half2float(x)
#define FROM_ACC(x) __float2half(x)
#else
#define TO_ACC(x) ((acc_t)(x))
#define FROM_ACC(x) ((in_t)(x))
#endif
#ifndef INFINITY  // NVRTC compiles without the host math headers
#define INFINITY __int_as_float(0x7f800000)
#endif

__device__ __forceinline__ acc_t warp_sum(acc_t v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;  // every lane holds the total
}

__device__ __forceinline__ acc_t warp_max(acc_t v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

struct LossParams {
    int code1, code2;      // L = alpha * L1 + beta * L2
    acc_t alpha, beta;
    acc_t gamma, q;        // focal / nfl exponent, gce / ngce exponent
    int detach;            // focal weight treated as a constant (official code)
    int num_classes;
};

// Per-row statistics a loss needs beyond log s_y (each filled only when a code asks for it).
struct RowStats {
    acc_t ell_y;           // log s_y
    acc_t sum_ell;         // sum_k log s_k                (nce)
    acc_t sum_focal;       // sum_k F(log s_k)             (nfl)
    acc_t focal_y;         // F(log s_y)                   (nfl)
    acc_t sum_pow_q;       // sum_k s_k^q                  (ngce)
    acc_t sum_sq;          // sum_k (s_k - [k = y])^2      (mse)
};

// Focal term F(l) = -(1 - e^l)^gamma l and dF/dl, as sparse_reg.losses._focal (log-domain 1 - a).
__device__ __forceinline__ void focal(acc_t ell, acc_t gamma, int detach, acc_t* value, acc_t* deriv) {
    acc_t one_minus_a = -expm1(ell);
    acc_t weight = pow(one_minus_a, gamma);
    *value = -weight * ell;
    if (detach) { *deriv = -weight; return; }
    acc_t ratio = one_minus_a > 0 ? ell / one_minus_a : (acc_t)-1;  // l / (1 - a) -> -1 as a -> 1
    *deriv = -weight + gamma * exp(ell) * weight * ratio;
}

__device__ __forceinline__ bool needs(const LossParams& lp, int code) {
    return lp.code1 == code || lp.code2 == code;
}

// Contribution of class k to the row sums of RowStats.
__device__ __forceinline__ void accumulate(const LossParams& lp, acc_t ell, acc_t s, bool is_label,
                                           RowStats* st) {
    if (needs(lp, L_NCE)) st->sum_ell += ell;
    if (needs(lp, L_NFL)) { acc_t f, d; focal(ell, lp.gamma, lp.detach, &f, &d); st->sum_focal += f; }
    if (needs(lp, L_NGCE)) st->sum_pow_q += exp(lp.q * ell);
    if (needs(lp, L_MSE)) { acc_t diff = s - (is_label ? (acc_t)1 : (acc_t)0); st->sum_sq += diff * diff; }
}

__device__ acc_t loss_value(int code, const LossParams& lp, const RowStats& st) {
    const acc_t ell_y = st.ell_y;
    switch (code) {
    case L_CE: return -ell_y;
    case L_FOCAL: { acc_t f, d; focal(ell_y, lp.gamma, lp.detach, &f, &d); return f; }
    case L_GCE: return -expm1(lp.q * ell_y) / lp.q;
    case L_MAE: return 2 * -expm1(ell_y);
    case L_MSE: return st.sum_sq;
    case L_RCE: return (acc_t)RCE_SCALE * -expm1(ell_y);
    case L_NCE: return ell_y / st.sum_ell;
    case L_NFL: return st.focal_y / st.sum_focal;
    case L_NGCE: return -expm1(lp.q * ell_y) / (lp.num_classes - st.sum_pow_q);
    case L_NMAE: return -expm1(ell_y) / (lp.num_classes - 1);
    default: return 0;
    }
}

// dL/d(log s_k) of one loss, as the grad functions of sparse_reg.losses.
__device__ acc_t loss_grad(int code, const LossParams& lp, const RowStats& st, acc_t ell, acc_t s,
                           bool is_label) {
    const acc_t delta = is_label ? (acc_t)1 : (acc_t)0;
    switch (code) {
    case L_CE: return -delta;
    case L_FOCAL: {
        if (!is_label) return 0;
        acc_t f, d; focal(ell, lp.gamma, lp.detach, &f, &d); return d;
    }
    case L_GCE: return is_label ? -exp(lp.q * ell) : (acc_t)0;
    case L_MAE: return is_label ? -2 * exp(ell) : (acc_t)0;
    case L_MSE: return 2 * s * (s - delta);
    case L_RCE: return is_label ? -(acc_t)RCE_SCALE * exp(ell) : (acc_t)0;
    case L_NCE: return (delta - st.ell_y / st.sum_ell) / st.sum_ell;
    case L_NFL: {
        acc_t f, d; focal(ell, lp.gamma, lp.detach, &f, &d);
        return (delta - st.focal_y / st.sum_focal) * d / st.sum_focal;
    }
    case L_NGCE: {
        acc_t denominator = lp.num_classes - st.sum_pow_q;
        acc_t ratio = -expm1(lp.q * st.ell_y) / denominator;
        return lp.q * exp(lp.q * ell) * (ratio - delta) / denominator;
    }
    case L_NMAE: return is_label ? -exp(ell) / (lp.num_classes - 1) : (acc_t)0;
    default: return 0;
    }
}

__device__ __forceinline__ acc_t combined_grad(const LossParams& lp, const RowStats& st, acc_t ell,
                                               acc_t s, bool is_label) {
    acc_t g = lp.alpha * loss_grad(lp.code1, lp, st, ell, s, is_label);
    if (lp.code2 != L_NONE) g += lp.beta * loss_grad(lp.code2, lp, st, ell, s, is_label);
    return g;
}

extern "C" __global__ void sr_fused(
    const in_t* __restrict__ logits, const long long* __restrict__ labels,
    long long num_rows, int num_classes,
    double tau, double p, double clamp, int use_clamp, int normalize,
    const double* __restrict__ lam_ptr, double lam_value, int lam_on_device,
    int code1, int code2, double alpha, double beta, double gamma, double q, int detach,
    double grad_scale, int use_cache,
    acc_t* __restrict__ base_out, acc_t* __restrict__ penalty_out,
    in_t* __restrict__ grad_out, int need_grad)
{
    extern __shared__ unsigned char shared_raw[];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + warp;
    if (row >= num_rows) return;  // whole warp leaves together: shuffles below stay full-mask

    const int C = num_classes;
    const in_t* z = logits + row * (long long)C;
    acc_t* cache = reinterpret_cast<acc_t*>(shared_raw) + (long long)warp * C;
    const long long y = labels[row];

    LossParams lp;
    lp.code1 = code1; lp.code2 = code2; lp.alpha = (acc_t)alpha; lp.beta = (acc_t)beta;
    lp.gamma = (acc_t)gamma; lp.q = (acc_t)q; lp.detach = detach; lp.num_classes = C;
    const acc_t lam = (acc_t)(lam_on_device ? *lam_ptr : lam_value);
    const acc_t pw = (acc_t)p, c = (acc_t)clamp;
    const acc_t clamp_pow = pow(c, pw);

    // Sweep 1: the only read of the logits (cached in shared memory) and the squared norm.
    acc_t sq = 0;
    for (int k = lane; k < C; k += 32) {
        acc_t x = TO_ACC(z[k]);
        if (use_cache) cache[k] = x;
        sq += x * x;
    }
    __syncwarp();
    #define X(k) (use_cache ? cache[k] : TO_ACC(z[k]))
    acc_t norm = 1;
    if (normalize) norm = fmax(sqrt(warp_sum(sq)), (acc_t)NORM_EPS);
    const acc_t scale = normalize ? (acc_t)(norm * tau) : (acc_t)tau;  // u = z / (|z| tau)

    // Sweep 2: max of u; a row without a finite maximum is shifted by 0, as in the core.
    acc_t m = -INFINITY;
    for (int k = lane; k < C; k += 32) m = fmax(m, X(k) / scale);
    m = warp_max(m);
    if (!isfinite(m)) m = 0;

    // Sweep 3: log-sum-exp.
    acc_t total = 0;
    for (int k = lane; k < C; k += 32) total += exp(X(k) / scale - m);
    const acc_t lse = log(warp_sum(total));
    #define ELL(k) (X(k) / scale - m - lse)

    // Sweep 4: penalty sums and the loss statistics.
    RowStats st = {0, 0, 0, 0, 0, 0};
    st.ell_y = ELL(y);
    acc_t P = 0, Q = 0;
    for (int k = lane; k < C; k += 32) {
        acc_t ell = ELL(k), s = exp(ell);
        acc_t w = exp(pw * ell);            // s^p, finite where s underflows
        bool active = !use_clamp || !(s < c);  // a NaN s (a row with NaN or +inf) stays NaN
        P += active ? w : clamp_pow;        // clip(s, c, 1)^p
        Q += active ? w : (acc_t)0;         // the clamp's gradient vanishes below c
        accumulate(lp, ell, s, k == y, &st);
    }
    P = warp_sum(P); Q = warp_sum(Q);
    if (needs(lp, L_NCE)) st.sum_ell = warp_sum(st.sum_ell);
    if (needs(lp, L_NFL)) {
        st.sum_focal = warp_sum(st.sum_focal);
        acc_t d; focal(st.ell_y, lp.gamma, lp.detach, &st.focal_y, &d);
    }
    if (needs(lp, L_NGCE)) st.sum_pow_q = warp_sum(st.sum_pow_q);
    if (needs(lp, L_MSE)) st.sum_sq = warp_sum(st.sum_sq);

    if (lane == 0) {
        acc_t value = lp.alpha * loss_value(code1, lp, st);
        if (code2 != L_NONE) value += lp.beta * loss_value(code2, lp, st);
        base_out[row] = value;
        penalty_out[row] = P;
    }
    if (!need_grad) return;

    // Sweep 5: sum_k G_k (cheap for one-hot gradients, general for mse / nce / nfl / ngce).
    acc_t grad_sum = 0;
    for (int k = lane; k < C; k += 32) {
        acc_t ell = ELL(k);
        grad_sum += combined_grad(lp, st, ell, exp(ell), k == y);
    }
    grad_sum = warp_sum(grad_sum);

    const acc_t factor = (acc_t)(grad_scale / tau);
    const acc_t row_coef = lam * pw * Q + grad_sum;
    #define GRAD_N(k, ell, s) (factor * ( \
        ((!use_clamp || !((s) < c)) ? lam * pw * exp(pw * (ell)) : (acc_t)0) \
        + combined_grad(lp, st, (ell), (s), (k) == y) - (s) * row_coef))

    // Sweep 6 (normalize only): n . d, for d -> (d - n (n . d)) / |z|.
    acc_t along = 0;
    if (normalize) {
        acc_t dot = 0;
        for (int k = lane; k < C; k += 32) {
            acc_t ell = ELL(k), s = exp(ell);
            dot += X(k) * GRAD_N(k, ell, s);
        }
        dot = warp_sum(dot);
        along = norm > (acc_t)NORM_EPS ? dot / (norm * norm) : (acc_t)0;
    }

    // Last sweep: the only write of the gradient.
    in_t* g = grad_out + row * (long long)C;
    const acc_t inv_norm = normalize ? 1 / norm : (acc_t)1;
    for (int k = lane; k < C; k += 32) {
        acc_t ell = ELL(k), s = exp(ell);
        acc_t d = GRAD_N(k, ell, s);
        if (normalize) d = (d - X(k) * along) * inv_norm;
        g[k] = FROM_ACC(d);
    }
    #undef GRAD_N
    #undef ELL
    #undef X
}
"""


def available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA runtime errors on a machine without a driver
        return False


def require_device() -> None:
    """Raise :class:`~sparse_reg.errors.BackendUnavailableError` unless CUDA reports a device."""
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendUnavailableError(
            f"backend='cupy' needs a CUDA device, but CUDA reported: {exc}"
        ) from exc
    if count == 0:
        raise BackendUnavailableError("backend='cupy' needs a CUDA device; none was found")


def from_host(x: Any, device: str | None) -> Any:
    """Copy host data to CuPy's current CUDA device."""
    import cupy

    return cupy.asarray(x)


def host_view(x: Any) -> None:
    """CuPy arrays live in device memory."""
    return None


def _codes(loss: BaseLoss) -> tuple[int, int] | None:
    """The kernel codes of ``loss``'s terms (the second ``L_NONE`` for one term), or ``None``."""
    if not loss.kernel or any(term not in _CODE for term in loss.kernel):
        return None
    first, *rest = loss.kernel
    return _CODE[first], _CODE[rest[0] if rest else "NONE"]


def supports(objective: Objective) -> bool:
    """Fused for every loss whose :attr:`~sparse_reg.BaseLoss.kernel` terms the kernel has (the
    built-ins); user-registered losses run on the array-API core."""
    return _codes(objective.base) is not None


#: Logits dtype -> (C type of the logits and gradient, C type of the arithmetic).
_C_TYPES = {"float16": ("__half", "float"), "float32": ("float", "float"), "float64": ("double", "double")}

#: Logits dtypes the kernel is launched with (bfloat16 is widened to float32 first).
KERNEL_DTYPES = tuple(_C_TYPES)

#: Name of the kernel's entry point in :func:`kernel_source`, and the NVRTC options it needs.
KERNEL_NAME = "sr_fused"
KERNEL_OPTIONS = ("--std=c++14",)


def kernel_source(dtype: str) -> str:
    """The complete CUDA C++ source of the kernel for logits of ``dtype``.

    ``dtype`` is ``"float16"``, ``"float32"`` or ``"float64"``; float16 computes in float. Compile
    it with NVRTC (entry point :data:`KERNEL_NAME`, options :data:`KERNEL_OPTIONS`).
    """
    if dtype not in _C_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, _C_TYPES))}; got {dtype!r}")
    in_type, acc_type = _C_TYPES[dtype]
    defines = [
        f"#define in_t {in_type}",
        f"#define acc_t {acc_type}",
        f"#define RCE_SCALE {RCE_SCALE!r}",
        f"#define NORM_EPS {NORM_EPS!r}",
        *(f"#define L_{term} {code}" for code, term in enumerate(KERNEL_TERMS)),
    ]
    if dtype == "float16":
        defines.append("#define SR_HALF 1")
    return "\n".join(defines) + _SOURCE


@cache
def _kernel(in_dtype: str) -> Any:
    import cupy

    return cupy.RawKernel(kernel_source(in_dtype), KERNEL_NAME, options=KERNEL_OPTIONS)


def _launch(
    logits: Any,
    labels: Any,
    objective: Objective,
    *,
    base: Any,
    penalty: Any,
    grad: Any | None,
    lam: Any,
    grad_scale: float,
) -> None:
    """Run the kernel on CuPy arrays: contiguous ``logits`` (N, C), int64 ``labels`` (N,)."""
    import cupy
    import numpy as np

    num_rows, num_classes = logits.shape
    if num_rows == 0:
        return
    codes = _codes(objective.base)
    if codes is None:
        raise TypeError(f"base loss {objective.base.name!r} has no kernel; use the array-API core")
    params = objective.params
    acc_dtype = base.dtype
    use_cache = WARPS_PER_BLOCK * num_classes * acc_dtype.itemsize <= SHARED_BYTES
    lam_on_device = isinstance(lam, cupy.ndarray)
    if lam_on_device:
        lam = cupy.ascontiguousarray(lam, dtype=cupy.float64)
    blocks = math.ceil(num_rows / WARPS_PER_BLOCK)
    _kernel(logits.dtype.name)(
        (blocks,),
        (32 * WARPS_PER_BLOCK,),
        (
            logits,
            labels,
            np.int64(num_rows),
            np.int32(num_classes),
            np.float64(objective.tau),
            np.float64(objective.p),
            np.float64(objective.clamp or 0.0),
            np.int32(objective.clamp is not None),
            np.int32(objective.normalize),
            lam if lam_on_device else base,  # never read when lam_on_device is 0
            np.float64(0.0 if lam_on_device else float(lam)),
            np.int32(lam_on_device),
            np.int32(codes[0]),
            np.int32(codes[1]),
            np.float64(params.get("alpha", 1.0)),
            np.float64(params.get("beta", 1.0)),
            np.float64(params.get("gamma", 0.0)),
            np.float64(params.get("q", 1.0)),
            np.int32(bool(params.get("detach_weight", False))),
            np.float64(grad_scale),
            np.int32(use_cache),
            base,
            penalty,
            grad if grad is not None else logits,  # never written when need_grad is 0
            np.int32(grad is not None),
        ),
        shared_mem=WARPS_PER_BLOCK * num_classes * acc_dtype.itemsize if use_cache else 0,
    )


def fused_terms(
    logits: Any, labels: Any, objective: Objective, *, need_grad: bool, grad_scale: float = 1.0
) -> SRTerms:
    """Per-sample terms of CuPy arrays by the fused kernel (on CuPy's current stream).

    ``grad_scale`` multiplies the gradient inside the kernel (e.g. :math:`1/N` for a mean).
    """
    import cupy

    acc_dtype = cupy.float32 if logits.dtype.itemsize < 4 else logits.dtype
    logits = cupy.ascontiguousarray(logits)
    labels = cupy.ascontiguousarray(labels, dtype=cupy.int64)
    num_rows = logits.shape[0]
    base = cupy.empty(num_rows, dtype=acc_dtype)
    penalty = cupy.empty(num_rows, dtype=acc_dtype)
    grad = cupy.empty_like(logits) if need_grad else None
    _launch(logits, labels, objective, base=base, penalty=penalty, grad=grad,
            lam=objective.lam, grad_scale=grad_scale)
    return SRTerms(base, penalty, grad)


def sr_terms(
    logits: Any, labels: Any, objective: Objective, *, need_grad: bool, grad_scale: float = 1.0
) -> SRTerms:
    """Drop-in for :func:`sparse_reg.regularizer.sr_terms` on CuPy arrays (same semantics).

    Losses without a kernel (user registrations) run on the array-API core.
    """
    if not supports(objective):
        return core_sr_terms(logits, labels, objective, need_grad=need_grad, grad_scale=grad_scale)
    return fused_terms(logits, labels, objective, need_grad=need_grad, grad_scale=grad_scale)


def torch_terms(
    logits: Any, labels: Any, objective: Objective, *, need_grad: bool, grad_scale: float = 1.0
) -> SRTerms:
    """The kernel on CUDA torch tensors, zero copy through DLPack, on torch's current stream.

    Outputs are allocated by torch (its caching allocator); bfloat16, which CuPy lacks, is widened
    to float32 on the way in and the gradient narrowed on the way out. A 0-D CUDA ``lam`` tensor is
    read by the kernel in place.
    """
    import cupy
    import torch

    if not supports(objective):
        return core_sr_terms(logits.detach(), labels, objective, need_grad=need_grad, grad_scale=grad_scale)
    z = logits.detach()
    if z.dtype == torch.bfloat16:
        z = z.float()
    z = z.contiguous()
    acc_dtype = torch.float32 if z.dtype == torch.float16 else z.dtype
    num_rows = z.shape[0]
    base = torch.empty(num_rows, dtype=acc_dtype, device=z.device)
    penalty = torch.empty(num_rows, dtype=acc_dtype, device=z.device)
    grad = torch.empty_like(z) if need_grad else None
    lam = objective.lam
    stream = torch.cuda.current_stream(z.device)
    with cupy.cuda.Device(z.device.index), cupy.cuda.ExternalStream(stream.cuda_stream):
        if isinstance(lam, torch.Tensor):
            lam = lam.detach()
            on_device = lam.device == z.device
            lam = cupy.from_dlpack(lam.to(torch.float64)) if on_device else float(lam)
        _launch(
            cupy.from_dlpack(z),
            cupy.from_dlpack(labels.to(torch.int64).contiguous()),
            objective,
            base=cupy.from_dlpack(base),
            penalty=cupy.from_dlpack(penalty),
            grad=None if grad is None else cupy.from_dlpack(grad),
            lam=lam,
            grad_scale=grad_scale,
        )
    if grad is not None:
        grad = grad.to(logits.dtype)
    return SRTerms(base, penalty, grad)
