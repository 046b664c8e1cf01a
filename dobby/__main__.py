"""``python -m dobby`` runs the CLI."""

from dobby.cli.main import main

main()
