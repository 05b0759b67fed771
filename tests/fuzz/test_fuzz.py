"""The fuzz harness (fuzz_api.py) over the public API, one subprocess per target so that a crash
or a hang fails this test with its output instead of killing the run. METARISK_FUZZ_EXAMPLES sets
the cases per target (CI: the default; a long local run: 20000 or more, with --seed for new
cases when the script is run directly)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses: `pytest -m "not slow"` leaves them out

HARNESS = Path(__file__).with_name("fuzz_api.py")
EXAMPLES = int(os.environ.get("METARISK_FUZZ_EXAMPLES", "1000"))


@pytest.mark.parametrize("target", ["memory", "inner_loop", "features", "data", "applications", "head"])
def test_fuzz_target(target, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, str(HARNESS), target, "--examples", str(EXAMPLES)],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"fuzz {target}: hung (no result in {exc.timeout} s)")
    tail = (proc.stdout + proc.stderr)[-4000:]
    if proc.returncode < 0:
        pytest.fail(f"fuzz {target}: crashed with signal {-proc.returncode}\n{tail}")
    assert proc.returncode == 0, f"fuzz {target}: a case ended badly\n{tail}"
    assert f"{EXAMPLES} cases, all clear" in proc.stdout
