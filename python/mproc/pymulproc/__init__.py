"""mproc.pymulproc: the API of pymulproc 0.1.2 on mproc's queue and pipe.

A pymulproc program switches by changing its import::

    from mproc.pymulproc import factory, mpq_protocol, errors

``factory.QueueCommunication(max_size=0)`` shares an ``mproc.JoinableQueue``
between a parent and its children, ``factory.PipeCommunication()`` an
``mproc.Pipe`` between a parent and one child; their ``parent()`` and
``child()`` return the ends, with ``send(request, sender_pid=None,
recipient_pid=None, data=None)`` and ``receive(func=None, block=False)``
(plus ``queue_empty()`` and ``queue_join()`` on a queue).  Messages are
pymulproc's 4-item lists ``[request, sender_pid, recipient_pid, data]``
(see ``mpq_protocol``).

What changes from pymulproc (see ``queuepi`` and ``interfaces``): a
message a receiver's ``func`` rejects keeps its place in the queue instead
of going to the back; ``receive(block=True)`` waits for a message ``func``
accepts; ``receive`` and ``queue_join`` take an optional ``timeout``;
``pid`` is the pid of the process using the end.
"""

from . import errors, factory, mpq_protocol

#: The pymulproc version whose API this is.
VERSION = (0, 1, 2)


def get_version():
    """Return ``VERSION`` as a string, '0.1.2'."""
    return '.'.join(map(str, VERSION))


__version__ = get_version()

__all__ = ['errors', 'factory', 'mpq_protocol', 'VERSION', 'get_version']
