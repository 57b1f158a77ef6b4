"""The checked session's pacing (--smtp-rate), measured on a fake clock, never a real one."""

from __future__ import annotations

from conformance.session import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_pacer_spaces_commands_at_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(4, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        pacer.wait()
    assert clock.slept == [0.25, 0.25]  # the first command goes at once


def test_pacer_does_not_wait_when_the_server_is_slower_than_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(2, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 0.3
    pacer.wait()  # 0.3 s since the last one: 0.2 s to wait
    clock.now += 1.0
    pacer.wait()  # a second later: nothing
    assert clock.slept == [0.2]


def test_no_rate_means_no_waiting() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        pacer.wait()
    assert clock.slept == []
