"""Pipe communication (pymulproc's ``pipeapi`` module) over ``mproc.Pipe``:
one parent and one child, each holding one end of a duplex pipe."""

from . import interfaces, mpq_protocol


class PipeCommunicationApi(interfaces.CommunicationApiInterface):
    """An end of a 1:1 pipe conversation; ``conn`` is the mproc ``Pipe``
    end (a ``Connection``)."""

    def __init__(self, conn, **kwargs):
        """``kwargs`` (``timeout``, ``loops``, ...) are accepted and
        ignored, as pymulproc does for pipes."""
        super().__init__(conn)

    def send(self, request, sender_pid=None, recipient_pid=None, data=None):
        """Send ``[request, sender_pid, recipient_pid, data]`` down the pipe
        (``conn.send``) and return that list.

        ``sender_pid`` defaults to ``self.pid``, as pymulproc's README says
        (pymulproc 0.1.2's pipe always wrote its own pid).  Blocks while the
        pipe is full; errors of ``conn.send`` (closed pipe) propagate.
        """
        message = [request, sender_pid if sender_pid else self.pid,
                   recipient_pid, data]
        self.conn.send(message)
        return message

    def receive(self, func=None, block=False, timeout=None):
        """Return the next message from the pipe, or False if none is there.

        ``block=False`` (the default) returns at once; ``block=True`` waits
        for a message, for ever or up to ``timeout`` seconds (then False).
        ``func`` is accepted and ignored, as in pymulproc: everything on a
        1:1 pipe is for the other end.  ``EOFError`` if the other end is
        closed and nothing is left.
        """
        if block and timeout is None:
            return self.conn.recv()
        if self.conn.poll(timeout if block else 0):
            return self.conn.recv()
        return False


class Parent(PipeCommunicationApi):
    """The parent's end of a pipe conversation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.peer = mpq_protocol.PARENT_COMM_INTERFACE


class Child(PipeCommunicationApi):
    """The child's end of a pipe conversation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.peer = mpq_protocol.CHILD_COMM_INTERFACE
