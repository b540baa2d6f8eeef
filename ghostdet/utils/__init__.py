from ghostdet.utils.errors import CheckpointError, ConfigError, DataError, GhostdetError

__all__ = ["GhostdetError", "ConfigError", "DataError", "CheckpointError"]
