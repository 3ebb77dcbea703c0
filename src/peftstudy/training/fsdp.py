"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``): for models that do not fit one device.

With ``training.data_parallel: fsdp`` under torchrun, each transformer block and then the whole model is sharded:
every rank keeps 1/W of each parameter, of its gradient and of its optimizer state, and all-gathers a block's
parameters for the block's forward and backward passes. The arithmetic is DDP's (see distributed.py): a rank's
objective is normalised by the whole step's tokens and scaled by W, and FSDP's reduce-scatter averages the ranks'
gradients as DDP's all-reduce does, so the update is a single process's up to float rounding. What differs for
the training loop:

- every forward pass all-gathers parameters, so all ranks run as many passes: a rank short of micro-batches (or
  of validation batches) runs a zero-weighted (or discarded) one;
- gradients are reduce-scattered after every micro-batch: accumulating them unsharded on each rank, as DDP's
  ``no_sync`` does, would hold a whole model's worth of gradients, which is what FSDP is there to avoid;
- checkpoints hold the full tensors, gathered on rank 0, in the format of a single process's checkpoint (rank 0
  alone writes them, each rank cuts its shards out of them on resuming), and the weights are written by the
  method from an unsharded copy of the model built on rank 0's CPU, in the single-process format too.

Every function here leaves a model that is not sharded (a single process, DDP) as it is, and does no
communication then; with a sharded one, each is a collective that every rank calls in the same order.
"""

from __future__ import annotations

from typing import Callable, Mapping

from peftstudy.methods import METHODS


def supported_methods() -> tuple[str, ...]:
    """The kinds that train under FSDP with a single process's numbers and weights (Method.shardable; each is
    tested so in tests/unit/training/test_distributed.py), in registry order."""
    return tuple(kind for kind, method in METHODS.items() if method.shardable)


def check_method(kind: str) -> None:
    """A clear error for a method that cannot train under FSDP: no silent fallback to DDP."""
    method = METHODS.get(kind)
    if method is not None and method.shardable:
        return
    # Why not: the method's own reason (AdaLoRA, QLoRA), or that nobody has tested it sharded.
    reason = method.not_shardable_reason if method is not None else "it has not been tested sharded"
    raise ValueError(
        f"method {kind!r} cannot train with training.data_parallel: fsdp ({reason}); FSDP supports "
        f"{', '.join(supported_methods())}. Set data_parallel: ddp in this method's training settings (its model "
        "must then fit one device)")


def _dtensor_class():
    import torch.distributed

    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def _is_shard(value) -> bool:
    dtensor = _dtensor_class()
    return dtensor is not None and isinstance(value, dtensor)


def _main() -> bool:
    import torch.distributed

    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def is_sharded(model) -> bool:
    if not _dtensor_class():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def block_classes(model) -> set[str]:
    """Class names of the model's transformer blocks: what transformers keeps whole when it splits a model over
    devices (``_no_split_modules``: GPT2Block, T5Block, LlamaDecoderLayer, ...), found under any wrapper (peft)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return names


def shard(model, device: str, param_dtype=None):
    """Shard the model in place over all ranks (each transformer block, then the rest with the root); returns it.

    Each rank's shards, and the buffers, move to ``device`` (this rank's: "cpu" or "cuda:<local rank>"), so the
    model may be built on the CPU. ``param_dtype`` (bfloat16 or float16, on CUDA) makes FSDP all-gather and compute
    in that dtype, reducing gradients in float32; None keeps the parameters' dtype. Build the optimizer afterwards:
    FSDP replaces the parameters with sharded ones (DTensors)."""
    import torch
    import torch.distributed
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # The mesh on the process group's device type (FSDP's default takes CUDA whenever present, even under gloo).
    mesh = init_device_mesh(torch.device(device).type, (torch.distributed.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else \
        MixedPrecisionPolicy()
    blocks = block_classes(model)
    for module in [m for m in model.modules() if type(m).__name__ in blocks]:
        fully_shard(module, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def gather(tensors: Mapping | None) -> dict | None:
    """The tensors whole, on rank 0 (None elsewhere): a shard (DTensor) is all-gathered and moved to the CPU, a
    plain tensor is taken as it is (detached); other values pass through. Every rank calls this with the same
    names in the same order."""
    if tensors is None:
        return None
    main = _main()
    whole = {} if main else None
    for name, value in tensors.items():
        if _is_shard(value):
            value = value.full_tensor()  # an all-gather: every rank takes part
            if main:  # a compact copy (a whole tensor may be a view into a padded buffer)
                whole[name] = value.detach().to("cpu", copy=True)
        elif main:
            whole[name] = value.detach() if hasattr(value, "detach") else value
    return whole


def shard_like(tensors: Mapping | None, like: Mapping) -> dict | None:
    """Whole tensors cut as their namesakes in ``like`` are: this rank's shard where that one is a DTensor (taken
    from this rank's own copy, no communication), the tensor as it is otherwise."""
    if tensors is None:
        return None
    cut = {}
    for name, value in tensors.items():
        target = like.get(name)
        if _is_shard(target) and hasattr(value, "shape") and tuple(value.shape) == tuple(target.shape) \
                and value.dim() > 0:
            from torch.distributed.tensor import distribute_tensor

            value = distribute_tensor(value.to(target.to_local().device), target.device_mesh, target.placements,
                                      src_data_rank=None)
        cut[name] = value
    return cut


def _optimizer_parameters(optimizer) -> list:
    """The optimizer's parameters in its state dict's numbering."""
    return [parameter for group in optimizer.param_groups for parameter in group["params"]]


def gather_optimizer_state(optimizer) -> dict | None:
    """``optimizer.state_dict()`` with whole tensors, on rank 0 (None elsewhere): see gather."""
    if not any(_is_shard(p) for p in _optimizer_parameters(optimizer)):
        return optimizer.state_dict() if _main() else None
    state = optimizer.state_dict()
    gathered = {index: gather(values) for index, values in state["state"].items()}
    return {"state": gathered, "param_groups": state["param_groups"]} if _main() else None


def shard_optimizer_state(optimizer, state: Mapping) -> Mapping:
    """A whole ``optimizer.state_dict()`` (as gather_optimizer_state makes) cut for this rank's shards, ready for
    ``optimizer.load_state_dict``: each per-parameter tensor of the parameter's shape is cut as the parameter is."""
    parameters = _optimizer_parameters(optimizer)
    if not any(_is_shard(p) for p in parameters):
        return state
    cut = {}
    for index, values in state["state"].items():
        parameter = parameters[index]
        cut[index] = shard_like(values, {name: parameter for name in values})
    return {"state": cut, "param_groups": state["param_groups"]}


def unsharded(model, build: Callable):
    """The model with whole tensors, for writing its weights with the method's own ``save``.

    A model that is not sharded is returned as it is. For a sharded one, its whole state dict is gathered on
    rank 0, where ``build()`` makes a fresh (unsharded, CPU) model of the same structure to load it into; the
    other ranks get None. The copy is built with the random state forked: LoRA's initialisation draws."""
    if not is_sharded(model):
        return model
    state = gather(model.state_dict())
    if state is None:
        return None
    import torch

    with torch.random.fork_rng(devices=[]):
        copy = build()
    copy.load_state_dict(state, strict=True)
    return copy
