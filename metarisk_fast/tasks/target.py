"""The learners' target convention, in one place: how a realised variance becomes a training
target, how a network's output becomes a variance forecast, and the loss that makes the two agree.

Each row t has an anchor a_t, the RiskMetrics variance at t (known at t). The target is
y = sqrt(RV / a_t), floored and capped; the network's output z is read as the log of the variance of y under
a zero-mean Student t likelihood with 5 degrees of freedom ("student_t_nll", _types.STUDENT_T_NU;
for h > 1 the Gaussian one, see loss_for), so the forecast is a_t e^z, with z clipped to [-ln 5, ln 5]. A network whose output is 0
forecasts exactly the anchor. The t likelihood, fitted as GARCH-t fits its returns, lets a crash
day move z by a bounded amount; on the validation assets and dates it beat the Gaussian
likelihood ("gaussian_nll", z + y^2 e^-z) at every history length and varied less across seeds
(bench/FORECAST_QUALITY.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .._intrinsics import _exp


@dataclass(frozen=True)
class AnchorRatioTarget:
    cap: float = 20.0  # sqrt(RV / anchor) above this (a 400x variance ratio) is capped: one crash day
    # cannot blow up an inner step (learning only)
    floor: float = 0.05  # and below this floored: an unchanged close (a stale or rounded price) has
    # y = 0, where a likelihood rewards z -> -inf without bound; the Student t, whose penalty for
    # the next move is only linear in z, then diverged on a fifth of the meta-batches
    # |z| beyond this is clipped before exp: a forecast stays within 5x the anchor either way. An
    # adapted correction further out is an inner loop gone astray on a quiet support (100x below
    # EWMA, seen on held-out data); on the validation assets and dates the bound changes no score
    # (bench/FORECAST_QUALITY.md)
    output_clip: float = math.log(5.0)
    loss: str = "student_t_nll"  # for h = 1, where y is the next return itself
    multi_day_loss: str = "gaussian_nll"  # for h > 1: y^2 is a mean of h squared returns, not t-shaped

    def loss_for(self, horizon: int) -> str:
        """The training loss of an h-day target. The Gaussian one is QLIKE itself, consistent for
        the mean of any distribution; the t one is the likelihood of a fat-tailed daily return and
        is biased for an h-day mean (on the held-out assets at h = 5 it lost to EWMA)."""
        return self.loss if horizon == 1 else self.multi_day_loss

    def encode(self, realised: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        """Targets (..., 1) float32 from realised variances and the anchors of their rows (encode_ratio,
        which a streaming bar calls row by row)."""
        r, a = np.broadcast_arrays(np.asarray(realised, np.float64), np.asarray(anchor, np.float64))
        out = np.empty(r.shape, np.float32)
        _encode_all(np.ascontiguousarray(r).reshape(-1), np.ascontiguousarray(a).reshape(-1), self.floor, self.cap,
                    out.reshape(-1))
        return out[..., None]

    def decode(self, output: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        """Variance forecasts from the network's outputs and the anchors of their rows (decode_ratio,
        which the head learner's streaming bar calls row by row)."""
        z, a = np.asarray(output, np.float64), np.asarray(anchor, np.float64)
        if z.shape != a.shape:
            z, a = np.broadcast_arrays(z, a)
        out = np.empty(z.shape)
        _decode_all(np.ascontiguousarray(z).reshape(-1), np.ascontiguousarray(a).reshape(-1), self.output_clip,
                    out.reshape(-1))
        return out


@njit(cache=True, nogil=True, inline="always")
def encode_ratio(realised, anchor, floor, cap):
    """One target: sqrt(realised / anchor) floored and capped (NaN kept), as float32."""
    ratio = math.sqrt(realised / anchor)
    return np.float32(ratio if ratio != ratio else min(max(ratio, floor), cap))


@njit(cache=True, nogil=True, inline="always")
def decode_ratio(output, anchor, clip):
    """One forecast: anchor e^z, z the output clipped to [-clip, clip]; NaN for a NaN output (e^z
    by the branch-free exp of _intrinsics, so that a loop of them vectorises)."""
    return np.nan if output != output else anchor * _exp(min(max(output, -clip), clip))


@njit(cache=True, nogil=True, error_model="numpy")
def _decode_all(output, anchor, clip, out):
    for i in range(out.shape[0]):
        out[i] = decode_ratio(output[i], anchor[i], clip)


@njit(cache=True, nogil=True, error_model="numpy")
def _encode_all(realised, anchor, floor, cap, out):
    for i in range(out.shape[0]):
        out[i] = encode_ratio(realised[i], anchor[i], floor, cap)


TARGET = AnchorRatioTarget()
