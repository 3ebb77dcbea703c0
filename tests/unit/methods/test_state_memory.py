"""The bytes a training step holds in weights, gradients and optimizer state, read from the tensors, equal their
closed forms: a float32 parameter 4 bytes (a 4-bit weight: its packed bytes and quantization state, see
test_methods_qlora), a gradient 4 bytes per trainable parameter, AdamW two float32 moments per trainable
parameter and one float32 step count per trainable tensor; frozen parameters get neither."""

import pytest
import torch
from test_methods_qlora import QUANTIZED, TRAINING, four_bit_bytes

from peftstudy.methods import get_method
from peftstudy.metrics.scoring import STATE_MEMORY_METRICS
from peftstudy.modeling.memory import DistinctBytes, StepPeak, training_state_bytes
from peftstudy.training.loop import train_run

SPECS = {"full": {"kind": "full"}, "lora": {"kind": "lora", "alpha": 16, "dropout": 0.0},
         "qlora": {"kind": "qlora", "alpha": 16, "dropout": 0.0}}


def trainable_tensors(kind, base_dir):
    method = get_method(kind)
    model, _, _ = method.load_base_for_training(base_dir, SPECS[kind], "cpu")
    model = method.prepare(model, "gpt2", SPECS[kind], 4, total_steps=1)
    return [p for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_state_memory_of_a_run_equals_its_formula(tiny_workspace, fixed_batch, tmp_path, kind):
    base_dir = tiny_workspace / "base-gpt2"
    settings = {"dataset": "d", "model": "gpt2", "family": "gpt2", "method": kind, "rank": 4,
                "method_spec": SPECS[kind], "training": {**TRAINING, "max_steps": 1, "epochs": 1}, "seed": 5}
    record = train_run(settings, base_dir, fixed_batch, tmp_path / "weights", tmp_path / "train.json")
    memory = record["state_memory"]
    trainable = trainable_tensors(kind, base_dir)
    n = sum(p.numel() for p in trainable)
    assert n == record["trainable_parameters"]
    assert memory["gradient_bytes"] == 4 * n
    assert memory["optimizer_state_bytes"] == 2 * 4 * n + 4 * len(trainable)
    if kind == "qlora":
        # total_parameters counts a 4-bit weight's n parameters; its bytes are the packed form. bitsandbytes casts
        # a quantized layer's bias to the compute dtype (bf16, 2 bytes) at its first forward.
        shapes = QUANTIZED["gpt2"].values()
        quantized, biases = sum(i * o for i, o in shapes), sum(o for _, o in shapes)
        expected = (4 * (record["total_parameters"] - quantized - biases) + 2 * biases
                    + sum(four_bit_bytes(i * o) for i, o in shapes))
    else:
        expected = 4 * record["total_parameters"]
    assert memory["parameter_bytes"] == expected
    assert memory["training_state_bytes"] == sum(memory[key] for key in (
        "parameter_bytes", "buffer_bytes", "gradient_bytes", "optimizer_state_bytes"))
    assert set(STATE_MEMORY_METRICS) <= set(memory)
    # the step's peak holds at least the weights, the new gradients and optimizer state, and the activations
    assert memory["step_peak_tensor_bytes"] > memory["training_state_bytes"]


@pytest.mark.parametrize("optimizer, states", [("sgd", 0), ("adamw", 2)])
def test_step_peak_counts_weights_gradients_new_optimizer_state_and_activations(optimizer, states):
    """A 1000 x 1000 linear layer (4 MB of weights): the step adds its 4 MB gradient and, for AdamW, 8 MB of moments
    (both kept after the step), plus activations (under 2 MB here) and AdamW's update temporaries (up to two
    weight-sized tensors in torch's foreach implementation)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(1000, 1000, bias=False)
    make = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[optimizer]
    step_optimizer = make(layer.parameters(), lr=0.01)
    live = training_state_bytes(layer, step_optimizer)["training_state_bytes"]
    assert live == 4_000_000
    with StepPeak("cpu", live) as peak:
        layer(torch.randn(16, 1000)).square().sum().backward()
        step_optimizer.step()
    kept = 4_000_000 + 4_000_000 + states * 4_000_000
    assert kept <= peak.peak_bytes <= kept + states * 4_000_000 + 2_000_000
    assert training_state_bytes(layer, step_optimizer)["training_state_bytes"] == kept + (4 if states else 0)  # AdamW: a step counter


def test_tied_and_shared_tensors_are_counted_once():
    weight = torch.nn.Parameter(torch.zeros(10, 4))
    model = torch.nn.Module()
    model.a, model.b = torch.nn.Linear(4, 10, bias=False), torch.nn.Linear(4, 10, bias=False)
    model.b.weight = model.a.weight = weight
    model.register_buffer("mask", torch.ones(3, dtype=torch.bool))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model.a(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    counts = training_state_bytes(model, optimizer)
    assert counts == {"parameter_bytes": 160, "buffer_bytes": 3, "gradient_bytes": 160,
                      "optimizer_state_bytes": 2 * 160 + 4, "training_state_bytes": 160 + 3 + 160 + 324}
    assert DistinctBytes().add_all([weight, weight.data, None, 3]).total == 160
