"""Hardware interfaces and the real device backends."""
