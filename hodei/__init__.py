"""hodei: a job runner for a developer's Linux box. This package holds what daemon, CLI and agent share."""

__version__ = "0.1.0"
