"""Variance forecasting on the learners: meta-training, forecasters (meta-learned and baselines)
behind one interface, the learner registry, and model directories (save and load)."""
from .baselines import EWMAForecaster, GARCHForecaster, HARForecaster
from .forecasters import Forecaster, MetaForecaster, SavedModelForecasts, every_pair
from .model_files import ModelError, load_demo_model, load_model, save_model
from .registry import HEAD_WINDOW, LEARNERS, MEMORY_LEARNERS, MEMORY_SLOTS, make_learner, training_default
from .training import pooled_learner, train_meta
from ..learners import input_scale

__all__ = ["Forecaster", "MetaForecaster", "SavedModelForecasts", "every_pair", "EWMAForecaster", "HARForecaster",
           "GARCHForecaster", "train_meta", "pooled_learner", "LEARNERS", "MEMORY_LEARNERS", "input_scale", "training_default", "MEMORY_SLOTS", "HEAD_WINDOW",
           "ModelError", "make_learner", "save_model", "load_model", "load_demo_model"]
