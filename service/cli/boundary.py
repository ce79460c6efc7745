"""The people's door's one error boundary: an error a person can act on (one of mmgraph's kinds)
is printed as one line and exits with its kind's code (:data:`mmgraph.core.errors.ERROR_KINDS`);
anything else is a bug, printed with its traceback, exit code 70 (``EX_SOFTWARE``)."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from mmgraph.core.errors import INTERNAL, MmgraphError, kind_of
from mmgraph.service.cli.output import errors


class BoundaryGroup(TyperGroup):
    """The top command group: every command (and sub-group) runs inside :meth:`invoke`."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MmgraphError as e:
            errors().print(f"[red]error:[/red] {e}", markup=True, highlight=False)
            raise typer.Exit(kind_of(e).exit_code) from e
        except (TyperException, typer.Exit, typer.Abort):  # usage errors, --help, Ctrl-C
            raise
        except Exception as e:
            # A bug: never dressed as a user error; its traceback is what a report needs.
            traceback.print_exception(e, file=sys.stderr)
            errors().print(
                "[red]internal error[/red] (a bug in mmgraph): please report it with the "
                "traceback above",
                markup=True,
            )
            raise typer.Exit(INTERNAL.exit_code) from e
