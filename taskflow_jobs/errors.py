"""The errors that cross layers; each message is safe to show (no secrets)."""

from __future__ import annotations


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message never contains credentials."""


class PortInUse(RuntimeError):
    """A port we want to listen on is taken; the message names the setting that moves it."""


class StartupError(RuntimeError):
    """A component of the system did not come up; the message says where its log is."""


class DeployError(RuntimeError):
    """Deploying cannot go on; the message says what to do."""
