"""``python -m avengers`` runs the command line."""

from .cli import main

main()
