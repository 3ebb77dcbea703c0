"""Training throughput of the project's loop against a stock transformers.Trainer + peft, side by side.

Both train the same model (the demo's pretrained gpt2-en / t5-en base, prepared by the same method code with
the same seed), on the same data (the demo's Debian training split, repeated --repeat-data times, through the
project's tokenizer and encoding), with the same effective batch, epochs, AdamW, warm-up + cosine schedule,
clipping and per-epoch validation. The Trainer is stock: DataCollatorForSeq2Seq, its default sampler (random
batches), `eval_strategy="epoch"`, no saving, no logging. Each (case, repeat) runs ours then the Trainer's in
this process, with the same torch thread count; repeats use seeds 1..N, so their spread is the seed noise.

Reported per case: real (non-padding) tokens/s of each (input tokens, plus target tokens of an encoder-decoder:
the same count for both, from the encoded data), the median ratio, and the final validation loss of each,
computed by the same function (token-weighted cross-entropy). A third column, ours with `batching:
length_grouped` (not the default), shows what grouping by length is worth, in speed and in validation loss.

    .venv/bin/snakemake --cores 2 demo            # once: the demo's data and bases
    .venv/bin/python benchmarks/train_throughput.py [--repeats 3] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
CASES = [  # (name, model, method, rank)
    ("gpt2-en LoRA r=8", "gpt2-en", "lora", 8),
    ("gpt2-en full FT", "gpt2-en", "full", None),
    ("t5-en LoRA r=8", "t5-en", "lora", 8),
]
DATASET = "debian-products"


def prepare_data(scratch: Path, repeat: int) -> Path:
    """The demo's prepared dataset with its training split repeated (a longer, steadier measurement)."""
    source = REPOSITORY / "data" / "prepared" / DATASET
    if not (source / "train.jsonl").is_file():
        raise SystemExit(f"{source}: not prepared; run `.venv/bin/snakemake --cores 2 demo` first")
    target = scratch / "data"
    target.mkdir()
    for name in ("validation.jsonl", "manifest.json"):
        shutil.copy(source / name, target / name)
    train = (source / "train.jsonl").read_text(encoding="utf-8")
    (target / "train.jsonl").write_text(train * repeat, encoding="utf-8")
    return target


def run_settings_of(study, model: str, method: str, rank, seed: int, batching: str) -> dict:
    from peftstudy.study.matrix import Run
    from peftstudy.study.settings import run_settings

    variant = f"{method}-r{rank}" if rank else method
    settings = run_settings(study, Run(study["study"], DATASET, model, variant, seed))
    # Trainer has no early stopping by default: both run every epoch.
    settings["training"] = {**settings["training"], "early_stopping_patience": None, "batching": batching}
    return settings


def real_tokens(examples, family: str) -> int:
    from peftstudy.modeling.families import is_decoder_only

    if is_decoder_only(family):
        return sum(len(e["input_ids"]) for e in examples)
    return sum(len(e["input_ids"]) + len(e["labels"]) for e in examples)


def ours(settings, base_dir: Path, data_dir: Path, scratch: Path, threads: int) -> dict:
    from peftstudy.training.loop import train_run

    out = scratch / f"ours-{time.monotonic_ns()}"
    with contextlib.redirect_stderr(io.StringIO()):
        record = train_run(settings, base_dir, data_dir, out / "weights", out / "train.json", threads=threads)
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": record["train_time_s"], "validation_loss": record["validation_losses"][-1],
            "padding_fraction": record["batching"]["padding_fraction"], "steps": record["steps"]}


def trainer(settings, base_dir: Path, data_dir: Path, scratch: Path, threads: int) -> dict:
    """The same run through a stock transformers.Trainer (the peer a researcher would otherwise use)."""
    import math

    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from peftstudy.methods import get_method
    from peftstudy.modeling import heads
    from peftstudy.training.loop import TrainingData, evaluate_loss, planned_steps
    from peftstudy.training.optimizer import seed_everything

    torch.set_num_threads(threads)
    training, spec = settings["training"], settings["method_spec"]
    seed_everything(settings["seed"])  # as the project's loop does before building the model
    method = get_method(spec["kind"])
    model, tokenizer, _ = method.load_base_for_training(base_dir, spec, "cpu")
    goal = heads.objective(spec.get("head"), tokenizer, settings["family"], training)
    data = TrainingData.read(goal, data_dir, tokenizer.pad_token_id, training["precision"], "cpu")
    total_steps = planned_steps(training, len(data.train))
    model = method.prepare(model, settings["family"], spec, settings["rank"], total_steps=total_steps)
    arguments = TrainingArguments(
        output_dir=str(scratch / "trainer"), per_device_train_batch_size=training["batch_size"],
        per_device_eval_batch_size=training["batch_size"],
        gradient_accumulation_steps=training["gradient_accumulation_steps"], num_train_epochs=training["epochs"],
        learning_rate=training["learning_rate"], weight_decay=training["weight_decay"],
        warmup_steps=math.ceil(training["warmup_ratio"] * total_steps), lr_scheduler_type=training["lr_scheduler"],
        max_grad_norm=training["max_grad_norm"], eval_strategy="epoch", save_strategy="no", logging_strategy="no",
        report_to=[], seed=settings["seed"], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
        optim="adamw_torch")
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
    run = Trainer(model=model, args=arguments, train_dataset=data.train, eval_dataset=data.validation,
                  data_collator=collator)
    with contextlib.redirect_stdout(io.StringIO()):  # its per-epoch metrics, printed
        output = run.train()
    loss = evaluate_loss(model, data.validation, goal, tokenizer.pad_token_id, training["batch_size"], "cpu")
    shutil.rmtree(scratch / "trainer", ignore_errors=True)
    return {"seconds": output.metrics["train_runtime"], "validation_loss": loss, "steps": output.global_step}


def machine() -> dict:
    import torch
    import transformers

    from peftstudy import provenance

    facts = provenance.capability()
    return {"cpu": facts.get("cpu"), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_capability": facts.get("torch_cpu_capability"), "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat-data", type=int, default=4, help="copies of the training split (default 4)")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    parser.add_argument("--max-source-tokens", type=int, default=60)
    parser.add_argument("--max-target-tokens", type=int, default=64)
    parser.add_argument("--cases", default="all", help="comma-separated case indices (0-based) or 'all'")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(REPOSITORY / "src"))
    import logging

    import torch
    import transformers

    from peftstudy.modeling import heads
    from peftstudy.modeling.loading import base_location, load_tokenizer
    from peftstudy.study.config import load_study
    from peftstudy.training.loop import encode_split

    transformers.logging.set_verbosity_error()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    study = load_study(REPOSITORY / "config" / "demo.yaml")
    if args.epochs:
        study["training"]["epochs"] = args.epochs
    # The limits are the benchmark's own (--max-source-tokens, --max-target-tokens), not the demo's, so that
    # figures taken with earlier demo bases stay comparable.
    study["training"].update(max_source_tokens=args.max_source_tokens, max_target_tokens=args.max_target_tokens)
    cases = CASES if args.cases == "all" else [CASES[int(i)] for i in args.cases.split(",")]
    results = {"machine": machine(), "threads": args.threads, "repeats": args.repeats,
               "repeat_data": args.repeat_data, "training": study["training"], "cases": []}
    with tempfile.TemporaryDirectory(prefix="peftstudy-train-bench-") as directory:
        scratch = Path(directory)
        data_dir = prepare_data(scratch, args.repeat_data)
        for name, model, method, rank in cases:
            base_dir = REPOSITORY / "results" / "bases" / model
            family = study["models"][model]["family"]
            settings = run_settings_of(study, model, method, rank, 1, "random")
            goal = heads.objective(None, load_tokenizer(*base_location(base_dir)[1:]), family, settings["training"])
            tokens = real_tokens(encode_split(goal, data_dir / "train.jsonl"), family) * settings["training"]["epochs"]
            rows = {"ours": [], "trainer": [], "ours_length_grouped": []}
            for seed in range(1, args.repeats + 1):  # interleaved: machine load affects all alike
                rows["ours"].append(ours(run_settings_of(study, model, method, rank, seed, "random"),
                                         base_dir, data_dir, scratch, args.threads))
                rows["trainer"].append(trainer(run_settings_of(study, model, method, rank, seed, "random"),
                                               base_dir, data_dir, scratch, args.threads))
                rows["ours_length_grouped"].append(ours(
                    run_settings_of(study, model, method, rank, seed, "length_grouped"), base_dir, data_dir, scratch,
                    args.threads))
            summary = {side: {"tokens_per_s": statistics.median(tokens / r["seconds"] for r in runs),
                              "seconds": [round(r["seconds"], 3) for r in runs],
                              "validation_loss": [r["validation_loss"] for r in runs],
                              "steps": runs[0]["steps"]}
                       for side, runs in rows.items()}
            for side in ("ours", "ours_length_grouped"):
                summary[side]["padding_fraction"] = rows[side][0]["padding_fraction"]
            ratio = statistics.median(t["seconds"] / o["seconds"] for o, t in zip(rows["ours"], rows["trainer"]))
            lever = statistics.median(o["seconds"] / g["seconds"]
                                      for o, g in zip(rows["ours"], rows["ours_length_grouped"]))
            ours_loss, their_loss = (statistics.median(summary[s]["validation_loss"]) for s in ("ours", "trainer"))
            noise = max(max(summary[s]["validation_loss"]) - min(summary[s]["validation_loss"])
                        for s in ("ours", "trainer"))
            case = {"case": name, "real_tokens": tokens, **summary, "ratio_vs_trainer": ratio,
                    "length_grouping_gain": lever, "validation_loss_gap": ours_loss - their_loss,
                    "seed_spread": noise}
            results["cases"].append(case)
            print(f"{name}: ours {summary['ours']['tokens_per_s']:,.0f} real tokens/s "
                  f"(padding {summary['ours']['padding_fraction']:.1%}), Trainer "
                  f"{summary['trainer']['tokens_per_s']:,.0f}; ratio {ratio:.2f}x (target >= 1.5x); "
                  f"ours length-grouped {summary['ours_length_grouped']['tokens_per_s']:,.0f} (padding "
                  f"{summary['ours_length_grouped']['padding_fraction']:.1%}, validation loss "
                  f"{statistics.median(summary['ours_length_grouped']['validation_loss']):.4f}); final validation loss "
                  f"ours {ours_loss:.4f} vs Trainer {their_loss:.4f} (gap {ours_loss - their_loss:+.4f}, seed "
                  f"spread {noise:.4f})", flush=True)
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
