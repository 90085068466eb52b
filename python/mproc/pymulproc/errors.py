"""Exceptions of mproc.pymulproc (pymulproc 0.1.2's ``errors`` module)."""


class QueuesCommunicationError(Exception):
    """Raised when a message cannot be sent.

    ``send`` on a queue raises it after ``loops`` puts in a row have each
    waited ``timeout`` seconds for room and found none; the last
    ``queue.Full`` is chained as ``__cause__``.
    """
