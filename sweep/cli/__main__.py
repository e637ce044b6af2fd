"""``python -m sweep.cli``: the backsweep command line."""

from sweep.cli import main

if __name__ == "__main__":
    main(prog_name="backsweep")
