"""course_lib.autograde.sandbox: a sandboxed kernel sees, reaches and holds only what it should.

Every test that starts a kernel is slow (about a second per kernel) and runs with low caps, so
that a broken sandbox fails the test instead of hurting the machine: each dangerous cell first
checks, inside the kernel, that the cap it is about to hit is really in place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_lib.autograde import sandbox
from course_lib.autograde.sandbox import SandboxedKernelManager, sandbox_status

ROOT = Path(__file__).resolve().parent.parent
GiB = 2**30
AVAILABLE, WHY = sandbox_status()
needs_sandbox = pytest.mark.skipif(not AVAILABLE, reason=f"no sandbox on this machine: {WHY}")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a uid per kernel needs a grader running as root")
SMALL = {"memory_limit": GiB * 3 // 2, "max_processes": 64}  # for kernels that do not import torch


async def _execute(kc, code: str, timeout: float = 30) -> tuple[str, str | None]:
    """Run ``code``; return its printed output and the error's name (None when it ran)."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append(msg["content"]["ename"])

    await kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return "".join(out), (errors[0] if errors else None)


class Kernel:
    """``async with Kernel(cwd, **traits) as k: out, err = await k.run(code)``."""

    def __init__(self, cwd: Path, **traits):
        self.km = SandboxedKernelManager(**traits)
        self.cwd = cwd

    async def __aenter__(self) -> Kernel:
        await self.km.start_kernel(cwd=str(self.cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)
        return self

    async def run(self, code: str, timeout: float = 30) -> tuple[str, str | None]:
        return await _execute(self.kc, textwrap.dedent(code), timeout)

    async def __aexit__(self, *exc) -> None:
        self.kc.stop_channels()
        await self.km.shutdown_kernel(now=True)


def _alive(uid: int) -> list[int]:
    return sandbox._pids_of(uid)


def _wait_gone(uid: int, seconds: float = 5) -> list[int]:
    deadline = time.monotonic() + seconds
    while _alive(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(uid)


# ---- without starting a kernel ------------------------------------------------------------------


def test_the_allow_list_holds_python_and_course_lib_but_not_the_course(monkeypatch):
    monkeypatch.setattr(sys, "path", [*sys.path, "", str(ROOT), str(ROOT / "solutions"), "/"])
    paths = SandboxedKernelManager()._readable_paths(str(ROOT / "grading" / "autograded" / "alice" / "ps1"))
    assert os.path.realpath(sys.base_prefix) in paths
    assert str(ROOT / "course_lib") in paths
    for path in paths:
        assert not sandbox._inside(str(ROOT), path), f"{path} would expose the course root"
        assert not sandbox._inside(str(Path.home()), path), f"{path} would expose the home"
        assert not sandbox._inside(path, str(ROOT)) or path == str(ROOT / "course_lib") or path == sys.prefix


def test_no_bubblewrap_is_reported():
    ok, why = sandbox_status("/nonexistent/bwrap")
    assert not ok and "no bubblewrap binary" in why


@pytest.mark.parametrize(
    ("traits", "why"), [({"bwrap": "/nonexistent/bwrap"}, "no bubblewrap binary"), ({"enabled": False}, "disabled")]
)
def test_autograde_refuses_to_run_without_a_sandbox(tmp_path, monkeypatch, traits, why):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    km = SandboxedKernelManager(**traits)
    with pytest.raises(RuntimeError, match=rf"needs a sandbox \(bubblewrap\): {why}.*allow_unsandboxed = True"):
        asyncio.run(km.start_kernel(cwd=str(tmp_path)))
    assert not km.has_kernel


# ---- the unsandboxed fallbacks -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "traits", "level", "message"),
    [
        ("autograde", {"allow_unsandboxed": True}, logging.WARNING, "GRADING WITHOUT A SANDBOX"),
        ("validate", {}, logging.INFO, "unsandboxed"),
    ],
)
def test_without_a_sandbox_the_kernel_runs_unsandboxed(tmp_path, monkeypatch, caplog, mode, traits, level, message):
    monkeypatch.setenv("NBGRADER_EXECUTION", mode)
    log = logging.getLogger("test_sandbox")

    async def main():
        async with Kernel(tmp_path, bwrap="/nonexistent/bwrap", log=log, **traits) as k:
            assert k.km.transport == "tcp"
            return await k.run("import os; print(os.getuid(), os.getcwd())")

    with caplog.at_level(logging.INFO, logger="test_sandbox"):
        out, err = asyncio.run(main())
    assert err is None and out.split() == [str(os.getuid()), str(tmp_path)]
    records = [r for r in caplog.records if message in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == level
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r not in records]


# ---- inside the sandbox -----------------------------------------------------------------------


@pytest.mark.slow
@needs_sandbox
def test_the_cli_says_ok():
    proc = subprocess.run([sys.executable, "-m", "course_lib.autograde.sandbox"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("[OK] sandbox: bubblewrap"), proc.stdout + proc.stderr


@pytest.mark.slow
@needs_sandbox
def test_torch_runs_and_the_folder_is_a_private_copy(tmp_path):
    (tmp_path / "given.txt").write_text("from the grader")

    async def main():
        async with Kernel(tmp_path) as k:
            return await k.run("""
                import os, torch
                print(open("given.txt").read(), torch.ones(3).sum().item(), os.getcwd(), os.getuid())
                open("given.txt", "w").write("changed")
                open("written.txt", "w").write("by the kernel")
                open(os.path.expanduser("~/home.txt"), "w").write("ok")
                open("/tmp/tmp.txt", "w").write("ok")
                print(sorted(os.listdir(".")), os.environ["HOME"])
            """)

    out, err = asyncio.run(main())
    assert err is None, out
    first, second = out.splitlines()
    assert first.split()[:5] == ["from", "the", "grader", "3.0", str(tmp_path)]
    if os.geteuid() == 0:
        assert int(first.split()[5]) >= sandbox.FIRST_UID
    assert second == f"['given.txt', 'written.txt'] {sandbox.SANDBOX_HOME}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given.txt"]
    assert (tmp_path / "given.txt").read_text() == "from the grader"
    runtimes = Path(tempfile.gettempdir()).glob(f"{sandbox._RUNTIME_PREFIX}{os.getpid()}-*")
    assert not list(runtimes), "runtime folder left behind"


@pytest.mark.slow
@needs_sandbox
def test_the_course_and_other_students_are_out_of_reach(tmp_path):
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    (course / "solutions" / "secret.ipynb").write_text("the answers")
    (course / "grading" / "autograded" / "bob" / "ps1").mkdir(parents=True)
    (course / "grading" / "autograded" / "bob" / "ps1" / "bob.ipynb").write_text("bob's work")
    (course / "grading" / "gradebook.db").write_text("scores")
    mine = course / "grading" / "autograded" / "alice" / "ps1"
    mine.mkdir(parents=True)
    secrets = [
        course / "solutions" / "secret.ipynb",
        course / "grading" / "autograded" / "bob" / "ps1" / "bob.ipynb",
        course / "grading" / "gradebook.db",
        ROOT / "solutions" / "00_welcome" / "welcome.ipynb",
        ROOT / "nbgrader_config.py",
        Path.home() / ".bashrc",
    ]
    targets = [course / "planted.txt", mine.parent / "planted.txt", ROOT / "planted.txt", Path.home() / "planted.txt"]
    targets += [Path(sys.prefix) / "planted.txt", ROOT / "course_lib" / "planted.py", Path("/etc/planted")]
    assert all(p.exists() for p in secrets[:-1])
    assert not any(p.exists() for p in targets)

    async def main():
        async with Kernel(mine, **SMALL) as k:
            return await k.run(f"""
                for path in {[str(p) for p in secrets]!r}:
                    try:
                        print("READ", path, open(path).read()[:20])
                    except OSError as exc:
                        print("refused", type(exc).__name__)
                for path in {[str(p) for p in targets]!r}:
                    try:
                        open(path, "w").write("planted")
                        print("WROTE", path)
                    except OSError as exc:
                        print("refused", type(exc).__name__)
                import os
                print(sorted(os.listdir("/")), sorted(os.listdir({str(ROOT)!r})))
            """)

    out, err = asyncio.run(main())
    assert err is None, out
    *lines, listing = out.splitlines()
    assert len(lines) == len(secrets) + len(targets)
    assert all(line.split()[0] == "refused" for line in lines), out
    assert set(lines[: len(secrets)]) <= {"refused FileNotFoundError", "refused PermissionError"}
    assert not any(p.exists() for p in targets)
    assert "'course_lib'" in listing and "solutions" not in listing and "grading" not in listing


@pytest.mark.slow
@needs_sandbox
def test_the_course_cache_is_readable_not_writable(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "gpt.pt").write_text("checkpoint")
    (tmp_path / "nb").mkdir()
    monkeypatch.setenv("COURSE_CACHE_DIR", str(cache))

    async def main():
        async with Kernel(tmp_path / "nb") as k:  # course_lib imports torch: the default cap
            return await k.run("""
                from course_lib.env import cache_dir
                print(cache_dir(), (cache_dir() / "gpt.pt").read_text())
                try:
                    (cache_dir() / "new.pt").write_text("planted")
                except OSError as exc:
                    print("refused", exc.errno)
            """)

    out, err = asyncio.run(main())
    assert err is None and out.split() == [str(cache), "checkpoint", "refused", "30"], out  # 30: EROFS
    assert sorted(p.name for p in cache.iterdir()) == ["gpt.pt"]


@pytest.mark.slow
@needs_sandbox
def test_no_network_not_even_the_graders_loopback(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]

        async def main():
            async with Kernel(tmp_path, **SMALL) as k:
                return await k.run(f"""
                    import socket
                    for address in [("127.0.0.1", {port}), ("1.1.1.1", 80), ("8.8.8.8", 53)]:
                        try:
                            socket.create_connection(address, timeout=3).close()
                            print("CONNECTED", address)
                        except OSError as exc:
                            print("refused", type(exc).__name__)
                """)

        out, err = asyncio.run(main())
        with pytest.raises(BlockingIOError):
            server.accept()
    assert err is None and out.split().count("refused") == 3, out


@pytest.mark.slow
@needs_sandbox
def test_memory_beyond_the_cap_fails_in_the_cell_and_the_kernel_lives_on(tmp_path):
    limit = int(2.5 * GiB)  # room for `import torch` (about 1.6 GiB of address space), far below 8 GiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    guard = f"import resource\nassert 0 < resource.getrlimit(resource.RLIMIT_AS)[0] <= {limit}, 'no cap: not trying'\n"

    async def main():
        async with Kernel(tmp_path, memory_limit=limit, max_processes=64) as k:
            results = [await k.run(guard + "bytearray(6 * 2**30)")]
            results.append(await k.run(guard + "import torch\ntorch.empty(8 * 2**30, dtype=torch.uint8).fill_(1)"))
            results.append(await k.run("import torch; x = torch.ones(2**26); print(int(x.sum()))"))  # 256 MiB
            return results

    (_, bytes_err), (_, torch_err), (out, err) = asyncio.run(main())
    assert bytes_err == "MemoryError"
    assert torch_err == "RuntimeError"  # "DefaultCPUAllocator: can't allocate memory"
    assert err is None and out.strip() == str(2**26)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 2**10  # KiB: the test did not grow


FORK_BOMB = """
    import os, resource, time
    assert os.getuid() != 0 and 0 < resource.getrlimit(resource.RLIMIT_NPROC)[0] <= 64, "not sandboxed: no bomb"
    kernel = os.getpid()
    start = time.monotonic()
    while time.monotonic() - start < 3 and len([p for p in os.listdir("/proc") if p.isdigit()]) < 500:
        try:
            os.fork()  # parent and child both go on forking
        except OSError:
            break
    if os.getpid() != kernel:
        time.sleep(60)
        os._exit(0)
    time.sleep(1)
    print(os.getuid(), len([p for p in os.listdir("/proc") if p.isdigit()]))
"""


@pytest.mark.slow
@needs_sandbox
@needs_root
def test_a_fork_bomb_is_capped_spares_other_kernels_and_leaves_nothing(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    async def main():
        async with Kernel(tmp_path / "a", **SMALL) as bomb, Kernel(tmp_path / "b", **SMALL) as other:
            out, err = await bomb.run(FORK_BOMB)
            assert err is None, out
            uid, count = map(int, out.split())
            on_host = len(_alive(uid))
            other_out, other_err = await other.run(
                "import os\nchild = os.fork()\nif child == 0:\n    os._exit(7)\nprint(os.waitpid(child, 0)[1] >> 8)"
            )
            return uid, count, on_host, other_out, other_err

    uid, count, on_host, other_out, other_err = asyncio.run(main())
    assert 10 < count <= 64 and on_host <= 64
    assert other_err is None and other_out.strip() == "7"
    assert _wait_gone(uid) == []


@pytest.mark.slow
@needs_sandbox
def test_a_cell_that_never_ends_is_interrupted_and_leaves_nothing(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import os; print(os.getuid())"),
        nbformat.v4.new_code_cell("import time; time.sleep(10**6)"),
        nbformat.v4.new_code_cell("print('still here')"),
    ]
    client = NotebookClient(
        nb,
        timeout=3,
        kernel_manager_class=SandboxedKernelManager,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "", "traceback": []},
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.monotonic()
    client.execute()
    assert time.monotonic() - start < 15
    uid = int(nb.cells[0].outputs[0]["text"])
    assert any(o.get("ename") in {"KeyboardInterrupt", "CellTimeoutError"} for o in nb.cells[1].outputs)
    assert nb.cells[2].outputs[0]["text"] == "still here\n"
    if os.geteuid() == 0:
        assert _wait_gone(uid) == []


PARENT = """
import asyncio, sys, time
from course_lib.autograde.sandbox import SandboxedKernelManager

async def main():
    km = SandboxedKernelManager(memory_limit=3 * 2**29, max_processes=64)
    await km.start_kernel(cwd=sys.argv[1])
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    await kc.execute_interactive("import os, subprocess; subprocess.Popen(['sleep', '1000']); print(os.getuid())")
    kc.execute("import time; time.sleep(10**6)")
    print("ready", flush=True)
    await asyncio.sleep(10**6)

asyncio.run(main())
"""


@pytest.mark.slow
@needs_sandbox
@needs_root
def test_killing_the_grader_kills_the_sandbox(tmp_path):
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "nb").mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "nb")], stdout=subprocess.PIPE, text=True
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]  # the kernel's uid, then "ready"
        while lines[-1] and lines[-1] != "ready\n" and len(lines) < 50:  # (the kernel shares this stdout)
            lines.append(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lines[-1] == "ready\n", lines
    uid = int(next(line for line in lines if line.strip().isdigit()))
    assert _wait_gone(uid) == []
    stale = list(Path(tempfile.gettempdir()).glob(f"{sandbox._RUNTIME_PREFIX}{proc.pid}-*"))
    sandbox._remove_stale_runtimes()  # what the next grading run does first
    assert stale and not any(p.exists() for p in stale)
