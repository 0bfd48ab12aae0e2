"""mrl_ref: Matryoshka Representation Learning with a hand-written NumPy autograd.

One MLP encoder is trained so that every prefix z[:, :m] of its embedding (m in the nesting
list, e.g. 8, 16, ..., D) is itself a good representation: MRL (a linear head per size),
MRL-E (weight-tied heads) and fixed-feature baselines (one model per size).
"""
from .autograd import Tensor, no_grad
from .data import load_fashion_mnist
from .evaluate import evaluate_model
from .heads import FixedFeatureHead, MatryoshkaHeads, matryoshka_ce_loss
from .nn import MLP
from .train import MRLModel, load_model, train_fixed_feature, train_mrl

__all__ = ["Tensor", "no_grad", "load_fashion_mnist", "evaluate_model", "FixedFeatureHead",
           "MatryoshkaHeads", "matryoshka_ce_loss", "MLP", "MRLModel", "load_model",
           "train_fixed_feature", "train_mrl"]
