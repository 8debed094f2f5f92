"""db_utils.postgres.deadline: a blocked call is released at its deadline; a finished one is never touched."""

from __future__ import annotations

import socket

from db_utils.postgres.deadline import Deadline


def test_a_blocked_receive_returns_when_the_deadline_shuts_the_socket_down():
    mine, peer = socket.socketpair()
    with mine, peer:
        with Deadline(mine.fileno(), 0.3) as guard:
            received = mine.recv(1)  # the peer never sends: only the deadline can end this
        assert received == b""
        assert guard.fired
        assert mine.fileno() >= 0  # shut down, not closed: the descriptor still belongs to its owner


def test_a_call_that_finished_in_time_keeps_its_socket():
    mine, peer = socket.socketpair()
    other, other_peer = socket.socketpair()
    with mine, peer, other, other_peer:
        with Deadline(mine.fileno(), 0.5) as early:
            peer.sendall(b"x")
            assert mine.recv(1) == b"x"
        # A later deadline fires after the earlier (cancelled) one was due: the watchdog has passed it.
        with Deadline(other.fileno(), 0.6) as late:
            assert other.recv(1) == b""
        assert late.fired
        assert not early.fired
        peer.sendall(b"y")
        assert mine.recv(1) == b"y"  # still connected both ways
        mine.sendall(b"z")
        assert peer.recv(1) == b"z"


def test_a_reused_descriptor_number_is_left_alone():
    mine, peer = socket.socketpair()
    with Deadline(mine.fileno(), 0.3):
        mine.close()
        peer.close()
        replacement, replacement_peer = socket.socketpair()  # may well get the same descriptor number
        with replacement, replacement_peer:
            waiter, waiter_peer = socket.socketpair()
            with waiter, waiter_peer, Deadline(waiter.fileno(), 0.6):
                assert waiter.recv(1) == b""  # the first deadline has come and gone by now
            replacement_peer.sendall(b"ok")
            assert replacement.recv(2) == b"ok"
