"""The project's own exception types, raised at every boundary a user controls.

Each is raised ``from`` the low-level cause, with a message a musician can act on.
"""

from __future__ import annotations


class StreamtagError(Exception):
    """Base of every error streamtag raises on purpose."""


class ConfigError(StreamtagError):
    """A config file, key or CLI flag is wrong. ``problems`` lists every one found."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class CheckpointError(StreamtagError):
    """A checkpoint file is missing, corrupt, truncated or does not match what it claims."""


class AudioError(StreamtagError):
    """An audio file cannot be read or holds no usable audio."""


class DeviceError(StreamtagError):
    """An audio input device is missing, busy, or failed."""


class DatasetError(StreamtagError):
    """A dataset on disk is missing files or holds malformed entries."""


class LibraryError(StreamtagError):
    """A reference library file is missing, corrupt, or was made with another checkpoint."""


class TrainingError(StreamtagError):
    """Training cannot go on (diverged, resume file unusable, …)."""
