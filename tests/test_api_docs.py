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


def test_the_api_reference_is_current():
    """docs/API.md is what `python docs/api.py` writes from the code now."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "docs" / "api.py"
    spec = importlib.util.spec_from_file_location("metarisk_api_reference", path)
    api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api)
    assert path.with_name("API.md").read_text() == api.render(), "docs/API.md is stale: run `python docs/api.py`"
