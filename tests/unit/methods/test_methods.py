"""Trainable-parameter counts against closed forms, on real architectures built from their configs."""

import pytest
import torch
import transformers

from peftstudy.methods import get_method
from peftstudy.modeling.loading import count_parameters


def lora_count(rank, shapes):
    """LoRA adds r * (d_in + d_out) parameters per adapted matrix."""
    return sum(rank * (d_in + d_out) for d_in, d_out in shapes)


def on_meta(builder):
    with torch.device("meta"):
        return builder()


def gpt2_medium():
    return on_meta(lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=24, n_embd=1024, n_head=16)))


def test_lora_gpt2_medium_c_attn_only_matches_published_formula():
    model = get_method("lora").prepare(gpt2_medium(), "gpt2", {"target_modules": ["c_attn"]}, 4)
    trainable, _ = count_parameters(model)
    assert trainable == 393_216 == 24 * lora_count(4, [(1024, 3072)])


@pytest.mark.parametrize("rank", [4, 8, 16, 32, 64])
def test_lora_gpt2_attention_targets_c_attn_and_attention_c_proj_only(rank):
    model = get_method("lora").prepare(gpt2_medium(), "gpt2", {}, rank)
    trainable, total = count_parameters(model)
    assert trainable == 24 * lora_count(rank, [(1024, 3072), (1024, 1024)])
    assert total == 354_823_168 + trainable  # GPT-2 Medium base (tied embeddings counted once)


def test_lora_t5_base_q_k_v_o():
    config = transformers.T5Config(d_model=768, d_kv=64, d_ff=3072, num_heads=12, num_layers=12)
    model = get_method("lora").prepare(on_meta(lambda: transformers.T5ForConditionalGeneration(config)), "t5", {}, 8)
    trainable, _ = count_parameters(model)
    attention_blocks = 12 + 2 * 12  # encoder self; decoder self + cross
    assert trainable == attention_blocks * 4 * lora_count(8, [(768, 768)])


def test_lora_llama_attention_projections():
    config = transformers.LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                                      num_attention_heads=8, num_key_value_heads=2, vocab_size=1000)
    model = get_method("lora").prepare(on_meta(lambda: transformers.LlamaForCausalLM(config)), "llama", {}, 16)
    trainable, _ = count_parameters(model)
    kv = 2 * 256 // 8  # grouped-query attention: k/v project to num_key_value_heads * head_dim
    assert trainable == 3 * lora_count(16, [(256, 256), (256, kv), (256, kv), (256, 256)])


def test_lora_attention_plus_mlp_targets_gpt2():
    model = get_method("lora").prepare(gpt2_medium(), "gpt2", {"target_modules": "attention+mlp"}, 4)
    trainable, _ = count_parameters(model)
    assert trainable == 24 * lora_count(4, [(1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024)])


def test_full_fine_tuning_trains_everything():
    model = get_method("full").prepare(gpt2_medium(), "gpt2", {}, None)
    trainable, total = count_parameters(model)
    assert trainable == total == 354_823_168


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown method kind 'nope'"):
        get_method("nope")


def test_lora_needs_a_positive_rank():
    with pytest.raises(ValueError, match="positive rank"):
        get_method("lora").prepare(gpt2_medium(), "gpt2", {}, 0)


# -- a method describes itself ------------------------------------------------------------------------------------
# The tables these facts lived in before (study/config.py, modeling/heads.py, training/fsdp.py, report/labels.py,
# the study schema), written out: the methods' own declarations must reproduce them exactly.
OLD_LORA_OPTIONS = {"ranks", "alpha", "dropout", "target_modules", "decoder_rank"}
OLD_METHOD_OPTIONS = {
    "full": set(),
    "lora": OLD_LORA_OPTIONS,
    "dora": OLD_LORA_OPTIONS,
    "adalora": {"ranks", "alpha", "dropout", "target_modules", "init_rank", "orth_reg_weight"},
    "vera": {"ranks", "dropout", "target_modules"},
    "ia3": {"target_modules"},
    "peft": {"ranks", "target_modules", "peft_type", "peft_options"},  # any peft tuner by name (issue 21)
    "qlora": OLD_LORA_OPTIONS | {"bits", "quant_type", "double_quant", "compute_dtype", "gradient_checkpointing"},
    "prefix": {"num_virtual_tokens", "prefix_projection"},
    "prompt": {"num_virtual_tokens", "prompt_init", "prompt_init_text"},
    "bitfit": set(),
    "ft_top_k": {"top_k"},
    "adapter": {"ranks", "style", "non_linearity"},
    "mam": {"ranks", "prefix_length"},
    "unipelt": {"ranks", "prefix_length"},
    "lora_prefix": {"ranks", "alpha", "dropout", "prefix_length"},
}
OLD_RANKS_REQUIRED = {"lora", "dora", "adalora", "vera", "qlora", "adapter", "lora_prefix"}
OLD_NOT_APPLICABLE = {
    ("bitfit", "t5"): "T5 has no bias parameters: BitFit would train nothing",
    ("bitfit", "llama"): "LLaMA has no bias parameters: BitFit would train nothing",
}
OLD_HEAD_METHODS = {"full", "lora", "dora", "adalora", "vera", "ia3", "qlora"}
OLD_FSDP_SUPPORTED = ("full", "lora", "dora", "vera", "ia3", "prefix", "prompt", "bitfit", "ft_top_k", "adapter", "mam",
                      "unipelt", "lora_prefix")
OLD_FSDP_REASONS = {
    "adalora": "AdaLoRA's orthogonality penalty and rank reallocation compute with whole parameters outside the "
               "forward pass, where FSDP holds only shards",
    "peft": "a tuner chosen by name has not been tested sharded",
    "qlora": "QLoRA's quantized base (bitsandbytes, on CUDA) is loaded onto the device whole and FSDP does not "
             "shard its quantized weights here",
}
OLD_METHOD_LABELS = {
    "full": "Full fine-tuning", "lora": "LoRA", "dora": "DoRA", "adalora": "AdaLoRA", "vera": "VeRA",
    "ia3": "(IA)$^3$", "peft": "PEFT tuner", "qlora": "QLoRA", "prefix": "Prefix tuning", "prompt": "Prompt tuning", "bitfit": "BitFit",
    "ft_top_k": "FT top-$k$", "adapter": "Bottleneck adapter", "mam": "MAM adapter", "unipelt": "UniPELT",
    "lora_prefix": "LoRA + prefix",
}
OLD_BOTTLENECK_KINDS = {"adapter", "mam", "unipelt"}
FAMILIES = {"gpt2", "t5", "llama", "bert", "bert2bert"}


def test_every_method_declares_every_attribute():
    import jsonschema

    from peftstudy.methods import METHODS, Method

    assert set(METHODS) == set(OLD_METHOD_OPTIONS)
    for kind, method in METHODS.items():
        assert isinstance(method, Method) and method.kind == kind
        assert isinstance(method.options, dict) and all(isinstance(name, str) for name in method.options), kind
        for fragment in method.options.values():
            jsonschema.Draft202012Validator.check_schema(fragment)
        assert isinstance(method.required_options, tuple) and set(method.required_options) <= set(method.options)
        assert isinstance(method.label, str) and method.label, kind
        assert method.size_symbol in ("r", "b"), kind
        assert isinstance(method.trains_heads, bool) and isinstance(method.shardable, bool), kind
        assert isinstance(method.not_shardable_reason, str) and method.not_shardable_reason, kind
        assert isinstance(method.not_applicable, dict) and set(method.not_applicable) <= FAMILIES, kind
        assert all(isinstance(reason, str) and reason for reason in method.not_applicable.values()), kind
        assert isinstance(method.resumable, bool), kind
        if kind != "qlora":  # QLoRA's extras read a quantized model
            assert method.record_extras(object()) == {}, kind
    assert type(METHODS["qlora"]).record_extras is not Method.record_extras


def test_the_methods_reproduce_the_tables_they_replace():
    from peftstudy.methods import METHODS
    from peftstudy.report.labels import method_label
    from peftstudy.training import fsdp

    assert {kind: set(method.options) for kind, method in METHODS.items()} == OLD_METHOD_OPTIONS
    assert {kind for kind, method in METHODS.items() if "ranks" in method.required_options} == OLD_RANKS_REQUIRED
    assert all(method.required_options in ((), ("ranks",)) for kind, method in METHODS.items() if kind != "peft")
    assert METHODS["peft"].required_options == ("peft_type",)
    assert {(kind, family): reason for kind, method in METHODS.items()
            for family, reason in method.not_applicable.items()} == OLD_NOT_APPLICABLE
    assert {kind for kind, method in METHODS.items() if method.trains_heads} == OLD_HEAD_METHODS
    assert fsdp.supported_methods() == OLD_FSDP_SUPPORTED
    assert {kind: method.not_shardable_reason for kind, method in METHODS.items() if not method.shardable} == \
        OLD_FSDP_REASONS
    assert {kind: method.label for kind, method in METHODS.items()} == OLD_METHOD_LABELS
    assert {kind for kind, method in METHODS.items() if method.size_symbol == "b"} == OLD_BOTTLENECK_KINDS
    study = {"methods": {"adapter_houlsby": {"kind": "adapter"}, "lora": {"kind": "lora"}, "ia3": {"kind": "ia3"}}}
    assert method_label(study, "adapter_houlsby", 64) == r"Bottleneck adapter {\footnotesize(adapter\_houlsby)} $b=64$"
    assert method_label(study, "lora", 8) == "LoRA $r=8$"
    assert method_label(study, "ia3", None) == "(IA)$^3$"


def test_the_study_schema_takes_method_entries_from_the_registry():
    """The schema file lists no method: each kind's options (types included) and required options come from it."""
    import yaml

    from peftstudy.methods import METHODS
    from peftstudy.study.config import SCHEMA_PATH, load_schema

    raw = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["methods"]["additionalProperties"]
    assert set(raw["properties"]) == {"kind", "description", "training"} and "allOf" not in raw
    entry = load_schema()["properties"]["methods"]["additionalProperties"]
    assert entry["properties"]["kind"] == {"enum": list(METHODS)}
    assert set(entry["properties"]) == {"kind", "description", "training"} | set().union(*OLD_METHOD_OPTIONS.values())
    assert entry["properties"]["bits"] == {"enum": [4, 8]} and entry["properties"]["alpha"] == \
        {"type": "number", "exclusiveMinimum": 0}
    ranked = [kind for kind in METHODS if kind in OLD_RANKS_REQUIRED]
    assert entry["allOf"] == [{"if": {"properties": {"kind": {"enum": ranked}}}, "then": {"required": ["ranks"]}},
                              {"if": {"properties": {"kind": {"enum": ["peft"]}}}, "then": {"required": ["peft_type"]}}]


def test_an_option_key_means_one_thing_for_every_kind(monkeypatch):
    from peftstudy import methods
    from peftstudy.methods.base import Method

    class Clash(Method):
        kind = "clash"
        options = {"alpha": {"type": "string"}}

    monkeypatch.setattr(methods, "METHODS", dict(methods.METHODS))
    with pytest.raises(ValueError, match="kind 'clash' declares option 'alpha' unlike kind 'lora'"):
        methods.register(Clash())
    with pytest.raises(ValueError, match="method kind 'lora' registered twice"):
        methods.register(type(methods.METHODS["lora"])())


def test_a_new_method_is_picked_up_by_validation_report_and_fsdp(monkeypatch, repository):
    """A Method subclass in the registry is all a new kind needs: no table elsewhere to edit."""
    import copy

    import yaml

    from peftstudy import study as studyconfig
    from peftstudy.methods import METHODS
    from peftstudy.methods.base import Method, shared_options
    from peftstudy.report.labels import method_label
    from peftstudy.training import fsdp

    class Toy(Method):
        kind = "toy"
        options = shared_options("ranks", width={"type": "integer", "minimum": 1})
        required_options = ("ranks",)
        label = "Toy method"
        size_symbol = "b"
        trains_heads = False
        shardable = True
        not_applicable = {"t5": "a toy has no T5 version"}

    demo = yaml.safe_load((repository / "config" / "demo.yaml").read_text())
    demo["methods"]["toy"] = {"kind": "toy", "ranks": [2, 4], "width": 3}
    demo["matrix"].append({"datasets": ["debian-products"], "models": ["gpt2-en", "t5-en"], "methods": ["toy"]})
    demo["exclusions"].append({"model": "t5-en", "method": "toy", "reason": "no T5 toy"})

    def validate(mutate=lambda study: None):
        study = copy.deepcopy(demo)
        mutate(study)
        return studyconfig.validate_study(study, "toy.yaml")

    with pytest.raises(studyconfig.StudyConfigError, match=r"toy.yaml: methods.toy.kind: 'toy' is not one of"):
        validate()
    monkeypatch.setitem(METHODS, "toy", Toy())
    study = validate()
    assert {(r.model, r.rank) for r in studyconfig.expand_runs(study) if r.method == "toy"} == \
        {("gpt2-en", 2), ("gpt2-en", 4)}
    assert method_label(study, "toy", 4) == "Toy method $b=4$"
    fsdp.check_method("toy")
    assert fsdp.supported_methods()[-1] == "toy"
    failures = {
        "methods.toy.width: 0 is less than the minimum of 1": lambda s: s["methods"]["toy"].update(width=0),
        "methods.toy.ranks: required key is missing": lambda s: s["methods"]["toy"].pop("ranks"),
        "methods.toy.alpha: not an option of method kind 'toy' (its options: ranks, width)":
            lambda s: s["methods"]["toy"].update(alpha=8),
        "methods.full.width: not an option of method kind 'full'": lambda s: s["methods"]["full"].update(width=2),
        "overrides[0].options.alpha: not a per-cell option of method 'toy' (kind 'toy'; its options: width)":
            lambda s: s["overrides"].insert(0, {"method": "toy", "options": {"alpha": 8}}),
        "method 'toy' cannot run on model 't5-en' (a toy has no T5 version)":
            lambda s: s["exclusions"].pop(),
        "cell (debian-sections, gpt2-en, toy): method kind 'toy' cannot train a classifier head":
            lambda s: s["models"]["gpt2-en"].update(heads={"classification": "classifier"})
            or s["matrix"][-1].update(datasets=["debian-sections"], models=["gpt2-en"]),
    }
    for message, mutate in failures.items():
        with pytest.raises(studyconfig.StudyConfigError) as error:
            validate(mutate)
        assert message in str(error.value), (message, str(error.value))


# -- option defaults, declared once per method ----------------------------------------------------------------------
# The literals the methods' code read their options with before (spec.get("alpha", 16), ...; quantized.DEFAULTS),
# per kind. IA3's target_modules was read without one (None = keys, values and feed-forward output, which is what
# 'attention+mlp' selects); decoder_rank (absent = the swept rank) and AdaLoRA's init_rank (ceil(1.5 x rank)) have
# no fixed default, and ranks is required.
OLD_LORA_DEFAULTS = {"alpha": 16, "dropout": 0.05, "target_modules": "attention"}
OLD_DEFAULTS = {
    "full": {},
    "lora": OLD_LORA_DEFAULTS,
    "dora": OLD_LORA_DEFAULTS,
    "adalora": {**OLD_LORA_DEFAULTS, "orth_reg_weight": 0.5},
    "vera": {"dropout": 0.0, "target_modules": "attention"},
    "ia3": {"target_modules": "attention+mlp"},
    "qlora": {**OLD_LORA_DEFAULTS, "bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bf16",
              "gradient_checkpointing": True},
    "prefix": {"num_virtual_tokens": 20, "prefix_projection": False},
    "prompt": {"num_virtual_tokens": 20, "prompt_init": "random",
               "prompt_init_text": "Describe the input in one sentence:"},
    "bitfit": {},
    "ft_top_k": {"top_k": 2},
    "adapter": {"style": "houlsby", "non_linearity": "relu"},
    "mam": {"prefix_length": 30},
    "unipelt": {"prefix_length": 10},
    "lora_prefix": {"alpha": 16, "dropout": 0.05, "prefix_length": 30},
    "peft": {"peft_options": {}, "target_modules": "attention"},  # any peft tuner by name (added with it)
}
# Options without a default in ``defaults``: required, absent = unused, or computed from the rank where read.
OLD_NO_DEFAULT = {"ranks", "decoder_rank", "init_rank", "peft_type"}


def test_every_default_names_a_declared_option_of_its_method():
    from peftstudy.methods import METHODS

    for kind, method in METHODS.items():
        assert isinstance(method.defaults, dict), kind
        assert set(method.defaults) <= set(method.options), (kind, set(method.defaults) - set(method.options))
        assert not set(method.defaults) & set(method.required_options), kind
        # Every other option has a default, unless it is one of the few whose absence means something else.
        assert set(method.options) - set(method.defaults) <= OLD_NO_DEFAULT, kind


def test_the_defaults_are_the_literals_the_code_read_options_with():
    from peftstudy.methods import METHODS

    assert {kind: dict(method.defaults) for kind, method in METHODS.items()} == OLD_DEFAULTS
    # Same values and types (0.0 stays a float, True a bool): the configs built from them are unchanged.
    for kind, method in METHODS.items():
        assert {name: type(value) for name, value in method.defaults.items()} == \
            {name: type(value) for name, value in OLD_DEFAULTS[kind].items()}, kind


def test_defaults_stay_out_of_the_shared_schema_fragments():
    """Kinds disagree on some defaults (dropout, prefix_length): a default in a fragment would clash at register()."""
    from peftstudy.methods import METHODS

    for method in METHODS.values():
        assert all("default" not in fragment for fragment in method.options.values()), method.kind
    assert METHODS["lora"].defaults["dropout"] != METHODS["vera"].defaults["dropout"]
    assert METHODS["lora"].options["dropout"] == METHODS["vera"].options["dropout"]
    assert METHODS["mam"].options["prefix_length"] == METHODS["unipelt"].options["prefix_length"]


def test_option_prefers_the_given_value_over_the_default():
    from peftstudy.methods import get_method

    lora, vera = get_method("lora"), get_method("vera")
    assert lora.option({}, "alpha") == 16 and lora.option({"alpha": 32}, "alpha") == 32
    assert lora.option({}, "dropout") == 0.05 and vera.option({}, "dropout") == 0.0
    assert vera.option({"dropout": 0.1}, "dropout") == 0.1
    # A given value wins even when it is falsy.
    assert get_method("prefix").option({"num_virtual_tokens": 0}, "num_virtual_tokens") == 0
    assert get_method("qlora").option({"double_quant": False}, "double_quant") is False
    assert get_method("unipelt").option({}, "prefix_length") == 10 and get_method("mam").option({}, "prefix_length") == 30


def test_option_without_a_default_must_be_given():
    from peftstudy.methods import get_method

    lora = get_method("lora")
    assert lora.option({"decoder_rank": 4}, "decoder_rank") == 4
    with pytest.raises(KeyError, match="method kind 'lora': option 'decoder_rank' \\(an option of this kind\\) is not "
                                       "given and has no default"):
        lora.option({}, "decoder_rank")
    with pytest.raises(KeyError, match="method kind 'full': option 'alpha' \\(not an option of this kind\\)"):
        get_method("full").option({}, "alpha")


def test_the_configs_read_the_declared_defaults():
    """The options reach the built configurations: defaults when left out, given values otherwise."""
    from peftstudy.methods import get_method
    from peftstudy.methods.peft_family import IA3_TARGETS, ia3_targets
    from peftstudy.methods.quantized import quantization_settings

    lora = get_method("lora").peft_config("gpt2", {}, 8)
    assert (lora.lora_alpha, lora.lora_dropout) == (16, 0.05)
    assert get_method("lora").peft_config("gpt2", {"alpha": 32, "dropout": 0.1}, 8).lora_alpha == 32
    adalora = get_method("adalora").peft_config("gpt2", {}, 8, total_steps=100)
    assert (adalora.lora_alpha, adalora.lora_dropout, adalora.orth_reg_weight, adalora.init_r) == (16, 0.05, 0.5, 12)
    assert get_method("vera").peft_config("gpt2", {}, 8).vera_dropout == 0.0
    prefix = get_method("prefix").peft_config("gpt2", {}, None)
    assert (prefix.num_virtual_tokens, prefix.prefix_projection) == (20, False)
    assert get_method("prompt").peft_config("gpt2", {}, None).num_virtual_tokens == 20
    ia3 = get_method("ia3").peft_config("gpt2", {}, None)
    assert (ia3.target_modules, ia3.feedforward_modules) == (IA3_TARGETS["gpt2"][0], IA3_TARGETS["gpt2"][1])
    assert ia3_targets("gpt2", None) == ia3_targets("gpt2", "attention+mlp")  # what IA3 read before
    assert quantization_settings({}) == {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bf16"}
    assert list(quantization_settings({})) == ["bits", "quant_type", "double_quant", "compute_dtype"]
    assert quantization_settings({"bits": 8}) == {"bits": 8}
