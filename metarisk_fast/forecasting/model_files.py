"""A trained model on disk: ``model.pt`` (weights) and ``model.json`` (learner, hyper-parameters,
feature spec, horizon, versions, the weights' SHA-256). Both are written atomically; loading
checks the format version and the checksum, and says clearly what is wrong."""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import torch

from .. import __version__
from .._files import atomic_write_bytes, atomic_write_text
from ..features import FeatureSet
from ..tasks import TaskSpec
from .registry import MEMORY_SLOTS, make_learner

FORMAT_VERSION = 1
# the shipped model (`--model default`, RiskModel.pretrained()): `metarisk train --prices default`
# with the default settings and seed 0; the shipped streaming model (`--model streaming`, the
# default of `metarisk stream`): the same with `--learner head` (tests/test_estimator.py retrains both)
PRETRAINED = "default"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
STREAMING = "streaming"
SHIPPED_MODELS = {PRETRAINED: PRETRAINED_DIR, STREAMING: PRETRAINED_DIR / "streaming"}
# `metarisk demo`'s learners, one model directory each, written by `metarisk demo --retrain
# --save-models` with the demo's defaults; the demo loads one only where its settings are the ones asked for
DEMO_PRETRAINED_DIR = PRETRAINED_DIR / "demo"


class ModelError(ValueError):
    """A model directory that is missing, damaged or from an incompatible version."""


def _settings_sha256(meta: dict) -> str:
    """The SHA-256 of the metadata's settings (everything but the checksums), as JSON with sorted
    keys: an edited hyper-parameter (inner_lr, loss, history, ...) no longer matches."""
    settings = {k: v for k, v in meta.items() if k not in ("weights_sha256", "settings_sha256")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def write_model_dir(out_dir, meta_name: str, learner, meta: dict) -> Path:
    """A model directory: ``model.pt`` (the learner's weights) and ``meta_name`` (``meta`` with the
    format and library versions and the weights' SHA-256), both written atomically."""
    out = Path(out_dir)
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    weights = buf.getvalue()
    meta = json.loads(json.dumps({"format_version": FORMAT_VERSION, "metarisk_fast_version": __version__,
                                  "torch_version": torch.__version__, **meta}, default=str))
    meta.update(weights_sha256=hashlib.sha256(weights).hexdigest(), settings_sha256=_settings_sha256(meta))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "model.pt", weights)
    atomic_write_text(out / meta_name, json.dumps(meta, indent=2, default=str))
    return out


def read_model_dir(model_dir, meta_name: str, error=None, made_by: str = "metarisk train"):
    """(metadata, weights bytes) of a model directory, checked: both files present, the metadata
    readable, its format this library's, the weights' checksum the recorded one; ``error`` (a
    ValueError subclass, default ModelError) says what is wrong."""
    error = error or ModelError
    d = Path(model_dir)
    if not d.is_dir():
        raise error(f"{d}: no such model directory (create one with `{made_by}`)")
    meta_path, weights_path = d / meta_name, d / "model.pt"
    for p in (meta_path, weights_path):
        if not p.exists():
            raise error(f"{d}: missing {p.name}; not a model directory of `{made_by}` or an interrupted save")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{meta_path}: damaged ({exc})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise error(f"{d}: model format {meta.get('format_version')} written by metarisk_fast "
                    f"{meta.get('metarisk_fast_version')}; this is metarisk_fast {__version__}, which reads "
                    f"format {FORMAT_VERSION}: retrain the model")
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != meta.get("weights_sha256"):
        raise error(f"{weights_path}: damaged (checksum does not match {meta_name})")
    if "settings_sha256" in meta and _settings_sha256(meta) != meta["settings_sha256"]:  # older files have none
        raise error(f"{meta_path}: its settings were changed after the model was saved (checksum does not match); "
                    f"the weights were trained with the saved ones: retrain, or restore {meta_name}")
    return meta, weights


# the keys save_model and write_model_dir write themselves (the rest of model.json is the caller's info)
OWN_KEYS = ("format_version", "metarisk_fast_version", "torch_version", "weights_sha256", "settings_sha256",
            "learner", "hidden", "inner_lr", "inner_steps", "loss", "history", "memory_slots", "head_window",
            "task_spec")


def save_model(out_dir, kind: str, learner, spec: TaskSpec, *, history: int, hidden, info: dict) -> Path:
    """Write a model directory (model.pt, model.json) of a trained learner, atomically.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The directory (new or empty).
    kind : str
        The learner's name (``forecasting.LEARNERS``).
    learner : torch.nn.Module
        The trained learner.
    spec : TaskSpec
        Its TaskSpec.
    history : int
        The support days its forecasts use.
    hidden : sequence of int
        Its hidden layer sizes.
    info : dict
        More metadata for model.json (assets, dates, validation losses).

    Returns
    -------
    pathlib.Path
        The directory written.
    """
    return write_model_dir(out_dir, "model.json", learner, {
        "learner": kind, "hidden": list(hidden), "inner_lr": getattr(learner, "inner_lr", None),
        "inner_steps": learner.inner_steps, "loss": learner.loss, "history": int(history),
        "memory_slots": getattr(learner, "slots", None), "head_window": getattr(learner, "window", None),
        "task_spec": {"horizon": spec.horizon, "support": spec.support, "query": spec.query, "proxy": spec.proxy,
                      "age_input": spec.age_input, "scale": spec.scale, "young_prior": spec.young_prior,
                      "features": asdict(spec.features)}, **info})


def load_demo_model(kind: str, settings: dict):
    """The shipped demo learner ``kind`` if it was trained with exactly ``settings`` (the
    ``demo_settings`` its model.json records), else None."""
    d = DEMO_PRETRAINED_DIR / kind
    if not (d / "model.json").exists():
        return None
    learner, _, meta = load_model(d)
    return learner if meta.get("demo_settings") == settings else None


def load_model(model_dir):
    """Read a model directory.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A directory written by ``save_model`` / `metarisk train`, or a shipped model: 'default'
        (MAML) or 'streaming' (the head learner, re-adapted exactly on every bar by the
        streaming engine).

    Returns
    -------
    tuple
        (learner, TaskSpec, metadata): the learner in eval mode, its TaskSpec, model.json's contents.
    """
    d = SHIPPED_MODELS.get(str(model_dir)) or Path(model_dir)
    meta, weights = read_model_dir(d, "model.json")
    try:
        ts = meta["task_spec"]
        spec = TaskSpec(horizon=ts["horizon"], support=ts["support"], query=ts["query"], proxy=ts["proxy"],
                        age_input=bool(ts.get("age_input", False)), scale=ts.get("scale", "support"),
                        young_prior=float(ts.get("young_prior", 0.0)),
                        features=FeatureSet(**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in ts["features"].items()}))
        learner = make_learner(meta["learner"], spec.n_features, meta["hidden"], meta["inner_lr"] or 0.05,
                               meta["inner_steps"], loss=meta.get("loss", "gaussian_nll"),  # files without one predate the choice
                               memory_slots=meta.get("memory_slots") or MEMORY_SLOTS,
                               head_window=meta.get("head_window"))  # a head file without one adapts on all rows
        learner.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{d}: model.json and model.pt do not describe a loadable model: {exc}") from None
    return learner, spec, meta
