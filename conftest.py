"""Root conftest: the plugin's own tests drive pytest through ``pytester`` in subprocesses."""

pytest_plugins = ["pytester"]
