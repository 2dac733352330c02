"""A side virtual environment that runs the real `clip-retrieval inference` CLI.

clip-retrieval pins numpy<2, pyarrow<16, open-clip<3 and pulls Spark-era, Flask and
sentence-transformers dependencies; none of it may reach the project's venv. The side venv
therefore sees the project's own site-packages read-only (a .pth line: torch, open_clip,
numpy, pyarrow, pandas, PIL are the very files clipsearch uses), and installs with --no-deps
only clip-retrieval, all_clip and the light packages its CLI imports at start-up. A few of
those shadow the project's copies inside the side venv only: protobuf 5 (wandb 0.18 does not
import beside protobuf 7) and setuptools < 81 (clip-anytorch imports pkg_resources).

Built once per cache folder (pytest's cache: `.pytest_cache/d/`), keyed by this list; a
fresh build downloads about 150 MB from PyPI and takes under a minute here.
"""

from __future__ import annotations

import hashlib
import shutil
import site
import subprocess
import sys
from pathlib import Path

# What `clip_retrieval.cli` imports at start-up, found by importing it until nothing was
# missing, pinned to the versions that import beside the project's numpy 2 and torch 2.
PACKAGES = (
    "clip-retrieval==2.45.0",
    "all-clip==1.3.0",
    "clip-anytorch==2.6.0",
    "fire==0.7.1",
    "termcolor==3.3.0",
    "braceexpand==0.1.7",
    "webdataset==1.0.2",
    "flask==3.1.3",
    "werkzeug==3.1.9",
    "itsdangerous==2.2.0",
    "blinker==1.9.0",
    "flask-restful==0.3.10",
    "aniso8601==10.0.1",
    "pytz==2026.6",
    "flask-cors==6.0.5",
    "h5py==3.16.0",
    "wandb==0.18.7",
    "protobuf==5.29.5",
    "platformdirs==4.14.9",
    "docker-pycreds==0.4.0",
    "six==1.17.0",
    "sentry-sdk==2.76.0",
    "psutil==7.2.2",
    "setuptools==80.10.2",
    "sentence-transformers==6.3.0",
    "transformers==5.25.0",
    "tokenizers==0.23.3",
    "scikit-learn==1.9.1",
    "joblib==1.6.0",
    "threadpoolctl==3.8.0",
    "cloudpickle==3.1.3",
    "narwhals==2.29.0",
)


def clip_retrieval_venv(cache: Path) -> Path:
    """The `clip-retrieval` executable of a side venv under `cache`, built if needed."""
    project = site.getsitepackages()[0]
    key = hashlib.sha256("\n".join((sys.version, project, *PACKAGES)).encode()).hexdigest()
    venv = cache / f"clip-retrieval-{key[:12]}"
    done = venv / "installed"  # written last: a build cut short is redone
    if done.exists():
        return venv / "bin" / "clip-retrieval"
    shutil.rmtree(venv, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    (_site_packages(venv) / "clipsearch-project.pth").write_text(project + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--disable-pip-version-check", *PACKAGES],
        check=True,
    )  # fmt: skip
    done.write_text("\n".join(PACKAGES) + "\n")
    return venv / "bin" / "clip-retrieval"


def _site_packages(venv: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / version / "site-packages"
