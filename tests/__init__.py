"""The blit test suite (a package so tests can import tests.helpers)."""
