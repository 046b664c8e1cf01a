"""Race commands: ``race ID`` (compare the attempts) and ``races`` (list them).

A race starts with ``dobby add … --race K``; ``dobby cancel r-…`` and ``dobby merge r-…`` act on
one (see :mod:`dobby.cli.tasks` and :mod:`dobby.cli.results`).
"""

from __future__ import annotations

import click

from dobby.cli import render
from dobby.cli.app import client, echo_lines, json_option, print_json, width
from dobby.cli.races_render import comparison_lines


@click.command("race")
@click.argument("race_id")
@json_option
def race_cmd(race_id: str, as_json: bool) -> None:
    """Compare a race's attempts: backend, host, time, cost, diff, check result and output."""
    race = client().race(race_id)
    if as_json:
        return print_json(race)
    echo_lines(comparison_lines(race, width=width()))


@click.command("races")
@click.option("--limit", type=click.IntRange(min=1), default=20, help="At most this many.")
@json_option
def races_cmd(limit: int, as_json: bool) -> None:
    """List races, newest first."""
    body = client().races(limit=limit)
    if as_json:
        return print_json(body)
    races = body.get("races") or []
    if not races:
        click.echo("no races")
        return
    headers = ["ID", "STATUS", "PICK", "ATTEMPTS", "WINNER", "COST", "TITLE"]
    rows = [
        [
            r["id"],
            r["status"],
            r["pick"],
            " ".join(f"#{c['n']}:{c['state']}" for c in r.get("attempts") or []),
            r.get("winner") or "-",
            render.format_cost(r.get("cost_usd"), "-"),
            r.get("title") or "",
        ]
        for r in races
    ]
    echo_lines(render.render_table(headers, rows, width=width(), max_col=40))


COMMANDS = [race_cmd, races_cmd]
