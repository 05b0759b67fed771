"""Variance forecasting on the learners: meta-training, forecasters (meta-learned and baselines)
behind one interface, and model directories (the learner registry, save and load)."""
from .baselines import EWMAForecaster, GARCHForecaster, HARForecaster
from .forecasters import Forecaster, MetaForecaster, every_pair
from .persistence import LEARNERS, ModelError, load_model, make_learner, save_model
from .training import pooled_learner, train_meta

__all__ = ["Forecaster", "MetaForecaster", "every_pair", "EWMAForecaster", "HARForecaster", "GARCHForecaster", "train_meta",
           "pooled_learner", "LEARNERS", "ModelError", "make_learner", "save_model", "load_model"]
