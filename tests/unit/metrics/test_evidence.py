"""What a run's artifacts show the integrity check: empty outputs, outputs copied from training references, the
trainable count beside its formula's."""

from peftstudy import io
from peftstudy.metrics.evidence import run_evidence, training_references
from peftstudy.stats.integrity import RunEvidence, check_table


def write_run(run_dir, predictions, *, diverged=False, trainable=1234):
    run_dir.mkdir(parents=True)
    record = {"run": {"study": "s", "dataset": "d", "model": "m", "variant": "lora-r4", "seed": "2"}}
    io.write_json(run_dir / "metrics.json", {**record, **({"diverged": {"step": 3}} if diverged else {})})
    io.write_jsonl(run_dir / "generations.jsonl", [{"id": str(i), "prediction": p} for i, p in enumerate(predictions)])
    io.write_json(run_dir / "train.json", {"trainable_parameters": trainable, "settings": {"model": "m"}})
    return run_dir / "metrics.json"


def test_empty_and_copied_outputs_are_counted(tmp_path):
    train = tmp_path / "train.jsonl"
    io.write_jsonl(train, [{"id": "a", "reference": "A small  tool for\nfiles."}, {"id": "b", "reference": "Other."}])
    references = {"d": training_references(train)}
    path = write_run(tmp_path / "run", ["A small tool for files.", "", "A new sentence.", "Other.", "  "])
    evidence = RunEvidence(**run_evidence(path, references, expected=(1200, "r(d_in + d_out)")))
    assert (evidence.dataset, evidence.model, evidence.method, evidence.rank, evidence.seed) == ("d", "m", "lora", "4", "2")
    assert evidence.empty_share == 2 / 5
    assert evidence.copied_share == 2 / 3  # whitespace-normalised, over the non-empty outputs
    assert (evidence.trainable, evidence.expected_trainable, evidence.formula) == (1234, 1200, "r(d_in + d_out)")
    findings = check_table(__import__("pandas").DataFrame(
        [{"dataset": "d", "model": "m", "method": "lora", "rank": "4", "seed": "2", "metric": "bleu4", "value": 3.0}]),
        [evidence])
    assert [f.check for f in findings] == ["parameter_count", "copied_outputs"]


def test_a_classification_dataset_is_not_checked_for_copies_and_a_diverged_run_has_no_evidence(tmp_path):
    path = write_run(tmp_path / "run", ["perl", "python"])
    assert run_evidence(path, {})["copied_share"] is None  # only generation datasets get references
    assert run_evidence(write_run(tmp_path / "diverged", [], diverged=True), {}) is None
