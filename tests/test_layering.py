"""The layers of docs/ARCHITECTURE.md, enforced: its import table is the code's, both ways, every
part of the package is named there, and importing a layer in a fresh interpreter loads nothing
above it."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import metarisk_fast

ROOT = Path(metarisk_fast.__file__).parent
ARCHITECTURE = Path(__file__).parents[1] / "docs" / "ARCHITECTURE.md"


def _part(module: str) -> str:
    """'metarisk_fast.warning.jobs' -> 'warning'; the package face is '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(module: str) -> str:
    """The deepest prefix of a dotted name that is a module or package of metarisk_fast (an
    attribute imported from a package, `from .. import __version__`, resolves to the package)."""
    parts = module.split(".")
    while len(parts) > 1:
        rel = Path(*parts[1:])
        if (ROOT / rel).is_dir() or (ROOT / rel).with_suffix(".py").exists() or list(ROOT.glob(f"{rel}.*.so")):
            return ".".join(parts)
        parts.pop()
    return "metarisk_fast"


def code_imports() -> dict[str, set[str]]:
    """Every import between parts of the package, at module level or inside functions."""
    edges: dict[str, set[str]] = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts)
        package = module[: -len(".__init__")] if module.endswith(".__init__") else module.rsplit(".", 1)[0]
        here = _part(module[: -len(".__init__")] if module.endswith(".__init__") else module)
        targets = []
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
                targets += [stem] if node.module else [f"{stem}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("metarisk_fast"):
                targets.append(node.module)
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names if a.name.startswith("metarisk_fast")]
        for t in targets:
            there = _part(_resolve(t))
            if there != here:
                edges.setdefault(here, set()).add(there)
    return edges


def documented_imports() -> tuple[dict[str, set[str]], set[str]]:
    """The table of ARCHITECTURE.md: `- `part` → `a`, `b`` lines, and the parts said to import none."""
    text = ARCHITECTURE.read_text()
    table = text[text.index("## Imports, part by part"):]
    edges = {m[1]: set(re.findall(r"`([\w.]+)`", m[2])) for m in re.finditer(r"^- `([\w.]+)` → (.*)$", table, re.M)}
    none_line = re.search(r"^- (.*) import no other part\.$", table, re.M)
    return edges, set(re.findall(r"`([\w.]+)`", none_line[1]))


def package_parts() -> set[str]:
    parts = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    return parts | {"__init__", "_core"}


def test_the_architecture_table_is_the_code():
    code, (doc, isolated) = code_imports(), documented_imports()
    missing = {k: sorted(v - doc.get(k, set())) for k, v in code.items() if v - doc.get(k, set())}
    unreal = {k: sorted(v - code.get(k, set())) for k, v in doc.items() if v - code.get(k, set())}
    assert not missing, f"imports the table of docs/ARCHITECTURE.md does not allow: {missing}"
    assert not unreal, f"arrows of docs/ARCHITECTURE.md that no import makes: {unreal}"
    assert not (isolated & set(code)), f"said to import nothing, but do: {sorted(isolated & set(code))}"
    assert package_parts() <= set(doc) | isolated, \
        f"parts missing from the table: {sorted(package_parts() - set(doc) - isolated)}"


def test_every_part_is_named_in_the_picture():
    picture = ARCHITECTURE.read_text().split("```")[1]
    unnamed = [p for p in package_parts() - {"__init__"} if not re.search(rf"\b{re.escape(p)}\b", picture)]
    assert not unnamed, f"parts the layer picture of docs/ARCHITECTURE.md does not show: {unnamed}"


ABOVE = {  # module -> what importing it must not load
    "metarisk_fast": ["torch", "metarisk_fast._core", "metarisk_fast.learners", "metarisk_fast.forecasting"],
    "metarisk_fast.reference": ["metarisk_fast._core", "metarisk_fast.ops", "metarisk_fast.learners",
                                "metarisk_fast.forecasting", "metarisk_fast.evaluation", "metarisk_fast.volatility",
                                "metarisk_fast.cli"],
    "metarisk_fast.ops": ["metarisk_fast.learners", "metarisk_fast.features", "metarisk_fast.tasks",
                          "metarisk_fast.forecasting", "metarisk_fast.evaluation", "metarisk_fast.volatility",
                          "metarisk_fast.cli"],
    "metarisk_fast.learners": ["metarisk_fast.data", "metarisk_fast.features", "metarisk_fast.tasks",
                               "metarisk_fast.forecasting", "metarisk_fast.evaluation", "metarisk_fast.volatility"],
    "metarisk_fast.features": ["metarisk_fast._core", "metarisk_fast.learners", "metarisk_fast.data",
                               "metarisk_fast.tasks", "metarisk_fast.forecasting", "metarisk_fast.evaluation"],
    "metarisk_fast.tasks": ["metarisk_fast.learners", "metarisk_fast.forecasting", "metarisk_fast.evaluation",
                            "metarisk_fast.volatility"],
    "metarisk_fast.forecasting": ["metarisk_fast.evaluation", "metarisk_fast.report", "metarisk_fast.volatility",
                                  "metarisk_fast.cli"],
    "metarisk_fast.evaluation": ["metarisk_fast._core", "metarisk_fast.learners", "metarisk_fast.forecasting",
                                 "metarisk_fast.report", "metarisk_fast.volatility", "metarisk_fast.cli", "matplotlib"],
    "metarisk_fast.report": ["torch", "metarisk_fast.forecasting", "metarisk_fast.volatility"],
    "metarisk_fast.streaming": ["metarisk_fast.volatility", "metarisk_fast.cli", "metarisk_fast.integrations",
                                "metarisk_fast.warning"],
    "metarisk_fast.integrations.sizing": ["metarisk_fast.volatility", "metarisk_fast.cli", "nautilus_trader",
                                          "backtrader"],
    "metarisk_fast.credit.jobs": ["metarisk_fast.volatility", "metarisk_fast.cli", "metarisk_fast.streaming",
                                  "metarisk_fast.integrations"],
    "metarisk_fast.warning.jobs": ["metarisk_fast.volatility", "metarisk_fast.cli", "metarisk_fast.credit",
                                   "metarisk_fast.streaming", "torch"],
    "metarisk_fast.trading": ["metarisk_fast.volatility", "metarisk_fast.cli", "metarisk_fast.credit",
                              "metarisk_fast.warning", "metarisk_fast.streaming", "torch"],
    "metarisk_fast.trading.jobs": ["metarisk_fast.volatility", "metarisk_fast.cli", "metarisk_fast.credit",
                                   "metarisk_fast.warning", "metarisk_fast.streaming"],
    "metarisk_fast.volatility.jobs": ["metarisk_fast.cli", "metarisk_fast.credit", "metarisk_fast.warning",
                                      "metarisk_fast.trading"],
    "metarisk_fast.cli": ["torch", "metarisk_fast.learners", "metarisk_fast.volatility.jobs",
                          "metarisk_fast.credit.jobs", "metarisk_fast.warning.jobs", "metarisk_fast.trading.jobs"],
}


@pytest.mark.slow  # a fresh interpreter each
@pytest.mark.parametrize("module", sorted(ABOVE))
def test_a_layer_imports_nothing_above_it(module, tmp_path):
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    bad = [m for m in ABOVE[module] if m in loaded]
    assert not bad, f"importing {module} loads {bad}"


def test_the_core_is_loaded_in_one_place():
    """Only _native imports _core; every op reaches it through there."""
    users = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                   if "import _core" in p.read_text() or "._core" in p.read_text().replace("metarisk_fast._core", ""))
    assert users == ["_native.py"], users


def test_the_package_face_exposes_what_it_documents():
    """Every application and layer is reachable as an attribute; _core is the module the ops use."""
    import metarisk_fast as mr
    from metarisk_fast import _native

    for name in mr.__all__:
        assert getattr(mr, name) is not None, name
    for app in ("volatility", "warning", "credit", "trading"):
        assert getattr(mr, app).__name__ == f"metarisk_fast.{app}"
    assert mr._core is _native.core
