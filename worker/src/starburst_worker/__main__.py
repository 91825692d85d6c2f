"""``python -m starburst_worker``: run the worker loop until idle."""

import sys

from .worker import main

if __name__ == "__main__":
    sys.exit(main())
