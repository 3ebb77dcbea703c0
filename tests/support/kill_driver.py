"""Run training jobs in real processes that a test can SIGKILL at a chosen point (tests/integration/test_faults.py).

Started once, this process imports the stack (torch, transformers, peft) and computes nothing; for each request on
stdin (one JSON line: the train_run arguments and where to pause) it forks a child, like the workflow's zygote, and
prints ``started <pid>``. The child runs peftstudy.training.oom:train_run, the function the train job calls. At the
requested point it prints ``paused <pid> <point>`` and sleeps: the test then kills it with SIGKILL. This process
prints ``exited <status>`` (a negative status is the signal that ended the child). A fork saves the 10 s import of a
fresh interpreter per kill; what runs and what is killed are ordinary processes.

Pause points:
  step N             after optimizer step N (0-based) ran, before the loop counts it or checkpoints
  checkpoint_write N while the checkpoint of step N is written: its temporary file holds half its bytes
  weights_write      while the final weights are written: their temporary directory's largest file holds half
  record_write       while train.json is written: its temporary file holds half the text
"""

import json
import os
import sys
import time

import peft  # noqa: F401  (preloaded, as the zygote does)
import torch
import transformers  # noqa: F401


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _pause(point: str) -> None:
    _say(f"paused {os.getpid()} {point}")
    time.sleep(600)  # the test kills us long before
    os._exit(3)


def _truncate_to_half(path) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def _install_pause(point: str, arg, kind: str, record_path: str) -> None:
    from peftstudy import io
    from peftstudy.methods import get_method

    method_class = type(get_method(kind))
    if point == "step":
        original_after = method_class.after_optimizer_step

        def after_optimizer_step(self, model, step):
            original_after(self, model, step)
            if step == arg:
                _pause(f"step {step}")

        method_class.after_optimizer_step = after_optimizer_step
    elif point == "checkpoint_write":
        original_save = torch.save

        def save(obj, target, *args, **kwargs):
            original_save(obj, target, *args, **kwargs)
            if isinstance(obj, dict) and "fingerprint" in obj and obj["loop"]["step"] == arg:
                handle = getattr(target, "handle", target)  # checkpoint.save writes through a file object
                if hasattr(handle, "flush"):
                    handle.flush()
                _truncate_to_half(getattr(handle, "name", handle))
                _pause(f"checkpoint_write {arg}")

        torch.save = save
    elif point == "weights_write":
        original_method_save = method_class.save

        def save_weights(self, model, tokenizer, directory):
            original_method_save(self, model, tokenizer, directory)
            files = [os.path.join(directory, name) for name in os.listdir(directory)]
            _truncate_to_half(max(files, key=os.path.getsize))
            _pause("weights_write")

        method_class.save = save_weights
    elif point == "record_write":
        original_write_text = io.write_text

        def write_text(path, text):
            if os.path.abspath(path) != os.path.abspath(record_path):
                return original_write_text(path, text)
            with io.atomic_path(path) as tmp:
                tmp.write_text(text[: len(text) // 2], encoding="utf-8")
                _pause("record_write")

        io.write_text = write_text
    elif point is not None:
        raise ValueError(f"unknown pause point {point!r}")


def _child(request: dict) -> None:
    status = 1
    try:
        from peftstudy.training import oom

        settings = request["settings"]
        _install_pause(request.get("pause"), request.get("at"), settings["method_spec"]["kind"], request["record"])
        oom.train_run(settings, request["base"], request["data"], request["weights"], record_path=request["record"],
                      threads=1, checkpoint_dir=request.get("checkpoint_dir"))
        status = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def main() -> None:
    _say("ready")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _say(f"started {pid}")
        _, status = os.waitpid(pid, 0)
        _say(f"exited {-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)}")


if __name__ == "__main__":
    main()
