"""``bcce keys``: the Ed25519 pair the policy pool signs grants with."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("keys")
def group() -> None:
    """Manage gate signing keys."""


@group.command("generate")
@click.option(
    "--out",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for gate.key and gate.pub.",
)
@click.option("--force", is_flag=True, help="Replace an existing pair.")
def generate(directory: Path, force: bool) -> None:
    """Write a new pair: gate.key (policy pool only, mode 0600) and gate.pub (every pool).

    To rotate: give the step pools the new gate.pub next to the old one
    (BCCE_GATE_PUBLIC_KEYS=old.pub,new.pub), move the policy pool to the new gate.key,
    and drop old.pub once grants signed with it have expired or been used.
    """
    from bcce.gate import generate as make_pair

    private, public = make_pair(directory, force)
    click.echo(f"wrote {private} (private: the policy pool only) and {public}")
    click.echo(f"policy pool: BCCE_GATE_PRIVATE_KEY_FILE={private.resolve()}")
    click.echo(f"step pools:  BCCE_GATE_PUBLIC_KEYS={public.resolve()}")
