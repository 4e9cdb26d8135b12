"""`python -m client` runs the greenroom command."""

from client.cli import main

main()
