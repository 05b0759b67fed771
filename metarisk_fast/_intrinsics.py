"""Bit-level building blocks the Numba kernels (features, the streaming bar, the head learner)
inline: float64 <-> uint64 bit casts, llvm.prefetch, and a branch-free natural log and exp on bit
patterns (fdlibm's, under 1 ulp) that vectorise inside Numba loops."""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# fdlibm's log (Sun Microsystems, 1993): x = m 2^k with m in [sqrt(2)/2, sqrt(2)), f = m - 1,
# s = f / (2 + f), log(1 + f) = 2 atanh(s) by a polynomial in s^2; under 1 ulp. Written on bit
# patterns with branch-free special cases so that it inlines into the kernel's loops and
# vectorises (Numba has no vector log; libm's scalar log is several times slower per value).
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
LG1, LG2, LG3, LG4 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, 2.222219843214978396e-01
LG5, LG6, LG7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01
TINY = 2.2250738585072014e-308  # smallest normal double
TWO54 = 18014398509481984.0  # scales a subnormal into the normal range
EXP_BIAS = 4503599627370496.0 + 1023.0  # 2^52 + the exponent bias



@intrinsic
def _as_bits(typingctx, x):
    """The IEEE bits of a float64 as uint64 (a free register bitcast)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.uint64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, b):
    """The float64 whose IEEE bits are the uint64 b."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.uint64), codegen


def _prefetch_intrinsic(rw):
    """An intrinsic f(arr, idx): llvm.prefetch of &arr[idx] (a contiguous array) for reading
    (rw = 0) or writing (rw = 1)."""
    @intrinsic
    def prefetch(typingctx, arr, idx):
        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = builder.module.declare_intrinsic(
                "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
            ptr = builder.bitcast(builder.gep(data, [args[1]]), i8p)
            builder.call(fn, [ptr, ir.Constant(i32, rw), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()
        return types.none(arr, types.intp), codegen
    return prefetch


_prefetch_read = _prefetch_intrinsic(0)
_prefetch_write = _prefetch_intrinsic(1)


@njit(cache=True, inline="always", error_model="numpy")
def _ln_scaled(x):
    """x with subnormals scaled by 2^54 (fdlibm's reduction works on normal numbers)."""
    return x * TWO54 if x < TINY else x


@njit(cache=True, inline="always", error_model="numpy")
def _ln_hx(b):
    """fdlibm's high word, shifted so that m lands in [sqrt(2)/2, sqrt(2)). Unsigned shifts:
    AVX2 has no 64-bit arithmetic shift."""
    return ((b >> np.uint64(32)) & np.uint64(0xffffffff)) + np.uint64(0x3ff00000 - 0x3fe6a09e)


@njit(cache=True, inline="always", error_model="numpy", fastmath={"contract"})
def _ln_f_normal(x):
    """f = m - 1 for x = m 2^k, m in [sqrt(2)/2, sqrt(2)), x a positive normal number."""
    b = _as_bits(x)
    mant = ((_ln_hx(b) & np.uint64(0x000fffff)) + np.uint64(0x3fe6a09e)) << np.uint64(32)
    return _from_bits(mant | (b & np.uint64(0xffffffff))) - 1.0


@njit(cache=True, inline="always", error_model="numpy", fastmath={"contract"})
def _ln_f(x):
    """_ln_f_normal for any x (subnormals scaled; garbage but finite for 0, < 0, inf, NaN)."""
    return _ln_f_normal(_ln_scaled(x))


@njit(cache=True, inline="always", error_model="numpy", fastmath={"contract"})
def _ln_finish_normal(x, f, s, k_shift):
    """log(x) from f and s = f / (2 + f) (given, so that several logs can share one division),
    x a positive normal number that was 2^k_shift times the argument. The exponent k becomes a
    double through its bits (2^52 + k): AVX2 has no int64 -> double."""
    hx = _ln_hx(_as_bits(x))
    k = _from_bits(np.uint64(0x4330000000000000) | (hx >> np.uint64(20))) - EXP_BIAS - k_shift
    hfsq = 0.5 * f * f
    z = s * s
    w = z * z
    r = w * (LG2 + w * (LG4 + w * LG6)) + z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
    return s * (hfsq + r) + k * LN2_LO - hfsq + f + k * LN2_HI


@njit(cache=True, inline="always", error_model="numpy", fastmath={"contract"})
def _ln_finish(x, f, s):
    """_ln_finish_normal for any x, with math.log's special values (0 -> -inf, < 0 or NaN -> NaN,
    inf -> inf) chosen by selects."""
    y = _ln_finish_normal(_ln_scaled(x), f, s, 54.0 if x < TINY else 0.0)
    y = y if x > 0.0 else (-np.inf if x == 0.0 else np.nan)
    return np.inf if x == np.inf else y


@njit(cache=True, inline="always", error_model="numpy", fastmath={"contract"})
def _ln(x):
    """log(x), under 1 ulp."""
    f = _ln_f(x)
    return _ln_finish(x, f, f / (2.0 + f))


# fdlibm's exp (Sun Microsystems, 1993): x = k ln2 + r with |r| <= ln2 / 2 (k = rint(x / ln2), ln2 in
# two parts so that k ln2_hi is exact), e^r = 1 + 2r / (2 - R(r^2)) by a rational approximation, then
# 2^k added to the exponent; under 1 ulp. Branch-free, so that it vectorises as _ln does.
INV_LN2 = 1.44269504088896338700e+00
EXP_P1, EXP_P2, EXP_P3 = 1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05
EXP_P4, EXP_P5 = -1.65339022054652515390e-06, 4.13813679705723846039e-08
EXP_OVER, EXP_UNDER = 7.09782712893383973096e+02, -7.45133219101941108420e+02  # e^x overflows / is 0 beyond
ROUNDER = 6755399441055744.0  # 1.5 * 2^52: k + ROUNDER holds k in its low bits (AVX2 has no double -> int64)


@njit(cache=True, inline="always", error_model="numpy")
def _pow2(k_bits):
    """2^k for the integer k held in the low bits of k_bits (as ROUNDER + k), -1022 <= k <= 1023."""
    return _from_bits((k_bits + np.uint64(1023)) << np.uint64(52))


@njit(cache=True, inline="always", error_model="numpy")
def _exp(x):
    """e^x, under 1 ulp, with math.exp's special values (NaN, +-inf, overflow to inf, underflow to
    subnormals and 0)."""
    xc = min(max(x, EXP_UNDER), EXP_OVER)  # NaN becomes EXP_UNDER here and is restored at the end
    kf = np.rint(xc * INV_LN2)
    hi = xc - kf * LN2_HI
    lo = kf * LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (EXP_P1 + t * (EXP_P2 + t * (EXP_P3 + t * (EXP_P4 + t * EXP_P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    half = np.rint(kf * 0.5)  # 2^k as 2^half 2^(k - half): both factors normal for every k here
    y = y * _pow2(_as_bits(half + ROUNDER)) * _pow2(_as_bits((kf - half) + ROUNDER))
    y = np.inf if x > EXP_OVER else y
    y = 0.0 if x < EXP_UNDER else y
    return x if x != x else y
