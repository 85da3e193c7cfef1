"""`python -m causalkv` runs the command line."""

from causalkv.cli.main import main

main()
