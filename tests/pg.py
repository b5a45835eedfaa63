"""A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, socket only, fsync off."""

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg


@dataclass
class PgCluster:
    data_dir: Path
    port: int
    bin_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.data_dir}&port={self.port}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.data_dir), port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def pause(self) -> None:
        """Stop the server and keep its data (a database outage); :meth:`resume` starts it again."""
        _run_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])

    def resume(self) -> None:
        _pg_ctl_start(self.bin_dir, self.data_dir, self.port)

    def stop(self) -> None:
        _run_as_postgres(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"], check=False
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def find_bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: install the 'postgresql' package "
        "(`.ci/run` does this) to run the PostgreSQL half of the suite"
    )


def _run_as_postgres(args: list[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0:  # initdb refuses to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=check, capture_output=True)


def start_cluster(port: int) -> PgCluster:
    bin_dir = find_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="needlecare-pg-"))
    data_dir = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        root.chmod(0o755)
    _run_as_postgres(
        [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]
    )
    _pg_ctl_start(bin_dir, data_dir, port)
    return PgCluster(data_dir=data_dir, port=port, bin_dir=bin_dir)


def _pg_ctl_start(bin_dir: Path, data_dir: Path, port: int) -> None:
    options = f"-F -k {data_dir} -p {port} -c listen_addresses='' -c max_connections=200"
    result = _run_as_postgres(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data_dir),
            "-o",
            options,
            "-w",
            "-l",
            str(data_dir / "server.log"),
            "start",
        ],
        check=False,
    )
    if result.returncode != 0:
        log = (data_dir / "server.log").read_text() if (data_dir / "server.log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {result.stderr.decode()} {log[-2000:]}")
