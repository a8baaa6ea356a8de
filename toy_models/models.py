"""The catalogue of toy LoRA models: name -> class, and ``build_model``.

The models themselves live in ``toy_models.linear`` (toy, linear) and ``toy_models.mlp`` (mlp,
paper-mlp, paper-mlp-base), on the base class and configuration of ``toy_models.base``; this
module is where callers look them up, so it also offers ``ModelConfig``, ``LoraModel`` and
``DTYPES`` under the names they have always been imported by.
"""
from __future__ import annotations

import torch

from toy_models.base import DTYPES, LoraModel, ModelConfig
from toy_models.linear import LinearModel, ToyModel
from toy_models.mlp import MlpModel, PaperMlpBaseModel, PaperMlpModel

__all__ = ["MODELS", "build_model", "ModelConfig", "LoraModel", "DTYPES"]

MODELS: dict[str, type[LoraModel]] = {cls.name: cls for cls in (
    ToyModel, LinearModel, MlpModel, PaperMlpModel, PaperMlpBaseModel)}


def build_model(name: str, cfg: ModelConfig, seed: int, device: str | torch.device = "cpu",
                bases: dict | None = None) -> LoraModel:
    """The model ``name`` at cfg.width and ``seed``; ``bases``: see ``LoraModel.__init__``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](cfg, seed, device, bases)
