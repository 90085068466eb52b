"""pytest setup for the mproc package's tests: a private MPROC_DIR (mode
0700) for the whole session, so named objects of one run never meet
another's, and a check at the end that no test left a child running."""

import os
import shutil
import tempfile

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
