"""What is trained: toy LoRA models whose runs are stacked on a leading run axis.

A *population* is R runs of one model at one width and one seed: the frozen base, the data
and the LoRA initialisation are shared, and each run has its own (eta_A, eta_B).
"""
from toy_models.init import INITS, init_lora_factors
from toy_models.models import MODELS, ModelConfig, build_model
from toy_models.optim import OPTIMIZERS, BatchedOptimizer
from toy_models.population import Population, Trajectory

__all__ = [
    "INITS", "init_lora_factors", "MODELS", "ModelConfig", "build_model",
    "OPTIMIZERS", "BatchedOptimizer", "Population", "Trajectory",
]
