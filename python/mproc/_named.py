"""Named-object plumbing shared by Queue, Bus, Slot and Event.

Every one of them lives under a name, so that processes started with the
spawn and forkserver methods (which get the object pickled) can attach
it: one the caller names (``name="/jobs"``) or, when none is given, a
private one (``/py-<pid>-<n>-<random>``, mode 0600) removed when its last
holder closes it. Internal.
"""

import ctypes
import itertools
import os

from ._lib import lib, check, UNLINK_ON_LAST_CLOSE

_counter = itertools.count(1)


def private_name():
    """A fresh name for an object the caller did not name."""
    return "/py-%d-%d-%s" % (os.getpid(), next(_counter), os.urandom(6).hex())


def encode_name(name):
    if not isinstance(name, str):
        raise TypeError("name must be a str like '/jobs', not %r" % (name,))
    return name.encode("utf-8", "surrogateescape")


def create(fn, name, opts):
    """Create a named object with fn(&h, name, &opts); returns c_void_p."""
    h = ctypes.c_void_p()
    check(fn(ctypes.byref(h), encode_name(name), ctypes.byref(opts)), name)
    return h


def attach_handle(fn, name):
    h = ctypes.c_void_p()
    check(fn(ctypes.byref(h), encode_name(name)), name)
    return h


def flags_for(name, unlink_on_last_close):
    """(name, flags): a private name when name is None; private names
    are removed with their last holder."""
    if name is None:
        return private_name(), UNLINK_ON_LAST_CLOSE
    return name, UNLINK_ON_LAST_CLOSE if unlink_on_last_close else 0
