"""ephysd: a Trio daemon speaking the Ephys Link API to drive micromanipulators."""

__version__ = "0.1.0"
