"""Progress lines a user can tail in a SLURM log, and a bar on a terminal."""

import io

from peftstudy.progress import Progress


def test_a_log_file_gets_plain_lines_with_done_total_fields_and_eta():
    stream = io.StringIO()
    with Progress(4, "train", stream=stream, interval_s=0) as progress:
        for _ in range(4):
            progress.update(1, loss=2.34567, **{"tokens/s": 28123.4})
        progress.note("epoch 1: validation loss 2.1")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train: 4 steps to go"
    assert lines[1].startswith("train: step 1/4 (25%) | loss 2.346 | tokens/s 28,123 | ") and "ETA" in lines[1]
    assert lines[4].startswith("train: step 4/4 (100%)") and "ETA" not in lines[4]
    assert lines[5] == "train: epoch 1: validation loss 2.1"
    assert "\r" not in stream.getvalue()
    with Progress(1, "generate", unit="batch", stream=stream) as progress:
        progress.update(1)
    assert "generate: 1 batch to go\ngenerate: batch 1/1 (100%)" in stream.getvalue()


def test_lines_come_at_the_interval_and_at_the_end_only():
    stream = io.StringIO()
    with Progress(1000, "generate", unit="batch", stream=stream, interval_s=3600) as progress:
        for _ in range(1000):
            progress.update(1)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "generate: 1000 batches to go"
    assert len(lines) == 2 and lines[1].startswith("generate: batch 1000/1000 (100%)") and " batches/s | " in lines[1]


def test_a_resumed_run_counts_from_where_it_was():
    stream = io.StringIO()
    with Progress(10, "train", initial=6, stream=stream, interval_s=0) as progress:
        progress.update(1)
    assert stream.getvalue().splitlines() == ["train: step 6/10 to go", stream.getvalue().splitlines()[1]]
    assert stream.getvalue().splitlines()[1].startswith("train: step 7/10 (70%)")


def test_a_terminal_gets_a_tqdm_bar():
    stream = io.StringIO()
    with Progress(3, "train", stream=stream, bar=True, interval_s=0) as progress:
        progress.update(3, loss=1.5)
    assert "\r" in stream.getvalue() and "3/3" in stream.getvalue() and "loss=1.5" in stream.getvalue()
