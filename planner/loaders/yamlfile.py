"""Read YAML and JSON while remembering the line of every field, for error messages.

YAML is read with the YAML 1.2 core schema, not PyYAML's default YAML 1.1 rules: `010` is the
integer 10 (not octal 8), `1:30` is a string (not the sexagesimal 90), `yes`/`no`/`on`/`off`
are strings, `1e5` is a number and `2024-05-01` is a string (not a date). Nesting depth and
the values reachable through aliases are limited (planner/limits.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from planner.errors import InputError
from planner.limits import MAX_NESTING_DEPTH, MAX_YAML_VALUES


class CoreLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's implicit types."""


CoreLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+0123456789."),
    ("tag:yaml.org,2002:merge", r"^<<$", "<"),
):
    CoreLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
CoreLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])


MAX_INTEGER_DIGITS = 100  # no count, size or price needs more; Python refuses to convert beyond 4,300


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _construct_core_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if len(text) > MAX_INTEGER_DIGITS:
        raise yaml.constructor.ConstructorError(None, None, f"an integer of {len(text):,} digits is too long "
                                                f"(at most {MAX_INTEGER_DIGITS})", node.start_mark)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)  # leading zeros are decimal in YAML 1.2


CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_core_int)

if getattr(yaml, "__with_libyaml__", False):
    class FastCoreLoader(yaml.CSafeLoader):
        """The same YAML 1.2 core rules on libyaml's parser, for the package's own catalog files
        (trusted and tested; user files keep the pure-Python loader's exact error messages)."""

    FastCoreLoader.yaml_implicit_resolvers = dict(CoreLoader.yaml_implicit_resolvers)
    FastCoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_core_int)
    _CATALOG_LOADER: type = FastCoreLoader
else:
    _CATALOG_LOADER = CoreLoader

FieldPath = tuple[str | int, ...]


class Located:
    """Parsed data plus the 1-based line and column of every field path."""

    def __init__(self, data: Any, marks: dict[FieldPath, tuple[int, int]], file: str) -> None:
        self.data = data
        self.marks = marks
        self.file = file

    def where(self, path: FieldPath) -> tuple[int | None, int | None]:
        """Line and column of `path`, or of its nearest located parent."""
        probe = tuple(path)
        while probe:
            if probe in self.marks:
                return self.marks[probe]
            probe = probe[:-1]
        return self.marks.get((), (None, None))

    def error(self, path: FieldPath, message: str, suggestion: str | None = None) -> InputError:
        """An InputError pointing at `path` in this file."""
        line, column = self.where(path)
        field = ".".join(str(p) for p in path) or None
        return InputError(message, file=self.file, line=line, column=column, field=field, suggestion=suggestion)


def _construct(node: yaml.Node, path: FieldPath, marks: dict, file: str, stack: frozenset[int] = frozenset()) -> Any:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if id(node) in stack:
        raise InputError("an alias refers to a block that contains it", file=file, line=node.start_mark.line + 1,
                         field=".".join(map(str, path)) or None)
    if len(path) > MAX_NESTING_DEPTH:
        raise InputError(f"nested more than {MAX_NESTING_DEPTH} levels deep", file=file, line=node.start_mark.line + 1)
    if len(marks) > MAX_YAML_VALUES:
        raise InputError(f"more than {MAX_YAML_VALUES:,} values once aliases are expanded", file=file,
                         line=node.start_mark.line + 1)
    stack = stack | {id(node)}
    if isinstance(node, yaml.MappingNode):
        explicit: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else str(_scalar(key_node))
            if key in explicit:
                line = key_node.start_mark.line + 1
                raise InputError(f"duplicate key '{key}'", file=file, line=line, field=".".join(map(str, path + (key,))))
            explicit.add(key)
        _SCALARS.flatten_mapping(node)  # resolve YAML merge keys (<<: *anchor); explicit keys win
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else str(_scalar(key_node))
            marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _construct(value_node, path + (key,), marks, file, stack)
            # Point at a scalar value (what is wrong with it), else at the key that opens the block.
            at = value_node if isinstance(value_node, yaml.ScalarNode) else key_node
            marks[path + (key,)] = (at.start_mark.line + 1, at.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), marks, file, stack) for i, item in enumerate(node.value)]
    if node.tag == "tag:yaml.org,2002:int" and len(str(node.value)) > MAX_INTEGER_DIGITS:
        raise InputError(f"an integer of {len(str(node.value)):,} digits is too long (at most {MAX_INTEGER_DIGITS})",
                         file=file, line=node.start_mark.line + 1, field=".".join(map(str, path)) or None)
    return _scalar(node)


_SCALARS = CoreLoader("")


def _scalar(node: yaml.Node) -> Any:
    return _SCALARS.construct_object(node, deep=True)


def parse_yaml_text(text: str, file: str, trusted: bool = False) -> Located:
    """Parse YAML text, keeping line numbers; syntax errors become InputError with the line.
    `trusted`: one of the package's catalog files, read with libyaml where it is installed."""
    try:
        node = yaml.compose(text, Loader=_CATALOG_LOADER if trusted else CoreLoader)
    except RecursionError:
        raise InputError(f"nested more than {MAX_NESTING_DEPTH} levels deep", file=file) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise InputError(f"not valid YAML: {exc.reason} {exc.character!r} is not allowed", file=file, line=line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or _first_line(exc)
        raise InputError(
            f"not valid YAML: {problem}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    marks: dict[FieldPath, tuple[int, int]] = {}
    if node is None:
        raise InputError("the file is empty", file=file)
    try:
        data = _construct(node, (), marks, file)
    except RecursionError:
        raise InputError(f"nested more than {MAX_NESTING_DEPTH} levels deep", file=file) from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"not valid YAML: {_first_line(exc)}", file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"not valid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from None
    return Located(data, marks, file)


def _json_marks(text: str) -> dict[FieldPath, tuple[int, int]]:
    """Lines of top-level and nested JSON keys, found by scanning for `"key":` (good enough for errors)."""
    marks: dict[FieldPath, tuple[int, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith('"') and '":' in stripped:
            key = stripped[1 : stripped.index('":')]
            marks.setdefault((key,), (number, len(line) - len(stripped) + 1))
    marks[()] = (1, 1)
    return marks


class LongIntegerError(ValueError):
    """An integer literal with more digits than any real value has."""


def parse_json_integer(digits: str) -> int:
    """json's parse_int hook: refuse integers of more than MAX_INTEGER_DIGITS digits (Python
    would refuse beyond 4,300 with a message that names no key)."""
    if len(digits) > MAX_INTEGER_DIGITS + 1:
        raise LongIntegerError(digits)
    return int(digits)


def parse_json_text(text: str, file: str) -> Located:
    """Parse JSON text; syntax errors become InputError with the line and column."""
    try:
        data = json.loads(text, parse_int=parse_json_integer)
    except LongIntegerError as exc:
        digits = exc.args[0]
        at = text.find(digits)
        keys = re.findall(r'"([^"\\]{1,200})"\s*:\s*-?$', text[max(0, at - 300):at])
        raise InputError(f"an integer of {len(digits):,} digits is too long (at most {MAX_INTEGER_DIGITS})", file=file,
                         line=text.count("\n", 0, at) + 1, field=keys[-1] if keys else None) from None
    except RecursionError:
        raise InputError("not valid JSON: nested too deeply", file=file) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", file=file, line=exc.lineno, column=exc.colno) from None
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise InputError(f"not valid JSON: {_first_line(exc)}", file=file) from None
    depth = _depth(data)
    if depth > MAX_NESTING_DEPTH:
        raise InputError(f"nested {depth} levels deep; the limit is {MAX_NESTING_DEPTH}", file=file)
    return Located(data, _json_marks(text), file)


def _depth(data: Any) -> int:
    """How deeply lists and objects nest (iterative, so any depth json accepted is safe)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            deepest = max(deepest, level)
            stack += [(v, level + 1) for v in value.values()]
        elif isinstance(value, list):
            deepest = max(deepest, level)
            stack += [(v, level + 1) for v in value]
    return deepest
