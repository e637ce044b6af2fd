"""``python -m sweep.cli``: the backsweep command line."""

from sweep.cli import main

main(prog_name="backsweep")
