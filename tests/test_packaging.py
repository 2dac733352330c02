"""What `pip install clipsearch` gives: one import root, and a light client that needs
neither torch nor faiss; the CLI imports a subcommand's stack only when it runs."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from clipsearch.server.admission.access import RPC_SCOPES
from clipsearch.server.core.calls import Rpc
from clipsearch.v1 import search_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "faiss", "pyarrow", "torchvision", "PIL")

# Runs in a child process, so what the test process imported does not count.
PROBE = """
import sys
from clipsearch.cli.main import main
for argv in ({argvs}):
    try:
        main(argv)
    except SystemExit:
        pass
print("imported:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _imported_by(python: str, *argvs: list[str]) -> list[str]:
    code = PROBE.format(argvs=", ".join(repr(a) for a in argvs) + ",", heavy=HEAVY)
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("imported:"), done.stdout
    return [m for m in last.removeprefix("imported:").split(",") if m]


def test_help_health_query_and_versions_import_no_torch_or_faiss(tmp_path: Path) -> None:
    dead = ["--server", "127.0.0.1:9", "--timeout", "0.2"]
    assert (
        _imported_by(
            sys.executable,
            ["--help"],
            ["health", *dead],
            ["query", "--text", "cat", *dead],
            ["versions", str(tmp_path)],
        )
        == []
    )


def test_every_rpc_has_a_scope_and_every_method_an_rpc() -> None:
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["SearchService"].methods}
    assert {rpc.value for rpc in Rpc} == methods
    assert set(RPC_SCOPES) == set(Rpc)  # no default: a new RPC must be given its scope


@pytest.mark.slow
def test_the_base_install_is_a_light_client(tmp_path: Path) -> None:
    """A fresh venv, `pip install .` without extras: the client, `query` and `health` work,
    torch and faiss are not installed, and nothing but clipsearch lands in site-packages."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = str(env / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    assert (site / "clipsearch" / "indexer" / "build" / "job.py").is_file()
    assert (site / "clipsearch" / "server" / "pipeline.py").is_file()
    assert not (site / "indexer").exists() and not (site / "server").exists()
    for heavy in ("torch", "faiss", "open_clip"):
        assert not (site / heavy).exists(), f"{heavy} was installed by the base install"
    assert _imported_by(python, ["health", "--server", "127.0.0.1:9", "--timeout", "0.2"]) == []
    client = subprocess.run(
        [python, "-c", "import sys, clipsearch.client; "
         "print([m for m in ('torch', 'faiss') if m in sys.modules])"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert client.returncode == 0, client.stderr
    assert client.stdout.strip() == "[]"
