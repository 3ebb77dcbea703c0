"""The `peftstudy` command's export and matrix subcommands: their help, export's refusals (each naming the path),
and matrix's status of each run (done, failed, resumable, missing) with its summary line. The export itself, from
a trained run to a directory that loads without peftstudy, is tested in test_portable_adapters.py."""

import pytest

from peftstudy import io
from peftstudy.cli import main
from peftstudy.execution.jobs import failure_path
from peftstudy.study.config import load_study
from peftstudy.study.matrix import expand_runs
from peftstudy.training.checkpoint import CHECKPOINT_FILE

STUDY = "config/demo.yaml"


@pytest.mark.parametrize(("command", "words"), [("export", ["RUN_DIR", "OUT_DIR", "generation_config.json"]),
                                                ("matrix", ["CONFIG", "--root", "resumable", "failure.json"]),
                                                ("integrity", ["TABLE", "identical_cells", "copied_outputs"])])
def test_each_command_has_help(command, words, capsys):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    assert exit.value.code == 0
    shown = capsys.readouterr().out
    assert all(word in shown for word in words), shown


def test_export_refuses_an_occupied_directory_and_a_missing_run(tmp_path, capsys):
    occupied = tmp_path / "out"
    (occupied / "x").mkdir(parents=True)
    assert main(["export", str(tmp_path / "run"), str(occupied)]) == 2
    assert f"{occupied}: exists and is not empty" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "new")]) == 2
    assert f"{tmp_path / 'run' / 'train.json'}: missing; run the train step" in capsys.readouterr().err
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    io.write_json(run / "train.json", {"diverged": {"step": 3}})
    io.write_json(run / "generation.json", {})
    assert main(["export", str(run), str(tmp_path / "new")]) == 2
    assert "the run diverged" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_matrix_gives_each_run_its_status(repository, tmp_path, capsys):
    study = load_study(repository / STUDY)
    runs = expand_runs(study)
    done, failed, resumable = runs[0], runs[1], runs[2]
    for name in ("train.json", "metrics.json"):
        io.write_json(tmp_path / done.directory / name, {})
    io.write_json(tmp_path / runs[3].directory / "train.json", {})  # trained, not scored: not done
    cell = f"{failed.dataset}/{failed.model}/{failed.variant}/seed{failed.seed}"
    io.write_json(failure_path(tmp_path / "logs" / failed.study / "generate" / f"{cell}.log"), {"cause": "x"})
    cell = f"{resumable.dataset}/{resumable.model}/{resumable.variant}/seed{resumable.seed}"
    (tmp_path / "checkpoints" / resumable.study / cell).mkdir(parents=True)
    (tmp_path / "checkpoints" / resumable.study / cell / CHECKPOINT_FILE).write_bytes(b"")
    assert main(["matrix", str(repository / STUDY), "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    status = {line.split()[-1]: line.split()[1] for line in lines if line.startswith("  seed")}
    assert len(status) == len(runs)
    assert [status[run.directory] for run in runs[:4]] == ["done", "failed", "resumable", "missing"]
    assert set(status[run.directory] for run in runs[4:]) == {"missing"}
    cells = {(run.dataset, run.model, run.variant) for run in runs}
    assert lines[-1] == (f"{study['study']}: {len(cells)} cells, {len(runs)} runs: 1 done, 1 resumable, 1 failed, "
                         f"{len(runs) - 3} missing")
    assert sum(line.endswith(":") and not line.startswith(" ") for line in lines) == len(cells)


def test_matrix_names_a_bad_config(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text("study: x\n")
    assert main(["matrix", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_integrity_flags_a_published_table_and_passes_a_clean_one(repository, tmp_path, capsys):
    assert main(["integrity", str(repository / "tests/fixtures/seed004_published.csv")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("identical_cells: qa/bert/lora = qa/bert/sft: 3 identical values")
    assert lines[-1].endswith("9 findings (identical_cells 2, mixed_scales 4, contradiction 3)")
    clean = tmp_path / "clean.csv"
    clean.write_text("dataset,model,method,rank,seed,metric,value\nd,m,full,,1,bleu4,20.5\nd,m,full,,2,bleu4,21.25\n")
    assert main(["integrity", str(clean)]) == 0
    assert capsys.readouterr().out.strip().endswith(": 0 findings, 8 checks passed")
    (tmp_path / "bad.csv").write_text("dataset,value\nd,1\n")
    assert main(["integrity", str(tmp_path / "bad.csv")]) == 2
    assert "no column model, method, metric" in capsys.readouterr().err
