"""Run a job in a fork of a process that has already imported torch, transformers and peft.

On a CPU machine the demo's jobs are tiny and each new Python process spends 5-8 s
importing the stack before any work starts. The zygote imports it once and forks a
child per job: the child starts warm, runs in its own process (own RNG state, own
threads, nothing shared with other jobs), and computes exactly what an ordinary
process would. It is a speed-up only, for local runs on CPU: under SLURM, on CUDA
machines or with PEFTSTUDY_ZYGOTE=0 jobs run in their own process as usual.

Only third-party libraries are preloaded; the child imports peftstudy's own modules
after the fork, so edits to the package are always picked up. One data set is kept warm
too: the WordNet database METEOR reads (2 s to load, more than scoring a run takes),
loaded by the parent once the workflow has prepared it (PEFTSTUDY_NLTK_DATA).

A login node is shared, so the socket is treated as an attack surface: it lives in a directory only its
owner can enter (0700, checked, never a symlink), both ends check the peer's uid (SO_PEERCRED), messages
are JSON with a few tagged types (nothing a reply holds can execute code, unlike pickle), and variables
that look like secrets (HF_TOKEN, ...) never cross the socket: a child takes them from the zygote's own
environment, which the same user's job started.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

PRELOAD = ("torch", "transformers", "peft", "tokenizers", "safetensors", "numpy", "pandas", "sacrebleu",
           "rouge_score.rouge_scorer", "sentence_transformers", "bert_score", "sklearn.metrics", "matplotlib.pyplot")
IDLE_EXIT_S = 60
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the directory holding this checkout's peftstudy
START_TIMEOUT_S = 90
STOP_GRACE_S = 60  # for a job's SIGTERM handler (a checkpoint) once its client is gone


_WARM: dict[str, Any] = {}


class JobFailed(RuntimeError):
    """A job run in the zygote failed. `cause` is the child's one-line error (`IndexError: ...`);
    `traceback_in_log` says its full traceback is in the job's log already (logged() then adds no other)."""

    def __init__(self, message: str, cause: str, traceback_in_log: bool = False):
        super().__init__(message)
        self.cause = cause
        self.traceback_in_log = traceback_in_log


def _one_line(error: BaseException) -> str:
    try:
        from peftstudy.execution.jobs import (
            one_line_cause,  # imported in the child: the checkout's code
        )

        return one_line_cause(error)
    except Exception:
        return f"{type(error).__name__}: {error}".splitlines()[0]


def english_wordnet(nltk_root: str | Path):
    """nltk's WordNet reader for <nltk_root>/corpora/wordnet, loaded once per process (and once for all
    the zygote's children, when the parent has loaded it)."""
    root = str(Path(nltk_root).resolve())
    if root not in _WARM:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader

        class EnglishWordNet(WordNetCorpusReader):
            """Without the WordNet-to-WordNet sense map nltk builds for its multilingual (OMW) functions:
            METEOR uses English synsets only, and that map is most of the load time."""

            def map_wn(self, version="wordnet"):
                return None

        if root not in nltk.data.path:  # nltk 3.10 reads only under authorised roots
            nltk.data.path.insert(0, root)
        _WARM[root] = EnglishWordNet(str(Path(root) / "corpora" / "wordnet"), None)
    return _WARM[root]


def own_open_files() -> None:
    """In a forked child: drop the warm WordNet readers' open data files, so that this process opens its own.

    nltk's reader opens data.adj while it loads and seeks in it for every synset; a child would share that open
    file and its offset with its parent and its siblings, and two jobs at once would read each other's lines
    (METEOR failed on a satellite adjective's head, and could have scored with a wrong synset). nltk's
    ``_data_file`` reopens a missing entry on first use. The child's copies are closed: the parent's stay open."""
    for reader in _WARM.values():
        for stream in reader._data_file_map.values():
            stream.close()
        reader._data_file_map.clear()


def _warm_data(env: dict) -> None:
    root = env.get("PEFTSTUDY_NLTK_DATA")
    if root and (Path(root) / "corpora" / "wordnet" / "lexnames").exists():
        try:
            english_wordnet(root)
        except Exception:  # the job loads it itself, and reports any error there
            pass


def enabled() -> bool:
    setting = os.environ.get("PEFTSTUDY_ZYGOTE", "auto").lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    # auto: only where it helps and is safe (a fork must never inherit an initialised CUDA context).
    if os.environ.get("SLURM_JOB_ID") or os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1"):
        return False
    return not Path("/dev/nvidia0").exists()


class UnsafeZygote(RuntimeError):
    """The zygote's directory, socket or peer is not private to this user: refuse rather than talk to it."""


SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|ACCESS_KEY|PRIVATE_KEY|_AUTH$", re.I)
MAX_MESSAGE_BYTES = 64 << 20  # a request is a few kB; a larger header is garbage or an attack


def private_directory(base: Path | None = None, uid: int | None = None) -> Path:
    """<base>/peftstudy-<uid>, created 0700, and refused unless it is a real directory owned by `uid` that
    nobody else can enter: another user on the node could otherwise pre-create it or plant a socket in it."""
    uid = os.geteuid() if uid is None else uid
    # TMPDIR decides, as for any temporary file: a job (or a test) with its own TMPDIR gets its own zygote.
    base = Path(tempfile.gettempdir()) if base is None else base
    directory = Path(base) / f"peftstudy-{uid}"
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    fix = f"remove it (rm -rf {directory}) or set PEFTSTUDY_ZYGOTE=0"
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeZygote(f"{directory} is not a directory (a symlink?): refusing to use it for the zygote; {fix}")
    if info.st_uid != uid:
        raise UnsafeZygote(f"{directory} is owned by uid {info.st_uid}, not by you (uid {uid}): another user may "
                           f"control it; refusing to use it for the zygote; {fix}")
    if info.st_mode & 0o077:
        raise UnsafeZygote(f"{directory} has mode {stat.S_IMODE(info.st_mode):04o}: others can enter or write it; "
                           f"refusing to use it for the zygote; {fix}")
    return directory


def socket_path() -> Path:
    """One zygote per (interpreter, zygote code): a changed checkout or venv never reuses a stale one."""
    code = Path(__file__).read_bytes()
    # The package location too: two checkouts sharing one venv must not run each other's code.
    key = hashlib.sha256(sys.executable.encode() + str(PACKAGE_ROOT).encode() + code).hexdigest()[:16]
    return private_directory() / f"zygote-{key}.sock"


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket, as the kernel reports it."""
    credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def forwarded_environment(environment: dict[str, str]) -> dict[str, str]:
    """What a request carries: the job's environment without anything that looks like a secret."""
    return {name: value for name, value in environment.items() if not SECRET_NAME.search(name)}


def _encode(value: Any) -> Any:
    """Plain JSON, with tuples, paths and non-string-keyed dicts tagged so they arrive as they left."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, os.PathLike):
        return {"$path": os.fspath(value)}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {str(k): _encode(v) for k, v in value.items()}
        return {"$items": [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise TypeError(f"the zygote sends plain data only (str, numbers, lists, tuples, dicts, paths), not "
                    f"{type(value).__name__}: {value!r:.80}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag == "$path":
                return Path(inner)
            if tag == "$tuple":
                return tuple(_decode(v) for v in inner)
            if tag == "$items":
                return {_decode(k): _decode(v) for k, v in inner}
        return {k: _decode(v) for k, v in value.items()}
    return value


def _send(conn: socket.socket, obj: Any) -> None:
    payload = json.dumps(_encode(obj), allow_nan=True).encode()
    conn.sendall(struct.pack("!Q", len(payload)) + payload)


def _receive(conn: socket.socket) -> Any:
    header = _receive_exactly(conn, 8)
    if header is None:
        return None
    (size,) = struct.unpack("!Q", header)
    if size > MAX_MESSAGE_BYTES:
        raise UnsafeZygote(f"a zygote message announced {size} bytes (limit {MAX_MESSAGE_BYTES}): not from peftstudy")
    payload = _receive_exactly(conn, size)
    if payload is None:
        return None
    try:
        return _decode(json.loads(payload.decode()))
    except (UnicodeDecodeError, ValueError) as error:
        raise UnsafeZygote(f"a zygote message is not peftstudy's JSON ({error}): refusing it") from None


def _receive_exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = conn.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------------------------ server


def _run_child(conn: socket.socket, request: dict) -> None:
    """In the forked child: become the job, report the outcome, exit without running parent cleanup."""
    status = 1
    try:
        own_open_files()
        os.chdir(request["cwd"])
        secrets = {name: value for name, value in os.environ.items() if SECRET_NAME.search(name)}
        os.environ.clear()
        os.environ.update(forwarded_environment(request["env"]))
        os.environ.update(secrets)  # never sent over the socket: the zygote's own, i.e. this user's
        log_path = request.get("log")
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        # The client dies (job cancelled, Snakemake killed): stop the work too, as a cancelled job is stopped:
        # SIGTERM first, so training saves its checkpoint (checkpoint.StopRequest), then an exit after a grace.
        def watch_client():
            try:
                conn.recv(1)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(STOP_GRACE_S)
                os._exit(1)

        threading.Thread(target=watch_client, daemon=True).start()
        import importlib

        module_name, function_name = request["function"].split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        function(*request["args"], **request["kwargs"])
        reply = {"status": 0}
        status = 0
    except BaseException as error:  # reported to the client, which raises it in the job
        traceback.print_exc()
        reply = {"status": 1, "error": _one_line(error)}
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        _send(conn, reply)
    finally:
        os._exit(status)


def serve(path: Path, lock: Path) -> None:
    # Children that import peftstudy.execution.zygote get this module, with what it has kept warm.
    sys.modules.setdefault("peftstudy.execution.zygote", sys.modules[__name__])
    for module in PRELOAD:
        __import__(module)
    if path.exists():
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # created 0600, not chmod-ed after a window in which it was wider
    try:
        server.bind(str(path))
    finally:
        os.umask(previous)
    server.listen(64)
    lock.unlink(missing_ok=True)
    server.settimeout(5)
    children: set[int] = set()
    last_activity = time.monotonic()
    try:
        while True:
            for pid in list(children):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
                    last_activity = time.monotonic()
            if not children and time.monotonic() - last_activity > IDLE_EXIT_S:
                return
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            conn.settimeout(None)
            try:
                if peer_uid(conn) != os.geteuid():
                    raise UnsafeZygote("a connection from another user")
                request = _receive(conn)
            except (UnsafeZygote, OSError):
                conn.close()
                continue
            if request is None:
                conn.close()
                continue
            _warm_data(request["env"])
            pid = os.fork()
            if pid == 0:
                server.close()
                _run_child(conn, request)
            conn.close()
            children.add(pid)
            last_activity = time.monotonic()
    finally:
        server.close()
        if path.exists():
            path.unlink()


# ------------------------------------------------------------------------------------------------ client


def _connect(path: Path) -> socket.socket | None:
    """A connection to the zygote at `path`, or None when none listens there. Refuses (UnsafeZygote) a
    socket or a listening process that belongs to another user."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    uid = os.geteuid()
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != uid:
        raise UnsafeZygote(f"{path} is not a socket owned by you (uid {info.st_uid}, mode "
                           f"{stat.filemode(info.st_mode)}): refusing to send it a job; remove it or set PEFTSTUDY_ZYGOTE=0")
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        return None
    if peer_uid(client) != uid:
        client.close()
        raise UnsafeZygote(f"the process listening on {path} runs as another user: refusing to send it a job")
    return client


def _start_server(path: Path) -> None:
    lock = path.with_suffix(".lock")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        if time.time() - lock.stat().st_mtime < START_TIMEOUT_S:
            return  # another job is starting it
        lock.unlink(missing_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    subprocess.Popen(
        [sys.executable, "-m", "peftstudy.execution.zygote", str(path), str(lock)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=env,
    )


def _plain(value: Any) -> Any:
    """Snakemake's path objects are str subclasses; send plain data so the child needs no snakemake import."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if type(value) in (list, tuple) else [_plain(v) for v in value]
    return value


def call(function: str, *args, log: str | None = None, **kwargs) -> None:
    """Run module:function(*args, **kwargs) in a warm fork (or in this process when disabled)."""
    args, kwargs, log = _plain(args), _plain(kwargs), _plain(log)
    if not enabled():
        import importlib

        module_name, function_name = function.split(":")
        getattr(importlib.import_module(module_name), function_name)(*args, **kwargs)
        return
    path = socket_path()
    client = _connect(path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while client is None:
        _start_server(path)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the zygote at {path} did not start; run with PEFTSTUDY_ZYGOTE=0 to bypass it")
        time.sleep(0.2)
        client = _connect(path)
    request = {"function": function, "args": args, "kwargs": kwargs, "log": log, "cwd": os.getcwd(),
               "env": forwarded_environment(dict(os.environ))}
    with client:
        _send(client, request)
        reply = _receive(client)
    if reply is not None and not (isinstance(reply, dict) and isinstance(reply.get("status"), int)):
        raise UnsafeZygote(f"the zygote at {path} sent a reply that is not peftstudy's: {reply!r:.120}")
    if reply is None:
        cause = "the job's process died without reporting an error (killed? out of memory?)"
        raise JobFailed(f"{function} died without reporting (see {log or 'its output'})", cause,
                        traceback_in_log=bool(log))
    if reply["status"] != 0:
        raise JobFailed(f"{function} failed: {reply.get('error')} (full log: {log})", str(reply.get("error")),
                        traceback_in_log=bool(log))


if __name__ == "__main__":
    socket_file, lock_file = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        serve(socket_file, lock_file)
    finally:
        lock_file.unlink(missing_ok=True)
