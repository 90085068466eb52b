"""Queue communication (pymulproc's ``queuepi`` module) over
``mproc.JoinableQueue``.

Any number of parents and children share one queue; each message says
who sent it and, optionally, who it is for, and a receiver takes only the
messages its ``func`` accepts.

Where this differs from pymulproc 0.1.2: a message ``func`` rejects is
not taken off the queue and put back at its end (which reordered the
queue, could fail on a full queue, and made a rejected message wait
behind everything sent after it); it stays where it is, in order, and
``receive`` takes the first message ``func`` accepts, using the predicate
``get`` of mproc's queue.  ``receive`` and ``queue_join`` take an optional
``timeout``.
"""

import queue

from . import errors, interfaces, mpq_protocol

#: Default seconds one put waits for room (pymulproc's value).
QUEUE_PUT_TIMEOUT_OP = 0.1
#: Default number of puts ``send`` tries (pymulproc's value).
NUM_ATTEMPTS = 10


class QueueCommunicationApi(interfaces.CommunicationApiInterface):
    """An end of a queue conversation (1:N, N:1 or N:M).

    ``conn`` is the ``mproc.JoinableQueue``; ``timeout`` (seconds) and
    ``loops`` govern how ``send`` waits for room in a bounded queue.
    """

    def __init__(self, conn, timeout=QUEUE_PUT_TIMEOUT_OP, loops=NUM_ATTEMPTS):
        super().__init__(conn)
        self.timeout = timeout
        self.loops = loops

    def send(self, request, sender_pid=None, recipient_pid=None, data=None):
        """Put ``[request, sender_pid, recipient_pid, data]`` on the queue
        and return that list.

        ``sender_pid`` defaults to ``self.pid`` (as in pymulproc, any false
        value does); ``recipient_pid`` None means "for whoever takes it".
        Each try is ``conn.put(message, timeout=self.timeout)``; after
        ``loops`` tries that each found the queue full it raises
        ``errors.QueuesCommunicationError`` (from the last ``queue.Full``).
        ``loops`` below 1 counts as 1 (pymulproc would retry for ever).
        Errors other than ``queue.Full`` (a closed queue) propagate.
        """
        message = [request, sender_pid if sender_pid else self.pid,
                   recipient_pid, data]
        tries = max(int(self.loops), 1)
        while True:
            try:
                self.conn.put(message, timeout=self.timeout)
            except queue.Full as ex:
                tries -= 1
                if tries <= 0:
                    raise errors.QueuesCommunicationError(
                        f"Process {self.pid} tried unsuccessfully to put the "
                        f"following {message} in the queue") from ex
            else:
                return message

    def receive(self, func=None, block=False, timeout=None):
        """Take the first message on the queue that ``func`` accepts and
        return it (the 4-item list); return False if there is none.

        ``func(message)`` returns true if the message is for this process;
        without ``func`` every message is.  Messages ``func`` rejects stay
        on the queue in their place and order, for the processes they are
        for.  ``func`` may be given positionally.

        ``block=False`` (the default) returns at once.  ``block=True``
        waits until a message ``func`` accepts is on the queue, for ever or
        up to ``timeout`` seconds (then False); pymulproc waited only while
        the queue was empty and returned False when the first message that
        came was not for it.  A message taken counts as done for
        ``queue_join`` at once (``conn.task_done()``), as in pymulproc.
        """
        kwargs = {} if func is None else {'match': func}
        try:
            message = self.conn.get(block=block, timeout=timeout if block else None,
                                    **kwargs)
        except queue.Empty:
            return False
        self.conn.task_done()
        return message

    def queue_empty(self):
        """Return True if the queue holds no message (``conn.empty()``)."""
        return self.conn.empty()

    def queue_join(self, timeout=None):
        """Wait until every message put on the queue has been received
        (``conn.join()``).  ``timeout`` (seconds, an mproc addition) bounds
        the wait: TimeoutError if messages remain untaken when it runs out.
        """
        if timeout is None:
            self.conn.join()
        else:
            self.conn.join(timeout)


class Parent(QueueCommunicationApi):
    """The parent's end of a queue conversation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.peer = mpq_protocol.PARENT_COMM_INTERFACE


class Child(QueueCommunicationApi):
    """A child's end of a queue conversation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.peer = mpq_protocol.CHILD_COMM_INTERFACE
