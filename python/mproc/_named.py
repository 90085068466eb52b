"""Named-object plumbing shared by Queue, Bus, Slot and Event.

Every one of them lives under a name, so that processes started with the
spawn and forkserver methods (which get the object pickled) can attach
it: one the caller names (``name="/jobs"``) or, when none is given, a
private one, ``/py-<pid>-<n>-<random>`` (mode 0600).

A private name is removed (with the files of its queue's large objects)
by the process that closes the last handle of it, found with the
kernel's count of holders (the library's lock on the file) — except in a
process that pickled the object for another process that may not have
attached yet: there it waits for that process's exit. Names of creators
that were killed (no holder left, creator dead) are swept when a process
makes its first private object. Internal.

(A process that pickled a private object removes its name at its last
close only once no multiprocessing child of it is alive, else at a later
close or at its exit.)
"""

import atexit
import fcntl
import itertools
import os
import re
import struct
import sys

from ._lib import lib, check

_counter = itertools.count(1)
_PRIVATE = re.compile(r"\A/py-([0-9]+)-[0-9]+-[0-9a-f]{12}\Z")
_deferred = set()  # private names this process pickled
_swept = [False]

_FLOCK = "hhxxxxqqixxxx"  # struct flock on Linux (64-bit off_t)


def objects_dir():
    """The directory named objects live in, as libmproc computes it."""
    d = os.environ.get("MPROC_DIR")
    return d if d else "/dev/shm/mproc-%d" % os.geteuid()


def path_of(name):
    return os.path.join(objects_dir(), name[1:])


def private_name():
    """A fresh name for an object the caller did not name."""
    if not _swept[0]:
        _swept[0] = True
        try:
            sweep()
        except OSError:
            pass
    return "/py-%d-%d-%s" % (os.getpid(), next(_counter), os.urandom(6).hex())


def is_private(name):
    return _PRIVATE.match(name) is not None


def encode_name(name):
    if not isinstance(name, str):
        raise TypeError("name must be a str like '/jobs', not %r" % (name,))
    return name.encode("utf-8", "surrogateescape")


def create(fn, name, opts):
    """Create a named object with fn(&h, name, &opts); returns c_void_p."""
    import ctypes
    h = ctypes.c_void_p()
    check(fn(ctypes.byref(h), encode_name(name), ctypes.byref(opts)), name)
    return h


def attach_handle(fn, name):
    import ctypes
    h = ctypes.c_void_p()
    check(fn(ctypes.byref(h), encode_name(name)), name)
    return h


def flags_for(name, unlink_on_last_close):
    """(name, flags) for a constructor's name argument."""
    from ._lib import UNLINK_ON_LAST_CLOSE
    if name is None:
        return private_name(), 0
    return name, UNLINK_ON_LAST_CLOSE if unlink_on_last_close else 0


def held(path):
    """True if some process holds the object at path (its holders keep a
    shared lock on byte 0), False if none, None if there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC |
                     os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # not ours to judge
    try:
        got = fcntl.fcntl(fd, fcntl.F_OFD_GETLK,
                          struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET,
                                      0, 1, 0))
        return struct.unpack(_FLOCK, got)[0] != fcntl.F_UNLCK
    except OSError:
        return True
    finally:
        os.close(fd)


def note_pickled(name):
    """This process handed the private object to another process."""
    if is_private(name):
        _deferred.add(name)


def released(name):
    """Called after this process closed a handle of name."""
    if not is_private(name):
        return
    if name in _deferred and _children_pending():
        return
    _deferred.discard(name)
    remove_if_unheld(name)
    # Names deferred earlier whose children have gone since.
    if _deferred and not _children_pending():
        for n in list(_deferred):
            _deferred.discard(n)
            remove_if_unheld(n)


def _children_pending():
    """May a process this one handed objects to still attach them? True
    while multiprocessing children of this process live (a pickled object
    went to one of them), or when multiprocessing is not in use (the
    pickle went who knows where: wait for this process's exit)."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return True
    try:
        return bool(mp.active_children())
    except Exception:
        return True


def remove_if_unheld(name):
    path = path_of(name)
    if held(path) is False:
        try:
            lib.mproc_unlink(encode_name(name))
        except Exception:
            pass
        remove_spills(name)


def remove_spills(name):
    """Remove the large-object files of the queue name (no holder is
    left to receive them)."""
    d = objects_dir()
    prefix = ".spill-" + name[1:] + "-"
    try:
        for f in os.listdir(d):
            if f.startswith(prefix):
                try:
                    os.unlink(os.path.join(d, f))
                except OSError:
                    pass
    except OSError:
        pass


def sweep():
    """Remove private names whose creator is dead and that nobody holds."""
    d = objects_dir()
    for f in os.listdir(d):
        m = _PRIVATE.match("/" + f)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or another's with that pid): leave it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        remove_if_unheld("/" + f)


@atexit.register
def _at_exit():
    for name in list(_deferred):
        remove_if_unheld(name)


def queue_header(name):
    """(max_messages, flags) of the queue under name, read from its file's
    header (layout 4), or None when it cannot be read as one."""
    try:
        with open(path_of(name), "rb") as f:
            head = f.read(56)
    except OSError:
        return None
    if len(head) < 56:
        return None
    magic, kind, layout = struct.unpack_from("<QII", head, 0)
    if magic != 0x314D48536370726D or kind != 1 or layout != 4:
        return None
    max_messages, flags = struct.unpack_from("<II", head, 44)
    return max_messages, flags
