"""The `tidings` command: a click group over the bus, with one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from tidings.api.connect import DEFAULT_URL
from tidings.cli.bench import bench
from tidings.cli.cdc import cdc
from tidings.cli.common import Options
from tidings.cli.es import es
from tidings.cli.groups import groups
from tidings.cli.mirror import mirror
from tidings.cli.output import echo_error
from tidings.cli.queues import queues
from tidings.cli.records import consume, produce
from tidings.cli.serve import serve
from tidings.cli.topics import topics
from tidings.cli.tour import tour
from tidings.core.errors import TidingsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    envvar="TIDINGS_URL",
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    help="The bus: sqlite://PATH (embedded, durable) or memory://.",
)
@click.version_option(package_name="tidings", prog_name="tidings")
@click.pass_context
def cli(ctx: click.Context, url: str) -> None:
    """tidings: partitioned logs, consumer groups and queues on an embedded broker."""
    ctx.obj = Options(url)


for command in (topics, produce, consume, groups, queues, cdc, es, serve, mirror, tour, bench):
    cli.add_command(command)


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
