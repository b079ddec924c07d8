"""The `tidings` command: a click group over the bus, with one-line errors."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from tidings.api.connect import DEFAULT_URL
from tidings.cli.common import Options
from tidings.cli.output import echo_error
from tidings.core.errors import TidingsError

COMMANDS = {
    "acls": (
        "tidings.cli.acls:acls",
        "Add, list and remove ACLs: who may do what on which topics, groups and the cluster.",
    ),
    "bench": (
        "tidings.cli.bench:bench",
        "Run the benchmark suite: tidings beside Tansu, Redis, NATS and others, one table.",
    ),
    "cdc": ("tidings.cli.cdc:cdc", "Change data capture: database changes as records on topics."),
    "consume": (
        "tidings.cli.records:consume",
        "Print records of TOPICs; without --follow, stop at the end of the log.",
    ),
    "es": ("tidings.cli.es:es", "Event sourcing: streams, events and projections."),
    "groups": (
        "tidings.cli.groups:groups",
        "List, describe, reset offsets of and delete consumer groups.",
    ),
    "mirror": (
        "tidings.cli.mirror:mirror",
        "Copy topics (records with keys, headers, timestamps) and group offsets from SRC_URL "
        "to DST_URL, e.g. from sqlite://app.db to kafka://broker:9092, or back.",
    ),
    "produce": (
        "tidings.cli.records:produce",
        "Produce the VALUEs to TOPIC, or one record per line of stdin when none are given.",
    ),
    "queues": (
        "tidings.cli.queues:queues",
        "List, describe, peek at, redrive and purge queues (share groups).",
    ),
    "serve": (
        "tidings.cli.serve:serve",
        "Serve the bus to Kafka clients (the Kafka wire protocol) until Ctrl-C or SIGTERM.",
    ),
    "topics": ("tidings.cli.topics:topics", "Create, list, describe, alter and delete topics."),
    "tour": (
        "tidings.cli.tour:tour",
        "A guided tour: a topic, keyed records, a consumer group and its lag, with the code.",
    ),
}
"""Each command: where it is defined, and its short help (so --help imports none)."""


class LazyGroup(click.Group):
    """A group whose commands are imported only when one is run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, without importing any."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the named command's module and return the command."""
        if cmd_name not in COMMANDS:
            return None
        module, _, name = COMMANDS[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command), f"{module}:{name} is not a command"
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with their short help, from COMMANDS alone."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        # a bare command of the same help text shortens it as the real one would
        rows = [
            (name, click.Command(name, help=text).get_short_help_str(limit))
            for name, (_, text) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    envvar="TIDINGS_URL",
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    help="The bus: sqlite://PATH (embedded, durable), memory://, kafka://HOST:PORT,... "
    "(a Kafka-compatible cluster) or nats://HOST:PORT (NATS JetStream).",
)
@click.version_option(package_name="tidings", prog_name="tidings")
@click.pass_context
def cli(ctx: click.Context, url: str) -> None:
    """tidings: partitioned logs, consumer groups and queues on an embedded broker."""
    ctx.obj = Options(url)


def run(args: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status; errors become one line on stderr."""
    try:
        result = cli.main(
            list(args) if args is not None else None, "tidings", standalone_mode=False
        )
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        return fail(f"{e.format_message()}{hint}", e.exit_code)
    except click.ClickException as e:
        return fail(e.format_message(), e.exit_code)
    except TidingsError as e:
        return fail(str(e), 1)
    except click.Abort:
        return 130
    return result if isinstance(result, int) else 0


def fail(message: str, code: int) -> int:
    """Print `error: message` on one line of stderr; return `code`."""
    echo_error(message)
    return code


def main() -> None:
    """Entry point of the `tidings` console script."""
    sys.exit(run())


if __name__ == "__main__":
    main()
