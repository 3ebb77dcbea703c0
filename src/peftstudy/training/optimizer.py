"""What every training run starts from, pretraining and fine-tuning alike: the seeds and the optimizer.

Both live here, not in one of the loops, so that a base model and a fine-tuned one are trained with the same
AdamW set-up and the same seeding, and a change to either applies to both.
"""

from __future__ import annotations

import random


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators: what a run draws from them is then fixed."""
    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model, learning_rate: float, weight_decay: float):
    """AdamW with weight decay on matrices only (not on biases and norms), as is standard."""
    import torch

    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate)
