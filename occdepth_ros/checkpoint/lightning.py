"""Plain Python values from the inert placeholders a Lightning ``hyper_parameters``
entry unpickles to.

The restricted unpickler never imports OmegaConf; a DictConfig arrives as a
placeholder whose pickled state holds ``_content`` (child nodes) and ``_metadata``.
Reading that state back as dicts, lists and scalars lets tools show the official
config (backbone, feature width, scene size) without running any of its code.
"""

from __future__ import annotations

from typing import Any

from .restricted_unpickler import Opaque

MAX_DEPTH = 64  # configs nest a few levels; a deeper chain is a malformed or hostile file


def _state(obj: Opaque) -> dict:
    return obj.state if isinstance(obj.state, dict) else {}


def plain(obj: Any, depth: int = 0) -> Any:
    """``obj`` with OmegaConf containers and nodes replaced by dicts, lists and their
    values; enums by their value; other placeholders by ``<opaque module.Name>``."""
    if depth > MAX_DEPTH:
        return "<nested too deep>"
    down = depth + 1
    if isinstance(obj, Opaque):
        state, name = _state(obj), obj.pickled_name
        if name.endswith(".DictConfig"):
            content = state.get("_content")
            return {k: plain(v, down) for k, v in content.items()} if isinstance(content, dict) else content
        if name.endswith(".ListConfig"):
            content = state.get("_content")
            return [plain(v, down) for v in content] if isinstance(content, list) else content
        if "_val" in state:  # a value node (AnyNode, IntegerNode, EnumNode, ...)
            return plain(state["_val"], down)
        if len(obj) or not (obj.args or state):  # a dict subclass (AttributeDict)
            return {k: plain(v, down) for k, v in obj.items()}
        if len(obj.args) == 1 and not state:  # an enum member pickles as Class(value)
            return plain(obj.args[0], down)
        return repr(obj)
    if isinstance(obj, dict):
        return {k: plain(v, down) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v, down) for v in obj)
    return obj
