"""The bad-input catalogue: each bad config, data file, checkpoint, target name or missing tool is refused with a
message naming the file and the key or line, and a refused pipeline step leaves its output directory as it was.

What tests/unit/study/test_config.py covers already (a misspelled method, a negative rank, an unknown model, a YAML
syntax error, a typo'd key, a path in a baseline name) is not repeated here.
"""

from __future__ import annotations

import gzip
import json
import pickle
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from peftstudy import io
from peftstudy import study as studyconfig
from peftstudy.study.config import MAX_CONFIG_BYTES

REPOSITORY = Path(__file__).resolve().parents[2]
RULES = sorted((REPOSITORY / "workflow" / "rules").glob("*.smk"))


def tree_hashes(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` by relative path -> sha256 (the 'byte-identical' snapshot)."""
    return {str(path.relative_to(directory)): io.sha256_file(path)
            for path in sorted(Path(directory).rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def demo():
    return yaml.safe_load((REPOSITORY / "config" / "demo.yaml").read_text())


# ------------------------------------------------------------------------------------------------ config: schema


def _set_override(study, options):
    study["overrides"].append({"method": "lora", "options": options})


CONFIG_CASES = {
    # value ranges of method options, in the method entry and in a per-cell override
    "dropout-one": (lambda s: s["methods"]["lora"].__setitem__("dropout", 1.0), "methods.lora.dropout: 1.0 is greater"),
    "dropout-negative": (lambda s: s["methods"]["lora"].__setitem__("dropout", -0.1), "methods.lora.dropout: -0.1 is less"),
    "dropout-override": (lambda s: _set_override(s, {"dropout": 1.5}), "overrides[4].options.dropout: 1.5 is greater"),
    "alpha-zero": (lambda s: s["methods"]["lora"].__setitem__("alpha", 0), "methods.lora.alpha: 0 is less than or equal"),
    "alpha-negative": (lambda s: s["methods"]["dora"].__setitem__("alpha", -16), "methods.dora.alpha: -16 is less"),
    "alpha-override": (lambda s: _set_override(s, {"alpha": 0}), "overrides[4].options.alpha: 0 is less than or equal"),
    # the matrix
    "matrix-empty": (lambda s: s.__setitem__("matrix", []), "matrix: [] should be non-empty"),
    "matrix-block-without-datasets": (lambda s: s["matrix"][0].__setitem__("datasets", []), "matrix[0].datasets: []"),
    "matrix-all-excluded": (lambda s: s.__setitem__("exclusions", [{"dataset": d, "reason": "x"} for d in s["datasets"]]),
                            "matrix: every cell is excluded: the study has no run"),
    "seeds-duplicate": (lambda s: s.__setitem__("seeds", [1, 2, 1]), "seeds: [1, 2, 1] has non-unique elements"),
    "block-seeds-duplicate": (lambda s: s["matrix"][2].__setitem__("seeds", [1, 1]), "matrix[2].seeds: [1, 1] has non-unique"),
    "seed-negative": (lambda s: s.__setitem__("seeds", [-1]), "seeds[0]: -1 is less than the minimum"),
    # selections that match nothing (valid names, no cell of the matrix)
    "exclusion-matches-nothing": (lambda s: s["exclusions"].append({"model": "t5-en", "dataset": "foldoc-terms", "reason": "x"}),
                                  "exclusions[1]: excludes no cell of the matrix"),
    "override-matches-nothing": (lambda s: s["overrides"].append({"model": "t5-en", "dataset": "jargon-terms",
                                                                  "training": {"epochs": 1}}),
                                 "overrides[4]: selects no cell of the matrix that runs"),
    "override-of-excluded-cells-only": (
        lambda s: (s["exclusions"].append({"model": "t5-en", "method": "lora", "reason": "x"}),
                   s["overrides"].append({"model": "t5-en", "method": "lora", "training": {"epochs": 1}})),
        "overrides[4]: selects no cell of the matrix that runs"),
    # claims (a claim's cell the study does not run is 'not testable here' by design: claims/verdicts.py)
    "claim-ranked-cell-without-rank": (
        lambda s: s["claims"][0]["checks"][0]["a"].pop("rank"),
        "claims: claims[0] (lora-near-full).checks[0]: method 'lora' is swept over ranks [4, 8, 16]; name the rank"),
    "claim-cell-without-dataset": (
        lambda s: s["claims"][0]["checks"][0].pop("dataset"),
        "claims: claims[0] (lora-near-full).checks[0]: cell lora has no dataset"),
    "claim-interval-reversed": (
        lambda s: s["claims"][0]["checks"][0].__setitem__("expected", [0.99, 0.98]),
        "claims[0] (lora-near-full).checks[0]: expected interval [0.99, 0.98] has low > high"),
    # cost settings
    "price-negative": (lambda s: s["costs"]["price_sheet"]["device_hour"].__setitem__("cpu", -0.1),
                       "costs.price_sheet.device_hour.cpu: -0.1 is less than the minimum of 0"),
    "kwh-negative": (lambda s: s["costs"]["price_sheet"].__setitem__("kwh", -1), "costs.price_sheet.kwh: -1 is less"),
    "scenario-value-negative": (lambda s: s["costs"]["scenarios"][0].__setitem__("value_per_1000_requests", -0.5),
                                "costs.scenarios[0].value_per_1000_requests: -0.5 is less"),
    "scenario-months-zero": (lambda s: s["costs"]["scenarios"][1].__setitem__("months", 0),
                             "costs.scenarios[1].months: 0 is less than or equal"),
    # names that reach paths and command lines
    "dataset-name-command-substitution": (
        lambda s: s["datasets"].__setitem__("$(touch pwned)", s["datasets"]["debian-products"]),
        "datasets: '$(touch pwned)' does not match"),
    "model-name-with-space": (lambda s: s["models"].__setitem__("gpt2 en", s["models"]["gpt2-en"]),
                              "models: 'gpt2 en' does not match"),
    "model-name-dot-dot": (lambda s: s["models"].__setitem__("..", s["models"]["gpt2-en"]), "models: '..' does not match"),
    "method-name-semicolon": (lambda s: s["methods"].__setitem__("lora;rm", {"kind": "lora", "ranks": [8]}),
                              "methods: 'lora;rm' does not match"),
    "study-name-path": (lambda s: s.__setitem__("study", "../demo"), "study: '../demo' does not match"),
}


class TestConfigSchema:
    @pytest.mark.parametrize("mutate, expected", list(CONFIG_CASES.values()), ids=list(CONFIG_CASES))
    def test_refused_naming_file_and_key(self, demo, mutate, expected):
        from support.configs import assert_refused

        assert_refused(demo, mutate, expected)

    def test_an_exclusion_documenting_an_inapplicable_cell_and_inherited_selections_are_kept(self, repository):
        """demo's BitFit-on-T5 exclusion runs no cell but says why a method cannot run there (shown in the report);
        demo_methods inherits demo's overrides for datasets it does not run (extends)."""
        assert studyconfig.load_study(repository / "config" / "demo.yaml")["exclusions"]
        assert len(studyconfig.load_study(repository / "config" / "demo_methods.yaml")["overrides"]) == 4


# ------------------------------------------------------------------------------------------------ config: YAML files

BILLION_LAUGHS = "study: x\n" + 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))

YAML_CASES = {
    "duplicate-top-level-key": (lambda demo_text: demo_text.replace("seeds:\n", "seeds: [7]\nseeds:\n"),
                                r"broken\.yaml:15: not valid YAML \(duplicate key 'seeds' \(first given on line 14\)\)"),
    "duplicate-nested-key": (lambda demo_text: demo_text.replace("    alpha: 16\n", "    alpha: 16\n    alpha: 64\n", 1),
                             r"broken\.yaml:\d+: not valid YAML \(duplicate key 'alpha' \(first given on line \d+\)\)"),
    "duplicate-key-in-flow-mapping": (lambda demo_text: demo_text.replace("ia3: {kind: ia3,", "ia3: {kind: ia3, kind: lora,"),
                                      r"broken\.yaml:\d+: not valid YAML \(duplicate key 'kind'"),
    "billion-laughs": (lambda demo_text: BILLION_LAUGHS,
                       r"broken\.yaml: its anchors and aliases expand to more than 200,000 values"),
    "ten-megabytes": (lambda demo_text: demo_text + "#" * (10 * 1024 * 1024) + "\n",
                      r"broken\.yaml: 10,\d{3},\d{3} bytes, over the 1,000,000 bytes a study config may have"),
    "not-utf8": (lambda demo_text: demo_text.replace("title:", "title: caf\udce9", 1),
                 r"broken\.yaml:6: not UTF-8 \(byte offset \d+: invalid continuation byte\)"),
    "not-a-mapping": (lambda demo_text: "- study: x\n", r"broken\.yaml: a study config must be a mapping of keys, got list"),
    "extends-a-path": (lambda demo_text: "study: x\nextends: ../../etc/demo.yaml\n",
                       r"broken\.yaml: extends: '\.\./\.\./etc/demo\.yaml' is not a study file next to it"),
}


class TestConfigFiles:
    @pytest.mark.parametrize("write, expected", list(YAML_CASES.values()), ids=list(YAML_CASES))
    def test_refused_quickly_naming_file_and_line(self, tmp_path, write, expected):
        path = tmp_path / "broken.yaml"
        text = write((REPOSITORY / "config" / "demo.yaml").read_text())
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        started = time.perf_counter()
        with pytest.raises(studyconfig.StudyConfigError, match=expected):
            studyconfig.load_study(path)
        assert time.perf_counter() - started < 5  # the alias bomb and the 10 MB file are not expanded or parsed

    def test_the_limits_leave_room_for_every_shipped_study(self, repository):
        for path in [repository / "config.yaml", *sorted((repository / "config").glob("*.yaml"))]:
            assert path.stat().st_size < MAX_CONFIG_BYTES / 10, path
            studyconfig.read_yaml(path)

    def test_merge_keys_may_repeat_what_they_merge(self, tmp_path):
        """A key that overrides one a merge key (<<) brought in is not a duplicate."""
        path = tmp_path / "merge.yaml"
        path.write_text("base: &base {a: 1, b: 2}\nchild:\n  <<: *base\n  b: 3\n")
        assert studyconfig.read_yaml(path)["child"] == {"a": 1, "b": 3}


# ------------------------------------------------------------------------------------------------ data

SNAPSHOT_SPEC = {"source": "snapshot", "corpus": "debian_descriptions", "seed": 1}
GOOD = [{"id": f"p{i:03d}", "input": f"name: pkg{i} | section: s{i % 3}", "reference": f"package {i} does thing {i}"}
        for i in range(40)]


def _lines(rows):
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _snapshot(rows_bytes: bytes):
    return lambda directory: (directory / "debian_descriptions.jsonl.gz").write_bytes(gzip.compress(rows_bytes))


DATA_CASES = {
    "missing-file": (lambda directory: None, r"debian_descriptions\.jsonl\.gz: snapshot missing"),
    "malformed-json-line-3": (_snapshot(_lines(GOOD[:2]) + b'{"id": "p9", "input": \n' + _lines(GOOD[2:])),
                              r"debian_descriptions\.jsonl\.gz:3: not valid JSON"),
    "not-an-object-line-2": (_snapshot(_lines(GOOD[:1]) + b'["p9", "x", "y"]\n' + _lines(GOOD[1:])),
                             r"debian_descriptions\.jsonl\.gz:2: expected a JSON object per line, got list"),
    "missing-field-line-4": (_snapshot(_lines(GOOD[:3]) + _lines([{"id": "p9", "input": "x"}]) + _lines(GOOD[3:])),
                             r"debian_descriptions\.jsonl\.gz:4: record has no 'reference' field"),
    "non-utf8-line-2": (_snapshot(_lines(GOOD[:1]) + b'{"id": "p9", "input": "caf\xe9", "reference": "x"}\n'
                                  + _lines(GOOD[1:])),
                        r"debian_descriptions\.jsonl\.gz:2: not valid UTF-8 at byte offset \d+"),
    "duplicate-ids": (_snapshot(_lines(GOOD + [{**GOOD[5], "input": "other", "reference": "other text"}])),
                      r"dataset 'broken' \(.*debian_descriptions\.jsonl\.gz\): two records share the id 'p005'"),
    "split-would-be-empty": (_snapshot(_lines(GOOD[:2])),
                             r"dataset 'broken' \(.*debian_descriptions\.jsonl\.gz\): only 2 examples left after "
                             r"filtering: the test split would be empty"),
    "empty-file": (_snapshot(b""), r"dataset 'broken' \(.*debian_descriptions\.jsonl\.gz\): only 0 examples left"),
    "all-references-empty": (_snapshot(_lines([{**row, "reference": "  "} for row in GOOD])),
                             r"dataset 'broken' \(.*debian_descriptions\.jsonl\.gz\): every one of the 40 records "
                             r"has an empty input or reference"),
}


class TestDataPreparation:
    @pytest.mark.parametrize("plant, expected", list(DATA_CASES.values()), ids=list(DATA_CASES))
    def test_refused_naming_file_and_line_and_the_prepared_data_untouched(self, tmp_path, plant, expected):
        from peftstudy.data import prepare_dataset

        good, bad = tmp_path / "good-snapshots", tmp_path / "bad-snapshots"
        good.mkdir(), bad.mkdir()
        _snapshot(_lines(GOOD))(good)
        out = tmp_path / "prepared" / "broken"
        prepare_dataset(SNAPSHOT_SPEC, out, snapshot_dir=good)  # the results of an earlier, good preparation
        before = tree_hashes(tmp_path / "prepared")
        plant(bad)
        with pytest.raises((ValueError, FileNotFoundError), match=expected):
            prepare_dataset(SNAPSHOT_SPEC, out, snapshot_dir=bad)
        assert tree_hashes(tmp_path / "prepared") == before


class _Goal:
    """An objective that encodes records as they are (the checks under test come before any tokenizer)."""

    def encode(self, records):
        return list(records)


SPLIT_CASES = {
    "malformed-json-line-2": (b'{"id": "1", "input": "a", "reference": "b"}\n{"id": "2",\n', r"train\.jsonl:2: not valid JSON"),
    "missing-field-line-1": (b'{"id": "1", "input": "a"}\n', r"train\.jsonl:1: record has no 'reference' field"),
    "non-utf8-line-2": (b'{"id": "1", "input": "a", "reference": "b"}\n{"id": "2", "input": "\xff", "reference": "b"}\n',
                        r"train\.jsonl:2: not valid UTF-8 at byte offset 66 \(invalid start byte\)"),
    "empty-split": (b"", r"train\.jsonl: the train split is empty"),
}


class TestPreparedSplits:
    """What training reads: data/prepared/<dataset>/{train,validation}.jsonl."""

    @pytest.mark.parametrize("content, expected", list(SPLIT_CASES.values()), ids=list(SPLIT_CASES))
    def test_training_data_refused_naming_file_and_line(self, tmp_path, content, expected):
        from peftstudy.training.loop import TrainingData

        (tmp_path / "train.jsonl").write_bytes(content)
        (tmp_path / "validation.jsonl").write_bytes(b'{"id": "9", "input": "a", "reference": "b"}\n')
        before = tree_hashes(tmp_path)
        with pytest.raises(ValueError, match=expected):
            TrainingData.read(_Goal(), tmp_path, 0, "fp32", "cpu")
        assert tree_hashes(tmp_path) == before

    def test_a_label_outside_the_declared_set_is_refused_naming_the_file(self, tmp_path):
        from peftstudy.modeling.heads import ClassifierObjective, HeadError
        from peftstudy.training.loop import encode_split

        io.write_jsonl(tmp_path / "train.jsonl", [{"id": "1", "input": "a", "reference": "admin"},
                                                  {"id": "2", "input": "b", "reference": "gamez"}])
        goal = ClassifierObjective(None, {"labels": ["admin", "games"]}, 16)
        with pytest.raises(HeadError, match=r"train\.jsonl: labels outside the head's label set \['admin', 'games'\]: "
                                            r"\['gamez'\]"):
            encode_split(goal, tmp_path / "train.jsonl")


# ------------------------------------------------------------------------------------------------ checkpoints, weights


class Planted:
    """A pickle that, once unpickled, creates a marker file: it must never be."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(Planted(marker)))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "unpickled-marker"
    yield path
    assert not path.exists(), "a planted pickle was unpickled"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bitfit_weights(workspace: Path, family: str, out: Path) -> None:
    from peftstudy.methods import get_method
    from peftstudy.modeling.loading import load_base

    model, tokenizer, _ = load_base(workspace / f"base-{family}")
    method = get_method("bitfit")
    method.save(method.prepare(model, family, {"kind": "bitfit"}, None), tokenizer, out)


class TestWeights:
    def test_truncated_safetensors_of_a_full_run(self, tiny_workspace, tmp_path):
        from peftstudy.methods import get_method

        weights = tmp_path / "weights"
        shutil.copytree(tiny_workspace / "base-gpt2", weights)
        _truncate(weights / "model.safetensors")
        before = tree_hashes(tmp_path)
        with pytest.raises(ValueError, match=rf"{weights}/model\.safetensors: not a complete safetensors file"):
            get_method("full").load_for_inference(tiny_workspace / "base-gpt2", weights, "cpu")
        assert tree_hashes(tmp_path) == before

    def test_truncated_safetensors_of_a_partial_run(self, tmp_path):
        import torch
        from safetensors.torch import save_file

        from peftstudy.methods import get_method

        weights = tmp_path / "weights"
        weights.mkdir()
        save_file({"transformer.h.0.ln_1.bias": torch.zeros(64)}, weights / "partial_weights.safetensors")
        _truncate(weights / "partial_weights.safetensors")
        (weights / "partial.json").write_text(json.dumps({"method": "bitfit", "parameters": ["transformer.h.0.ln_1.bias"],
                                                          "weights": "partial_weights.safetensors"}))
        with pytest.raises(ValueError, match=r"partial_weights\.safetensors: not a complete safetensors file"):
            get_method("bitfit").load_for_inference(tmp_path / "no-base", weights, "cpu")

    def test_weights_of_a_t5_run_in_a_gpt2_run(self, tiny_workspace, tmp_path):
        from peftstudy.methods import get_method

        weights = tmp_path / "weights"
        shutil.copytree(tiny_workspace / "base-t5", weights)
        with pytest.raises(ValueError, match=rf"{weights}: these weights do not load as a gpt2 model"):
            get_method("full").load_for_inference(tiny_workspace / "base-gpt2", weights, "cpu")

    def test_partial_weights_of_a_gpt2_run_on_a_t5_base(self, tiny_workspace, tmp_path):
        from peftstudy.methods import get_method

        weights = tmp_path / "weights"
        _bitfit_weights(tiny_workspace, "gpt2", weights)
        before = tree_hashes(weights)
        with pytest.raises(ValueError, match=rf"{weights}: tensors not in the base model: transformer\.h\.0"):
            get_method("bitfit").load_for_inference(tiny_workspace / "base-t5", weights, "cpu")
        assert tree_hashes(weights) == before

    def test_partial_weights_of_another_shape(self, tiny_workspace, tmp_path):
        import torch
        from safetensors.torch import load_file, save_file

        from peftstudy.methods import get_method

        weights = tmp_path / "weights"
        _bitfit_weights(tiny_workspace, "gpt2", weights)
        name = "transformer.h.0.ln_1.bias"
        save_file({**load_file(weights / "partial_weights.safetensors"), name: torch.zeros(7)},
                  weights / "partial_weights.safetensors")
        with pytest.raises(ValueError, match=rf"{weights}: {re.escape(name)} has shape \(7,\), the base has \(32,\)"):
            get_method("bitfit").load_for_inference(tiny_workspace / "base-gpt2", weights, "cpu")

    @pytest.mark.parametrize("kind, expected_file", [("full", "model.safetensors"), ("lora", "adapter_model.safetensors")],
                             ids=["full-pytorch_model.bin", "lora-adapter_model.bin"])
    def test_a_pickle_beside_missing_safetensors_is_never_opened(self, tiny_workspace, tmp_path, marker, kind,
                                                                 expected_file):
        from peftstudy.methods import get_method

        weights = tmp_path / "weights"
        weights.mkdir()
        if kind == "full":
            shutil.copy(tiny_workspace / "base-gpt2" / "config.json", weights)
            _plant_pickle(weights / "pytorch_model.bin", marker)
        else:
            (weights / "adapter_config.json").write_text(json.dumps(
                {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["c_attn"], "task_type": "CAUSAL_LM"}))
            _plant_pickle(weights / "adapter_model.bin", marker)
        with pytest.raises(FileNotFoundError, match=rf"{weights}/{expected_file}: missing \(weights are read from "
                                                    r"safetensors only, never from a pickle\)"):
            get_method(kind).load_for_inference(tiny_workspace / "base-gpt2", weights, "cpu", {"kind": kind})

    def test_a_pickle_named_as_safetensors_is_never_unpickled(self, tmp_path, marker):
        from peftstudy.methods import get_method

        weights = tmp_path / "weights"
        weights.mkdir()
        _plant_pickle(weights / "partial_weights.safetensors", marker)
        (weights / "partial.json").write_text(json.dumps({"method": "bitfit", "parameters": ["x"],
                                                          "weights": "partial_weights.safetensors"}))
        with pytest.raises(ValueError, match=r"partial_weights\.safetensors: not a complete safetensors file"):
            get_method("bitfit").load_for_inference(tmp_path / "no-base", weights, "cpu")

    def test_a_manifest_pointing_at_another_file_is_refused(self, tmp_path, marker):
        from peftstudy.methods import get_method

        weights = tmp_path / "weights"
        weights.mkdir()
        _plant_pickle(weights / "weights.bin", marker)
        (weights / "partial.json").write_text(json.dumps({"method": "bitfit", "parameters": ["x"], "weights": "weights.bin"}))
        with pytest.raises(ValueError, match=r"partial\.json: weights must be 'partial_weights\.safetensors', not "
                                             r"'weights\.bin'"):
            get_method("bitfit").load_for_inference(tmp_path / "no-base", weights, "cpu")


class TestTrainingCheckpoints:
    @pytest.mark.parametrize("content", ["pickle", "zip-garbage", "truncated"])
    def test_an_unreadable_checkpoint_is_refused_naming_it_and_never_unpickled(self, tmp_path, marker, content):
        import torch

        from peftstudy.training import checkpoint

        path = tmp_path / "checkpoint" / checkpoint.CHECKPOINT_FILE
        path.parent.mkdir()
        if content == "pickle":
            _plant_pickle(path, marker)
        elif content == "zip-garbage":
            path.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive: no data.pkl
        else:
            torch.save({"fingerprint": "f", "model": {"w": torch.zeros(64)}}, path)
            _truncate(path)
        before = tree_hashes(tmp_path)
        with pytest.raises(ValueError, match=rf"{path}: not a training checkpoint this code wrote"):
            checkpoint.load(path.parent, "f")
        assert tree_hashes(tmp_path) == before

    def test_a_malicious_pickle_inside_a_torch_archive_is_refused_by_the_restricted_unpickler(self, tmp_path, marker):
        import torch

        from peftstudy.training import checkpoint

        path = tmp_path / checkpoint.CHECKPOINT_FILE
        torch.save({"fingerprint": "f", "payload": Planted(marker)}, path)
        with pytest.raises(ValueError, match=rf"{path}: not a training checkpoint this code wrote \(Weights only load"):
            checkpoint.load(tmp_path, "f")

    def test_a_checkpoint_of_another_config_is_ignored_and_removed(self, tmp_path):
        import torch

        from peftstudy.training import checkpoint

        directory = tmp_path / "run" / "checkpoint"
        directory.mkdir(parents=True)
        (tmp_path / "run" / "train.json").write_text("{}")
        torch.save({"fingerprint": "other settings", "model": {}}, directory / checkpoint.CHECKPOINT_FILE)
        assert checkpoint.load(directory, "these settings") is None
        assert not directory.exists() and tree_hashes(tmp_path) == {"run/train.json": io.sha256_text("{}")}

    def test_the_state_of_another_architecture_is_refused(self):
        import torch
        from transformers import (
            GPT2Config,
            GPT2LMHeadModel,
            T5Config,
            T5ForConditionalGeneration,
        )

        from peftstudy.training import checkpoint

        torch.manual_seed(0)
        gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=64, n_positions=16))
        t5 = T5ForConditionalGeneration(T5Config(d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, vocab_size=64))
        payload = {"model": {name: tensor for name, tensor in gpt2.state_dict().items() if "ln_1" in name}}
        with pytest.raises(ValueError, match=r"checkpoint does not fit the model: unexpected keys \['transformer\.h\.0"):
            checkpoint.restore(payload, t5, None, None)
        wider = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=16))
        with pytest.raises(RuntimeError, match=r"size mismatch for transformer\.h\.0\.ln_1\.weight"):
            checkpoint.restore(payload, wider, None, None)


# ------------------------------------------------------------------------------------------------ wildcards, shell

CRAFTED = ["..", "../../etc/x", "a/b", "name with spaces", "$(touch pwned)", "`id`", "a;rm -rf x", "a|b", "a&b",
           "a>b", "x\ny", "", "A", "-rf", "'q'"]


@pytest.fixture(scope="module")
def path_patterns():
    from peftstudy.study.matrix import path_patterns

    return path_patterns(studyconfig.load_schema())


class TestWildcards:
    """The workflow's wildcard_constraints (common.smk: matrix.path_patterns) refuse crafted names."""

    @pytest.mark.parametrize("value", CRAFTED, ids=[ascii(value) for value in CRAFTED])
    def test_every_wildcard_refuses_a_crafted_value(self, path_patterns, value):
        # Snakemake anchors each constraint: a value is allowed when the whole of it matches.
        allowed = sorted(name for name, pattern in path_patterns.items() if re.fullmatch(pattern, value))
        assert not allowed

    def test_common_smk_declares_these_constraints(self):
        text = (REPOSITORY / "workflow" / "rules" / "common.smk").read_text()
        assert re.search(r"wildcard_constraints:\n\s+\*\*matrix\.path_patterns\(studyconfig\.load_schema\(\)\),", text)

    def test_a_crafted_run_target_matches_no_run_output(self, path_patterns):
        run = "results/{study}/runs/{dataset}/{model}/{variant}/seed{seed}/metrics.json"
        regex = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?:{path_patterns[m.group(1)]})", re.escape(run))
        assert re.fullmatch(regex, "results/demo/runs/debian-products/gpt2-en/lora-r8/seed1/metrics.json")
        for target in ["results/demo/runs/../../etc/x/lora-r8/seed1/metrics.json",
                       "results/demo/runs/debian-products/gpt2 en/lora-r8/seed1/metrics.json",
                       "results/demo/runs/$(touch pwned)/gpt2-en/lora-r8/seed1/metrics.json",
                       "results/demo/runs/debian-products/gpt2-en/lora-r8/seed1;id/metrics.json"]:
            assert not re.fullmatch(regex, target), target


def unquoted_shell_interpolations(text: str) -> list[str]:
    """Each {placeholder} of a shell: directive (or shell() call) without the :q quoting flag, as 'line: {x}'."""
    found = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        block = []
        directive = re.match(r"^(\s*)shell:\s*(.*)$", line)
        if directive:
            indent = len(directive.group(1))
            block = [(number, directive.group(2))]
            for following in range(number + 1, len(lines)):
                if lines[following].strip() and len(lines[following]) - len(lines[following].lstrip()) <= indent:
                    break
                block.append((following, lines[following]))
        elif re.search(r"\bshell\(", line):
            block = [(number, line[line.index("shell("):])]
        for index, content in block:
            content = content.replace("{{", "").replace("}}", "")
            for placeholder in re.findall(r"\{([^{}]*)\}", content):
                if not placeholder.endswith(":q"):
                    found.append(f"{index + 1}: {{{placeholder}}}")
    return found


class TestShell:
    def test_no_rule_interpolates_an_unquoted_value_into_a_shell_command(self):
        problems = {rule.name: unquoted_shell_interpolations(rule.read_text()) for rule in
                    [*RULES, REPOSITORY / "Snakefile"]}
        assert not {name: found for name, found in problems.items() if found}

    def test_the_check_finds_unquoted_interpolations(self):
        rule = 'rule x:\n    shell:\n        "cp {input:q} {output} && echo {{literal}}"\n        " {params.name}"\nrule y:\n'
        assert unquoted_shell_interpolations(rule) == ["3: {output}", "4: {params.name}"]
        assert unquoted_shell_interpolations('    run:\n        shell("touch {output}")\n') == ["2: {output}"]
        assert unquoted_shell_interpolations('    shell: "touch {output:q}"\n') == []

    def test_no_python_code_of_the_workflow_runs_a_shell(self):
        sources = [*(REPOSITORY / "src").rglob("*.py"), *(REPOSITORY / "workflow" / "scripts").glob("*.py"), *RULES]
        offenders = [str(path) for path in sources
                     if re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", path.read_text(encoding="utf-8"))]
        assert not offenders


# ------------------------------------------------------------------------------------------------ environment


class TestEnvironment:
    def test_without_tex_the_pdf_step_says_what_to_install_and_writes_nothing(self, tmp_path, monkeypatch):
        from peftstudy.report.paper import build_pdf

        reports = tmp_path / "reports" / "demo"
        (reports / "tables").mkdir(parents=True)
        (reports / "paper.tex").write_text("\\documentclass{article}\\begin{document}x\\end{document}\n")
        (reports / "tables" / "table1_methods.tex").write_text("\\begin{tabular}{l}x\\end{tabular}\n")
        before = tree_hashes(reports)
        monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
        with pytest.raises(RuntimeError, match=r"latexmk not found: install TeX Live and latexmk"):
            build_pdf(reports / "paper.tex", reports / "paper.pdf")
        assert tree_hashes(reports) == before

    def test_only_the_pdf_step_needs_tex_and_nothing_needs_the_pdf(self):
        """Every table and figure builds without TeX: only report.paper.build_pdf runs latexmk, only paper_pdf.py
        calls it, and no rule takes the PDF as an input."""
        sources = [*(REPOSITORY / "src").rglob("*.py"), *(REPOSITORY / "workflow" / "scripts").glob("*.py")]
        uses = sorted(str(path.relative_to(REPOSITORY)) for path in sources
                      if re.search(r"latexmk|build_pdf|pdflatex|usetex", path.read_text(encoding="utf-8")))
        assert uses == ["src/peftstudy/report/paper.py", "workflow/scripts/paper_pdf.py"]
        report = (REPOSITORY / "workflow" / "rules" / "report.smk").read_text()
        assert re.findall(r"\nrule (\w+):(?:(?!\nrule ).)*paper_pdf\.py", report, flags=re.S) == ["paper_pdf"]
        assert not [rule.name for rule in RULES if re.search(r"input:(?:(?!output:).)*paper\.pdf", rule.read_text(), re.S)]

    def test_without_wordnet_the_wordnet_step_says_what_to_install(self, tmp_path):
        from peftstudy.data.wordnet import prepare_wordnet

        with pytest.raises(FileNotFoundError, match=r"WordNet 3\.0 files missing \(data\.adj, .*\); install the Debian "
                                                    r"packages wordnet-base and wordnet-sense-index"):
            prepare_wordnet(REPOSITORY / "data" / "snapshots" / "wordnet_lexnames.tsv", tmp_path / "nltk",
                            source=tmp_path / "no-wordnet")
        assert not (tmp_path / "nltk").exists()

    def test_without_wordnet_meteor_says_what_to_install(self, tmp_path):
        from peftstudy.metrics.quality import wordnet_reader

        with pytest.raises(FileNotFoundError, match=r"corpora/wordnet: not a WordNet 3\.0 database for nltk \(missing "
                                                    r"lexnames, data\.noun, index\.sense\); install the Debian packages "
                                                    r"wordnet-base and wordnet-sense-index"):
            wordnet_reader(tmp_path / "nltk")


def test_the_catalogue_has_at_least_35_cases():
    assert len(CONFIG_CASES) + len(YAML_CASES) + len(DATA_CASES) + len(SPLIT_CASES) + len(CRAFTED) >= 35
