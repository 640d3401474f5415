"""The paths an instrumented call can take, the values of :attr:`Monitor.path`.

Apart from the monitor because both the monitor and the configuration step
(``monitor_configure``) set the path, and the call wrappers read it.
"""

# The paths an instrumented call can take (Monitor.path).
FAST, WITH_INPUTS, SLOW = "fast", "with_inputs", "slow"
