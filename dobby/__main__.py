"""``python -m dobby`` runs the CLI."""

from dobby.cli import main

main()
