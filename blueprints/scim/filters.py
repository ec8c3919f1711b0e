"""SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): parse once, then compile.

Why our own parser: scim2-filter-parser 0.7.0 (the well-kept PyPI option) gives ``and``
and ``or`` the same precedence, so ``a or b and c`` parses as ``(a or b) and c``, it
rejects JSON-escaped quotes inside strings, and its SQL transpiler emits SQL text rather
than SQLAlchemy expressions. The grammar is small; a recursive-descent parser over the
RFC's ABNF is shorter than adapting it.

Two back ends use the same tree:
* ``compile_sql`` turns it into a SQLAlchemy boolean expression through a resolver that
  knows how each attribute is stored (the database does the filtering, never Python);
* ``matches`` evaluates a value-path filter against one multi-valued attribute's items
  of one resource (PATCH ``emails[type eq "work"].value``), which is data already loaded.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .errors import InvalidFilter, InvalidPath

COMPARE_OPS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")
MAX_FILTER_LENGTH = 4096
MAX_DEPTH = 50


# --- the tree -------------------------------------------------------------------------

@dataclass(frozen=True)
class AttrRef:
    """``[urn:]attr[.sub]``; names kept as sent (matching is case-insensitive)."""
    urn: str | None
    attr: str
    sub: str | None = None

    def __str__(self) -> str:
        text = f"{self.urn}:{self.attr}" if self.urn else self.attr
        return f"{text}.{self.sub}" if self.sub else text


@dataclass(frozen=True)
class Compare:
    path: AttrRef
    op: str
    value: Any


@dataclass(frozen=True)
class Present:
    path: AttrRef


@dataclass(frozen=True)
class And:
    left: Any
    right: Any


@dataclass(frozen=True)
class Or:
    left: Any
    right: Any


@dataclass(frozen=True)
class Not:
    expr: Any


@dataclass(frozen=True)
class ValuePath:
    """``emails[type eq "work"]``: the inner filter applies to one item of ``path``."""
    path: AttrRef
    filter: Any


@dataclass(frozen=True)
class PatchPath:
    """A PATCH ``path``: attribute, optional value filter, optional sub-attribute after it."""
    attr: AttrRef
    value_filter: Any = None
    sub: str | None = None


# --- tokens ---------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<lparen>\() | (?P<rparen>\)) | (?P<lbracket>\[) | (?P<rbracket>\])
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![\w.:$-]))
  | (?P<word>[A-Za-z$][\w.:$-]*)
  | (?P<subattr>\.[A-Za-z$][\w$-]*)
""", re.VERBOSE)


@dataclass
class Token:
    kind: str  # lparen rparen lbracket rbracket string number word subattr end
    text: str
    value: Any
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise InvalidFilter(f"Unexpected character {text[pos]!r} at position {pos + 1} of the filter.")
        kind = match.lastgroup
        raw = match.group()
        if kind == "string":
            try:
                value = json.loads(raw)
            except ValueError:
                raise InvalidFilter(f"Malformed string {raw} at position {pos + 1} of the filter.") from None
            if "\x00" in value:  # no attribute can hold a NUL (PostgreSQL refuses it outright)
                raise InvalidFilter(f"The string at position {pos + 1} of the filter contains a NUL character "
                                    "(\\u0000), which no attribute can hold.")
            if has_lone_surrogate(value):
                raise InvalidFilter(f"The string at position {pos + 1} of the filter contains a lone UTF-16 "
                                    "surrogate (such as \\ud800), which is not a character.")
            tokens.append(Token(kind, raw, value, pos))
        elif kind == "number":
            value = json.loads(raw)
            tokens.append(Token(kind, raw, value, pos))
        elif kind != "ws":
            tokens.append(Token(kind, raw, raw, pos))
        pos = match.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """JSON's \\uXXXX escapes can spell half of a UTF-16 pair, which no text column can store.
    (A proper pair is decoded to one character, so any surrogate left is a lone one.)"""
    return _SURROGATE.search(text) is not None


def split_attr_path(word: str, *, for_filter: bool = True) -> AttrRef:
    """``urn:...:User:manager.value`` → AttrRef(urn, "manager", "value")."""
    error = InvalidFilter if for_filter else InvalidPath
    urn = None
    rest = word
    if word.lower().startswith("urn:"):
        head, sep, tail = word.rpartition(":")
        if not sep or not tail:
            raise error(f"{word!r} is not an attribute path.")
        urn, rest = head, tail
    parts = rest.split(".")
    if len(parts) > 2 or not all(re.fullmatch(r"[A-Za-z$][\w$-]*", p) for p in parts):
        raise error(f"{word!r} is not an attribute path.")
    return AttrRef(urn, parts[0], parts[1] if len(parts) == 2 else None)


# --- parser ---------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise InvalidFilter("The filter is empty.")
        if len(text) > MAX_FILTER_LENGTH:
            raise InvalidFilter(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
        if "\x00" in text:  # no attribute can hold a NUL (PostgreSQL refuses it outright)
            raise InvalidFilter("The filter contains a NUL character, which no attribute can hold.")
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.current
        if token.kind == "word" and token.text.lower() in words:
            self.index += 1
            return token.text.lower()
        return None

    def expect(self, kind: str, what: str) -> Token:
        if self.current.kind != kind:
            self.fail(f"expected {what}")
        return self.advance()

    def fail(self, message: str):
        token = self.current
        found = "the end of the filter" if token.kind == "end" else repr(token.text)
        raise InvalidFilter(f"Invalid filter: {message} at position {token.pos + 1}, found {found}.")

    # FILTER := AND ("or" AND)*   — "and" binds tighter than "or" (RFC 7644 §3.4.2.2)
    def parse_or(self, inner: bool):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidFilter(f"The filter nests deeper than {MAX_DEPTH} levels.")
        node = self.parse_and(inner)
        while self.keyword("or"):
            node = Or(node, self.parse_and(inner))
        self.depth -= 1
        return node

    def parse_and(self, inner: bool):
        node = self.parse_unary(inner)
        while self.keyword("and"):
            node = And(node, self.parse_unary(inner))
        return node

    def parse_unary(self, inner: bool):
        if self.keyword("not"):
            # The ABNF says not "(" FILTER ")"; a bare "not attrExp" is read the same way.
            return Not(self.parse_unary(inner))
        if self.current.kind == "lparen":
            self.advance()
            node = self.parse_or(inner)
            self.expect("rparen", "')'")
            return node
        return self.parse_attr_expression(inner)

    def parse_attr_expression(self, inner: bool):
        token = self.current
        if token.kind != "word" or token.text.lower() in ("and", "or", "not"):
            self.fail("expected an attribute name")
        self.advance()
        path = split_attr_path(token.text)
        if self.current.kind == "lbracket":
            if inner:
                self.fail("value filters cannot be nested")
            if path.sub:
                self.fail("a value filter applies to an attribute, not a sub-attribute")
            self.advance()
            node = self.parse_or(inner=True)
            self.expect("rbracket", "']'")
            return self.parse_value_path_tail(path, node)
        op = self.keyword("pr", *COMPARE_OPS)
        if op is None:
            self.fail(f"expected an operator ({', '.join(COMPARE_OPS)} or pr) after {token.text}")
        if op == "pr":
            return Present(path)
        return Compare(path, op, self.parse_comp_value())

    def parse_value_path_tail(self, path: AttrRef, node):
        """What may follow ``attr[...]``: nothing, ``.sub op value`` / ``.sub pr``, or ``op value``.

        Not in RFC 7644's filter ABNF, but Microsoft Entra sends ``emails[type eq "work"].value eq
        "x"`` (older versions ``emails[type eq "work"] eq "x"``). Both are read as one more
        condition on the same item, ``emails[type eq "work" and value eq "x"]``, so the two
        conditions cannot be met by two different emails.
        """
        if self.current.kind == "subattr":
            sub = self.advance().text[1:]
            op = self.keyword("pr", *COMPARE_OPS)
            if op is None:
                self.fail(f"expected an operator ({', '.join(COMPARE_OPS)} or pr) after .{sub}")
            if op == "pr":
                leaf = Present(AttrRef(None, sub))
            else:
                leaf = Compare(AttrRef(None, sub), op, self.parse_comp_value())
            return ValuePath(path, And(node, leaf))
        op = self.keyword(*COMPARE_OPS)
        if op is None:
            return ValuePath(path, node)
        return ValuePath(path, And(node, Compare(AttrRef(None, "value"), op, self.parse_comp_value())))

    def parse_comp_value(self):
        value_token = self.current
        if value_token.kind in ("string", "number"):
            self.advance()
            return value_token.value
        literal = self.keyword("true", "false", "null")
        if literal is None:
            self.fail("expected a value (a quoted string, a number, true, false or null)")
        return {"true": True, "false": False, "null": None}[literal]

    def parse(self):
        node = self.parse_or(inner=False)
        if self.current.kind != "end":
            self.fail("unexpected text after the filter")
        return node


def parse_filter(text: str):
    return _Parser(text).parse()


def parse_patch_path(text: str) -> PatchPath:
    """RFC 7644 §3.5.2: PATH = attrPath / valuePath [subAttr]."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidPath("The PATCH path is empty.")
    text = text.strip()
    try:
        bracket = text.find("[")
        if bracket < 0:
            return PatchPath(split_attr_path(text, for_filter=False))
        close = text.rfind("]")
        if close < bracket:
            raise InvalidPath(f"The PATCH path {text!r} has an unclosed '['.")
        attr = split_attr_path(text[:bracket], for_filter=False)
        if attr.sub:
            raise InvalidPath(f"The PATCH path {text!r} filters a sub-attribute.")
        inner = _Parser(text[bracket + 1:close])
        value_filter = inner.parse_or(inner=True)
        if inner.current.kind != "end":
            inner.fail("unexpected text in the value filter")
        tail = text[close + 1:]
        sub = None
        if tail:
            if not re.fullmatch(r"\.[A-Za-z$][\w$-]*", tail):
                raise InvalidPath(f"The PATCH path {text!r} has unexpected text after ']'.")
            sub = tail[1:]
        return PatchPath(attr, value_filter, sub)
    except InvalidFilter as error:
        raise InvalidPath(f"Invalid PATCH path {text!r}: {error.detail}") from None


# --- evaluating a value filter against one item (PATCH) ------------------------------

def _get_ci(item: dict, name: str):
    for key, value in item.items():
        if key.lower() == name.lower():
            return value
    return None


def matches(node, item: dict, case_exact: Callable[[str], bool] = lambda name: False) -> bool:
    """Does one item of a multi-valued attribute satisfy the value filter?"""
    if isinstance(node, And):
        return matches(node.left, item, case_exact) and matches(node.right, item, case_exact)
    if isinstance(node, Or):
        return matches(node.left, item, case_exact) or matches(node.right, item, case_exact)
    if isinstance(node, Not):
        return not matches(node.expr, item, case_exact)
    if isinstance(node, ValuePath):
        raise InvalidPath("value filters cannot be nested")
    # Inside brackets names are relative to the parent; "emails[emails.type eq ..." keeps the leaf.
    name = node.path.attr if node.path.sub is None else node.path.sub
    actual = _get_ci(item, name)
    if isinstance(node, Present):
        return actual not in (None, "", [], {})
    expected = node.value
    if expected is None:
        result = actual is None
        return result if node.op == "eq" else (not result if node.op == "ne" else False)
    if actual is None:
        return node.op == "ne"
    if isinstance(actual, bool) or isinstance(expected, bool):
        if node.op not in ("eq", "ne"):
            raise InvalidFilter(f"Operator {node.op} does not apply to boolean {name}.")
        equal = _as_bool(actual) == _as_bool(expected)
        return equal if node.op == "eq" else not equal
    if isinstance(actual, str) and isinstance(expected, str) and not case_exact(name):
        actual, expected = actual.casefold(), expected.casefold()
    try:
        return {
            "eq": lambda: actual == expected,
            "ne": lambda: actual != expected,
            "co": lambda: str(expected) in str(actual),
            "sw": lambda: str(actual).startswith(str(expected)),
            "ew": lambda: str(actual).endswith(str(expected)),
            "gt": lambda: actual > expected,
            "ge": lambda: actual >= expected,
            "lt": lambda: actual < expected,
            "le": lambda: actual <= expected,
        }[node.op]()
    except TypeError:
        return False


def _as_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def equality_template(node) -> dict | None:
    """For ``type eq "work" and primary eq true``: the item those equalities describe.

    Entra sends ``add emails[type eq "work"].value`` when the user has no work email
    yet; the filter then says what the new item looks like.
    """
    if isinstance(node, Compare) and node.op == "eq" and node.path.sub is None:
        return {node.path.attr: node.value}
    if isinstance(node, And):
        left, right = equality_template(node.left), equality_template(node.right)
        if left is not None and right is not None:
            return {**left, **right}
    return None


# --- compiling to SQL ------------------------------------------------------------------

class Resolver:
    """Maps attribute references to SQL for one resource type (see service.py)."""

    def compare(self, path: AttrRef, op: str, value):  # pragma: no cover - interface
        raise NotImplementedError

    def present(self, path: AttrRef):  # pragma: no cover - interface
        raise NotImplementedError

    def value_path(self, path: AttrRef, node):  # pragma: no cover - interface
        raise NotImplementedError


def compile_sql(node, resolver: Resolver):
    from sqlalchemy import and_, not_, or_

    if isinstance(node, And):
        return and_(compile_sql(node.left, resolver), compile_sql(node.right, resolver))
    if isinstance(node, Or):
        return or_(compile_sql(node.left, resolver), compile_sql(node.right, resolver))
    if isinstance(node, Not):
        return not_(compile_sql(node.expr, resolver))
    if isinstance(node, ValuePath):
        return resolver.value_path(node.path, node.filter)
    if isinstance(node, Present):
        return resolver.present(node.path)
    return resolver.compare(node.path, node.op, node.value)


def parse_datetime(value, name: str) -> tuple[datetime, datetime]:
    """A filter's dateTime operand as the span of naive UTC instants it names: [start, end).

    Lobby stores microseconds but renders dateTimes to whole seconds, so a value without
    fractional seconds names its whole second: a resource's own ``meta.lastModified`` is then
    equal to it, not greater. A value with fractional seconds names one stored instant.
    """
    if not isinstance(value, str):
        raise InvalidFilter(f"{name} is a dateTime: compare it with a quoted xsd:dateTime string.")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFilter(f"{value!r} is not an xsd:dateTime (e.g. 2024-05-13T04:42:34Z).") from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first instant there is
            raise InvalidFilter(f"{value!r} is outside the dateTimes Lobby can compare (years 1 to 9999, "
                                "in UTC).") from None
    step = timedelta(microseconds=1) if re.search(r"\d[.,]\d", text) else timedelta(seconds=1)
    try:
        return parsed, parsed + step
    except OverflowError:  # the last second of year 9999: nothing is stored after it
        return parsed, datetime.max
