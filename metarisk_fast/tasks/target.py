"""The learners' target convention, in one place: how a realised variance becomes a training
target, how a network's output becomes a variance forecast, and the loss that makes the two agree.

Each row t has an anchor a_t, the RiskMetrics variance at t (known at t). The target is
y = sqrt(RV / a_t), capped; the network's output z is read as the log of E[y^2] under a
zero-mean Gaussian likelihood of y ("gaussian_nll": z + y^2 e^-z, minimised at e^z = E[RV / a_t]),
so the forecast is a_t e^z. A network whose output is 0 forecasts exactly the anchor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorRatioTarget:
    cap: float = 20.0  # sqrt(RV / anchor) above this (a 400x variance ratio) is capped: one crash day
    # cannot blow up an inner step (learning only; forecasts are not capped)
    output_clip: float = 50.0  # |z| beyond this is clipped before exp (no inf forecast)
    loss: str = "gaussian_nll"

    def encode(self, realised: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        """Targets (..., 1) float32 from realised variances and the anchors of their rows."""
        return np.ascontiguousarray(np.minimum(np.sqrt(realised / anchor), self.cap), dtype=np.float32)[..., None]

    def decode(self, output: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        """Variance forecasts from the network's outputs and the anchors of their rows."""
        return anchor * np.exp(np.clip(output, -self.output_clip, self.output_clip))


TARGET = AnchorRatioTarget()
