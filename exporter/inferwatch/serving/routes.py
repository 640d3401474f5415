"""Which requests the web middleware records, and as which model's: route templates and
the paths they match, the route table, and the checks of the middleware's options.

The middleware matches a template itself, before the framework routes the request, so each
framework's path converters are written here as regular expressions (Starlette's
``{id:int}``, werkzeug's ``<int:id>`` with its converter arguments). Apart from the
middleware because the ASGI and the WSGI middleware both route by it, each once it has read
the request's path in its own way.
"""

from __future__ import annotations

import numbers
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inferwatch.core.monitor import Monitor
    from inferwatch.core.registry import Registry

Target = str | tuple[str, str]
RouteMap = Mapping[str, Target] | Callable[[Mapping[str, Any]], Target | None]

# Set in the ASGI scope (WSGI environ) by the middleware that records the request: a second
# instance below it (added twice, or on a mounted sub-app as well) lets it pass through, so
# that one HTTP request stays one model request.
RECORDED_KEY = "inferwatch.recorded"
_RESOLVE_SECONDS = 1.0
_MAX_CACHED_TARGETS = 1024
# Path converters as regular expressions, each framework's own: a template is to match the
# paths its framework routes to the endpoint, no fewer (those requests would go unrecorded)
# and no more (a 404 would count as a model request).
_STARLETTE_CONVERTERS = {
    "str": r"[^/]+", "path": r".*", "int": r"[0-9]+", "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
    r"[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
}
_WERKZEUG_CONVERTERS = {
    "default": r"[^/]+", "string": r"[^/]+", "path": r"[^/].*?", "int": r"\d+",
    "float": r"\d+\.\d+",
    "uuid": r"[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}",
}
_PARAMETER = re.compile(r"\{(?P<s_name>[^}:]+)(?::(?P<s_conv>[^}]+))?\}"
                        r"|<(?:(?P<w_conv>[^>:(]+)(?:\((?P<w_args>[^>]*)\))?:)?(?P<w_name>[^>:]+)>")
# Methods that never reach a model: a browser's CORS preflight precedes each cross-origin
# POST, and counted as a request it would double the traffic and halve the mean latency.
NOT_PREDICTIONS = frozenset({"OPTIONS"})
# An HTTP header name (RFC 9110 token): any other never arrives, so no id would be read.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def compile_template(template: str) -> re.Pattern[str]:
    """A regular expression matching the paths of a Starlette or werkzeug route template.

    A werkzeug converter's bounds on a value (``<int(min=1, max=9):n>``) are no part of
    it: a route checks them after the match, as werkzeug does.

    >>> bool(compile_template("/users/{user_id:int}/score").fullmatch("/users/42/score"))
    True
    >>> bool(compile_template("/files/<path:name>").fullmatch("/files/a/b.csv"))
    True
    >>> bool(compile_template("/users/<int:user_id>").fullmatch("/users/me"))
    False
    >>> bool(compile_template("/lang/<string(length=2):code>").fullmatch("/lang/fra"))
    False
    """
    return _compile(template)[0]


_Check = Callable[[str], bool]


def _compile(template: str) -> tuple[re.Pattern[str], tuple[tuple[str, _Check], ...]]:
    """The regular expression of a route template, and the checks of the values its
    werkzeug converters bound (by group name): a value out of bounds is a 404 there."""
    pattern, end, starlette = [], 0, False
    checks: list[tuple[str, _Check]] = []
    for index, parameter in enumerate(_PARAMETER.finditer(template)):
        pattern.append(re.escape(template[end:parameter.start()]))
        check = None
        if parameter.group("s_name") is not None:
            starlette = True
            converter = (parameter.group("s_conv") or "str").strip()
            regex = _STARLETTE_CONVERTERS.get(converter, _STARLETTE_CONVERTERS["str"])
        else:
            regex, check = _werkzeug_converter(
                (parameter.group("w_conv") or "default").strip(), parameter.group("w_args"))
        if check is None:
            pattern.append(f"(?:{regex})")
        else:
            group = f"p{index}"
            pattern.append(f"(?P<{group}>{regex})")
            checks.append((group, check))
        end = parameter.end()
    pattern.append(re.escape(template[end:]))
    if starlette:
        # Starlette ends a route's regex with $, which also matches before a final newline:
        # it routes /s/12%0A to /s/{v:int}, so the template must match that path too.
        pattern.append("\n?")
    return re.compile("".join(pattern)), tuple(checks)


# werkzeug's converter arguments: Python-like literals, positional or by name.
_CONVERTER_ARGUMENT = re.compile(r"""
    \s*((?P<name>\w+)\s*=\s*)?
    (?P<value>True|False|\d+.\d+|\d+.|\d+|[\w\d_.]+|[urUR]?(?P<string>"[^"]*?"|'[^']*'))\s*,
    """, re.VERBOSE)
_CONSTANTS: dict[str, object] = {"None": None, "True": True, "False": False}


def _converter_arguments(arguments: str) -> tuple[list[object], dict[str, object]] | None:
    """A werkzeug converter's arguments as werkzeug reads them; None when it would refuse
    them (the route then never exists)."""
    positional: list[object] = []
    named: dict[str, object] = {}
    text, position = arguments + ",", 0
    for found in _CONVERTER_ARGUMENT.finditer(text):
        if found.start() != position:
            return None
        position = found.end()
        raw = found.group("string") or found.group("value")
        value: object
        if raw in _CONSTANTS:
            value = _CONSTANTS[raw]
        else:
            value = raw[1:-1] if raw[:1] == raw[-1:] and raw[:1] in "\"'" else raw
            for convert in (int, float):
                try:
                    value = convert(raw)
                    break
                except ValueError:
                    pass
        if found.group("name"):
            named[found.group("name")] = value
        else:
            positional.append(value)
    return positional, named


def _string_converter(minlength: int = 1, maxlength: int | None = None,
                      length: int | None = None) -> str:
    if length is not None:
        return f"[^/]{{{int(length)}}}"
    return f"[^/]{{{int(minlength)},{'' if maxlength is None else int(maxlength)}}}"


def _number_converter(regex: str, parse: Callable[[str], float], fixed_digits: int = 0,
                      min: float | None = None, max: float | None = None,
                      signed: bool = False) -> tuple[str, _Check | None]:
    def check(value: str) -> bool:
        if fixed_digits and len(value) != fixed_digits:
            return False
        try:
            number = parse(value)
            return (min is None or number >= min) and (max is None or number <= max)
        except (ValueError, OverflowError, TypeError):  # TypeError: a bound that is text
            return False

    bounded = bool(fixed_digits) or min is not None or max is not None
    return ("-?" + regex if signed else regex), (check if bounded else None)


def _werkzeug_converter(converter: str, arguments: str | None) -> tuple[str, _Check | None]:
    """The regular expression of a werkzeug converter with its arguments
    (``int(signed=True)``, ``string(length=2)``, ``any(cat, dog)``) and, for bounds a
    regular expression cannot say (``int(min=1, max=9)``), a check of the value; another
    converter matches one segment."""
    default = _WERKZEUG_CONVERTERS.get(converter, _WERKZEUG_CONVERTERS["default"])
    parsed = _converter_arguments(arguments) if arguments else ([], {})
    if parsed is None:
        return default, None
    positional, named = parsed
    try:
        if converter == "any":
            items = [str(item) for item in positional]
            if items and not named:
                return "|".join(re.escape(item) for item in items), None
        elif converter in ("default", "string"):
            return _string_converter(*positional, **named), None  # type: ignore[arg-type]
        elif converter == "int":
            return _number_converter(default, int, *positional, **named)  # type: ignore[arg-type]
        elif converter == "float":
            # werkzeug's float takes no fixed_digits: its first argument is min.
            return _float_converter(default, *positional, **named)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        pass  # arguments werkzeug refuses too
    return default, None


def _float_converter(regex: str, min: float | None = None,
                     max: float | None = None,
                     signed: bool = False) -> tuple[str, _Check | None]:
    return _number_converter(regex, float, 0, min, max, signed)


class Routes:
    """Path -> (model, version): exclusions, exact paths, templates, a function, a default."""

    def __init__(self, routes: RouteMap | None, model: str | None, version: str | None,
                 exclude_paths: Sequence[str], registry: Registry | None) -> None:
        if model is None and not (callable(routes) or routes):
            # An empty mapping (a config section left empty) would record nothing, silently.
            raise ValueError("inferwatch middleware: give routes= (a mapping or a function) "
                             "and/or model= (the model of every route)"
                             + ("" if routes is None else ", got an empty routes mapping"))
        self._exact: dict[str, tuple[str, str | None]] = {}
        self._templates: list[tuple[re.Pattern[str], tuple[tuple[str, _Check], ...],
                                    tuple[str, str | None]]] = []
        self._function: Callable[[Mapping[str, Any]], Target | None] | None = None
        if callable(routes):
            self._function = routes
        elif routes is not None:
            for path, target in routes.items():
                resolved = _target(target, version, f"routes[{path!r}]")
                if "{" in path or "<" in path:
                    self._templates.append((*_compile(path), resolved))
                else:
                    self._exact[path] = resolved
        self._default = None if model is None else _target(model, version, "model")
        self._version = version
        if isinstance(exclude_paths, str) or not isinstance(exclude_paths, Iterable):
            # None (meant as "leave nothing out") would fail at tuple() below with an error
            # naming no option.
            raise TypeError("inferwatch middleware: exclude_paths is a sequence of paths "
                            f"(() for none), got {exclude_paths!r}")
        exclude_paths = tuple(exclude_paths)  # read twice below: a generator only once
        for path in exclude_paths:
            # A path that does not start with '/' never matches a request's path, and an
            # empty one (a split environment variable) would leave out every path: either
            # records what was meant to be left out, or nothing at all, silently.
            if not (isinstance(path, str) and path.startswith("/")):
                raise ValueError(f"inferwatch middleware: exclude_paths entry {path!r} is "
                                 "not a path: a path starts with '/', as in '/metrics'")
        self._excluded = frozenset(p.rstrip("/") or "/" for p in exclude_paths)
        self._excluded_prefixes = tuple(p.rstrip("/") + "/" for p in exclude_paths)
        if registry is not None and not callable(getattr(registry, "existing_monitor", None)):
            # Found out only at the first request, each model request would pass through
            # unrecorded, counted as an internal error only.
            raise TypeError("inferwatch middleware: registry must be an inferwatch Registry "
                            f"(or None for the default one), got {registry!r}")
        self._registry = registry
        self._cache: dict[tuple[str, str | None], tuple[Monitor | None, float]] = {}
        # path -> (its monitor or None, until when that answer holds)
        self._resolved: dict[str, tuple[Monitor | None, float]] = {}
        self.clock = time.monotonic  # when cached answers expire; a test may set its own

    def resolve(self, path: str, scope: Mapping[str, Any]) -> Monitor | None:
        """The monitor of the model a request to `path` goes to; None to pass it through.

        A path's answer is kept for a second (as :meth:`monitor` keeps a target's), unless a
        routes function gives it: that may read more of the scope than the path.
        """
        now = self.clock()
        hit = self._resolved.get(path)
        if hit is not None and hit[1] > now:
            return hit[0]
        target = self.target(path, scope)
        monitor = None if target is None else self.monitor(target)
        if self._function is None:
            if len(self._resolved) >= _MAX_CACHED_TARGETS:
                self._resolved.clear()  # a scan of many distinct paths stays bounded
            self._resolved[path] = (monitor, now + _RESOLVE_SECONDS)
        return monitor

    def target(self, path: str, scope: Mapping[str, Any]) -> tuple[str, str | None] | None:
        if path in self._excluded or path.startswith(self._excluded_prefixes):
            return None
        target = self._exact.get(path)
        if target is not None:
            return target
        # A template is matched once per path and second: resolve() keeps the answer.
        for pattern, checks, candidate in self._templates:
            found = pattern.fullmatch(path)
            # A value out of its converter's bounds makes werkzeug answer 404 (or route the
            # request to a later rule): no request of this route.
            if found is not None and all(check(found[group]) for group, check in checks):
                return candidate
        if self._function is not None:
            found = self._function(scope)
            if found is not None:
                return _target(found, self._version, "the routes function's result")
        return self._default

    def monitor(self, target: tuple[str, str | None]) -> Monitor | None:
        """The model's monitor; None while it is not instrumented (never creates one).

        Creating it here would fix its settings before ``instrument()`` gives them. The
        answer is kept for a second, so a newly instrumented version serves within one.
        """
        now = self.clock()
        cached = self._cache.get(target)
        if cached is not None and cached[1] > now:
            return cached[0]
        registry = self._registry
        if registry is None:
            from inferwatch.core.registry import default_registry

            registry = self._registry = default_registry()
        # Where the caps stored the model or its version as __other__ (instrumented past
        # max_models or max_versions_per_model), that monitor serves and records it: its
        # route's requests belong there, not nowhere.
        monitor = registry.existing_monitor(*target)
        if len(self._cache) >= _MAX_CACHED_TARGETS:
            self._cache.clear()  # targets from a routes function could be many
        self._cache[target] = (monitor, now + _RESOLVE_SECONDS)
        return monitor


def _target(value: object, default_version: str | None, where: str) -> tuple[str, str | None]:
    if isinstance(value, str) and value:
        return value, default_version
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and value[0]:
        version = _version(value[1])
        if version is not None:
            return value[0], version
    raise TypeError(f"inferwatch middleware: {where} must be a model name or a "
                    f"(model, version) pair of non-empty strings (a version may be a "
                    f"number), got {value!r}")


def _version(value: object) -> str | None:
    """A version as ``instrument()`` records it: a number is its text (``version=2`` is the
    ``"2"`` that ``instrument(..., version=2)`` made), else a non-empty string; None if not."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(value)
    return None


def check_options(routes: RouteMap | None, version: object,
                  request_id_header: object) -> str | None:
    """Refuse options that would silently record nothing; the version as recorded."""
    checked = None if version is None else _version(version)
    if version is not None and checked is None:
        raise TypeError("inferwatch middleware: version must be a non-empty string (or a "
                        f"number), got {version!r}")
    if not (isinstance(request_id_header, str) and _HEADER_NAME.fullmatch(request_id_header)):
        raise ValueError("inferwatch middleware: request_id_header must be an HTTP header "
                         f"name such as 'X-Request-ID', got {request_id_header!r}")
    if routes is not None and not (callable(routes) or isinstance(routes, Mapping)):
        # A string or a list of pairs would be read letter by letter, or pair by pair, and
        # refused as "not a path", which names no real mistake.
        raise TypeError("inferwatch middleware: routes must be a mapping of paths to models "
                        "(such as {'/predict': 'fraud'}) or a function of the request, "
                        f"got {type(routes).__name__} {routes!r}")
    if routes is not None and not callable(routes):
        for path in routes:
            # Starlette and werkzeug refuse such a route: a request path always starts so.
            if not (isinstance(path, str) and path.startswith("/")):
                raise ValueError(f"inferwatch middleware: routes[{path!r}] is not a path: "
                                 "a route starts with '/', as in the route decorator")
    return checked
