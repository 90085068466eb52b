"""The base class shared by the queue and pipe ends (pymulproc's
``interfaces`` module)."""

import abc
import os


class CommunicationApiInterface(abc.ABC):
    """One process's end of a pymulproc conversation.

    ``conn`` is the mproc object underneath: a ``mproc.JoinableQueue``
    (queue communication) or one end of a ``mproc.Pipe`` (pipe
    communication).

    ``pid`` is the pid written as sender into the messages this end sends.
    Unlike pymulproc, which fixes it to the pid of the process that built
    the end, it is the pid of the process using the end, so an end built
    in the parent and handed to a child (as pymulproc's pipe example does)
    signs the child's messages with the child's pid.  Assigning ``pid``
    fixes it to the value assigned.
    """

    def __init__(self, conn):
        self.conn = conn
        self._pid = None

    @property
    def pid(self):
        """The sender pid of this end's messages (see the class docstring)."""
        return os.getpid() if self._pid is None else self._pid

    @pid.setter
    def pid(self, value):
        self._pid = value

    @abc.abstractmethod
    def send(self, request, sender_pid=None, recipient_pid=None, data=None):
        """Send ``[request, sender_pid or self.pid, recipient_pid, data]``
        to the other end(s) and return that list."""

    @abc.abstractmethod
    def receive(self, func=None, block=False, timeout=None):
        """Return the next message for this process, or False if none."""
