"""The portable build: every CPU variant of the core this machine runs (x86-64-v2, -v3, -v4),
forced with METARISK_ISA in a fresh interpreter, gives the same results as the others (to
round-off: vector widths and FMA contraction differ) and reports itself in build_info()."""
import os
import subprocess
import sys

import numpy as np
import pytest

from metarisk_fast import _native

pytestmark = pytest.mark.slow  # subprocesses: `pytest -m "not slow"` leaves them out

COMPUTE = r"""
import sys
import numpy as np, torch
import metarisk_fast as mr
from metarisk_fast import ops
out = {"variant": np.array(mr.build_info().get("variant", ""))}
for dtype in (torch.float64, torch.float32):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    name = str(dtype)[6:]
    params = [p.detach().to(dtype).requires_grad_() for p in mr.MLP(5, (16, 8), 1).parameters()]
    xs, ys, xq, yq = (torch.randn(*s, generator=g, dtype=dtype) for s in ((9, 7, 5), (9, 7, 1), (9, 4, 5), (9, 4, 1)))
    loss = ops.mlp_meta_loss(params, 0.05, xs, ys, xq, yq, steps=3, loss="gaussian_nll")
    for i, gr in enumerate(torch.autograd.grad(loss.sum(), params)):
        out[f"{name}_grad{i}"] = gr.numpy()
    out[f"{name}_loss"] = loss.detach().numpy()
    mem = torch.randn(300, 16, generator=g, dtype=dtype, requires_grad=True)
    keys = torch.randn(40, 16, generator=g, dtype=dtype, requires_grad=True)
    read, w = ops.memory_read(mem, keys, 2.0)
    dm, dk = torch.autograd.grad(read.sum() + (w ** 2).sum(), (mem, keys))
    top = ops.memory_read(mem, keys, 2.0, topk=5)
    usage = torch.rand(300, generator=g, dtype=dtype)
    vals = torch.randn(3, 16, generator=g, dtype=dtype)
    prev = torch.softmax(torch.randn(3, 300, generator=g, dtype=dtype), -1)
    new_mem = ops.memory_write_lrua(mem.detach(), usage, prev, torch.zeros(3, dtype=dtype), vals)[0]
    out.update({f"{name}_read": read.detach().numpy(), f"{name}_dmem": dm.numpy(), f"{name}_dkeys": dk.numpy(),
                f"{name}_topk": top.indices.numpy(), f"{name}_write": new_mem.numpy()})
np.savez(sys.argv[1], **out)
"""


def run_variant(isa, path, tmp_path):
    env = {**os.environ, "METARISK_ISA": isa}
    return subprocess.run([sys.executable, "-c", COMPUTE, str(path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def test_every_variant_this_cpu_runs_agrees_with_the_default(tmp_path):
    """The default load (the widest variant, or the one module of a native / non-x86 build)
    against each variant forced by METARISK_ISA."""
    proc = run_variant("", tmp_path / "default.npz", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    base = dict(np.load(tmp_path / "default.npz"))
    variants = _native.available()
    if variants:
        assert str(base["variant"]) == variants[-1]
    for isa in variants:
        proc = run_variant(isa, tmp_path / f"{isa}.npz", tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = dict(np.load(tmp_path / f"{isa}.npz"))
        assert str(got["variant"]) == isa
        for key, want in base.items():
            if key == "variant":
                continue
            if key.endswith("topk"):
                np.testing.assert_array_equal(got[key], want, err_msg=f"{isa} {key}")
            else:
                rtol = 1e-10 if key.startswith("float64") else 2e-4
                np.testing.assert_allclose(got[key], want, rtol=rtol, atol=rtol * np.abs(want).max(),
                                           err_msg=f"{isa} {key}")


def test_a_variant_that_cannot_run_is_refused(tmp_path):
    for isa, message in (("pentium4", "choose one of"), *((("x86-64-v4", "does not have it"),)
                                                           if "x86-64-v4" not in _native.available() else ())):
        proc = run_variant(isa, tmp_path / "x.npz", tmp_path)
        assert proc.returncode != 0 and message in proc.stderr
