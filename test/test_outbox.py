"""SQLite outbox: order, ack, dedupe, bound policy, durability across a killed writer process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nano_vision_ros.core.mqtt.outbox import Outbox


def test_order_ack_and_pending_after(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ids = [ob.put("t", f"m{i}", kind="new", key=f"e{i}:0") for i in range(5)]
    assert ids == sorted(ids) and len(ob) == 5
    assert [m.payload for m in ob.pending()] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert [m.payload for m in ob.pending(after_id=ids[1], limit=2)] == [b"m2", b"m3"]
    assert ob.ack(ids[2]) and not ob.ack(ids[2])
    assert [m.payload for m in ob.pending()] == [b"m0", b"m1", b"m3", b"m4"]
    assert len(ob) == 4


def test_dedupe_by_key_survives_ack_and_reopen(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    first = ob.put("t", "x", kind="new", key="ev1:0")
    assert ob.put("t", "x", kind="new", key="ev1:0") is None
    ob.ack(first)
    assert ob.put("t", "x", kind="new", key="ev1:0") is None  # already sent: a re-delivery is not sent again
    assert ob.put("t", "y", kind="update", key="ev1:1") is not None
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite")
    assert ob.put("t", "y", kind="update", key="ev1:1") is None
    assert len(ob) == 1


def test_bound_drops_oldest_update_first_never_new_or_end_while_updates_remain(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_messages=4)
    ob.put("t", "new-a", kind="new")
    ob.put("t", "upd-a1", kind="update")
    ob.put("t", "upd-a2", kind="update")
    ob.put("t", "end-a", kind="end")
    ob.put("t", "new-b", kind="new")  # drops upd-a1
    ob.put("t", "end-b", kind="end")  # drops upd-a2
    assert [m.payload for m in ob.pending()] == [b"new-a", b"end-a", b"new-b", b"end-b"]
    assert ob.counter("dropped_updates") == 2 and ob.counter("dropped_other") == 0
    ob.put("t", "new-c", kind="new")  # only new/end left: the oldest goes, counted separately
    assert [m.payload for m in ob.pending()] == [b"end-a", b"new-b", b"end-b", b"new-c"]
    assert ob.counter("dropped_other") == 1
    assert ob.stats()["outbox_pending"] == 4


_WRITER = """
import sys
from nano_vision_ros.core.mqtt.outbox import Outbox
ob = Outbox(sys.argv[1])
i = 0
while True:
    ob.put("t", str(i), kind="new", key=f"k{i}:0")
    print(i, flush=True)
    i += 1
"""


def test_sigkill_mid_write_keeps_every_committed_message_in_order(tmp_path):
    path = tmp_path / "o.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    committed = -1
    deadline = time.monotonic() + 30
    while committed < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    assert committed >= 200, "writer did not get going"
    ob = Outbox(path)
    got = [int(m.payload) for m in ob.pending(limit=1_000_000)]
    assert got == list(range(len(got)))  # in order, no gaps, no corruption
    assert len(got) >= committed + 1  # every put that returned is there


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.sqlite", max_messages=0)
    with pytest.raises(ValueError):
        Outbox(tmp_path / "o.sqlite", synchronous="SOMETIMES")


def test_put_many_and_ack_many_in_one_transaction(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ids = ob.put_many(
        [
            ("t", "a", "new", "e1:0"),
            ("t", "b", "new", "e1:0"),
            ("t", "c", "end", "e1:1"),
            ("t", b"\x00bin", "other", None, 0, True),
        ]
    )
    assert ids[1] is None and ids[0] < ids[2] < ids[3]
    msgs = ob.pending()
    assert [m.payload for m in msgs] == [b"a", b"c", b"\x00bin"] and (msgs[2].qos, msgs[2].retain) == (0, True)
    assert ob.ack_many([ids[0], ids[3], 999999]) == 2
    assert [m.payload for m in ob.pending()] == [b"c"] and len(ob) == 1
    assert ob.ack_many([]) == 0
