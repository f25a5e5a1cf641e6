"""The installed ``kd-env`` command: parses flags and calls the library (``kd_cli.app``).

It sits above every other package (it may import kd_env, agents and experiments; none imports it), so
the import direction scripts -> experiments -> agents -> kd_env stays one way.
"""
