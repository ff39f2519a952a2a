"""Registers the suite's pytest plugin (options, fixtures, `tune` marker, report) for benches/ and tests/."""

pytest_plugins = ["cpubench.plugin"]
