"""The red-black SOR sweeps and the weighted median of pipeline.flow as native loops (pipeline/_sor.c), for
CPU tensors.

The C source is compiled on first use with the system C compiler (`$CC`, else `cc`) into
`$ASYM3D_CACHE` (default ~/.cache/asym3d) under a name derived from its hash, written atomically so
concurrent workers can race safely, and loaded with ctypes: no Python dependency. Where no compiler works,
`available()` is False and pipeline.flow keeps its PyTorch sweeps and median (same results up to float
rounding).
`ASYM3D_NATIVE_SOR=0` disables it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import cast

import torch

SRC = Path(__file__).with_name("_sor.c")
FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno")
LIBS = ("-lm",)
WMEDIAN_MAX_K = 7  # the native weighted median's largest window (WMED_MAX in _sor.c)
_LIB: ctypes.CDLL | None = None
_TRIED = False


def _compile() -> ctypes.CDLL | None:
    src = SRC.read_bytes()
    cc = os.environ.get("CC", "cc")
    tag = hashlib.sha256(src + " ".join((cc, *FLAGS, *LIBS)).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("ASYM3D_CACHE", Path.home() / ".cache" / "asym3d"))
    so = cache / f"sor-{tag}.so"
    if not so.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        try:
            subprocess.run([cc, *FLAGS, "-o", tmp, str(SRC), *LIBS], check=True, capture_output=True, timeout=120)
            os.replace(tmp, so)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(so))
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    lib.sor_rb.argtypes = [i, i, i, p, p, p, p, p, p, p, i, f]
    lib.sor_rb.restype = None
    lib.wmedian.argtypes = [i, i, i, i, p, p, p, f, f]
    lib.wmedian.restype = None
    return lib


def available() -> bool:
    """True when the kernel is compiled and loaded (compiles on the first call)."""
    global _LIB, _TRIED
    if os.environ.get("ASYM3D_NATIVE_SOR", "1") == "0":
        return False
    if not _TRIED:
        _TRIED = True
        try:
            _LIB = _compile()
        except (OSError, subprocess.SubprocessError) as e:
            warnings.warn(
                f"native SOR kernel unavailable ({e}); using the PyTorch sweeps", RuntimeWarning, stacklevel=2
            )
            _LIB = None
    return _LIB is not None


def sor_native(
    duv: torch.Tensor,
    hx: torch.Tensor,
    vy: torch.Tensor,
    d11: torch.Tensor,
    d22: torch.Tensor,
    a12: torch.Tensor,
    rhs: torch.Tensor,
    sweeps: int,
    red: torch.Tensor,
    omega: float,
) -> None:
    """Same contract as pipeline.flow._sor_checkerboard (`red` unused), CPU float32 tensors, duv contiguous."""
    if not available():
        raise RuntimeError("native SOR kernel unavailable")
    if duv.device.type != "cpu" or duv.dtype != torch.float32 or not duv.is_contiguous():
        raise ValueError("sor_native needs a contiguous float32 CPU duv")
    b, _, hp, wp = duv.shape
    args = [t.contiguous() for t in (hx, vy, d11, d22, a12, rhs)]  # keep references alive during the call
    lib = cast(ctypes.CDLL, _LIB)  # loaded: available() is True
    lib.sor_rb(b, hp - 2, wp - 2, duv.data_ptr(), *(t.data_ptr() for t in args), int(sweeps), float(omega))


def wmedian_native(uv: torch.Tensor, i0: torch.Tensor, k: int, sigma_s: float, sigma_i: float) -> torch.Tensor:
    """Same contract as pipeline.flow._weighted_median (weights with spatial scale sigma_s px and gray-value
    scale sigma_i), CPU float32 tensors: uv (B, 2, H, W), i0 (B, H, W) -> new (B, 2, H, W)."""
    if not available():
        raise RuntimeError("native SOR kernel unavailable")
    if uv.device.type != "cpu" or uv.dtype != torch.float32 or i0.dtype != torch.float32:
        raise ValueError("wmedian_native needs float32 CPU tensors")
    if not 3 <= k <= WMEDIAN_MAX_K or k % 2 == 0:
        raise ValueError(f"wmedian_native needs an odd window of 3 to {WMEDIAN_MAX_K}, got {k}")
    b, _, h, w = uv.shape
    src, img = uv.contiguous(), i0.contiguous()
    out = torch.empty_like(src)
    lib = cast(ctypes.CDLL, _LIB)
    lib.wmedian(b, h, w, int(k), src.data_ptr(), img.data_ptr(), out.data_ptr(), float(sigma_s), float(sigma_i))
    return out
