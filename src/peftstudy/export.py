"""`peftstudy export RUN_DIR OUT_DIR`: one run's weights as a directory that loads anywhere with plain peft and
transformers: the weights directory's files (adapter or model, tokenizer, model card), the run's decoding settings
(generation_config.json, written by the generate job beside weights/) and, when the study built the base itself, the base's directory as ``base/``."""

from __future__ import annotations

import shutil
from pathlib import Path

from peftstudy import io, model_card

BASE = "base"  # the copied base's directory inside the export


class ExportError(ValueError):
    """The run cannot be exported as asked (a missing or diverged run, an occupied OUT_DIR)."""


def _visible(directory, names):  # leaves out .snakemake_timestamp and other hidden files: no part of the artifact
    return [name for name in names if name.startswith(".")]


def export(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the portable directory; refuses an OUT_DIR that exists and is not empty."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir}: exists and is not empty; export into a new directory")
    weights, train_path, generation_path = run_dir / "weights", run_dir / "train.json", run_dir / "generation.json"
    for path, stage in ((train_path, "train"), (weights, "train"), (generation_path, "generate")):
        if not path.exists():
            raise ExportError(f"{path}: missing; run the {stage} step of this run first")
    train = io.read_json(train_path)
    if train.get("diverged"):
        raise ExportError(f"{train_path}: the run diverged (on_divergence: record); it has no weights to export")
    layout = run_dir.resolve().parents
    if len(layout) < 7 or layout[3].name != "runs":
        raise ExportError(f"{run_dir}: not a run directory (results/<study>/runs/<dataset>/<model>/<variant>/seed<n>)")
    settings = train["settings"]
    base_dir = layout[5] / "bases" / settings["model"]
    if not (base_dir / "base.json").is_file():
        raise ExportError(f"{base_dir / 'base.json'}: missing; the run's base (prepare_base) is needed to export it")
    location, revision, local = model_card.base_reference(base_dir)
    kind = settings["method_spec"]["kind"]
    copy_base = local and kind != "full"  # a fully fine-tuned model is whole: no base to load it on
    generation = io.read_json(generation_path)
    with io.atomic_directory(out_dir) as tmp_dir:
        shutil.copytree(weights, tmp_dir, ignore=_visible, dirs_exist_ok=True)
        tokenizer = _tokenizer(tmp_dir, location, revision)
        if copy_base:
            shutil.copytree(location, tmp_dir / BASE, ignore=_visible)
        reference = BASE if copy_base else location
        model_card.mark_base(tmp_dir, kind, reference, revision)
        decoding = run_dir / model_card.GENERATION_CONFIG
        if decoding.is_file():  # the generate job's
            shutil.copyfile(decoding, tmp_dir / model_card.GENERATION_CONFIG)
        else:  # a run generated before the job wrote it
            from peftstudy.generation import portable_generation_config

            portable_generation_config(generation["settings"], tokenizer, settings["family"]).save_pretrained(tmp_dir)
        text = model_card.card(settings, reference, revision, copy_base, exported=True)
        if copy_base:
            text += (f"\n`base_model_name_or_path` in {model_card.ADAPTER_CONFIG} is `{BASE}`: the paths above are "
                     "relative to this directory (run from inside it, or prefix them with its path).\n")
        if generation.get("decoding", "generate") != "generate":
            text += (f"\nThe study's predictions of this run were made by {generation['decoding']} "
                     "(generation.json `decoding`), not by generate().\n")
        (tmp_dir / model_card.CARD).write_text(text, encoding="utf-8")
    return out_dir


def _tokenizer(directory: Path, location: str, revision: str | None):
    """The run's tokenizer: saved beside its weights, or (a run trained before that) the base's, saved there."""
    from transformers import AutoTokenizer

    if (directory / model_card.TOKENIZER_CONFIG).is_file():
        return AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    from peftstudy.modeling.loading import load_tokenizer

    tokenizer = load_tokenizer(location, revision)
    tokenizer.save_pretrained(directory)
    return tokenizer
