"""`pip install --no-build-isolation ./python` works offline in a fresh venv that
sees Debian's python3-grpcio and python3-protobuf, and the installed package has
its stubs. (The venv is made without its own pip, which takes most of the time,
and Debian's pip installs into it: the same install as the README's.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from conftest import ROOT

DEBIAN_PYTHON = "/usr/bin/python3"


def test_pip_install_works_offline_in_a_fresh_venv() -> None:
    work = tempfile.mkdtemp(prefix="hpy-pip")
    try:
        # A copy of the two folders the build reads, so the source tree stays untouched.
        src = os.path.join(work, "src")
        shutil.copytree(os.path.join(ROOT, "python"), os.path.join(src, "python"),
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
        shutil.copytree(os.path.join(ROOT, "proto"), os.path.join(src, "proto"))
        venv = os.path.join(work, "venv")
        python = DEBIAN_PYTHON if os.path.exists(DEBIAN_PYTHON) else sys.executable
        subprocess.run([python, "-m", "venv", "--system-site-packages", "--without-pip", venv], check=True,
                       timeout=120)
        env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)  # the venv must find hostd where pip put it
        subprocess.run([python, "-m", "pip", "--python", os.path.join(venv, "bin", "python"), "install", "-q",
                        "--no-build-isolation", os.path.join(src, "python")], check=True, timeout=120, env=env,
                       cwd=work)
        out = subprocess.run(
            [os.path.join(venv, "bin", "python"), "-c",
             "import hostd, hostd.control, hostd.proc; print(hostd.__file__); print(hostd.control.pb.Proc.__name__)"],
            check=True, timeout=60, env=env, cwd=work, capture_output=True, text=True)
        where, name = out.stdout.split()
        assert where.startswith(venv) and name == "Proc"
    finally:
        shutil.rmtree(work, ignore_errors=True)
