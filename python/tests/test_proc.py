"""The Python proc runtime's bootstrap outside hostd: what it says when the
environment hostd prepares is missing or wrong."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import EXAMPLES, HANG_GUARD, python_path

ECHO_PY = os.path.join(EXAMPLES, "echo_proc.py")


def boot(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ECHO_PY], env={"PYTHONPATH": python_path(), **env},
                          capture_output=True, text=True, timeout=HANG_GUARD)


def test_a_proc_started_outside_hostd_exits_2_naming_the_missing_variable() -> None:
    out = boot({})
    assert out.returncode == 2
    assert "HOSTD_PROC_ID is not set" in out.stderr


def test_a_bad_descriptor_or_proc_id_is_named_in_the_error() -> None:
    out = boot({"HOSTD_PROC_ID": "unix:@fe,p", "HOSTD_HOST_BACKEND": "unix:@be", "HOSTD_READY_FD": "99"})
    assert out.returncode == 2 and 'HOSTD_READY_FD="99" is invalid: not an open descriptor' in out.stderr
    out = boot({"HOSTD_PROC_ID": "no-comma", "HOSTD_HOST_BACKEND": "unix:@be"})
    assert out.returncode == 2 and 'HOSTD_PROC_ID="no-comma" is invalid' in out.stderr


def test_a_proc_reports_ready_with_the_address_it_serves_and_stops_on_sigterm() -> None:
    r, w = os.pipe()
    p = subprocess.Popen([sys.executable, ECHO_PY], pass_fds=[w], stderr=subprocess.PIPE,
                         env={"PYTHONPATH": python_path(), "HOSTD_PROC_ID": "unix:@fe,p",
                              "HOSTD_HOST_BACKEND": "unix:@nobody-here", "HOSTD_READY_FD": str(w),
                              "HOSTD_PARENT_PID": str(os.getpid())})
    os.close(w)
    try:
        with os.fdopen(r, "rb") as ready:
            line = ready.read()  # to EOF: the proc closes the descriptor after the report
        assert line.startswith(b"READY unix:@") and line.endswith(b"\n")
        p.terminate()
        assert p.wait(HANG_GUARD) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
