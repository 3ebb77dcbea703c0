"""The zygote is a speed-up only: a job run in a warm fork computes exactly what a fresh process does."""

import json
import os
import pickle
import socket
import stat
import struct
import threading
from pathlib import Path

import pytest

from peftstudy.execution import zygote

TRAINING = dict(epochs=1, batch_size=16, gradient_accumulation_steps=1, learning_rate=3e-3, weight_decay=0.01,
                warmup_ratio=0.1, lr_scheduler="cosine", max_grad_norm=1.0, max_source_tokens=24,
                max_target_tokens=24, early_stopping_patience=None, precision="fp32")


def settings():
    return {"dataset": "d", "model": "m", "family": "gpt2", "method": "lora", "rank": 4,
            "method_spec": {"kind": "lora", "alpha": 8, "dropout": 0.05}, "training": TRAINING, "seed": 3}


def run(workspace, out, mode, monkeypatch):
    monkeypatch.setenv("PEFTSTUDY_ZYGOTE", mode)
    zygote.call("peftstudy.training.loop:train_run", settings(), str(workspace / "base-gpt2"), str(workspace / "data"),
                str(out / "weights"), str(out / "train.json"), log=str(out / "log.txt"))
    return json.loads((out / "train.json").read_text())


def test_zygote_result_is_bit_identical_to_a_plain_process(tiny_workspace, tmp_path, monkeypatch):
    direct = run(tiny_workspace, tmp_path / "direct", "0", monkeypatch)
    forked = run(tiny_workspace, tmp_path / "forked", "1", monkeypatch)
    assert forked["step_losses"] == direct["step_losses"]
    assert (tmp_path / "forked/weights/adapter_model.safetensors").read_bytes() == \
        (tmp_path / "direct/weights/adapter_model.safetensors").read_bytes()


def test_failure_in_the_fork_is_raised_with_the_log_path(tiny_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTSTUDY_ZYGOTE", "1")
    with pytest.raises(RuntimeError, match=r"failed: FileNotFoundError.*full log") as failure:
        zygote.call("peftstudy.training.loop:train_run", settings(), str(tmp_path / "no-such-base"), str(tiny_workspace / "data"),
                    str(tmp_path / "w"), str(tmp_path / "t.json"), log=str(tmp_path / "log.txt"))
    log = (tmp_path / "log.txt").read_text()
    assert "base model manifest missing" in log and log.count("Traceback (most recent call last)") == 1
    assert not (tmp_path / "t.json").exists()
    # What logged() shows on the console: the child's one-line cause; the traceback is in the log already.
    assert isinstance(failure.value, zygote.JobFailed) and failure.value.traceback_in_log
    assert failure.value.cause.startswith("FileNotFoundError: ") and "manifest missing" in failure.value.cause
    assert "\n" not in failure.value.cause


def test_disabled_under_slurm(monkeypatch):
    monkeypatch.setenv("PEFTSTUDY_ZYGOTE", "auto")
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    assert not zygote.enabled()


# ------------------------------------------------------------------------- a shared login node is not private

def test_the_socket_directory_is_created_private(tmp_path):
    directory = zygote.private_directory(tmp_path)
    assert directory.name == f"peftstudy-{os.geteuid()}"
    assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700
    assert zygote.private_directory(tmp_path) == directory  # reused as it is


def test_a_directory_owned_by_someone_else_is_refused(tmp_path):
    directory = zygote.private_directory(tmp_path)
    other = os.geteuid() + 1
    with pytest.raises(zygote.UnsafeZygote, match=r"owned by uid \d+, not by you"):
        zygote.private_directory(tmp_path, uid=other)  # it is someone else's from the point of view of `other`
    if os.geteuid() == 0:  # and for real, where the test may chown
        os.chown(directory, 4242, 4242)
        with pytest.raises(zygote.UnsafeZygote, match="owned by uid 4242"):
            zygote.private_directory(tmp_path)


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o710, 0o702])
def test_a_directory_others_can_enter_or_write_is_refused(tmp_path, mode):
    directory = zygote.private_directory(tmp_path)
    os.chmod(directory, mode)
    with pytest.raises(zygote.UnsafeZygote, match=f"mode {mode:04o}"):
        zygote.private_directory(tmp_path)


def test_a_symlinked_directory_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / f"peftstudy-{os.geteuid()}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(zygote.UnsafeZygote, match="not a directory"):
        zygote.private_directory(tmp_path)


def test_a_path_that_is_not_our_socket_is_refused(tmp_path):
    planted = tmp_path / "zygote.sock"
    planted.write_text("not a socket")
    with pytest.raises(zygote.UnsafeZygote, match="not a socket owned by you"):
        zygote._connect(planted)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a socket to another uid needs root")
def test_a_socket_owned_by_someone_else_is_refused(tmp_path):
    path = tmp_path / "zygote.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        os.chown(path, 4242, 4242)
        with pytest.raises(zygote.UnsafeZygote, match=r"uid 4242"):
            zygote._connect(path)


def fake_zygote(path, reply: bytes, received: list):
    """A process-local impostor: records the request it gets and answers with raw `reply` bytes."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        with conn:
            received.append(zygote._receive(conn))
            conn.sendall(struct.pack("!Q", len(reply)) + reply)
        listener.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


class Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what pickle.loads would run
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_reply_cannot_run_code_and_no_secret_is_sent(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = zygote.private_directory(tmp_path) / "zygote.sock"
    received = []
    thread = fake_zygote(path, pickle.dumps(Planted(marker)), received)
    monkeypatch.setattr(zygote, "socket_path", lambda: path)
    monkeypatch.setenv("PEFTSTUDY_ZYGOTE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("WANDB_API_KEY", "wandb_secret_value")
    with pytest.raises(zygote.UnsafeZygote, match="not peftstudy's JSON"):
        zygote.call("peftstudy.io:write_json", str(tmp_path / "x.json"), {"a": 1})
    thread.join(5)
    assert not marker.exists()
    request = received[0]
    assert request["function"] == "peftstudy.io:write_json" and "PATH" in request["env"]
    assert "hf_secret_value" not in json.dumps(request) and "wandb_secret_value" not in json.dumps(request)


def test_a_reply_in_another_shape_is_refused(tmp_path, monkeypatch):
    path = zygote.private_directory(tmp_path) / "zygote.sock"
    thread = fake_zygote(path, json.dumps(["status", 0]).encode(), [])
    monkeypatch.setattr(zygote, "socket_path", lambda: path)
    monkeypatch.setenv("PEFTSTUDY_ZYGOTE", "1")
    with pytest.raises(zygote.UnsafeZygote, match="not peftstudy's"):
        zygote.call("peftstudy.io:write_json", str(tmp_path / "x.json"), {"a": 1})
    thread.join(5)


def test_messages_round_trip_plain_data_exactly():
    value = {"a": (1, 2.5, None), "b": [Path("/x/y"), {3: "int key", "$odd": True}], "c": float("inf"), "d": "é"}
    assert zygote._decode(json.loads(json.dumps(zygote._encode(value)))) == value
    assert isinstance(zygote._decode(zygote._encode((1,))), tuple)
    with pytest.raises(TypeError, match="plain data only"):
        zygote._encode({"f": object()})


def test_secret_looking_variables_are_not_forwarded():
    environment = {"PATH": "/bin", "HF_TOKEN": "x", "HUGGING_FACE_HUB_TOKEN": "x", "AWS_SECRET_ACCESS_KEY": "x",
                   "OPENAI_API_KEY": "x", "GITHUB_TOKEN": "x", "MY_PASSWORD": "x", "OMP_NUM_THREADS": "2",
                   "PEFTSTUDY_ZYGOTE": "1", "HF_HOME": "/h"}
    assert zygote.forwarded_environment(environment) == {"PATH": "/bin", "OMP_NUM_THREADS": "2",
                                                         "PEFTSTUDY_ZYGOTE": "1", "HF_HOME": "/h"}
