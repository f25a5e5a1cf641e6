"""The thread policy: torch threads from the cores that other work leaves free, shared out between workers."""

import pytest

from kd_env import devices
from kd_env.errors import UserError


@pytest.mark.parametrize("cores, load, workers, expected", [
    (2, 0.1, 1, 2),   # a quiet 2-core machine: both cores
    (2, 1.3, 1, 1),   # another process keeps a core busy: one thread
    (2, 11.0, 1, 1),  # far more work than cores: still at least one
    (16, 0.0, 4, 4),  # four workers share 16 cores
    (16, 8.2, 4, 2),  # half of them busy
])
def test_threads_come_from_the_free_cores(cores, load, workers, expected, monkeypatch):
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (load, load, load))
    assert devices.intra_op_threads(workers) == expected


def test_an_explicit_count_wins_and_is_checked():
    assert devices.intra_op_threads(workers=8, threads=3) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UserError, match="threads must be an integer >= 1"):
            devices.intra_op_threads(threads=bad)
