"""A throwaway PostgreSQL server on 127.0.0.1 for the shared-study tuning test."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be installed or started here; the message says why (used as the skip reason)."""


def postgres_bin_dir(install: bool = True) -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb and postgres; installs the Debian package if allowed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found and install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], env=env, capture_output=True, timeout=600)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise PostgresUnavailable("no /usr/lib/postgresql/*/bin/initdb (install with: apt-get install -y postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` system user then."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(cmd)]


@contextlib.contextmanager
def postgres_server(timeout_s: float = 30.0) -> Iterator[str]:
    """Start a throwaway PostgreSQL on 127.0.0.1 (trust auth, fsync off), yield its SQLAlchemy URL, then stop
    and delete it."""
    bin_dir = postgres_bin_dir()
    data_dir = Path(tempfile.mkdtemp(prefix="tune-pg-"))
    process = None
    try:
        if os.geteuid() == 0:
            shutil.chown(data_dir, user="postgres", group="postgres")
        init = subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
                                                 "--auth=trust", "-E", "UTF8", "--no-sync"]),
                              capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-400:]}")
        port = _free_port()
        process = subprocess.Popen(_as_postgres_user([
            str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(data_dir), "-h", "127.0.0.1",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        _wait_until_ready(port, process, timeout_s)
        yield url
    finally:
        if process is not None:
            process.terminate()  # SIGTERM: smart shutdown once clients are gone
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def _wait_until_ready(port: int, process: subprocess.Popen, timeout_s: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise PostgresUnavailable(f"postgres exited with {process.returncode}: {process.stderr.read()[-400:]}")
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2).close()
            return
        except psycopg2.OperationalError as err:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"postgres did not accept connections in {timeout_s:.0f} s: {err}") from None
            time.sleep(0.2)
