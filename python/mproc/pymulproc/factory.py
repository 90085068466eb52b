"""Factories of the two ends of a conversation (pymulproc's ``factory``
module), over mproc's queue and pipe instead of multiprocessing's.

Build the factory in the parent before starting the children, and hand
the factory (or an end made by it) to each child as a ``Process``
argument, as with pymulproc.
"""

import mproc as _mproc

from . import pipeapi, queuepi


class PipeCommunication:
    """A duplex ``mproc.Pipe`` shared by one parent and one child.

    ``parent_conn`` and ``child_conn`` are the two ``Connection`` ends.
    """

    def __init__(self):
        self.parent_conn, self.child_conn = _mproc.Pipe()

    def parent(self, **kwargs):
        """Return the parent's end (``pipeapi.Parent``); ``kwargs`` are
        ignored, as in pymulproc."""
        return pipeapi.Parent(self.parent_conn, **kwargs)

    def child(self, **kwargs):
        """Return the child's end (``pipeapi.Child``); ``kwargs`` are
        ignored, as in pymulproc."""
        return pipeapi.Child(self.child_conn, **kwargs)


class QueueCommunication:
    """An ``mproc.JoinableQueue`` shared by a parent and any number of
    children; ``queue`` is that queue.

    ``max_size`` bounds the number of messages it holds (0: no bound but
    mproc's capacity).
    """

    def __init__(self, max_size=0):
        self.queue = _mproc.JoinableQueue(max_size)

    def parent(self, timeout=queuepi.QUEUE_PUT_TIMEOUT_OP,
               loops=queuepi.NUM_ATTEMPTS):
        """Return a parent's end (``queuepi.Parent``) whose ``send`` tries
        ``loops`` puts of ``timeout`` seconds each."""
        return queuepi.Parent(self.queue, timeout=timeout, loops=loops)

    def child(self, timeout=queuepi.QUEUE_PUT_TIMEOUT_OP,
              loops=queuepi.NUM_ATTEMPTS):
        """Return a child's end (``queuepi.Child``) whose ``send`` tries
        ``loops`` puts of ``timeout`` seconds each."""
        return queuepi.Child(self.queue, timeout=timeout, loops=loops)
