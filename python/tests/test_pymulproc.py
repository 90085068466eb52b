"""Tests of mproc.pymulproc: pymulproc 0.1.2's API on mproc's queue and pipe.

pymulproc's README examples (pipe, 1:N queue, full duplex with a DIE pill)
under fork, spawn and forkserver, and the behaviours issue 14 names: send retries
``loops`` puts of ``timeout`` then raises, receive returns False when
nothing is there, a message for another process keeps its place and
order, queue_join returns once the children have taken every message.

Every blocking call has a timeout and every child is joined with one.
"""

import multiprocessing
import os
import queue
import time
from unittest import mock

import pytest

import mproc
from mproc import pymulproc
from mproc.pymulproc import errors, factory, mpq_protocol

START_METHODS = ['fork', 'spawn', 'forkserver']
JOIN_TIMEOUT = 30       # seconds a child may take before the test fails
WAIT = 10               # seconds any one receive may wait in a test

REQUEST = mpq_protocol.S_PID_OFFSET - 1
SENDER = mpq_protocol.S_PID_OFFSET
RECIPIENT = mpq_protocol.R_PID_OFFSET
DATA = mpq_protocol.S_PID_OFFSET + 2


def start(ctx, target, *args):
    """Start a process of context ``ctx`` running ``target(*args)``."""
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def join_all(procs):
    """Join every process (bounded), kill the ones left, and assert each
    exited 0."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    try:
        for p in procs:
            p.join(max(deadline - time.monotonic(), 0.1))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    assert [p.exitcode for p in procs] == [0] * len(procs)


# --- children (module level, so spawn can find them) -----------------------

def pipe_child_sends(child):
    """README pipe example: the child end, built in the parent, sends."""
    child.send(mpq_protocol.REQ_TEST_CHILD)


def pipe_child_ping_pong(p_factory, rounds):
    """pymulproc's pipe test, ``rounds`` times: send, then wait for the
    parent's answer; exit 1 on a wrong or missing answer."""
    child = p_factory.child()
    for i in range(rounds):
        child.send(mpq_protocol.REQ_TEST_PARENT, data=i)
        answer = child.receive(block=True, timeout=WAIT)
        if not (answer and len(answer) == 4
                and answer[REQUEST] == mpq_protocol.REQ_TEST_CHILD
                and answer[DATA] == i * 2):
            os._exit(1)


class ChildProcess:
    """The child of pymulproc's README and queue tests."""

    def __init__(self, identifier, parent_pid, conn):
        self.id = identifier
        self.conn = conn
        self.parent_pid = parent_pid
        self.pid = multiprocessing.current_process().pid

    def is_message_for_me(self, message):
        """For me if the recipient is my pid or None (for everyone)."""
        return (message[mpq_protocol.S_PID_OFFSET + 1] == self.pid
                or not message[mpq_protocol.S_PID_OFFSET + 1])

    def run(self, data=None):
        """With data: send it to the parent.  Without: answer each message
        for me with my identifier until a DIE comes (bounded: exit 1 if
        none comes within WAIT seconds)."""
        if data:
            self.conn.send(mpq_protocol.REQ_FINISHED, data=data)
            return
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            message = self.conn.receive(func=self.is_message_for_me,
                                        block=True, timeout=0.5)
            if not message:
                continue
            if message[REQUEST] == mpq_protocol.REQ_DIE:
                return
            self.conn.send(mpq_protocol.REQ_FINISHED,
                           recipient_pid=self.parent_pid, data=self.id)
        os._exit(1)


def call_child(identifier, parent_pid, q_factory, data):
    """README queue example's child entry point."""
    ChildProcess(identifier, parent_pid, q_factory.child()).run(data=data)


def worker_until_die(q_factory, counts):
    """Take DO messages until a DIE; add how many DOs were taken to
    ``counts`` (a multiprocessing.Value)."""
    child = q_factory.child()
    taken = 0
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        message = child.receive(block=True, timeout=0.5)
        if not message:
            continue
        if message[REQUEST] == mpq_protocol.REQ_DIE:
            with counts.get_lock():
                counts.value += taken
            return
        taken += 1
    os._exit(1)


def send_other_then_mine(q_factory, other_pid, parent_pid):
    """Send one message for ``other_pid``, then one for the parent."""
    child = q_factory.child()
    child.send(mpq_protocol.REQ_DO, recipient_pid=other_pid, data='other')
    child.send(mpq_protocol.REQ_FINISHED, recipient_pid=parent_pid, data='mine')


# --- the package -----------------------------------------------------------

def test_imports_and_version():
    """Both import forms work; the version is pymulproc's."""
    assert pymulproc.factory is factory
    assert pymulproc.errors is errors
    assert pymulproc.mpq_protocol is mpq_protocol
    assert pymulproc.__version__ == '0.1.2'
    assert issubclass(errors.QueuesCommunicationError, Exception)


def test_protocol_constants():
    """pymulproc's request codes and offsets."""
    assert mpq_protocol.REQ_DO == 'DO'
    assert mpq_protocol.REQ_FINISHED == 'FINISHED'
    assert mpq_protocol.REQ_DIE == 'DIE'
    assert isinstance(mpq_protocol.REQ_TEST_PARENT, str)
    assert isinstance(mpq_protocol.REQ_TEST_CHILD, str)
    assert mpq_protocol.REQ_TEST_PARENT != mpq_protocol.REQ_TEST_CHILD
    assert mpq_protocol.S_PID_OFFSET == 1
    assert mpq_protocol.R_PID_OFFSET == 2
    assert (mpq_protocol.PARENT_COMM_INTERFACE,
            mpq_protocol.CHILD_COMM_INTERFACE) == (1, 2)


def test_attributes():
    """conn is the mproc object underneath; pid, timeout, loops, peer."""
    q_factory = factory.QueueCommunication(max_size=3)
    assert isinstance(q_factory.queue, mproc.JoinableQueue)
    parent = q_factory.parent()
    child = q_factory.child(timeout=20, loops=5)
    assert parent.conn is q_factory.queue and child.conn is q_factory.queue
    assert (parent.timeout, parent.loops) == (0.1, 10)
    assert (child.timeout, child.loops) == (20, 5)
    assert parent.pid == os.getpid() == child.pid
    assert parent.peer == mpq_protocol.PARENT_COMM_INTERFACE
    assert child.peer == mpq_protocol.CHILD_COMM_INTERFACE

    p_factory = factory.PipeCommunication()
    parent, child = p_factory.parent(), p_factory.child()
    assert parent.conn is p_factory.parent_conn
    assert child.conn is p_factory.child_conn
    assert parent.pid == os.getpid()
    assert parent.peer == mpq_protocol.PARENT_COMM_INTERFACE
    assert child.peer == mpq_protocol.CHILD_COMM_INTERFACE
    p_factory.parent_conn.close()
    p_factory.child_conn.close()


def test_message_shape():
    """send returns and puts the 4-item list; sender_pid overrides pid."""
    parent = factory.QueueCommunication().parent()
    sent = parent.send(mpq_protocol.REQ_DO, recipient_pid=42, data={'v': 20})
    assert sent == [mpq_protocol.REQ_DO, os.getpid(), 42, {'v': 20}]
    sent = parent.send(mpq_protocol.REQ_DIE, sender_pid=7)
    assert sent == [mpq_protocol.REQ_DIE, 7, None, None]
    assert parent.receive() == [mpq_protocol.REQ_DO, os.getpid(), 42, {'v': 20}]
    assert parent.receive() == [mpq_protocol.REQ_DIE, 7, None, None]
    assert parent.queue_empty()
    parent.queue_join(timeout=WAIT)

    p_factory = factory.PipeCommunication()
    parent, child = p_factory.parent(), p_factory.child()
    assert parent.send(mpq_protocol.REQ_DO, sender_pid=7, data=[1]) == \
        [mpq_protocol.REQ_DO, 7, None, [1]]
    assert child.receive(block=True, timeout=WAIT) == [mpq_protocol.REQ_DO, 7, None, [1]]
    p_factory.parent_conn.close()
    p_factory.child_conn.close()


# --- pymulproc's README examples -------------------------------------------

@pytest.mark.parametrize('method', START_METHODS)
def test_readme_pipe_example(method):
    """README: a child sends down the pipe, the parent receives it."""
    ctx = multiprocessing.get_context(method)
    pipe_factory = factory.PipeCommunication()
    parent = pipe_factory.parent()
    child = pipe_factory.child()
    child_process = start(ctx, pipe_child_sends, child)
    join_all([child_process])
    message = parent.receive()
    request_offset = mpq_protocol.S_PID_OFFSET - 1
    assert message[request_offset] == mpq_protocol.REQ_TEST_CHILD
    # The child end was built here, but signs with the child's pid.
    assert message[SENDER] == child_process.pid
    assert len(message) == 4


@pytest.mark.parametrize('method', START_METHODS)
def test_pipe_ping_pong(method):
    """pymulproc's pipe test, several rounds each way."""
    ctx = multiprocessing.get_context(method)
    pipe_factory = factory.PipeCommunication()
    parent = pipe_factory.parent()
    rounds = 20
    p = start(ctx, pipe_child_ping_pong, pipe_factory, rounds)
    try:
        for i in range(rounds):
            message = parent.receive(block=True, timeout=WAIT)
            assert message and len(message) == 4
            assert message[REQUEST] == mpq_protocol.REQ_TEST_PARENT
            assert message[SENDER] == p.pid
            assert message[DATA] == i
            parent.send(mpq_protocol.REQ_TEST_CHILD, data=i * 2)
    finally:
        join_all([p])


@pytest.mark.parametrize('method', START_METHODS)
def test_readme_children_to_parent(method):
    """README 1:N queue example: 5 children each send 3 to the parent."""
    ctx = multiprocessing.get_context(method)
    queue_factory = factory.QueueCommunication()
    parent = queue_factory.parent()
    parent_pid = multiprocessing.current_process().pid
    val = 3
    child_processes = [start(ctx, call_child, offset + 1, parent_pid,
                             queue_factory, val) for offset in range(5)]
    join_all(child_processes)

    counter = 0
    data_offset = mpq_protocol.S_PID_OFFSET + 2
    while not parent.queue_empty():
        message = parent.receive()
        counter += message[data_offset]
    parent.queue_join(timeout=WAIT)
    assert counter == val * len(child_processes)


@pytest.mark.parametrize('method', START_METHODS)
@pytest.mark.parametrize('n_children,target', [(1, 1), (4, 3), (6, 6)])
def test_full_duplex_with_die_pill(method, n_children, target):
    """pymulproc's full-duplex test: the parent asks one child for its
    identifier, only that child answers, then a DIE pill for each child
    ends them all and the queue joins."""
    ctx = multiprocessing.get_context(method)
    queue_factory = factory.QueueCommunication()
    parent = queue_factory.parent()
    parent_pid = multiprocessing.current_process().pid
    procs = [start(ctx, call_child, i + 1, parent_pid, queue_factory, None)
             for i in range(n_children)]
    try:
        parent.send(mpq_protocol.REQ_DO, recipient_pid=procs[target - 1].pid)
        message = parent.receive(
            func=lambda sms: sms[mpq_protocol.R_PID_OFFSET] == parent_pid,
            block=True, timeout=WAIT)
        assert message, 'no answer from the child asked'
        assert message[REQUEST] == mpq_protocol.REQ_FINISHED
        assert message[SENDER] == procs[target - 1].pid
        assert message[DATA] == target
        assert parent.queue_empty()
        for _ in procs:
            parent.send(mpq_protocol.REQ_DIE)
    finally:
        join_all(procs)
    parent.queue_join(timeout=WAIT)
    assert parent.queue_empty()


# --- the behaviours --------------------------------------------------------

def test_send_puts_with_timeout():
    """pymulproc's test: send is conn.put(message, timeout=self.timeout)."""
    queue_factory = factory.QueueCommunication()
    timeout = 20
    parent = queue_factory.parent(timeout=timeout)
    with mock.patch.object(parent.conn, 'put') as mock_put:
        parent.send(mpq_protocol.REQ_TEST_PARENT)
    message = [mpq_protocol.REQ_TEST_PARENT, parent.pid, None, None]
    mock_put.assert_called_with(message, timeout=timeout)

    parent = queue_factory.parent(timeout=timeout, loops=20)
    assert parent.loops == 20
    with mock.patch.object(parent.conn, 'put', side_effect=queue.Full()) as mock_put:
        with pytest.raises(errors.QueuesCommunicationError):
            parent.send(mpq_protocol.REQ_TEST_PARENT)
    assert mock_put.call_count == parent.loops


def test_send_on_full_queue_retries_loops_then_raises():
    """On a real full queue, send makes ``loops`` puts of ``timeout`` each,
    then raises QueuesCommunicationError from queue.Full; nothing is lost
    or added."""
    queue_factory = factory.QueueCommunication(max_size=1)
    parent = queue_factory.parent(timeout=0.02, loops=3)
    parent.send(mpq_protocol.REQ_FINISHED, data='first')
    assert not parent.queue_empty()
    real_put = parent.conn.put
    with mock.patch.object(parent.conn, 'put', wraps=real_put) as spy:
        with pytest.raises(errors.QueuesCommunicationError) as info:
            parent.send(mpq_protocol.REQ_FINISHED, data='second')
    assert isinstance(info.value.__cause__, queue.Full)
    assert spy.call_count == 3
    for call in spy.call_args_list:
        assert call.kwargs == {'timeout': 0.02}
    assert parent.receive()[DATA] == 'first'
    assert parent.receive() is False
    # Room again: send succeeds at the first try.
    assert parent.send(mpq_protocol.REQ_DO)[REQUEST] == mpq_protocol.REQ_DO
    assert parent.receive()[REQUEST] == mpq_protocol.REQ_DO
    parent.queue_join(timeout=WAIT)


def test_receive_nothing_returns_false():
    """receive returns False (the object) when nothing is there, for both
    kinds, blocking with a timeout or not."""
    comm = factory.QueueCommunication().parent()
    assert comm.conn.empty()
    assert comm.receive() is False
    assert comm.receive(func=lambda m: True) is False
    assert comm.receive(block=True, timeout=0.05) is False

    p_factory = factory.PipeCommunication()
    parent, child = p_factory.parent(), p_factory.child()
    assert parent.receive() is False
    assert child.receive(block=True, timeout=0.05) is False
    p_factory.parent_conn.close()
    p_factory.child_conn.close()


def test_rejected_message_keeps_its_place():
    """A message func rejects stays on the queue, in place and in order
    (pymulproc moved it to the back); receive takes the first accepted."""
    comm = factory.QueueCommunication().parent(timeout=0.1)
    for request, rcpt in [('A', 111), ('B', 222), ('C', 111), ('D', 222)]:
        comm.send(request, recipient_pid=rcpt)

    assert comm.receive(func=lambda x: False) is False
    assert comm.receive(lambda x: False) is False          # positional func
    assert not comm.queue_empty()

    for_222 = lambda m: m[RECIPIENT] == 222                # noqa: E731
    assert comm.receive(func=for_222)[REQUEST] == 'B'
    # The rest is still A, C, D: nothing went to the back.
    assert [comm.receive()[REQUEST] for _ in range(3)] == ['A', 'C', 'D']
    assert comm.receive() is False
    comm.queue_join(timeout=WAIT)


@pytest.mark.parametrize('method', START_METHODS)
def test_blocking_receive_skips_others_messages(method):
    """receive(func, block=True) waits for a message func accepts; a
    message for someone else sent before it stays on the queue."""
    ctx = multiprocessing.get_context(method)
    q_factory = factory.QueueCommunication()
    parent = q_factory.parent()
    other = 999999
    p = start(ctx, send_other_then_mine, q_factory, other, os.getpid())
    try:
        mine = parent.receive(func=lambda m: m[RECIPIENT] == os.getpid(),
                              block=True, timeout=WAIT)
    finally:
        join_all([p])
    assert mine and mine[DATA] == 'mine' and mine[SENDER] == p.pid
    left = parent.receive()
    assert left and left[DATA] == 'other' and left[RECIPIENT] == other
    assert parent.queue_empty()
    parent.queue_join(timeout=WAIT)


def test_queue_join_waits_for_receives():
    """queue_join does not return while a message is untaken: with a
    timeout it raises TimeoutError (mproc's JoinableQueue.join)."""
    comm = factory.QueueCommunication().parent()
    comm.send(mpq_protocol.REQ_DO)
    with pytest.raises(TimeoutError):
        comm.queue_join(timeout=0.05)
    assert comm.receive()[REQUEST] == mpq_protocol.REQ_DO
    comm.queue_join(timeout=WAIT)


@pytest.mark.parametrize('method', START_METHODS)
def test_queue_join_after_children_take_all(method):
    """Children take every DO (receive marks each done); queue_join in the
    parent returns, and no DO was lost or taken twice."""
    ctx = multiprocessing.get_context(method)
    q_factory = factory.QueueCommunication()
    parent = q_factory.parent()
    counts = ctx.Value('i', 0)
    n_children, n_tasks = 3, 60
    procs = [start(ctx, worker_until_die, q_factory, counts)
             for _ in range(n_children)]
    try:
        for i in range(n_tasks):
            parent.send(mpq_protocol.REQ_DO, data=i)
        for _ in procs:
            parent.send(mpq_protocol.REQ_DIE)
        parent.queue_join(timeout=WAIT)
        assert parent.queue_empty()
    finally:
        join_all(procs)
    assert counts.value == n_tasks
