"""The progress lines of long commands: count, rate, time left, and their pace."""

from __future__ import annotations

import io

from tidings.cli.progress import PLAIN_S, Progress, duration, progress_line


class Stream(io.StringIO):
    """stderr as a test sees it: a terminal or not."""

    def __init__(self, *, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_shows_count_rate_and_time_left() -> None:
    line = progress_line("orders", 120_000, 500_000, "records", rate=45_210.4, elapsed=2.6)
    assert line == "orders  120,000/500,000 records  45,210/s  0:08 left"


def test_without_a_total_it_shows_time_elapsed_and_when_done_the_time_taken() -> None:
    assert (
        progress_line("orders", 1_500, None, "rows", rate=None, elapsed=75)
        == "orders  1,500 rows  1:15 elapsed"
    )
    assert (
        progress_line("orders", 9, 9, "rows", rate=3.0, elapsed=3)
        == "orders  9/9 rows  3/s  done in 0:03"
    )


def test_durations_read_as_a_clock() -> None:
    assert [duration(s) for s in (0, 8.4, 61, 3599, 3600, 7384)] == [
        "0:00",
        "0:08",
        "1:01",
        "59:59",
        "1:00:00",
        "2:03:04",
    ]


def test_the_rate_counts_from_the_first_update() -> None:
    clock, stream = Clock(), Stream(terminal=False)
    progress = Progress(stream, clock=clock)
    progress.update("orders", 1_000, 101_000)  # what came before is not timed
    clock.now += PLAIN_S
    progress.update("orders", 51_000, 101_000)
    assert stream.getvalue().splitlines()[-1] == (
        "orders  51,000/101,000 records  10,000/s  0:05 left"
    )


def test_off_a_terminal_plain_lines_come_every_few_seconds_and_at_the_end() -> None:
    clock, stream = Clock(), Stream(terminal=False)
    progress = Progress(stream, clock=clock)
    for done in range(0, 100_001, 100):  # 1,000 updates over 10 s
        progress.update("orders", done, 100_000)
        clock.now += 0.01
    progress.update("invoices", 0, 10)
    progress.update("invoices", 5, 10)  # not shown yet: too soon after the last line
    progress.close()
    lines = stream.getvalue().split("\n")
    assert "\r" not in stream.getvalue()
    assert lines == [
        "orders  0/100,000 records  0:00 elapsed",
        "orders  50,000/100,000 records  10,000/s  0:05 left",
        "orders  100,000/100,000 records  10,000/s  done in 0:10",
        "invoices  0/10 records  0:00 elapsed",
        "invoices  5/10 records  0:00 elapsed",
        "",
    ]


def test_rounds_that_start_over_do_not_flood_a_log() -> None:
    clock, stream = Clock(), Stream(terminal=False)
    progress = Progress(stream, clock=clock)
    for _ in range(100):  # a mirror following a topic: a small round every 0.2 s
        progress.update("orders", 0, 3)
        progress.update("orders", 3, 3)
        clock.now += 0.2
    progress.close()
    assert len(stream.getvalue().splitlines()) <= 2 * (100 * 0.2 / PLAIN_S) + 2


def test_on_a_terminal_the_line_is_redrawn_in_place() -> None:
    clock, stream = Clock(), Stream(terminal=True)
    progress = Progress(stream, clock=clock)
    progress.update("orders", 0, 1_000)
    clock.now += 1
    progress.update("orders", 100, 1_000)
    assert progress.drawing
    progress.message("a step")  # ends the line drawn in place first
    clock.now += 1
    progress.update("orders", 1_000, 1_000)
    progress.close()
    assert stream.getvalue() == (
        "\rorders  0/1,000 records  0:00 elapsed"
        "\rorders  100/1,000 records  100/s  0:09 left"
        "\na step\n"
        "\rorders  1,000/1,000 records  500/s  done in 0:02\n"
    )
    assert not progress.drawing


def test_a_shorter_line_wipes_out_the_longer_one_before_it() -> None:
    stream = Stream(terminal=True)
    progress = Progress(stream, clock=Clock())
    progress.update("orders.archive.2026", 0, 100_000)
    progress.update("tax", 0, 9)
    first, second = stream.getvalue().split("\r")[1:]
    assert second == "tax  0/9 records  0:00 elapsed".ljust(len(first))
