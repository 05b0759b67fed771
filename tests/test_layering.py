"""The layers of docs/ARCHITECTURE.md, enforced: importing a layer loads nothing above it."""
import json
import subprocess
import sys

import pytest

ABOVE = {  # module -> packages it must not pull in
    "metarisk_fast": ["torch", "metarisk_fast._core", "metarisk_fast.learners", "metarisk_fast.forecasting"],
    "metarisk_fast.reference": ["metarisk_fast._core", "metarisk_fast.ops", "metarisk_fast.learners",
                                "metarisk_fast.forecasting", "metarisk_fast.evaluation", "metarisk_fast.jobs",
                                "metarisk_fast.cli"],
    "metarisk_fast.ops": ["metarisk_fast.learners", "metarisk_fast.features", "metarisk_fast.tasks",
                          "metarisk_fast.forecasting", "metarisk_fast.evaluation", "metarisk_fast.jobs",
                          "metarisk_fast.cli"],
    "metarisk_fast.learners": ["metarisk_fast.data", "metarisk_fast.features", "metarisk_fast.tasks",
                               "metarisk_fast.forecasting", "metarisk_fast.evaluation", "metarisk_fast.jobs"],
    "metarisk_fast.features": ["metarisk_fast._core", "metarisk_fast.learners", "metarisk_fast.data",
                               "metarisk_fast.tasks", "metarisk_fast.forecasting", "metarisk_fast.evaluation"],
    "metarisk_fast.tasks": ["metarisk_fast.learners", "metarisk_fast.forecasting", "metarisk_fast.evaluation",
                            "metarisk_fast.jobs"],
    "metarisk_fast.forecasting": ["metarisk_fast.evaluation", "metarisk_fast.jobs", "metarisk_fast.cli"],
    "metarisk_fast.evaluation": ["metarisk_fast._core", "metarisk_fast.learners", "metarisk_fast.forecasting",
                                 "metarisk_fast.jobs", "metarisk_fast.cli"],
    "metarisk_fast.streaming": ["metarisk_fast.jobs", "metarisk_fast.cli", "metarisk_fast.integrations"],
    "metarisk_fast.integrations.sizing": ["metarisk_fast.jobs", "metarisk_fast.cli", "nautilus_trader", "backtrader"],
    "metarisk_fast.credit.jobs": ["metarisk_fast.jobs", "metarisk_fast.cli", "metarisk_fast.streaming",
                                  "metarisk_fast.integrations"],
    "metarisk_fast.warning.jobs": ["metarisk_fast.jobs", "metarisk_fast.cli", "metarisk_fast.credit",
                                   "metarisk_fast.streaming", "torch"],
    "metarisk_fast.trading": ["metarisk_fast.jobs", "metarisk_fast.cli", "metarisk_fast.credit",
                              "metarisk_fast.warning", "metarisk_fast.streaming", "torch"],
    "metarisk_fast.trading.jobs": ["metarisk_fast.jobs", "metarisk_fast.cli", "metarisk_fast.credit",
                                   "metarisk_fast.warning", "metarisk_fast.streaming"],
    "metarisk_fast.jobs": ["metarisk_fast.cli", "metarisk_fast.credit", "metarisk_fast.warning",
                           "metarisk_fast.trading"],
}


@pytest.mark.parametrize("module", sorted(ABOVE))
def test_a_layer_imports_nothing_above_it(module, tmp_path):
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    bad = [m for m in ABOVE[module] if m in loaded]
    assert not bad, f"importing {module} loads {bad}"


def test_the_core_is_loaded_in_one_place():
    """Only _native imports _core; every op reaches it through there."""
    from pathlib import Path

    import metarisk_fast

    root = Path(metarisk_fast.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if "import _core" in p.read_text() or "._core" in p.read_text().replace("metarisk_fast._core", ""))
    assert users == ["_native.py"], users
