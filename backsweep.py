"""``python -m backsweep``: the backsweep command line (the same as the ``backsweep``
console script; the commands live in ``sweep.cli``)."""

from sweep.cli import main

if __name__ == "__main__":
    main(prog_name="backsweep")
