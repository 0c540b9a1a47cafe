class CheckpointError(ValueError):
    """A checkpoint file is unreadable, unsafe, or does not fit the model."""
