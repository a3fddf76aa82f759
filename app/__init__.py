"""Image search and description service."""

__version__ = "0.1.0"
