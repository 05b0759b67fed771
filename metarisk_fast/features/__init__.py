"""Rolling-volatility features: daily, not annualised, value at row t from rows <= t only, NaN
until the window is full. Inputs are prices of shape (T,) or (T, N), time-major, float64.

    r_t              = ln(C_t / C_{t-1})
    cc vol (w)       = sample std (ddof = 1) of the last w log returns
    EWMA vol (lam)   = sqrt(s_t), s_t = lam s_{t-1} + (1 - lam) r_t^2, s at the first return = r^2
    downside (lam)   = sqrt(d_t), d_t = lam d_{t-1} + (1 - lam) min(r_t, 0)^2, d at the first
                       return = r^2 / 2 (the leverage effect)
    Parkinson (w)    = sqrt(mean(ln(H/L)^2) / (4 ln 2))
    Garman-Klass (w) = sqrt(mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2))
    Rogers-Satchell  = sqrt(mean(ln(H/C) ln(H/O) + ln(L/C) ln(L/O)))
    Yang-Zhang (w)   = sqrt(s_o^2 + k s_c^2 + (1 - k) s_RS^2), s_o^2 the sample variance of
                       overnight returns ln(O_t / C_{t-1}), s_c^2 that of open-to-close returns
                       ln(C_t / O_t), k = 0.34 / (1.34 + (w + 1) / (w - 1))

All features of a FeatureSet (feature_set.py) are computed in one fused pass (_kernels.py drives
the rows, _rolling.py keeps the windows, metarisk_fast/_intrinsics.py has the fast log); the single-feature
functions (estimators.py) run the same kernel with one feature switched on.
"""
from .estimators import (LOG_RETURNS, close_to_close_vol, downside_vol, ewma_vol,
                         garman_klass_vol, log_returns, parkinson_vol,
                         range_feature_set, rogers_satchell_vol, yang_zhang_vol)
from .feature_set import RANGE_FEATURES, FeatureSet, StreamingFeatures

__all__ = ["RANGE_FEATURES", "LOG_RETURNS", "range_feature_set", "FeatureSet", "StreamingFeatures", "log_returns", "close_to_close_vol", "ewma_vol", "downside_vol",
           "parkinson_vol", "garman_klass_vol", "rogers_satchell_vol", "yang_zhang_vol"]
