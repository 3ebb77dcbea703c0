"""Batched generation (peftstudy.generation.generate_predictions) against one-at-a-time ``model.generate``.

Side by side in one process, on the same model, the same inputs and the same torch thread count:

- ``single``: one ``model.generate`` call per input, in file order, no padding (the baseline);
- ``batched``: ``generate_predictions`` as the pipeline runs it: inputs sorted by prompt length (longest first),
  batches of the generation settings' ``batch_size``, left padding for decoder-only models, KV cache, n-gram
  bans as tensor operations (``NoRepeatNGrams``);

and, to tell the changes' gains apart (context):

- ``before``: generation as it was: batches in file order, transformers' own n-gram processor;
- ``unsorted``: ``batched`` with the batches in file order (the gain of sorting by length);
- ``hf_ngram``: ``batched`` with transformers' n-gram processor (the gain of ``NoRepeatNGrams``);
- ``single_fast``: ``single`` with ``NoRepeatNGrams`` (what the processor alone gives one-at-a-time decoding);
- ``no_cache`` (``--no-cache-side``): ``batched`` with ``use_cache=False`` (every step re-reads the whole
  sequence), to show the KV cache is in effect.

The model is a demo run's fine-tuned weights (``make demo`` / ``snakemake demo`` first): by default the
full fine-tuning run of seed 1 on debian-products for gpt2-en and t5-en, loaded as the pipeline loads it
(``method.load_for_inference``), with the demo's generation settings and ``max_source_tokens``. The inputs are
the test split, cycled to ``--examples`` (200). Each side runs ``--repeats`` times, interleaved, and the
median wall time is reported; ratios are of medians. Greedy outputs are compared text for text with the
single side (``identical``). Timings are of a shared machine: run it under the benchmark lock,

    flock /tmp/peftstudy-bench.lock .venv/bin/python benchmarks/generation_speed.py [--threads 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import io as textio
import itertools
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))

from peftstudy import io  # noqa: E402
from peftstudy.generation import NoRepeatNGrams, generate_predictions  # noqa: E402
from peftstudy.methods import get_method  # noqa: E402
from peftstudy.modeling.batching import collate, encode_prompt  # noqa: E402
from peftstudy.modeling.families import is_decoder_only  # noqa: E402


def demo_settings() -> dict:
    import yaml

    demo = yaml.safe_load((REPOSITORY / "config/demo.yaml").read_text())
    return {"generation": demo["generation"], "max_source_tokens": demo["training"]["max_source_tokens"],
            "families": {name: model["family"] for name, model in demo["models"].items()}}


def cycled(records: list[dict], count: int) -> list[dict]:
    """The first ``count`` records of the split repeated as often as needed (ids made unique)."""
    return [{**record, "id": f"{record['id']}#{i // len(records)}"}
            for i, record in zip(range(count), itertools.cycle(records))]


def generate_kwargs(settings: dict, tokenizer, use_cache: bool = True, fast_ngram: bool = False) -> dict:
    """model.generate's arguments; fast_ngram: the n-gram bans by NoRepeatNGrams instead of transformers."""
    from transformers import LogitsProcessorList

    ngram = settings.get("no_repeat_ngram_size", 0)
    bans = dict(no_repeat_ngram_size=0, logits_processor=LogitsProcessorList([NoRepeatNGrams(ngram)] if ngram else []))
    return dict(max_new_tokens=settings["max_new_tokens"], num_beams=settings["num_beams"], do_sample=False,
                use_cache=use_cache, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                **(bans if fast_ngram else dict(no_repeat_ngram_size=ngram)))


def generated_tokens(ids, tokenizer) -> int:
    """Tokens a row generated: up to and including its first EOS (the padding after it is not generated)."""
    ids = ids.tolist()
    return ids.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ids else len(ids)


def one_at_a_time(model, tokenizer, family, records, settings, max_source_tokens, fast_ngram: bool = False):
    """The baseline: one ``model.generate`` per input; (texts, generated tokens)."""
    import torch

    texts, tokens = [], 0
    kwargs = generate_kwargs(settings, tokenizer, fast_ngram=fast_ngram)
    with torch.no_grad():
        for record in records:
            ids = torch.tensor([encode_prompt(tokenizer, family, record["input"], max_source_tokens)])
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)[0]
            if is_decoder_only(family):
                output = output[ids.shape[1]:]
            else:
                output = output[1:]  # the decoder start token
            tokens += generated_tokens(output, tokenizer)
            texts.append(tokenizer.decode(output, skip_special_tokens=True).strip())
    return texts, tokens


def batched_variant(model, tokenizer, family, records, settings, max_source_tokens, *, sort: bool, use_cache: bool,
                    fast_ngram: bool):
    """Context sides: generate_predictions' loop with one of its changes undone."""
    import torch

    from peftstudy.generation import length_order

    prompts = [encode_prompt(tokenizer, family, r["input"], max_source_tokens) for r in records]
    order = length_order([len(p) for p in prompts]) if sort else list(range(len(prompts)))
    texts: list[str | None] = [None] * len(prompts)
    padding_side = "left" if is_decoder_only(family) else "right"
    kwargs = generate_kwargs(settings, tokenizer, use_cache, fast_ngram)
    with torch.no_grad():
        for start in range(0, len(order), settings["batch_size"]):
            indices = order[start : start + settings["batch_size"]]
            batch = collate([{"input_ids": prompts[i]} for i in indices], tokenizer.pad_token_id, padding_side)
            output = model.generate(**batch, **kwargs)
            if is_decoder_only(family):
                output = output[:, batch["input_ids"].shape[1]:]
            for i, text in zip(indices, tokenizer.batch_decode(output, skip_special_tokens=True)):
                texts[i] = text.strip()
    return texts


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def run_model(name: str, family: str, method: str, seed: int, records, settings, max_source_tokens, threads: int,
              repeats: int, no_cache_side: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    run_dir = REPOSITORY / "results/demo/runs/debian-products" / name / method / f"seed{seed}"
    base_dir = REPOSITORY / "results/bases" / name
    kind = method.split("-r")[0]
    if not (run_dir / "weights").is_dir():
        raise SystemExit(f"{run_dir}/weights: missing (build the demo first: .venv/bin/snakemake --cores 2 demo)")
    model, tokenizer, _ = get_method(kind).load_for_inference(base_dir, run_dir / "weights", "cpu", {"kind": kind})
    model.eval()
    log = textio.StringIO()  # generate_predictions' progress lines (kept: they are part of its cost)

    def variant(**changes):
        return batched_variant(model, tokenizer, family, records, settings, max_source_tokens, **changes)

    sides = {
        "single": lambda: one_at_a_time(model, tokenizer, family, records, settings, max_source_tokens),
        "batched": lambda: generate_predictions(model, tokenizer, family, records, settings, max_source_tokens, "cpu",
                                                progress=log),
        "before": lambda: variant(sort=False, use_cache=True, fast_ngram=False),
        "unsorted": lambda: variant(sort=False, use_cache=True, fast_ngram=True),
        "hf_ngram": lambda: variant(sort=True, use_cache=True, fast_ngram=False),
        "single_fast": lambda: one_at_a_time(model, tokenizer, family, records, settings, max_source_tokens,
                                             fast_ngram=True)[0],
    }
    if no_cache_side:
        sides["no_cache"] = lambda: variant(sort=True, use_cache=False, fast_ngram=True)
    # Warm-up, untimed: first-call costs (allocator, lazy imports).
    one_at_a_time(model, tokenizer, family, records[:8], settings, max_source_tokens)
    generate_predictions(model, tokenizer, family, records[: settings["batch_size"]], settings, max_source_tokens,
                         "cpu", progress=textio.StringIO())
    times = {side: [] for side in sides}
    outputs = {}
    for _ in range(repeats):  # interleaved, so that machine load affects every side alike
        for side, function in sides.items():
            elapsed, result = timed(function)
            times[side].append(elapsed)
            outputs[side] = result
    single_texts, tokens = outputs["single"]
    medians = {side: statistics.median(values) for side, values in times.items()}
    result = {
        "model": name, "family": family, "method": method, "seed": seed, "threads": threads,
        "examples": len(records), "generated_tokens": tokens, "repeats": repeats,
        "times_s": times, "median_s": medians,
        "examples_per_s": {side: len(records) / t for side, t in medians.items()},
        "tokens_per_s": {side: tokens / t for side, t in medians.items()},
        "speedup_vs_single": {side: medians["single"] / t for side, t in medians.items() if side != "single"},
        "identical_to_single": {side: sum(a == b for a, b in zip(single_texts, outputs[side]))
                                for side in sides if side != "single"},
        "differing_examples": [
            {"index": i, "id": records[i]["id"], "single": a, "batched": b}
            for i, (a, b) in enumerate(zip(single_texts, outputs["batched"])) if a != b][:10],
        "progress_log_tail": log.getvalue().splitlines()[-2:],
    }
    result["batched_vs_single_fast"] = medians["single_fast"] / medians["batched"]
    if no_cache_side:
        result["cache_speedup"] = medians["no_cache"] / medians["batched"]
    return result


def cpu_name() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "unknown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["gpt2-en", "t5-en"])
    parser.add_argument("--method", default="full", help="the demo run directory's method name (full, lora-r8, ...)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--no-cache-side", action="store_true", help="also time batched generation without KV cache")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch
    import transformers

    demo = demo_settings()
    settings, max_source_tokens = demo["generation"], demo["max_source_tokens"]
    records = cycled(io.read_jsonl(REPOSITORY / "data/prepared/debian-products/test.jsonl"), args.examples)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPOSITORY, capture_output=True,
                            text=True).stdout.strip()
    environment = {"commit": commit, "cpu": cpu_name(), "torch": torch.__version__, "transformers": transformers.__version__,
                   "python": platform.python_version(), "generation": settings, "max_source_tokens": max_source_tokens}
    print(f"generation_speed: {commit}; {environment['cpu']}; torch {torch.__version__}, transformers "
          f"{transformers.__version__}; settings {settings}; {args.examples} inputs; median of {args.repeats}")
    results = []
    for threads in args.threads:
        for name in args.models:
            result = run_model(name, demo["families"][name], args.method, args.seed, records, settings,
                               max_source_tokens, threads, args.repeats, args.no_cache_side)
            results.append(result)
            m, n = result["median_s"], result["examples"]
            print(f"{name} ({args.method}, {threads} thread{'s' if threads > 1 else ''}): "
                  f"{result['generated_tokens']} tokens generated for {n} inputs")
            for side in m:
                ratio = "" if side == "single" else f"  {result['speedup_vs_single'][side]:.2f}x single"
                same = "" if side == "single" else f"  identical {result['identical_to_single'][side]}/{n}"
                print(f"  {side:<11} {m[side]:8.3f} s  {n / m[side]:8.1f} examples/s  "
                      f"{result['tokens_per_s'][side]:8.0f} tokens/s{ratio}{same}")
            print(f"  batched against single_fast (both with NoRepeatNGrams): {result['batched_vs_single_fast']:.2f}x")
            if "cache_speedup" in result:
                print(f"  KV cache: batched without it takes {result['cache_speedup']:.2f}x as long")
            for row in result["differing_examples"]:
                print(f"  differs: #{row['index']} {row['id']}: single {row['single']!r} / batched {row['batched']!r}")
    if args.json:
        args.json.write_text(json.dumps({"environment": environment, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
