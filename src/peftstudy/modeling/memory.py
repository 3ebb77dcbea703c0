"""The bytes a training step holds in tensors that the method decides: weights, gradients, optimizer state.

A process's peak RSS on a CPU (``train_peak_memory_bytes`` there) is mostly the Python runtime and the
libraries, about the same for every method, so it cannot show what LoRA or QLoRA save. These counts can: they
are read from the tensors themselves at the one moment all three exist (after the first optimizer step's
update, before the gradients are released), and equal their formulas (tests/unit/methods/test_state_memory.py).
Activations are not in them: they depend on the batch, not only on the method.
"""

from __future__ import annotations

from typing import Iterable, Iterator


def quantization_state_tensors(weight) -> Iterator:
    """The tensors bitsandbytes keeps beside a quantized weight's data: 4-bit ``quant_state`` (absmax, code
    table, and when double-quantized the offset and the nested absmax and code), 8-bit row scales ``SCB``."""
    state = getattr(weight, "quant_state", None)
    if state is not None:
        yield state.absmax
        yield state.code
        if state.nested:
            yield state.offset
            yield state.state2.absmax
            yield state.state2.code
    yield getattr(weight, "SCB", None)


class DistinctBytes:
    """A sum of tensor bytes that counts each tensor once (tied weights, shared code tables).

    A sharded tensor (FSDP's DTensor) counts its local shard: the bytes this process holds."""

    def __init__(self):
        self.total = 0
        self._seen: set = set()

    def add(self, tensor) -> None:
        import torch

        if tensor is None or not torch.is_tensor(tensor):
            return
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        key = (local.data_ptr(), local.numel(), local.dtype)
        if key not in self._seen:
            self._seen.add(key)
            self.total += local.numel() * local.element_size()

    def add_all(self, tensors: Iterable) -> "DistinctBytes":
        for tensor in tensors:
            self.add(tensor)
        return self


def training_state_bytes(model, optimizer) -> dict[str, int]:
    """Bytes of the model's parameters (with their quantization state), buffers, gradients and optimizer state,
    as they are now: call it when the gradients exist and the optimizer has made its state (after a step's update,
    before zero_grad)."""
    import torch

    parameters = list(model.parameters())
    weights = DistinctBytes().add_all(parameters)
    for parameter in parameters:
        weights.add_all(quantization_state_tensors(parameter))
    buffers = DistinctBytes().add_all(model.buffers())
    gradients = DistinctBytes().add_all(parameter.grad for parameter in parameters)
    optimizer_state = DistinctBytes().add_all(
        value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value))
    counts = {"parameter_bytes": weights.total, "buffer_bytes": buffers.total, "gradient_bytes": gradients.total,
              "optimizer_state_bytes": optimizer_state.total}
    counts["training_state_bytes"] = sum(counts.values())
    return counts


class StepPeak:
    """The peak of tensor memory during one training step on a device: the bytes live when it starts (given)
    plus the highest running sum of the allocations and frees torch's profiler records inside it (activations,
    gradients, optimizer state, temporaries). Unlike the process RSS it shows what a method changes on a CPU,
    and on a GPU it is what torch.cuda.max_memory_allocated would say for the step."""

    def __init__(self, device: str, live_bytes: int):
        self.device, self.live_bytes = device, live_bytes
        self.peak_bytes: int | None = None

    def __enter__(self) -> "StepPeak":
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.startswith("cuda") else [])
        self._profile = profile(activities=activities, profile_memory=True)
        self._profile.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._profile.__exit__(*exc)
        if exc[0] is None:
            self.peak_bytes = self.live_bytes + peak_allocation(self._profile, self.device)


def peak_allocation(prof, device: str) -> int:
    """The highest running sum, in time order, of a profile's memory events on the device's type."""
    import torch

    kind = torch.device(device).type
    events = [event for event in prof.profiler.kineto_results.events()
              if event.name() == "[memory]" and str(event.device_type()).rsplit(".", 1)[-1].lower() == kind]
    running = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return peak
