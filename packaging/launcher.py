"""The bundle's entry point: `parley` as a frozen program.

The engine worker is a spawned process of the same executable, so `freeze_support` must
run first: in the child it runs the worker and exits instead of starting another app.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.cli import main

    sys.exit(main())
