"""Test support shared by every component's suite (loaded as a pytest plugin)."""
