"""`python -m subcircuit.cli ...` is the same as the `subcircuit` command."""

from subcircuit.cli import main

if __name__ == "__main__":
    main()
