"""What stops the daemon from starting (or a new configuration from being applied)."""


class ConfigError(Exception):
    """The daemon cannot start with the configuration it was given."""
