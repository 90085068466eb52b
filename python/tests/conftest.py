"""pytest setup for the mproc package's tests: a private MPROC_DIR (mode
0700) for the whole session, so named objects of one run never meet
another's, and a check at the end that no test left a child running."""

import os
import shutil
import signal
import tempfile
import time

import pytest


@pytest.fixture(scope="session", autouse=True)
def mproc_dir():
    """The session's object directory (also in os.environ)."""
    old = os.environ.get("MPROC_DIR")
    d = tempfile.mkdtemp(prefix="mproc-pytest-")
    os.chmod(d, 0o700)
    os.environ["MPROC_DIR"] = d
    yield d
    if old is None:
        os.environ.pop("MPROC_DIR", None)
    else:
        os.environ["MPROC_DIR"] = old
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_children_left():
    """Fail a test that leaves a multiprocessing child alive."""
    yield
    import multiprocessing
    left = multiprocessing.active_children()
    for p in left:
        p.kill()
        p.join(5)
    assert not left, "test left children running: %r" % (left,)


def reap(pid, timeout=30.0):
    """The wait status of child pid, waited for at most timeout seconds
    (then it is killed, reaped, and the test fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("child %d did not end within %.0f s" % (pid, timeout))
