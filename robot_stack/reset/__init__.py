"""Reset routines run between episodes."""
