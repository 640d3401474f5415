"""Reading the config's YAML: PyYAML's safe loader, refusing a key given twice in one mapping.

PyYAML keeps the last of two equal keys, so a second ``models:`` section would silently drop
every override of the first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any


class Refused(ValueError):
    """YAML that parses but cannot be a config; ``key`` is the dotted path of the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class DuplicateKey(Refused):
    """A key given twice in one mapping; ``key`` is its dotted path."""


# Nodes a document may stand for once every alias is expanded. Ten aliases of ten aliases
# of ... ("billion laughs") make a few lines expand past any memory, and every check walks the
# expanded data; a real config has a few thousand nodes.
MAX_EXPANDED_NODES = 100_000


def parse_yaml(text: str) -> Any:
    """The YAML document in `text`, refusing a key given twice in one mapping (PyYAML would
    silently keep the last one, dropping a whole section)."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_alias_loops(node, "", {}, set())
        _refuse_misread_scalars(loader, node)
        _refuse_duplicate_keys(loader, node, "", set())
        _refuse_yaml11_numbers(loader, node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_alias_loops(node: Any, prefix: str, sizes: dict[int, int],
                        ancestors: set[int]) -> int:
    """How many nodes `node` expands to, refusing an alias to its own ancestor (the data would
    contain itself, and every walk over it recurse forever) and an expansion past
    MAX_EXPANDED_NODES. Each node is counted once however often it is aliased."""
    import yaml

    where = prefix.rstrip(".") or "(top level)"
    if id(node) in ancestors:
        raise Refused(where, "is a YAML alias of a node that contains it, so the value would "
                      "contain itself")
    if id(node) in sizes:
        return sizes[id(node)]
    ancestors.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            size += _refuse_alias_loops(item, f"{prefix.rstrip('.')}[{index}].", sizes,
                                        ancestors)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            size += _refuse_alias_loops(key_node, prefix, sizes, ancestors)
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            size += _refuse_alias_loops(value_node, f"{prefix}{key}.", sizes, ancestors)
    ancestors.discard(id(node))
    if size > MAX_EXPANDED_NODES:
        raise Refused(where, f"expands to more than {MAX_EXPANDED_NODES} values through YAML "
                      f"aliases; write the values out instead")
    sizes[id(node)] = size
    return size


def _refuse_duplicate_keys(loader: Any, node: Any, prefix: str, visited: set[int]) -> None:
    import yaml

    if id(node) in visited:  # an alias: already checked, and perhaps its own ancestor
        return
    visited.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(loader, item, f"{prefix.rstrip('.')}[{index}].", visited)
    if not isinstance(node, yaml.MappingNode):
        return
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = _mapping_key(loader, key_node)
        dotted = f"{prefix}{key}"
        line = key_node.start_mark.line + 1
        if key in lines:
            raise DuplicateKey(dotted, f"is given twice (lines {lines[key]} and {line}); the "
                              f"second would silently replace the first")
        if key is not None:
            lines[key] = line
        _refuse_duplicate_keys(loader, value_node, f"{dotted}.", visited)


def _mapping_key(loader: Any, node: Any) -> Any:
    """The key a scalar node stands for; None for merge keys (<<) and unhashable keys."""
    import yaml

    if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:merge":
        return None
    key = loader.construct_object(node)
    try:
        hash(key)
    except TypeError:
        return None
    return key


_STR_TAG = "tag:yaml.org,2002:str"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_TAG_KINDS = {"tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:int": "an integer",
              "tag:yaml.org,2002:float": "a number", _TIMESTAMP_TAG: "a timestamp",
              "tag:yaml.org,2002:null": "null", "tag:yaml.org,2002:binary": "base64 binary"}


def _walk_scalars(node: Any, prefix: str, visited: set[int],
                  on_scalar: Callable[[Any, str], None],
                  on_key: Callable[[Any, str], None] | None = None) -> None:
    """Call `on_scalar` with every scalar value and `on_key` with every scalar mapping key of
    the tree under `node`, each with its dotted place (``models.fraud.k``, ``tags[2]``); a
    node reached again through an alias is visited once."""
    import yaml

    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk_scalars(item, f"{prefix.rstrip('.')}[{index}].", visited, on_scalar, on_key)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            scalar_key = isinstance(key_node, yaml.ScalarNode)
            text = key_node.value if scalar_key else "?"
            if on_key is not None and scalar_key:
                on_key(key_node, f"{prefix}{text}")
            _walk_scalars(value_node, f"{prefix}{text}.", visited, on_scalar, on_key)
    elif isinstance(node, yaml.ScalarNode):
        on_scalar(node, prefix.rstrip(".") or "(top level)")


def _refuse_misread_scalars(loader: Any, node: Any) -> None:
    """Refuse a scalar PyYAML cannot build, and a mapping key it reads as a boolean, null or
    octal; both before anything builds the keys, which would raise or show the misreading.

    `!!bool maybe` or `!!timestamp x` make PyYAML raise KeyError or AttributeError, not a YAML
    error; and `on:` is the key True, so an unknown key would be reported as `True`."""

    def key(key_node: Any, where: str) -> None:
        _refuse_unbuildable(loader, key_node, where)
        _refuse_misread_key(loader, key_node, where)

    _walk_scalars(node, "", set(), functools.partial(_refuse_unbuildable, loader), key)


def _refuse_unbuildable(loader: Any, node: Any, where: str) -> None:
    """Refuse a scalar whose explicit tag (``!!bool x``) its text cannot be, or a date that
    does not exist (2026-02-30)."""
    import yaml

    kind = _TAG_KINDS.get(node.tag)
    implicit = node.tag == loader.resolve(yaml.ScalarNode, node.value,
                                          (node.style is None, True))
    if kind is None or (implicit and node.tag != _TIMESTAMP_TAG):
        # An implicit number always builds, bar Python's own digit limit, which load() reports.
        return
    line = node.start_mark.line + 1
    try:
        loader.construct_object(node)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        if implicit:
            raise Refused(where, f"is {node.value}, which YAML 1.1 reads as a date, and no "
                          f"such date exists ({exc}) (line {line}): quote it where text is "
                          f"meant") from None
        raise Refused(where, f"is tagged {node.tag.replace('tag:yaml.org,2002:', '!!')}, but "
                      f"{node.value!r} is not {kind} (line {line}): drop the tag or correct "
                      f"the value") from None


def _refuse_misread_key(loader: Any, node: Any, where: str) -> None:
    """Refuse a plain key YAML 1.1 reads as a boolean, null or octal: every key of the config
    is text, and an error about the key would show True (for `on:`), None (`~:`) or 15
    (`017:`). Other numbers (1.10) are refused later as a number where text is meant."""
    if node.tag == _STR_TAG or node.tag not in _TAG_KINDS:
        return
    key = loader.construct_object(node)
    octal = node.tag == _INT_TAG and _OCTAL.fullmatch(node.value) and str(key) != node.value
    if isinstance(key, bool) or key is None or octal:
        raise Refused(where, f"is a key YAML 1.1 reads as {_TAG_KINDS[node.tag]} ({key!r}), "
                      f"not as the text {node.value!r} (line {node.start_mark.line + 1}); every "
                      f"key of the config is text: quote it, or correct its spelling")


_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# Plain numbers YAML 1.1 (PyYAML) reads unlike YAML 1.2 and unlike any reader: 017 is octal
# 15, and 1:30 is base 60, 90. Both would silently become another threshold or count.
_OCTAL = re.compile(r"[-+]?0[0-7_]+")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


def _refuse_yaml11_numbers(loader: Any, node: Any) -> None:
    """Refuse a scalar YAML 1.1 reads as a number other than the one written: a plain one,
    or a quoted one tagged ``!!int`` or ``!!float`` (``!!int "010"`` is 8 as well)."""
    _walk_scalars(node, "", set(), functools.partial(_refuse_yaml11_number, loader))


def _refuse_yaml11_number(loader: Any, node: Any, where: str) -> None:
    # A quoted scalar is text as written, unless a tag makes it a number: only an explicit
    # tag gives a quoted scalar the int or float tag.
    if node.tag not in (_INT_TAG, _FLOAT_TAG):
        return
    text = node.value
    line = node.start_mark.line + 1
    if node.style is None:
        shown, text_hint = text, "quote it where text is meant"
    else:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        shown, text_hint = f"{tag} {text!r}", f"drop the {tag} tag where text is meant"
    if _SEXAGESIMAL.fullmatch(text):
        raise Refused(where, f"is {shown}, which YAML 1.1 reads as the base-60 number "
                      f"{loader.construct_object(node)!r} (line {line}): write the "
                      f"number itself, or {text_hint}")
    if node.tag == _INT_TAG and _OCTAL.fullmatch(text):
        number = loader.construct_object(node)
        if number != int(text.replace("_", "")):
            raise Refused(where, f"is {shown}, which YAML 1.1 reads as the octal number "
                          f"{number} (line {line}): write it without the leading 0, or "
                          f"{text_hint}")
