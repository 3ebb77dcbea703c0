"""A real single-node SLURM cluster for tests: slurmctld + slurmd (+ munged) on this machine, torn down on exit.

    reason = cluster_unavailable_reason()          # None, or the exact check that failed (tests skip with it)
    with single_node_cluster(tmp_path) as cluster:  # idle and ready when the block starts
        job = cluster.sbatch("--wrap", "hostname", "--output", str(tmp_path / "out.txt"))
        cluster.wait_for_job(job, timeout=30)

The configuration goes to /etc/slurm/slurm.conf (job steps launched by srun with a stripped environment only
find it there; SLURM_CONF gets lost), with gres.conf beside it; whatever was there is backed up and restored on
exit. Everything else (state, spool, logs, pid files) lives inside the given work directory. Teardown runs
whatever happens (exceptions, KeyboardInterrupt, atexit as a fallback) and is idempotent: it cancels every job,
stops slurmd and slurmctld (SIGTERM, then SIGKILL after a timeout), stops munged only if it started it, and
restores /etc/slurm. A process lock (/run/lock) makes concurrent test sessions on one machine take turns, and
a session killed outright (SIGKILL: no atexit) is cleaned up by the next one from the state file it left in /run.

Every subprocess call has a timeout: a held job (e.g. "launch failed requeued held") makes tools that wait for
jobs hang forever, and wait_idle()/wait_for_job() raise on held jobs instead of waiting for them.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SLURM_DIR = Path("/etc/slurm")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN_DIR = Path("/run/munge")
LOCK_PATH = Path("/run/lock/peftstudy-slurm-test-cluster.lock")
STATE_PATH = Path("/run/peftstudy-slurm-test-cluster.json")
BACKUP_SUFFIX = ".peftstudy-test-backup"
MARKER = "# Written by peftstudy tests/support/slurm_cluster.py"
CLUSTER_NAME = "peftstudy-test"
DEFAULT_PORTS = {"slurmctld": 6817, "slurmd": 6818}
COMMANDS = ("slurmctld", "slurmd", "munged", "munge", "unmunge", "sbatch", "squeue", "sinfo", "scontrol", "sacct",
            "scancel", "srun")
SBIN = "/usr/sbin:/usr/local/sbin:/sbin"
KILL_WAIT = 10          # s between SIGTERM and SIGKILL when a job is cancelled (slurm.conf KillWait)
MIN_JOB_AGE = 3600      # s a finished job stays visible to squeue/scontrol: a whole test workflow (>= 3x the plugin's first status check)
CRED_EXPIRE = 10        # s; also how long a requeued job waits before it may start again (Slurm's default: 120)
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}
CLIENT_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCONTROL_", "SACCT_")

_ACTIVE: SingleNodeCluster | None = None  # the cluster this process is running, if any


class ClusterUnavailable(RuntimeError):
    """This machine cannot run the test cluster; the message is the check that failed."""


class ClusterError(RuntimeError):
    """The cluster did not start, or a job ended up somewhere it can never leave (held)."""


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers

def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN)


def _client_env(conf_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLIENT_ENV_PREFIXES)}
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":" + SBIN
    if conf_path is not None:
        env["SLURM_CONF"] = str(conf_path)
    return env


def _sh(cmd: Sequence[str], timeout: float = 30, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run cmd, never raising for its exit status; a timeout comes back as returncode 124."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        out = error.stdout.decode(errors="replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
        return subprocess.CompletedProcess(list(cmd), 124, out, f"timed out after {timeout} s")
    except OSError as error:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(error))


def _short_hostname() -> str:
    return socket.gethostname().split(".")[0]


def _proc_info(pid: int) -> tuple[str, str, int] | None:
    """(comm, state letter, ppid) of a live process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    right = stat.rindex(")")
    comm = stat[stat.index("(") + 1:right]
    fields = stat[right + 2:].split()
    return comm, fields[0], int(fields[1])


def _alive(pid: int, comm: str | None = None) -> bool:
    info = _proc_info(pid)
    return info is not None and info[1] not in ("Z", "X") and (comm is None or info[0] == comm)


def _processes(comm: str, zombies: bool = False) -> list[int]:
    """Live processes whose command name is comm (zombies too when asked)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _proc_info(int(entry.name))) and info[0] == comm \
                and (zombies or info[1] not in ("Z", "X")):
            found.append(int(entry.name))
    return sorted(found)


def _descendants(roots: Sequence[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _proc_info(int(entry.name))) and info[1] not in ("Z", "X"):
            children.setdefault(info[2], []).append(int(entry.name))
    found, stack = [], list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _stop_pid(pid: int, comm: str | None, timeout: float = 10, popen: subprocess.Popen | None = None) -> None:
    """SIGTERM, then SIGKILL after timeout; only while pid is still the process named comm."""
    if popen is not None and popen.poll() is not None:
        return
    if not _alive(pid, comm):
        if popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=1)
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=0.2)
                if popen.poll() is not None:
                    return
            elif not _alive(pid, comm):
                return
            else:
                time.sleep(0.2)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterError("no MemTotal in /proc/meminfo")


def _munge_works(timeout: float = 10) -> tuple[bool, str]:
    munge, unmunge = _which("munge"), _which("unmunge")
    if not munge or not unmunge:
        return False, "munge/unmunge not found"
    credential = _sh([munge, "-n"], timeout=timeout)
    if credential.returncode != 0:
        return False, (credential.stderr or credential.stdout).strip()
    decoded = _sh([unmunge], timeout=timeout, input=credential.stdout)
    return decoded.returncode == 0, (decoded.stderr or decoded.stdout).strip()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"({error})"


def _read_state() -> dict | None:
    try:
        return json.loads(STATE_PATH.read_text())
    except (OSError, ValueError):
        return None


def _write_state(state: dict) -> None:
    temporary = STATE_PATH.with_name(STATE_PATH.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=1))
    os.replace(temporary, STATE_PATH)


def _try_lock() -> int | None:
    """An fd holding the exclusive cluster lock, or None when another process holds it."""
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


_lock_fd: int | None = None
_lock_depth = 0


@contextlib.contextmanager
def machine_lock(timeout: float = 900) -> Iterator[None]:
    """Exclusive use of this machine's test cluster (/etc/slurm, the daemons), re-entrant within a process:
    concurrent test sessions take turns. ClusterUnavailable after timeout s."""
    global _lock_fd, _lock_depth
    if _lock_depth == 0:
        deadline = time.monotonic() + timeout
        while (fd := _try_lock()) is None:
            if time.monotonic() > deadline:
                owner = (_read_state() or {}).get("owner_pid")
                raise ClusterUnavailable(f"another test cluster (pid {owner}) held {LOCK_PATH} for over {timeout} s")
            time.sleep(1)
        _lock_fd = fd
    _lock_depth += 1
    try:
        yield
    finally:
        _lock_depth -= 1
        if _lock_depth == 0 and _lock_fd is not None:
            _unlock(_lock_fd)
            _lock_fd = None


def _stale_pids(state: dict | None) -> set[int]:
    return {pid for pid in ((state or {}).get("pids") or {}).values() if pid}


def _slurm_processes() -> dict[str, list[int]]:
    return {name: pids for name in ("slurmctld", "slurmd", "slurmstepd") if (pids := _processes(name))}


# ---------------------------------------------------------------------------------------------------------------------
# Availability

def cluster_unavailable_reason() -> str | None:
    """None when this machine can run the single-node test cluster, else the exact check that failed."""
    if _ACTIVE is not None:
        return f"a test cluster is already running in this process (work directory {_ACTIVE.workdir})"
    if os.geteuid() != 0:
        return f"not root (euid {os.geteuid()}): the daemons run as root and slurm.conf goes to {SLURM_DIR}"
    for name in COMMANDS:
        if _which(name) is None:
            return f"{name} is not on PATH (nor in {SBIN}): apt-get install slurm-wlm munge"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (apt-get install munge creates it)"
    if SLURM_DIR.exists():
        if not os.access(SLURM_DIR, os.W_OK | os.X_OK):
            return f"{SLURM_DIR} is not writable"
    elif not os.access(SLURM_DIR.parent, os.W_OK | os.X_OK):
        return f"{SLURM_DIR} does not exist and {SLURM_DIR.parent} is not writable"
    for directory in (STATE_PATH.parent, LOCK_PATH.parent.parent):
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"{directory} is not writable (state file and lock of the test cluster)"
    if not _short_hostname():
        return "the machine has no hostname (socket.gethostname() is empty)"
    try:
        socket.getaddrinfo(_short_hostname(), None)
    except OSError as error:
        return f"hostname {_short_hostname()!r} does not resolve ({error}): add it to /etc/hosts"
    if _lock_depth > 0:
        return _foreign_daemons_reason()
    fd = _try_lock()
    if fd is None:
        return None  # another test session's cluster: single_node_cluster() waits for it to finish
    try:
        return _foreign_daemons_reason()
    finally:
        _unlock(fd)


def _foreign_daemons_reason() -> str | None:
    """With the lock held: slurm daemons or a broken munged that no test cluster of ours started."""
    ours = _stale_pids(_read_state())
    for name, pids in _slurm_processes().items():
        foreign = [pid for pid in pids if pid not in ours]
        if name == "slurmstepd" and not (set(_processes("slurmd")) - ours):
            continue  # job steps left behind by a dead test session: teardown of the stale state kills them
        if foreign:
            return (f"{name} is already running (pid {', '.join(map(str, foreign))}) and was not started by "
                    f"tests/support/slurm_cluster.py: stop it (systemctl stop {name}) to run the cluster tests here")
    munged = [pid for pid in _processes("munged") if pid not in ours]
    if munged:
        works, message = _munge_works()
        if not works:
            return f"munged is running (pid {munged[0]}) but `munge -n | unmunge` fails: {message}"
    return None


# ---------------------------------------------------------------------------------------------------------------------
# The cluster

_SCONTROL_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9:/_.]*)=(.*?)(?= [A-Za-z][A-Za-z0-9:/_.]*=|$)")


def parse_scontrol_line(line: str) -> dict[str, str]:
    """One line of `scontrol show job -o` (or node/partition) as {Key: value}."""
    return {key: value.strip() for key, value in _SCONTROL_FIELD.findall(line.strip())}


class SingleNodeCluster:
    """A running single-node cluster (use single_node_cluster() to get one)."""

    def __init__(self, workdir: Path, cpus: int | None, mem_mb: int | None, partition: str,
                 cred_expire: int) -> None:
        self.workdir = Path(workdir).resolve()
        self.node_name = _short_hostname()
        self.cpus = int(cpus or os.cpu_count() or 1)
        self.mem_mb = int(mem_mb or max(512, int(_memory_mb() * 0.95)))
        self.partition = partition
        self.cred_expire = int(cred_expire)
        self.conf_path = SLURM_DIR / "slurm.conf"
        self.gres_conf_path = SLURM_DIR / "gres.conf"
        self.log_dir = self.workdir / "log"
        self.state_dir = self.workdir / "state"
        self.spool_dir = self.workdir / "spool"
        self.run_dir = self.workdir / "run"
        self.ports = dict(DEFAULT_PORTS)
        self.env = _client_env(self.conf_path)
        self._lock: contextlib.ExitStack | None = None
        self._state: dict = {}
        self._popens: dict[str, subprocess.Popen] = {}
        self._started_munged = False
        self._closed = False
        self.teardown_errors: list[str] = []

    # -- client helpers ------------------------------------------------------------------------------------------------

    def run(self, cmd: Sequence[str] | str, timeout: float = 30, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a client command (a list, or a string split like a shell would) against this cluster."""
        argv = shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]
        result = _sh(argv, timeout=timeout, env=self.env, input=input)
        if check and result.returncode != 0:
            raise ClusterError(f"{shlex.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def sbatch(self, *args: str, script: str | None = None, timeout: float = 30) -> int:
        """Submit a batch job (sbatch --parsable *args, the script on stdin when given); its job id."""
        result = self.run(["sbatch", "--parsable", *args], timeout=timeout, input=script)
        return int(result.stdout.strip().split(";")[0])

    def squeue(self) -> list[dict[str, str]]:
        """Jobs squeue lists (pending, running, completing...): [{job_id, state, reason, name}]."""
        result = self.run(["squeue", "--noheader", "--all", "--format=%i|%T|%r|%j"])
        jobs = []
        for line in result.stdout.splitlines():
            if line.strip():
                job_id, state, reason, name = line.split("|", 3)
                jobs.append({"job_id": job_id.strip(), "state": state.strip(), "reason": reason.strip(),
                             "name": name.strip()})
        return jobs

    def job_records(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge s), parsed from `scontrol show job -o`.

        sacct is not an option: there is no slurmdbd (AccountingStorageType=accounting_storage/none)."""
        result = self.run(["scontrol", "show", "job", "-o"])
        return [parse_scontrol_line(line) for line in result.stdout.splitlines()
                if line.strip() and line.startswith("JobId=")]

    def job(self, job_id: int | str) -> dict[str, str] | None:
        """scontrol's record of one job, or None when it is unknown (or purged after MinJobAge)."""
        result = self.run(["scontrol", "show", "job", "-o", str(job_id)], check=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("JobId=")]
        return parse_scontrol_line(lines[0]) if result.returncode == 0 and lines else None

    def node(self) -> dict[str, str]:
        """scontrol's record of the node."""
        return parse_scontrol_line(self.run(["scontrol", "show", "node", "-o", self.node_name]).stdout)

    def node_state(self) -> str:
        """The node's state as sinfo prints it (%t): idle, mix, alloc, down*, drain ..."""
        return self.run(["sinfo", "--noheader", "--nodes", self.node_name, "--format=%t"]).stdout.strip()

    @staticmethod
    def is_held(record: dict[str, str]) -> bool:
        """A job that will never run unless someone releases it (e.g. "launch failed requeued held")."""
        return (record.get("JobState") in ("REQUEUE_HOLD", "SPECIAL_EXIT")
                or (record.get("JobState") == "PENDING"
                    and (record.get("Priority") == "0" or "held" in record.get("Reason", "").lower()
                         or record.get("Reason") in ("JobHeldAdmin", "JobHeldUser"))))

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.3):
        """Poll predicate() until it returns something truthy (returned); ClusterError after timeout s."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout} s waiting for {what}\n{self.describe()}")
            time.sleep(interval)

    def wait_for_job(self, job_id: int | str, timeout: float = 60, states: Sequence[str] = tuple(TERMINAL_STATES)
                     ) -> dict[str, str]:
        """Wait until the job is in one of states (default: finished); its record. Raises on a held job."""
        def check():
            record = self.job(job_id)
            if record is None:
                raise ClusterError(f"job {job_id} is unknown to slurmctld")
            if self.is_held(record) and record.get("JobState") not in states:
                raise ClusterError(f"job {job_id} is held and will never run: {record.get('JobState')} "
                                   f"{record.get('Reason')}\n{self.describe()}")
            return record if record.get("JobState") in states else None
        return self.wait_for(check, timeout, f"job {job_id} to reach {'/'.join(sorted(states))}")

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until no job is queued, running or completing and the node is idle; raises on held jobs."""
        def check():
            records = self.job_records()
            held = [r for r in records if self.is_held(r)]
            if held:
                raise ClusterError("held jobs never finish: " + "; ".join(
                    f"{r.get('JobId')} {r.get('JobState')} {r.get('Reason')}" for r in held))
            busy = [r for r in records if r.get("JobState") not in TERMINAL_STATES
                    or "COMPLETING" in r.get("JobState", "")]
            return not busy and self.node_state() == "idle"
        self.wait_for(check, timeout, "an idle cluster")

    def describe(self) -> str:
        """Queue, node and the tails of the daemon logs, for error messages."""
        parts = []
        with contextlib.suppress(Exception):
            parts.append("squeue:\n" + _sh(["squeue", "--all"], timeout=10, env=self.env).stdout)
        with contextlib.suppress(Exception):
            parts.append("sinfo:\n" + _sh(["sinfo", "-N", "-l"], timeout=10, env=self.env).stdout)
        for name in ("slurmctld", "slurmd"):
            parts.append(f"{name}.log (tail):\n" + _tail(self.log_dir / f"{name}.log"))
            stdout = self.log_dir / f"{name}.stdout"
            if stdout.exists() and stdout.stat().st_size:
                parts.append(f"{name} stdout/stderr:\n" + _tail(stdout, 10))
        return "\n".join(parts)

    # -- configuration -------------------------------------------------------------------------------------------------

    def slurm_conf(self) -> str:
        w = self.workdir
        return f"""{MARKER} (pid {os.getpid()}) for a throwaway test cluster.
# The original file, if any, is {self.conf_path}{BACKUP_SUFFIX} until the cluster stops and puts it back.
ClusterName={CLUSTER_NAME}
SlurmctldHost={self.node_name}
SlurmctldPort={self.ports['slurmctld']}
SlurmdPort={self.ports['slurmd']}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire={self.cred_expire}
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
DefMemPerCPU=1000
MinJobAge={MIN_JOB_AGE}
KillWait={KILL_WAIT}
JobRequeue=1
ReturnToService=2
InactiveLimit=0
Waittime=0
MailProg=/bin/true
StateSaveLocation={w}/state
SlurmdSpoolDir={w}/spool
SlurmctldPidFile={w}/run/slurmctld.pid
SlurmdPidFile={w}/run/slurmd.pid
SlurmctldLogFile={w}/log/slurmctld.log
SlurmdLogFile={w}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName={self.node_name} CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:fake:1 State=UNKNOWN
PartitionName={self.partition} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP
"""

    def gres_conf(self) -> str:
        return (f"{MARKER} (pid {os.getpid()}): one fake GPU, so --gpus=1 schedules (CUDA_VISIBLE_DEVICES=0).\n"
                f"NodeName={self.node_name} Name=gpu Type=fake File=/dev/null\n")

    # -- lifecycle -----------------------------------------------------------------------------------------------------

    def _save_state(self) -> None:
        _write_state(self._state)

    def _acquire_lock(self, timeout: float) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(machine_lock(timeout))
        self._lock = stack

    def _install(self, path: Path, text: str) -> None:
        """Write path (atomically), backing up what was there first; recorded in the state file before."""
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        if path.exists() or path.is_symlink():
            shutil.copy2(path, backup, follow_symlinks=False)
            self._state["files"][str(path)] = str(backup)
        else:
            self._state["files"][str(path)] = None
        self._save_state()
        temporary = path.with_name(path.name + ".peftstudy-tmp")
        temporary.write_text(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)

    def _ensure_munge(self) -> None:
        munge_user = pwd.getpwnam("munge")
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(MUNGE_KEY.parent, munge_user.pw_uid, munge_user.pw_gid)
            mungekey = _which("mungekey")
            if mungekey:
                made = _sh([mungekey, "--create", "--keyfile", str(MUNGE_KEY)], timeout=30)
            elif _which("create-munge-key"):
                made = _sh([_which("create-munge-key"), "-f"], timeout=30)
            else:
                made = _sh(["dd", "if=/dev/urandom", f"of={MUNGE_KEY}", "bs=1", "count=1024"], timeout=30)
            if made.returncode != 0 or not MUNGE_KEY.exists():
                raise ClusterError(f"could not create {MUNGE_KEY}: {made.stderr}")
        status = MUNGE_KEY.stat()
        if status.st_uid != munge_user.pw_uid or status.st_mode & 0o077:
            os.chown(MUNGE_KEY, munge_user.pw_uid, munge_user.pw_gid)
            os.chmod(MUNGE_KEY, 0o400)
        if _munge_works(timeout=10)[0]:
            return  # someone else's munged: use it, never stop it
        for directory, mode in ((MUNGE_RUN_DIR, 0o755), (Path("/var/log/munge"), 0o700), (Path("/var/lib/munge"), 0o711)):
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, munge_user.pw_uid, munge_user.pw_gid)
            os.chmod(directory, mode)
        log = open(self.log_dir / "munged.stdout", "ab")
        popen = subprocess.Popen([_which("munged"), "--foreground"], stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, user=munge_user.pw_uid, group=munge_user.pw_gid,
                                 extra_groups=[], start_new_session=True, env=_client_env(), cwd="/")
        log.close()
        self._popens["munged"] = popen
        self._started_munged = True
        self._state["pids"]["munged"] = popen.pid
        self._state["started_munged"] = True
        self._save_state()
        deadline = time.monotonic() + 15
        while not (works := _munge_works(timeout=5))[0]:
            if popen.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"munged did not come up ({works[1]}):\n{_tail(self.log_dir / 'munged.stdout')}\n"
                                   f"{_tail(Path('/var/log/munge/munged.log'))}")
            time.sleep(0.2)

    def _start_daemon(self, name: str) -> None:
        log = open(self.log_dir / f"{name}.stdout", "ab")
        # -D: stay in the foreground as our child (its own session: a terminal's Ctrl-C reaches only pytest,
        # whose teardown then stops the daemons in order). Absolute -f: the daemons chdir.
        popen = subprocess.Popen([_which(name), "-D", "-f", str(self.conf_path)], stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=_client_env(self.conf_path), cwd=str(self.run_dir))
        log.close()
        self._popens[name] = popen
        self._state["pids"][name] = popen.pid
        self._save_state()

    def _start(self, lock_timeout: float, start_timeout: float) -> None:
        self._acquire_lock(lock_timeout)
        recover_stale_cluster()
        leftovers = _slurm_processes()
        if leftovers:
            raise ClusterUnavailable("slurm daemons not started by tests/support/slurm_cluster.py are running: "
                                     + ", ".join(f"{name} {pids}" for name, pids in leftovers.items()))
        for directory in (self.log_dir, self.state_dir, self.spool_dir, self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for name, port in DEFAULT_PORTS.items():
            self.ports[name] = port if _port_free(port) else _free_port()
        self._state = {"owner_pid": os.getpid(), "workdir": str(self.workdir), "files": {}, "pids": {},
                       "started_munged": False, "created": time.time()}
        self._save_state()
        self._ensure_munge()
        SLURM_DIR.mkdir(parents=True, exist_ok=True)
        self._install(self.conf_path, self.slurm_conf())
        self._install(self.gres_conf_path, self.gres_conf())
        self._start_daemon("slurmctld")
        self._start_daemon("slurmd")
        deadline = time.monotonic() + start_timeout
        state = ""
        while True:
            for name in ("slurmctld", "slurmd"):
                if self._popens[name].poll() is not None:
                    raise ClusterError(f"{name} exited with status {self._popens[name].returncode} while starting\n"
                                       f"{self.describe()}")
            result = _sh(["sinfo", "--noheader", "--nodes", self.node_name, "--format=%t"], timeout=10, env=self.env)
            state = result.stdout.strip()
            if state == "idle":
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the node is not idle {start_timeout} s after starting the daemons (sinfo: "
                                   f"{state or result.stderr.strip()!r})\n{self.describe()}")
            time.sleep(0.3)

    def close(self) -> None:
        """Tear everything down; safe to call any number of times, from anywhere (atexit included)."""
        global _ACTIVE
        if self._closed:
            return
        self._closed = True
        errors = self.teardown_errors

        def step(what, function, *args):
            try:
                function(*args)
            except BaseException as error:  # teardown must go on, whatever happens
                errors.append(f"{what}: {type(error).__name__}: {error}")

        try:
            if self._popens.get("slurmctld") and self._popens["slurmctld"].poll() is None:
                step("cancelling jobs", self._cancel_all_jobs)
            for name in ("slurmd", "slurmctld"):
                if name in self._popens:
                    step(f"stopping {name}", _stop_pid, self._popens[name].pid, None, 10, self._popens[name])
            if self._lock is not None:
                step("stopping job steps", _kill_job_steps)
            if self._started_munged:
                step("stopping munged", _stop_pid, self._popens["munged"].pid, None, 10, self._popens["munged"])
            step("restoring /etc/slurm", _restore_files, self._state.get("files", {}))
            if self._lock is not None:
                step("removing the state file", STATE_PATH.unlink, True)
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None
            if _ACTIVE is self:
                _ACTIVE = None
            with contextlib.suppress(Exception):
                atexit.unregister(self.close)

    def _cancel_all_jobs(self) -> None:
        jobs = [job["job_id"] for job in self.squeue()]
        if not jobs:
            return
        self.run(["scancel", *jobs], check=False, timeout=30)
        deadline = time.monotonic() + KILL_WAIT + 15
        while time.monotonic() < deadline:
            if not self.squeue():
                return
            time.sleep(0.3)


def _kill_job_steps() -> None:
    """slurmstepd outlives slurmd: kill any left (and the job processes under them). Only called while holding
    the lock with no other slurmd running, so every slurmstepd here is the test cluster's."""
    steps = _processes("slurmstepd")
    for pid in [*_descendants(steps), *steps]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # A finished slurmstepd is reparented to init, which reaps it a moment later: wait so none is left listed.
    deadline = time.monotonic() + 10
    while _processes("slurmstepd", zombies=True) and time.monotonic() < deadline:
        time.sleep(0.2)


def _restore_files(files: dict[str, str | None]) -> None:
    for path, backup in files.items():
        if backup is not None and os.path.lexists(backup):
            os.replace(backup, path)
        elif backup is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    for leftover in SLURM_DIR.glob("*.peftstudy-tmp"):
        leftover.unlink()


def recover_stale_cluster() -> None:
    """Clean up after a test session that died without teardown (SIGKILL, power loss). Call with the lock held."""
    state = _read_state()
    if state and state.get("owner_pid") != os.getpid():
        pids = state.get("pids") or {}
        for name in ("slurmd", "slurmctld"):
            if pids.get(name):
                _stop_pid(pids[name], name, timeout=10)
        if not (set(_processes("slurmd")) - set(pids.values())):
            _kill_job_steps()
        if state.get("started_munged") and pids.get("munged"):
            _stop_pid(pids["munged"], "munged", timeout=10)
        _restore_files(state.get("files") or {})
        STATE_PATH.unlink(missing_ok=True)
    # A state file lost with /run (reboot) still leaves our marked files in /etc/slurm: put the backups back.
    for name in ("slurm.conf", "gres.conf"):
        path = SLURM_DIR / name
        backup = path.with_name(name + BACKUP_SUFFIX)
        try:
            ours = path.read_text(errors="replace").startswith(MARKER)
        except OSError:
            ours = False
        if ours:
            if backup.exists():
                os.replace(backup, path)
            else:
                path.unlink()


@contextlib.contextmanager
def single_node_cluster(workdir: Path, cpus: int | None = None, mem_mb: int | None = None, *,
                        partition: str = "debug", cred_expire: int = CRED_EXPIRE, lock_timeout: float = 900,
                        start_timeout: float = 30) -> Iterator[SingleNodeCluster]:
    """Start slurmctld + slurmd (+ munged if none runs) for one node with this machine's hostname, cpus CPUs
    (default: all) and mem_mb MB (default: 95% of RAM), one fake GPU; yield it idle; tear it all down on exit.

    Raises ClusterUnavailable (the check that failed) when the machine cannot run it, ClusterError when the
    daemons do not bring the node to idle within start_timeout s. Waits up to lock_timeout s for another
    test session's cluster to finish."""
    global _ACTIVE
    reason = cluster_unavailable_reason()
    if reason:
        raise ClusterUnavailable(reason)
    cluster = SingleNodeCluster(workdir, cpus, mem_mb, partition, cred_expire)
    _ACTIVE = cluster
    atexit.register(cluster.close)
    on_sigterm = _sigterm_as_keyboard_interrupt()
    try:
        cluster._start(lock_timeout, start_timeout)
        yield cluster
    finally:
        cluster.close()
        if on_sigterm is not None and signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _sigterm_as_keyboard_interrupt():
    """SIGTERM (e.g. from `timeout`) would end the process without teardown or atexit: while the cluster runs,
    make it a KeyboardInterrupt (pytest then stops and tears down). Only where nobody else handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills outright
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    return on_sigterm
