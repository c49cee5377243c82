"""Reading a settings file written by a person (a pipeline, a run folder's ``config.yaml``) safely.

``yaml.safe_load`` runs no code, but it still accepts three things a settings file never needs and a
hostile one uses: alias bombs ("billion laughs": a few KB of nested ``&a [*b, *b, ...]`` that expand to
billions of nodes once anything walks the result), absurd nesting (a recursion error deep inside the
parser), and bytes that are not UTF-8. :func:`read_yaml` refuses each with one
:class:`~medseg.errors.ConfigError` line naming the file, before any of it is used. Ordinary anchors and
aliases (a shared mapping used twice) stay allowed; only the expanded size and the depth are bounded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "parse_yaml", "read_bounded", "read_yaml"]

MAX_FILE_BYTES = 1 << 20  # a pipeline is ~4 KB
MAX_NODES = 100_000  # nodes after expanding every alias
MAX_DEPTH = 50  # nested collections


def read_yaml(path: str | os.PathLike) -> Any:
    """The YAML document in ``path`` (``None`` when empty), read with :func:`parse_yaml`.

    Raises:
        ConfigError: The file is missing, unreadable, too large, not UTF-8, not valid YAML, nested too
            deeply or expands too far; the message starts with the path.
        FileNotFoundError: never: a missing file is a ``ConfigError`` too.
    """
    path = Path(path)
    raw = read_bounded(path, max_bytes=MAX_FILE_BYTES, error=ConfigError,
                       too_large=f"larger than {MAX_FILE_BYTES // 1024} KB: not a settings file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})", path=path) from None
    try:
        return parse_yaml(text)
    except ConfigError as exc:
        raise ConfigError(str(exc), path=path) from None


def read_bounded(path: Path, *, max_bytes: int, error: type[Exception], too_large: str) -> bytes:
    """The bytes of a small settings/run file, refusing one over ``max_bytes`` before reading it whole.

    Raises:
        error: Unreadable (the OS reason) or larger than ``max_bytes`` (``too_large``); naming ``path``.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read ({exc.strerror or exc})", path=path) from None
    if len(raw) > max_bytes:
        raise error(too_large, path=path)
    return raw


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load(text)`` after bounding the node graph's expanded size and depth.

    Raises:
        ConfigError: Invalid YAML, more than :data:`MAX_NODES` nodes once aliases are expanded, or more
            than :data:`MAX_DEPTH` nested collections.
    """
    try:
        _check_nesting(text)  # the event parser is not recursive: deep nesting stops here, at once
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {str(exc).splitlines()[0]}") from None
    if root is None:
        return None
    _check_graph(root)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:  # e.g. a bad tag value, found only when constructing
        raise ConfigError(f"invalid YAML: {str(exc).splitlines()[0]}") from None


def _check_nesting(text: str) -> None:
    level = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            level += 1
            if level > MAX_DEPTH:
                raise ConfigError(f"YAML nested more than {MAX_DEPTH} levels; refused")
        elif isinstance(event, yaml.CollectionEndEvent):
            level -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_graph(root: yaml.Node) -> None:
    """Expanded size (an alias counts each time it is used) and depth, memoised per node, so the check is
    linear in the file however far it would expand; a self-referencing alias counts as endless nesting."""
    sizes: dict[int, int] = {}

    def visit(node: yaml.Node, level: int) -> int:
        if level > MAX_DEPTH:
            raise ConfigError(f"YAML nested more than {MAX_DEPTH} levels; refused")
        if id(node) not in sizes:
            sizes[id(node)] = 1 + sum(visit(child, level + 1) for child in _children(node))
            if sizes[id(node)] > MAX_NODES:
                raise ConfigError(f"YAML expands to more than {MAX_NODES} values (an alias bomb?); refused")
        return sizes[id(node)]

    visit(root, 0)
