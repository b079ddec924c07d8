"""`tidings mirror SRC_URL DST_URL`: copy topics and group offsets between engines."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from tidings.api.connect import connect_async
from tidings.cli.common import json_option
from tidings.cli.output import echo_json
from tidings.cli.progress import Progress
from tidings.mirror import Mirror, MirrorReport


@click.command()
@click.argument("src_url")
@click.argument("dst_url")
@click.option(
    "--topics",
    "-t",
    "topics",
    required=True,
    multiple=True,
    help="Topics to copy: names or patterns ('orders.*', 'orders.>', '^regex'); "
    "repeat or separate with commas.",
)
@click.option(
    "--groups",
    "-g",
    "groups",
    multiple=True,
    help="Groups whose committed offsets to copy (default: every group with offsets "
    "on the copied topics); repeat or separate with commas.",
)
@click.option("--follow", is_flag=True, help="Keep copying new records until Ctrl-C or SIGTERM.")
@click.option(
    "--name",
    default="default",
    show_default=True,
    help="Names this mirror's progress on the destination: a run with the same name resumes.",
)
@json_option
def mirror(
    src_url: str,
    dst_url: str,
    *,
    topics: tuple[str, ...],
    groups: tuple[str, ...],
    follow: bool,
    name: str,
    as_json: bool,
) -> None:
    """Copy topics (records with keys, headers, timestamps) and group offsets from SRC_URL
    to DST_URL, e.g. from sqlite://app.db to kafka://broker:9092, or back.

    Resumable: progress is kept on the destination, and a stopped run picks up where it
    left off without copying a record twice. A group's offset on DST_URL only moves
    forwards: where the group read further there, or is active there, it is kept.
    """
    report = asyncio.run(
        _run(
            src_url,
            dst_url,
            topics=_split(topics),
            groups=_split(groups) or None,
            follow=follow,
            name=name,
        )
    )
    if as_json:
        echo_json(_report_json(report))
        return
    for topic, count in sorted(report.copied.items()):
        click.echo(f"{topic}: {count} records copied")
    for group, offsets in sorted(report.groups.items()):
        click.echo(f"group {group}: offsets set on {len(offsets)} partitions")
    for group, reason in sorted(report.skipped_groups.items()):
        click.echo(f"group {group}: offsets not copied: {reason}", err=True)


def _report_json(report: MirrorReport) -> dict[str, object]:
    return {
        "copied": report.copied,
        "groups": {
            group: [
                {"topic": tp.topic, "partition": tp.partition, "offset": offset}
                for tp, offset in sorted(offsets.items())
            ]
            for group, offsets in sorted(report.groups.items())
        },
        "skipped_groups": report.skipped_groups,
    }


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


async def _run(
    src_url: str,
    dst_url: str,
    *,
    topics: list[str],
    groups: list[str] | None,
    follow: bool,
    name: str,
) -> MirrorReport:
    src = await connect_async(src_url)
    try:
        dst = await connect_async(dst_url)
    except BaseException:
        await src.close()
        raise
    progress = Progress()

    def copying(topic: str, copied: int, remaining: int) -> None:
        progress.update(topic, copied, copied + remaining)

    job = asyncio.create_task(
        Mirror(src, dst, name=name).run(topics, groups=groups, follow=follow, on_progress=copying)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, job.cancel)
    report: MirrorReport | None = None
    try:
        report = await job
    except asyncio.CancelledError:
        pass
    finally:
        progress.close()
        with contextlib.suppress(Exception):
            await dst.close()
        await src.close()
    if report is None:
        click.echo("stopped; run the same command again to resume", err=True)
        return MirrorReport()
    return report
