"""Exceptions, for what is truly exceptional; outcomes travel as `Outcome`.

    StampedeError
     ├── ConfigError          a setting is missing, unknown or malformed
     ├── ValidationError      input the engine refuses before touching Redis
     ├── UnavailableError     Redis or the store cannot be reached
     └── ServerError          the embedded Valkey could not be started
"""


class StampedeError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(StampedeError):
    """A setting is missing, unknown or malformed."""


class ValidationError(StampedeError):
    """Input refused before any change: maps to 400 invalid_request."""


class UnavailableError(StampedeError):
    """A backing service is unreachable: maps to 503 unavailable."""


class ServerError(StampedeError):
    """The embedded Valkey could not be started or stopped."""
