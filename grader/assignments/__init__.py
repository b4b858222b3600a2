"""Homework definitions the grader loads; the core knows none of them by name."""
