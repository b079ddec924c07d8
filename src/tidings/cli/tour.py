"""`tidings tour`: a short guided walk through topics, keys, groups and lag.

Each step is a function: the tour prints its docstring, then the code of its body (read
with `inspect`, so what is shown is exactly what runs), then what that code prints.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import json
import textwrap
import time
from collections.abc import Callable
from typing import TypeVar

import click

import tidings
from tidings.cli.common import open_bus
from tidings.cli.output import styled

TOPIC = "tour.orders"
GROUP = "tour.billing"
T = TypeVar("T")


def create_topic(bus: tidings.Bus) -> None:
    """Create the topic 'tour.orders' with 3 partitions (if it does not exist).

    A topic is a set of partitions; each partition is an append-only log.
    """
    spec = bus.create_topic("tour.orders", 3, exist_ok=True)
    print(f"{spec.name}: {spec.partitions} partitions")


def start_at_the_end(bus: tidings.Bus) -> None:
    """Point the group 'tour.billing' at the end of the log.

    A group remembers a committed offset per partition; here they move to the
    end, so this run of the tour counts only the records it produces.
    """
    bus.reset_offsets("tour.billing", "tour.orders", to="latest")
    print("lag of group 'tour.billing' now:", bus.describe_group("tour.billing").lag)


def produce(bus: tidings.Bus) -> None:
    """Produce six keyed records.

    Records with the same key go to the same partition, so their order is kept.
    """
    orders = ["alice:book", "bob:lamp", "carol:mug", "alice:pen", "bob:desk", "alice:ink"]
    for number, order in enumerate(orders, start=1):
        customer, item = order.split(":")
        value = json.dumps({"order": number, "item": item}).encode()
        meta = bus.publish("tour.orders", value, key=customer.encode())
        print(f"{customer:<6} -> {meta.topic}[{meta.partition}]@{meta.offset}")
    lag = bus.describe_group("tour.billing").lag
    print("lag of group 'tour.billing' after producing:", lag)


def consume(bus: tidings.Bus) -> tidings.Consumer:
    """Consume them as a member of 'tour.billing'.

    The group assigns partitions to its members; reading does not commit.
    """
    consumer = bus.consumer("tour.orders", group="tour.billing", auto_commit=False)
    records: list[tidings.Record] = []
    deadline = time.monotonic() + 5
    while len(records) < 6 and time.monotonic() < deadline:
        records += consumer.poll(timeout_ms=200)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        key, value = (r.key or b"").decode(), (r.value or b"").decode()
        print(f"{r.topic}[{r.partition}]@{r.offset}  {key:<6} {value}")
    lag = bus.describe_group("tour.billing").lag
    print("lag of group 'tour.billing' before the commit:", lag)
    return consumer


def commit(bus: tidings.Bus, consumer: tidings.Consumer) -> None:
    """Commit.

    The committed offsets now point past these records: a restarted member
    resumes after them, and the lag drops to zero.
    """
    consumer.commit()
    lag = bus.describe_group("tour.billing").lag
    print("lag of group 'tour.billing' after the commit:", lag)


def code_of(step: Callable[..., object]) -> str:
    """The body of a step function without its docstring: the code the tour runs."""
    source = textwrap.dedent(inspect.getsource(step))
    (function,) = ast.parse(source).body
    assert isinstance(function, ast.FunctionDef), "a step is a plain function"
    first, last = function.body[1], function.body[-1]  # body[0] is the docstring
    lines = source.splitlines()[first.lineno - 1 : last.end_lineno]
    return textwrap.dedent("\n".join(lines))


def run_step(number: int, step: Callable[..., T], *args: object) -> T:
    """Show a step (title, explanation, code), run it, and show what it printed."""
    title, _, explanation = (step.__doc__ or "").partition("\n")
    click.echo()
    click.echo(styled(f"{number}. {title}", bold=True))
    for line in textwrap.dedent(explanation).strip().splitlines():
        click.echo(f"   {line}")
    click.echo()
    for line in code_of(step).splitlines():
        click.echo(f"   {styled('│', fg='cyan')} {line}")
    click.echo()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = step(*args)
    for line in printed.getvalue().splitlines():
        click.echo(f"   {line}")
    return result


@click.command()
def tour() -> None:
    """A guided tour: a topic, keyed records, a consumer group and its lag, with the code."""
    with open_bus(create=True) as bus:
        click.echo("A tour of tidings: each step shows its Python code, then what it printed.")
        click.echo(f"Every step runs on  bus = tidings.connect({bus.engine.url!r})")
        run_step(1, create_topic, bus)
        run_step(2, start_at_the_end, bus)
        run_step(3, produce, bus)
        consumer = run_step(4, consume, bus)
        try:
            run_step(5, commit, bus, consumer)
        finally:
            consumer.close()

    click.echo()
    click.echo("Look further:")
    click.echo(f"   tidings topics describe {TOPIC}")
    click.echo(f"   tidings groups describe {GROUP}")
    click.echo(f"   tidings consume {TOPIC} --from-beginning --format json")
