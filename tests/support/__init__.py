"""Helpers shared by the test modules. A test module imports them from here, never from another
test module or from conftest.py (which keeps only pytest's hooks and fixtures)."""
