"""Every public function, class and method of the package says what it does: a docstring on each
name a module exports (its ``__all__``, else every name without a leading underscore) that the
module defines, and on each public method such a class defines (an override may inherit the
documentation of the method it overrides). The optional framework adapters
(integrations/) are left out when their framework is not installed."""
import importlib
import inspect
import pkgutil

import metarisk_fast


def _public_modules():
    yield metarisk_fast
    for info in pkgutil.walk_packages(metarisk_fast.__path__, "metarisk_fast."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # an adapter whose framework is an optional extra
            assert info.name.startswith("metarisk_fast.integrations."), info.name


def test_every_public_callable_has_a_docstring():
    missing = []
    for mod in _public_modules():
        names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
        for name in names:
            obj = getattr(mod, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != mod.__name__:
                continue
            if not (obj.__doc__ or "").strip():
                missing.append(f"{mod.__name__}.{name}")
            if inspect.isclass(obj):
                missing += [f"{mod.__name__}.{name}.{m}" for m, f in vars(obj).items()  # an override may
                            if not m.startswith("_") and inspect.isfunction(f)  # inherit its base's
                            and f.__module__ == mod.__name__  # (not a framework's generated aliases)
                            and not (inspect.getdoc(getattr(obj, m)) or "").strip()]
    assert not missing, f"{len(missing)} public callables without a docstring: {missing}"


def test_the_reference_lists_every_name_of_the_package_face():
    """docs/reference.rst documents every class and function ``import metarisk_fast`` offers."""
    from pathlib import Path

    reference = (Path(__file__).parents[1] / "docs" / "reference.rst").read_text()
    face = [n for n in metarisk_fast.__all__ if n not in metarisk_fast._SUBMODULES and n != "__version__"]
    missing = [n for n in face if f":: metarisk_fast.{n}\n" not in reference]
    assert not missing, f"docs/reference.rst does not document {missing}"


def test_the_documentation_builds_without_a_warning(tmp_path):
    """The site (getting-started page, API reference) builds with Sphinx, warnings as errors:
    numpydoc's validation makes a documented name without a docstring, an undocumented or unknown
    parameter, or a returned value without a Returns section an error."""
    import subprocess
    import sys
    from pathlib import Path

    docs = Path(__file__).parents[1] / "docs"
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d",
                          str(tmp_path / "doctrees"), str(docs), str(tmp_path / "html")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)  # the installed package,
    # as the tests import it (`-m` puts the working directory first on the path: not the source tree)
    assert run.returncode == 0, f"sphinx-build failed:\n{run.stdout[-4000:]}\n{run.stderr[-8000:]}"
    assert (tmp_path / "html" / "reference.html").stat().st_size > 100_000
