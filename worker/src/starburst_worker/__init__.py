"""The starburst worker: long-poll a queue, run each task, upload its result."""

__version__ = "0.1.0"
