"""_core.pyi against the compiled module: the same functions, the same parameters in the same order."""
import ast
import re
from pathlib import Path

import metarisk_fast as mr

CUDA_ONLY = {"mlp_inner_loop_cuda", "memory_cuda"}


def stub_tree():
    return ast.parse((Path(mr.__file__).parent / "_core.pyi").read_text())


def stub_signatures() -> dict:
    return {f.name: [a.arg for a in f.args.args] for f in stub_tree().body if isinstance(f, ast.FunctionDef)}


def core_signatures() -> dict:
    out = {}
    for name in dir(mr._core):
        fn = getattr(mr._core, name)
        if name.startswith("_") or not callable(fn) or isinstance(fn, type):
            continue
        first = fn.__doc__.splitlines()[0]  # pybind11: name(arg: type, ...) -> type
        params = first[first.index("(") + 1: first.rindex(") ->")]
        out[name] = re.findall(r"(?:^|, )(\w+):", params)
    return out


def test_stub_matches_the_compiled_core():
    stub, core = stub_signatures(), core_signatures()
    cuda = mr.build_info()["cuda_compiled"]
    expected = set(stub) if cuda else set(stub) - CUDA_ONLY
    assert set(core) == expected
    for name, params in core.items():
        assert stub[name] == params, f"{name}: stub {stub[name]} vs core {params}"


def test_stub_lists_the_core_exceptions():
    stub = {c.name for c in stub_tree().body if isinstance(c, ast.ClassDef)}
    core = {n for n in dir(mr._core) if isinstance(getattr(mr._core, n), type)}
    assert stub == core
    assert issubclass(mr._core.FloatingPointError, FloatingPointError)
