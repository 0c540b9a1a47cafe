"""Loading and saving weights without unrestricted unpickling."""

from .errors import CheckpointError
from .io import choose_weights, load_checkpoint, load_model, save_checkpoint
from .state_dict import check_state_dict

__all__ = ["CheckpointError", "check_state_dict", "choose_weights", "load_checkpoint", "load_model", "save_checkpoint"]
