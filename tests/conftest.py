import numpy as np
import pytest
import torch

import metarisk_fast as mr


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not (torch.cuda.is_available() and mr.build_info()["cuda_compiled"]),
    reason="needs a CUDA device and a CUDA build of metarisk_fast._core (CI checks the build compiles)"))]


DEVICE_TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=1e-5)}


@pytest.fixture(params=DEVICES)
def device(request):
    """Tests taking this fixture run on the CPU and, where there is one, on a CUDA device."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def make_tasks(B, K, Q, D, O=1, dtype=torch.float64, loss="mse", seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(B, K, D, dtype=dtype, generator=g)
    xq = torch.randn(B, Q, D, dtype=dtype, generator=g)
    ys = torch.randn(B, K, O, dtype=dtype, generator=g)
    yq = torch.randn(B, Q, O, dtype=dtype, generator=g)
    if loss == "bce":
        ys, yq = (ys > 0).to(dtype), (yq > 0).to(dtype)
    return xs, ys, xq, yq


def make_params(sizes, dtype=torch.float64, activation="relu", requires_grad=True):
    net = mr.MLP(sizes[0], sizes[1:-1], sizes[-1], activation=activation).to(dtype)
    return [p.detach().clone().requires_grad_(requires_grad) for p in net.parameters()]
