"""A throw-away PostgreSQL server for tests: Unix socket only, trust auth, one ``gradebook`` database.

``temporary_postgres(folder)`` runs Debian's ``postgresql`` binaries (``/usr/lib/postgresql/<ver>/bin``)
with the data directory in ``folder/data`` and the socket in ``folder`` itself; nothing listens on TCP.
PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user (``runuser``)
and ``folder`` is handed to that user: every folder above it must be traversable by others
(``tempfile.mkdtemp()`` under ``/tmp`` is; pytest's ``tmp_path`` under ``/tmp/pytest-of-root`` is not).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

USER = "grader"  # the superuser initdb creates; trust auth, so no password
DATABASE = "gradebook"
RUN_AS = "postgres"  # the system user the server runs as when we are root
# Small and unsafe on purpose: a test server on a 2-core CI machine, thrown away afterwards.
SETTINGS = {
    "listen_addresses": "",
    "shared_buffers": "16MB",
    "max_connections": "20",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "64MB",
    "log_min_messages": "warning",
}
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the NUL
_ports = itertools.count()


def _bindir() -> Path | None:
    """The newest Debian PostgreSQL bin/ folder, else the one holding ``pg_ctl`` on PATH."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name)) or (0,)

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=version)
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and (Path(pg_ctl).parent / "postgres").exists():
        return Path(pg_ctl).parent
    return None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def postgres_available() -> tuple[bool, str]:
    """(True, "") when ``temporary_postgres`` can run here, else (False, why not)."""
    bindir = _bindir()
    if bindir is None:
        return False, "no PostgreSQL server binaries (Debian: apt-get install postgresql)"
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (bindir / tool).exists():
            return False, f"{bindir / tool} is missing"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return False, "psycopg2 is not installed (pip install psycopg2-binary)"
    if _is_root():
        import pwd

        if shutil.which("runuser") is None:
            return False, "running as root and runuser is missing (PostgreSQL refuses to run as root)"
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return False, f"running as root and there is no {RUN_AS!r} user to run PostgreSQL as"
    return True, ""


def _port() -> int:
    """A port number no other server from this machine's tests is likely to use.

    Only the socket's file name (``.s.PGSQL.<port>``) contains it, since nothing listens on TCP.
    """
    return 20000 + (os.getpid() * 64 + next(_ports)) % 40000


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _check_traversable(folder: Path, uid: int) -> None:
    for parent in folder.parents:
        st = parent.stat()
        if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
            raise PermissionError(
                f"{parent} is not traversable by the {RUN_AS!r} user, who runs the server when we are root: "
                "put the server folder somewhere like tempfile.mkdtemp() under /tmp"
            )


def _log_tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"


@contextlib.contextmanager
def temporary_postgres(folder: Path) -> Iterator[str]:
    """Start a PostgreSQL server in ``folder``; yield an SQLAlchemy URL to its ``gradebook`` database.

    The server is stopped (``pg_ctl stop -m immediate``) on exit; ``folder`` (data, socket, log) is left
    for the caller to remove.
    """
    ok, why = postgres_available()
    if not ok:
        raise RuntimeError(f"cannot start PostgreSQL: {why}")
    bindir = _bindir()
    assert bindir is not None
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    data, log = folder / "data", folder / "postgres.log"
    if data.exists():
        raise FileExistsError(f"{data} already exists: temporary_postgres wants a fresh folder")
    port = _port()
    socket = folder / f".s.PGSQL.{port}"
    if len(str(socket)) > SOCKET_PATH_MAX:
        raise ValueError(f"socket path too long for a Unix socket ({len(str(socket))} > {SOCKET_PATH_MAX}): {socket}")

    prefix: list[str] = []
    if _is_root():
        import pwd

        user = pwd.getpwnam(RUN_AS)
        _check_traversable(folder, user.pw_uid)
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", RUN_AS, "--"]
    folder.chmod(0o755)  # others may connect through the socket; data/ itself stays 0700

    def run(*cmd: str) -> subprocess.CompletedProcess:
        # cwd: the server user may not be able to enter ours; stdin/out: pg_ctl's server must not hold our pipes.
        return subprocess.run(
            [*prefix, *cmd], cwd=folder, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )

    def must(proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n{_log_tail(log)}")

    must(
        run(
            str(bindir / "initdb"),
            "-D", str(data),
            "-U", USER,
            "-A", "trust",
            "-E", "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ),
        "initdb",
    )  # fmt: skip
    settings = {**SETTINGS, "port": str(port), "unix_socket_directories": str(folder)}
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# temporary_postgres\n")
        conf.writelines(f"{key} = {_conf_value(value)}\n" for key, value in settings.items())

    try:  # from here on the server may be running, even when pg_ctl reports a failure
        must(run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"), "pg_ctl start")
        must(
            run(str(bindir / "createdb"), "-h", str(folder), "-p", str(port), "-U", USER, DATABASE),
            "createdb",
        )
        yield f"postgresql+psycopg2://{USER}@/{DATABASE}?host={quote(str(folder), safe='/')}&port={port}"
    finally:
        _stop(run, bindir, data)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is running (a zombie, which nobody may reap in a container, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(run, bindir: Path, data: Path) -> None:
    """pg_ctl stop -m immediate; if the postmaster is still there afterwards, SIGKILL it."""
    pid = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().split()[0])
    proc = run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
    if proc.returncode == 0 or pid is None:
        return
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
