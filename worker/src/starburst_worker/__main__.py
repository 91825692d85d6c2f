"""``python -m starburst_worker``: run the worker loop until idle."""

import contextlib
import logging
import os
import sys
import traceback

from .worker import main

if __name__ == "__main__":
    try:
        code = main()
    except BaseException:  # noqa: BLE001 - whatever it was, the process ends
        with contextlib.suppress(Exception):  # stderr itself may be broken
            traceback.print_exc()
        code = 1
    # End the process here, whatever the user's calls left behind: a
    # non-daemon thread they started would otherwise keep this Fargate task
    # running, and billed, after the worker is done.
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a call may have closed it
            stream.flush()
    os._exit(code)
