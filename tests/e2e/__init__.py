"""End-to-end tests against the real cluster of tests/e2e/cluster. A package, so that its conftest.py
does not take the module name ``conftest`` from tests/conftest.py, which the tests import."""
