"""The message protocol of pymulproc 0.1.2, unchanged.

A message is a list of exactly four items::

    [request, sender_pid, recipient_pid, data]

``request`` is a string (one of the ``REQ_*`` codes below or any string
the program chooses), ``sender_pid`` an int, ``recipient_pid`` an int or
None (None: for whoever takes it), ``data`` any picklable object or None.
Index the fields with the offsets below, as pymulproc programs do:
``message[S_PID_OFFSET - 1]`` is the request, ``message[S_PID_OFFSET]``
the sender, ``message[R_PID_OFFSET]`` the recipient and
``message[S_PID_OFFSET + 2]`` the data.
"""

#: ``peer`` attribute of a parent end.
PARENT_COMM_INTERFACE = 1
#: ``peer`` attribute of a child end.
CHILD_COMM_INTERFACE = 2

#: Asks the other peer to do a task.
REQ_DO = 'DO'
#: Tells the other peer that the task is done.
REQ_FINISHED = 'FINISHED'
#: Asks the other peer to stop as soon as it can (the poison pill).
REQ_DIE = 'DIE'
#: Request codes pymulproc's own tests send (to be ignored by programs).
REQ_TEST_PARENT = "I'M PARENT PROCESS"
REQ_TEST_CHILD = "I'M CHILD PROCESS"

#: Index of the sender pid in a message (the request is at 0).
S_PID_OFFSET = 1
#: Index of the recipient pid in a message (the data follows it).
R_PID_OFFSET = S_PID_OFFSET + 1
