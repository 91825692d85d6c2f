"""Exceptions raised by starburst.

StarburstError
 ├── ConfigError            the deployment's config document is missing or wrong
 ├── RemoteError            a task failed remotely and its exception could not be
 │                          rebuilt here; carries the remote type, text, traceback
 ├── WorkerLostError        the Fargate task running an item stopped (out of
 │                          memory, Spot interruption, failed to start, killed)
 │                          and the item's attempts are used up
 ├── ResultMissingError     a worker said it finished but the result object is absent
 ├── QuotaError             no worker can start: the Fargate vCPU quota is used up
 ├── BudgetExceededError    the plan reached its ``max_cost``: its workers were
 │                          stopped and its unfinished items failed with this
 ├── CredentialsError       AWS found no credentials or refused them; during
 │                          a plan, after reloading them, saying which
 │                          workers still run
 ├── SessionNotFoundError   ``Plan.attach`` found no such session
 ├── SessionCancelledError  the session was cancelled from outside the plan
 │                          (``starburst-cli cancel``) before the item finished
 └── BrokenPlan             the plan cannot go on (also a BrokenExecutor); set on
                            every pending future when the backend fails

A user exception raised remotely is re-raised with its own type when it can be
unpickled, with the remote traceback attached as its ``__cause__``
(a ``RemoteTraceback``), as ``concurrent.futures.ProcessPoolExecutor`` does.
"""

from __future__ import annotations

from concurrent.futures import BrokenExecutor


class StarburstError(Exception):
    """Base class of every starburst error."""


class ConfigError(StarburstError, ValueError):
    """The deployment's config document is missing, unreadable or incomplete."""


class RemoteError(StarburstError):
    """A remote exception whose object could not be brought back."""

    def __init__(self, error_type: str, text: str, traceback: str = "") -> None:
        super().__init__(f"{error_type}: {text}")
        self.error_type = error_type
        self.text = text
        self.traceback = traceback

    def __reduce__(self):  # keep picklable despite the custom __init__
        return (type(self), (self.error_type, self.text, self.traceback))


class WorkerLostError(StarburstError):
    """The Fargate task running an item stopped before the item finished."""


class ResultMissingError(StarburstError):
    """A task was acknowledged by its worker but its result object is missing."""


class QuotaError(StarburstError):
    """No worker can start because of an AWS quota."""


class BudgetExceededError(StarburstError):
    """The plan's ``max_cost`` was reached before the item could run or finish."""


class CredentialsError(StarburstError):
    """AWS found no credentials, or refused them (expired or revoked): before a
    plan starts, or during one after reloading them failed."""


class SessionNotFoundError(StarburstError, LookupError):
    """No session with that id exists in the deployment."""


class SessionCancelledError(StarburstError):
    """The session was cancelled from outside (``starburst-cli cancel``)."""


class BrokenPlan(StarburstError, BrokenExecutor):
    """The plan's backend failed; pending futures cannot complete."""


class RemoteTraceback(Exception):
    """Carries the remote traceback text; set as ``__cause__`` of remote errors."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'
