"""ephysd test suite."""
