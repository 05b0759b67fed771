"""Every Python snippet of the README runs as written, in order, in one namespace (a later snippet
may use an earlier one's names, as a reader going down the page does), in a fresh directory where
the only file made first is the one the README's command before the snippets makes
(`metarisk warn --prices default --out warning_report/`). The same for the Python blocks of the
getting-started page (docs/getting-started.rst), in a directory of their own."""
import re
import textwrap
from pathlib import Path

import pytest

from metarisk_fast.cli import main

README = Path(__file__).parents[1] / "README.md"


def snippets() -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text[:m.start()].count("\n") + 2, m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


# the embedded panel's known faults (a split, a stale stretch, rounding) are warned, as they should be
@pytest.mark.filterwarnings("ignore::metarisk_fast.data.panel.QuantisationWarning")
@pytest.mark.filterwarnings("ignore::metarisk_fast.data.DataQualityWarning")
@pytest.mark.slow  # a warning model, two engines warmed up on the embedded panel, a short training
def test_every_readme_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = snippets()
    assert len(blocks) >= 7
    monkeypatch.chdir(tmp_path)
    assert main(["warn", "--prices", "default", "--out", "warning_report", "--quiet"]) == 0
    namespace: dict = {}
    for line, code in blocks:
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as exc:  # name the snippet, not only the traceback's frame
            raise AssertionError(f"the README snippet at line {line} fails: {type(exc).__name__}: {exc}") from exc
    assert (tmp_path / "engine.npz").exists() and (tmp_path / "my_model" / "model.json").exists()
    assert "AAPL" in capsys.readouterr().out


GETTING_STARTED = README.with_name("docs") / "getting-started.rst"


def getting_started_blocks() -> list[tuple[int, str]]:
    """The page's ``.. code-block:: python`` blocks, dedented, with the line each starts on."""
    text = GETTING_STARTED.read_text()
    return [(text[:m.start()].count("\n") + 3, textwrap.dedent(m.group(1)))
            for m in re.finditer(r"\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", text)]


@pytest.mark.filterwarnings("ignore::metarisk_fast.data.panel.QuantisationWarning")
@pytest.mark.filterwarnings("ignore::metarisk_fast.data.DataQualityWarning")
@pytest.mark.slow  # a short training, an evaluation, an engine warmed up on 33 years
def test_every_getting_started_block_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = getting_started_blocks()
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for line, code in blocks:
        try:
            exec(compile(code, f"docs/getting-started.rst:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"the getting-started block at line {line} fails: {type(exc).__name__}: {exc}") \
                from exc
    out = capsys.readouterr().out
    assert "stream == batch: True" in out, out[-2000:]
    assert (tmp_path / "my_model" / "model.json").exists() and (tmp_path / "my_report" / "report.md").exists()
