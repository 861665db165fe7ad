"""The client's errors. Every one reads as a sentence; none ever holds a password."""

from __future__ import annotations


class PantheonError(Exception):
    """Base of every error this client raises (besides :class:`TimeoutError`)."""


class ConfigError(PantheonError, ValueError):
    """Bad settings: a Redis URL, a cluster name, subscription options."""


class InvalidInput(PantheonError, ValueError):
    """A write the projector would reject, found before sending it: the message is the one
    the projector would write to ``rejected`` (the Rust client's decoder message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid input: {reason}")
        self.reason = reason


class Rejected(PantheonError):
    """The projector applied the log entry ``entry_id`` by refusing it; ``reason`` says why.
    Nothing changed."""

    def __init__(self, entry_id: str, reason: str) -> None:
        super().__init__(f"entry {entry_id} was rejected: {reason}")
        self.entry_id = entry_id
        self.reason = reason


class Unavailable(PantheonError):
    """The master serving the cluster could not be found or reached."""
