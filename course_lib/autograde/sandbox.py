"""Run every kernel nbgrader starts inside a bubblewrap sandbox.

Threat model
------------
A submission is untrusted code, and nbgrader runs it in an ordinary Jupyter
kernel with the grader's rights: left alone it could read ``solutions/`` and
other students' work, rewrite ``gradebook.db``, reach the network, fill the
machine's memory or process table, or leave processes running after grading.
:class:`SandboxedKernelManager` starts each kernel under `bubblewrap`_ so that
the kernel

* sees only a read-only allow-list -- ``/usr``, ``/etc``, the Python
  installation (``sys.prefix``, ``sys.base_prefix``, package folders on
  ``sys.path``), the installed ``course_lib`` package and the course cache --
  plus a private *copy* of its notebook's folder, bound read-write at the
  original path (relative paths keep working; the real folder is never
  written, and the copy is deleted at shutdown) and a fresh home and ``/tmp``;
* has no network (an empty network namespace: not even the grader's loopback);
* runs as an unprivileged uid of its own (when the grader is root), under
  rlimits: address space (``RLIMIT_AS``), processes (``RLIMIT_NPROC``, per uid,
  so a fork bomb in one kernel never blocks another), optionally CPU time;
* dies completely, with every process it forked, when it is shut down or killed
  or when the grading process dies (a pid namespace plus ``--die-with-parent``).

Out of scope: kernel exploits, disk space (the private copy and the home are on
disk; single files are not capped), and what student code does *inside* its own
kernel to the checks run there -- that is the tamper checks' job.

The kernel talks to nbgrader over ZeroMQ IPC sockets (Unix socket files in a
private runtime folder bound into the sandbox), because it cannot reach TCP
ports on the grader's loopback from its own network namespace. Interrupts are
sent as messages: the kernel is in its own session, out of reach of
jupyter_client's process-group signals.

The bwrap command line, flag by flag
------------------------------------
``--unshare-net``              an empty network namespace: no interfaces but its own ``lo``
``--unshare-pid``              a pid namespace: the kernel cannot see or signal the grader's
                               processes, and when its init dies every process in it dies
``--unshare-ipc/-uts``         private System V IPC and hostname
``--die-with-parent``          SIGKILL the sandbox when bwrap's parent (nbgrader) dies
``--new-session``              a new session: no way to inject input into the grader's terminal
``--ro-bind SRC DEST``         one read-only folder of the allow-list (nothing else of ``/``)
``--symlink``                  ``/bin``, ``/lib``... as on the host (merged-``/usr`` systems)
``--dev /dev``, ``--proc``     a minimal ``/dev`` (null, zero, urandom...) and this namespace's ``/proc``
``--perms --size --tmpfs``     a size-capped, world-writable ``/tmp`` and ``/dev/shm`` in memory
``--perms 0755 --dir``         the parent folders of the mounts (bwrap would make them 0700)
``--bind``                     the private copy of the notebook's folder, the home, the socket folder
``--chdir``, ``--setenv``      start in the copy; ``JPY_PARENT_PID=1``: the kernel's parent is the
                               sandbox's init (pid 1), which ipykernel must not take for an orphaned kernel

then ``prlimit`` sets the rlimits and ``setpriv`` switches to the kernel's uid
with no capabilities and ``no_new_privs`` (no setuid binaries), before the
kernel itself starts.

Wiring it in (``nbgrader_config.py``)::

    c.Execute.kernel_manager_class = "course_lib.autograde.sandbox.SandboxedKernelManager"

``python -m course_lib.autograde.sandbox`` says whether a sandbox can run here.

.. _bubblewrap: https://github.com/containers/bubblewrap
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Int, List, Unicode

import course_lib

from ..env import cache_dir

NAMESPACE_FLAGS = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
LIFETIME_FLAGS = ["--die-with-parent", "--new-session"]
SANDBOX_HOME = "/home/student"
FIRST_UID = 200_000
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Variables that point into the grader's home, which the kernel does not see.
_UNSET_ENV = (
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
    "IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "OLDPWD",
)  # fmt: skip
_RUNTIME_PREFIX = "nbgrader-sandbox-"


def _is_root() -> bool:
    return os.geteuid() == 0


def _drop_privileges(uid: int) -> list[str]:
    """The ``setpriv`` prefix that runs a command as ``uid`` with no capabilities (root only)."""
    setpriv = shutil.which("setpriv") or "setpriv"
    ids = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return [setpriv, *ids, "--no-new-privs", "--bounding-set=-all", "--"]


@functools.cache
def sandbox_status(bwrap: str = "bwrap", uid: int = FIRST_UID) -> tuple[bool, str]:
    """Whether kernels can be sandboxed here, and why (not).

    Runs ``bwrap`` once with the namespaces the kernels get (and, as root,
    ``setpriv`` to ``uid``), so a missing binary, a kernel without user or
    network namespaces, or a container that forbids them all answer ``False``.
    """
    if not sys.platform.startswith("linux"):
        return False, f"bubblewrap runs on Linux only, this is {sys.platform}"
    path = shutil.which(bwrap)
    if path is None:
        return False, f"no bubblewrap binary ({bwrap!r} is not on PATH)"
    tools = ["prlimit", "setpriv"] if _is_root() else ["prlimit"]
    for tool in tools:
        if not (shutil.which(tool) or "").startswith("/usr/"):
            return False, f"{tool} (util-linux) is not installed under /usr"
    if _is_root() and not 0 < uid < 2**31:
        return False, f"uid {uid} is not a plain unprivileged uid (1 .. 2**31 - 1)"
    drop = _drop_privileges(uid) if _is_root() else []
    cmd = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *NAMESPACE_FLAGS, *LIFETIME_FLAGS]
    cmd += ["--", *drop, "true"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bubblewrap self-test failed: {exc}"
    if proc.returncode != 0:
        hint = f" (is uid {uid} usable here? c.SandboxedKernelManager.first_uid)" if "setpriv" in proc.stderr else ""
        return False, f"bubblewrap self-test `{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.returncode}{hint}"
    who = f"a uid of its own from {uid}" if _is_root() else f"uid {os.getuid()} (not root: no uid of its own)"
    return True, f"{version or 'bubblewrap'}, each kernel as {who}, no network"


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _processes() -> list[tuple[int, int, int]]:
    """``(pid, real uid, threads)`` of every process in /proc."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
            uid = int(status.split("\nUid:")[1].split()[0])
            threads = int(status.split("\nThreads:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue  # gone while we looked
        found.append((int(entry.name), uid, threads))
    return found


def _tasks_by_uid() -> dict[int, int]:
    """How many tasks (processes and threads, as RLIMIT_NPROC counts them) each real uid runs."""
    counts: dict[int, int] = {}
    for _, uid, threads in _processes():
        counts[uid] = counts.get(uid, 0) + threads
    return counts


def _pids_of(uid: int) -> list[int]:
    return [pid for pid, owner, _ in _processes() if owner == uid]


def _remove_stale_runtimes() -> None:
    """Delete runtime folders left by grading processes that were killed before they could clean up."""
    for entry in Path(tempfile.gettempdir()).glob(_RUNTIME_PREFIX + "*-*"):
        try:
            os.kill(int(entry.name[len(_RUNTIME_PREFIX) :].split("-")[0]), 0)
        except ProcessLookupError:
            if entry.stat().st_uid == os.geteuid():
                shutil.rmtree(entry, ignore_errors=True)
        except (ValueError, OSError):
            continue


@dataclass
class _Sandbox:
    """One kernel's private state on the host: its runtime folder, uid and uid lock."""

    runtime: Path
    cwd: str  # the notebook's folder, as the kernel sees it
    uid: int
    lock_fd: int | None

    @property
    def conn(self) -> Path:  # connection file and ZeroMQ sockets
        return self.runtime / "conn"

    @property
    def home(self) -> Path:
        return self.runtime / "home"

    @property
    def work(self) -> Path:  # the private copy of ``cwd``
        return self.runtime / "work"


class SandboxedKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernels run inside bubblewrap (see the module docstring)."""

    enabled = Bool(True, config=True, help="Sandbox kernels (False: treat the sandbox as unavailable).")
    allow_unsandboxed = Bool(
        False, config=True, help="Let `nbgrader autograde` run kernels unsandboxed when no sandbox works here."
    )
    memory_limit = Int(4 * 2**30, config=True, help="Address space (RLIMIT_AS) of each kernel process, bytes; 0: none.")
    max_processes = Int(512, config=True, help="Processes and threads (RLIMIT_NPROC) of each kernel; 0: none.")
    cpu_time_limit = Int(0, config=True, help="CPU seconds (RLIMIT_CPU) of each kernel process; 0: none.")
    tmp_size = Int(512 * 2**20, config=True, help="Size of the kernel's in-memory /tmp and /dev/shm, bytes each.")
    first_uid = Int(FIRST_UID, config=True, help="Kernels run as uids first_uid .. first_uid + uid_count - 1.")
    uid_count = Int(10_000, config=True, help="How many uids kernels may use (one per running kernel).")
    bwrap = Unicode("bwrap", config=True, help="The bubblewrap binary (name on PATH, or a path).")
    extra_ro_paths = List(Unicode(), config=True, help="More host folders the kernel may read.")

    _sandbox: _Sandbox | None = None

    # ---- the narrowest hooks: build the command, then clean up after it -----------------------------

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        if not self._sandbox_wanted():
            return await super()._async_pre_start_kernel(**kw)
        box = self._sandbox or self._open_sandbox(kw.get("cwd"))
        self.transport, self.cache_ports = "ipc", False
        self.ip, self.connection_file = str(box.conn / "kernel"), str(box.conn / "kernel.json")
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        os.chown(self.connection_file, box.uid, box.uid)
        assert self.kernel_spec is not None
        self.kernel_spec.interrupt_mode = "message"  # signals to our process group do not reach the kernel
        return self._wrap(cmd, kw, box), kw

    pre_start_kernel = _async_pre_start_kernel  # type: ignore[assignment]

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if self._sandbox is not None and not restart:
            box, self._sandbox = self._sandbox, None
            await self._close_sandbox(box)

    cleanup_resources = _async_cleanup_resources  # type: ignore[assignment]

    # ---- deciding --------------------------------------------------------------------------------

    def _sandbox_wanted(self) -> bool:
        ok, why = sandbox_status(self.bwrap, self.first_uid) if self.enabled else (False, "disabled by configuration")
        if ok:
            return True
        if os.environ.get("NBGRADER_EXECUTION") == "autograde":
            if not self.allow_unsandboxed:
                raise RuntimeError(
                    f"grading untrusted submissions needs a sandbox (bubblewrap): {why}. Install bubblewrap "
                    "(apt install bubblewrap), or pass --unsafe-no-sandbox / set "
                    "c.SandboxedKernelManager.allow_unsandboxed = True to grade without one"
                )
            self.log.warning(
                "!!! GRADING WITHOUT A SANDBOX (%s): submissions run with your rights, can read solutions/ and the "
                "gradebook, and reach the network !!!",
                why,
            )
        else:
            self.log.info("Kernel runs unsandboxed (%s); fine for your own notebooks.", why)
        return False

    # ---- the sandbox's folders and uid ------------------------------------------------------------

    def _open_sandbox(self, cwd: str | None) -> _Sandbox:
        cwd = os.path.realpath(cwd or os.getcwd())
        for path in self._readable_paths(cwd):
            for secret in (cwd, *self._course_roots()):
                if _inside(secret, path):
                    raise RuntimeError(f"{secret} lies inside {path}, which the kernel's sandbox must expose")
        _remove_stale_runtimes()
        uid, lock_fd = self._claim_uid() if _is_root() else (os.getuid(), None)
        runtime = Path(tempfile.mkdtemp(prefix=f"{_RUNTIME_PREFIX}{os.getpid()}-"))
        box = _Sandbox(runtime, cwd, uid, lock_fd)
        try:  # (mkdtemp cannot fail in a way that leaves the uid locked for long: the lock dies with us)
            runtime.chmod(0o711)  # the kernel's uid may pass through, not list
            box.conn.mkdir(mode=0o700)
            box.home.mkdir(mode=0o700)
            shutil.copytree(cwd, box.work, symlinks=True)  # symlinks stay links: they cannot reach out of the copy
            if _is_root():
                for folder in (box.conn, box.home, box.work):
                    os.chown(folder, uid, uid)
                for root, dirs, files in os.walk(box.work):
                    for name in dirs + files:
                        os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)
        except BaseException:
            shutil.rmtree(runtime, ignore_errors=True)
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        self._sandbox = box
        return box

    def _claim_uid(self) -> tuple[int, int]:
        """A uid no other kernel uses: no process runs as it, and we hold its lock file while the kernel lives."""
        import fcntl

        locks = Path(tempfile.gettempdir()) / "nbgrader-sandbox-uids"
        locks.mkdir(mode=0o700, exist_ok=True)
        if locks.stat().st_uid != os.geteuid():
            raise RuntimeError(f"{locks} belongs to someone else")
        if not (0 < self.first_uid and self.first_uid + self.uid_count <= 2**31 and self.uid_count > 0):
            raise RuntimeError(f"sandbox uids must lie in 1 .. 2**31 - 1, not from {self.first_uid} ({self.uid_count})")
        busy = _tasks_by_uid()
        start = random.randrange(self.uid_count)
        for i in range(self.uid_count):
            uid = self.first_uid + (start + i) % self.uid_count
            if uid in busy:
                continue
            fd = os.open(locks / str(uid), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return uid, fd
        raise RuntimeError(f"all {self.uid_count} sandbox uids from {self.first_uid} are in use")

    async def _close_sandbox(self, box: _Sandbox) -> None:
        """Make sure nothing of the kernel runs any more, then delete its folders and free its uid."""
        if box.lock_fd is not None:
            for _ in range(100):  # the pid namespace is going away; give it up to 5 s
                if not _pids_of(box.uid):
                    break
                await asyncio.sleep(0.05)
            else:
                self.log.warning("sandbox uid %d still has processes after shutdown: killing them", box.uid)
                for pid in _pids_of(box.uid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        shutil.rmtree(box.runtime, ignore_errors=True)
        if box.lock_fd is not None:
            os.close(box.lock_fd)

    # ---- the command line ---------------------------------------------------------------------------

    def _readable_paths(self, cwd: str) -> list[str]:
        """What the kernel may read besides /usr and /etc: Python, course_lib, the course cache."""
        wanted = [sys.base_prefix, sys.prefix, str(Path(course_lib.__file__).parent), *self.extra_ro_paths]
        if cache_dir().is_dir():
            wanted.append(str(cache_dir()))
        # Package folders on sys.path, but none in the course, and none holding the notebook's folder, our
        # cwd or the home (a script's folder or '' on sys.path would otherwise expose all of it).
        courses = self._course_roots()
        private = [cwd, os.getcwd(), str(Path.home()), *courses]
        for entry in sys.path:
            path = os.path.realpath(entry or ".")
            if any(_inside(p, path) for p in private) or any(_inside(path, c) for c in courses):
                continue
            wanted.append(path)
        paths: list[str] = []
        for path in sorted({os.path.realpath(p) for p in wanted if os.path.exists(p)}, key=len):
            if not any(_inside(path, p) for p in ["/usr", "/etc", *paths]):
                paths.append(path)
        return paths

    def _course_roots(self) -> list[str]:
        """The folders holding course material: the one course_lib is installed from, nbgrader's course root."""
        roots = [str(Path(course_lib.__file__).resolve().parent.parent)]
        root = self.config.get("CourseDirectory", {}).get("root")
        if root:
            roots.append(os.path.realpath(root))
        return roots

    def _wrap(self, cmd: list[str], kw: dict[str, Any], box: _Sandbox) -> list[str]:
        """``bwrap [mounts] -- prlimit [caps] -- setpriv [uid] -- <kernel command>``, and its environment."""
        env = kw["env"]
        for name in _UNSET_ENV:
            env.pop(name, None)
        env.update(HOME=SANDBOX_HOME, TMPDIR="/tmp", PWD=box.cwd)
        if cache_dir().is_dir():
            env["COURSE_CACHE_DIR"] = str(cache_dir())  # read-only, at its real path whatever HOME is
        else:
            env.pop("COURSE_CACHE_DIR", None)  # nothing to read: cache in the (throw-away) home instead
        kw["cwd"] = str(box.runtime)  # bwrap itself never runs in the real folder

        args = [shutil.which(self.bwrap) or self.bwrap, *NAMESPACE_FLAGS, *LIFETIME_FLAGS, "--hostname", "sandbox"]
        args += ["--ro-bind", "/usr", "/usr"]
        for top in _TOP_LEVEL:
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += ["--ro-bind", "/etc", "/etc", "--dev", "/dev", "--proc", "/proc"]
        for tmp in ("/tmp", "/dev/shm"):
            args += ["--perms", "1777", "--size", str(self.tmp_size), "--tmpfs", tmp]
        trees, dirs = ["/usr", "/etc", "/dev", "/proc", *_TOP_LEVEL], {"/", "/tmp", "/dev/shm"}

        def mount(flag: str, src: str, dest: str) -> None:
            for parent in reversed(Path(dest).parents):  # bwrap would create missing parents 0700
                if str(parent) not in dirs and not any(_inside(str(parent), t) for t in trees):
                    args.extend(["--perms", "0755", "--dir", str(parent)])
                    dirs.add(str(parent))
            args.extend([flag, src, dest])
            trees.append(dest)

        for path in self._readable_paths(box.cwd):
            mount("--ro-bind", path, path)
        mount("--bind", str(box.conn), str(box.conn))
        mount("--bind", str(box.home), SANDBOX_HOME)
        mount("--bind", str(box.work), box.cwd)
        args += ["--chdir", box.cwd, "--setenv", "JPY_PARENT_PID", "1", "--"]

        limits = [shutil.which("prlimit") or "prlimit", "--core=0"]
        if self.memory_limit:
            limits.append(f"--as={self.memory_limit}")
        if self.max_processes:
            # RLIMIT_NPROC counts every task of the real uid; without a uid of its own the kernel shares ours.
            extra = 0 if _is_root() else _tasks_by_uid().get(os.getuid(), 0)
            limits.append(f"--nproc={self.max_processes + extra}")
        if self.cpu_time_limit:
            limits.append(f"--cpu={self.cpu_time_limit}")
        drop = _drop_privileges(box.uid) if _is_root() else []
        return [*args, *limits, "--", *drop, *cmd]


def main() -> int:
    ok, why = sandbox_status()
    print(f"[OK] sandbox: {why}" if ok else f"[FAIL] sandbox: {why}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
