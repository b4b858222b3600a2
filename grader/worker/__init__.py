"""The student worker: the only place where submitted code runs.

This package imports nothing from the rest of the grader except the data layer's
format, so that a worker never loads the reference solution or any expected value.
"""
