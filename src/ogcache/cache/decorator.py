"""``@cache.cached``: cache an async function's results, keyed by a template of its arguments.

A thin layer over :meth:`Cache.get_or_load <ogcache.cache.Cache.get_or_load>`, so a cached
function has exactly its guarantees (single-flight, leases, stale-set protection, degradation
to calling the function when the store fails) and no second code path to keep in step.

The key template is checked against the function's signature when the function is decorated,
so a typo fails at import time, not at the first request. Calls bind arguments the cheap way
when they are passed positionally (the common case) and fall back to
:meth:`inspect.Signature.bind` otherwise.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
import string
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, NoReturn, ParamSpec, TypeVar, cast

from ogcache.cache.exceptions import CacheConfigurationError, InvalidKeyError
from ogcache.cache.namespace import MAX_KEY_LENGTH, Namespace
from ogcache.cache.protocol import CacheLike

__all__ = ["CacheDecorator", "CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")
_unsafe = _UNSAFE.search
_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NO_DEFAULT: Final = inspect.Parameter.empty
_REMEMBERED: Final = frozenset({int, str})
_KNOWN_KEYS: Final = 4096  # remembered keys per function; forgotten all at once past that


def cached(
    cache: CacheLike, namespace: Namespace[Any], *, key: str, ttl: float | None = None
) -> CacheDecorator:
    """Cache an async function's results in ``namespace`` under the key ``key``, in ``cache``
    (a :class:`~ogcache.cache.Cache`, or any ``CacheLike``: a test double, a pass-through).

    ``key`` is a template naming the function's parameters: ``"user:{user_id}"``, or with
    attribute access ``"order:{order.id}"``. Parameters it does not name (a database session,
    say) do not vary the key. Each value is rendered with ``str()`` and must not be empty or
    hold whitespace; values are not escaped, so with ``"{a}:{b}"`` the arguments
    ``("x:y", "z")`` and ``("x", "y:z")`` share a key: key on ids. ``ttl`` overrides the
    namespace's. The namespace's codec must be able to store what the function returns; a
    returned ``None`` is cached as "not found" for the namespace's ``negative_ttl``.
    """
    return CacheDecorator(cache, namespace, key, ttl)


class CacheDecorator:
    """What :func:`cached` returns: apply it to an ``async def`` function."""

    __slots__ = ("_cache", "_key", "_namespace", "_ttl")

    def __init__(
        self, cache: CacheLike, namespace: Namespace[Any], key: str, ttl: float | None
    ) -> None:
        _parse(namespace, key)  # a template that cannot work fails here, before any function
        self._cache = cache
        self._namespace = namespace
        self._key = key
        self._ttl = ttl

    def __call__(self, function: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        if not inspect.iscoroutinefunction(function):
            raise CacheConfigurationError(
                f"cached: {_name(function)} is not an async function; "
                "declare it with 'async def' (the cache awaits it on a miss)"
            )
        return CachedFunction(self._cache, self._namespace, function, self._key, self._ttl)


class CachedFunction(Generic[P, R]):
    """An async function whose results are cached; call it as the function itself.

    :meth:`invalidate` (after a write), :meth:`refresh` and :meth:`key` take the same
    arguments as the function and address the entry that call would read.
    """

    def __init__(
        self,
        cache: CacheLike,
        namespace: Namespace[Any],
        function: Callable[P, Awaitable[R]],
        template: str,
        ttl: float | None,
    ) -> None:
        literals, fields = _parse(namespace, template)
        self._cache = cache
        self._namespace = namespace
        self._function = function
        self._ttl = ttl
        functools.update_wrapper(self, function)
        signature = inspect.signature(function)
        self._signature = signature
        self._literals = literals
        self._getters = [_getter(field) for field in fields]
        self._roots = [field.split(".", 1)[0] for field in fields]
        # Calls with positional arguments only, every parameter filled by them or by its
        # default, need no Signature.bind: where each field's value is, or None if such a
        # call cannot be complete (a keyword-only parameter without default).
        self._fast: list[tuple[int, Any]] | None = _fast_plan(
            function, signature, template, self._roots
        )
        positional = [p for p in signature.parameters.values() if p.kind in _POSITIONAL]
        self._max_args = len(positional)
        self._min_args = sum(1 for p in positional if p.default is _NO_DEFAULT)
        # The hit path of the common case, one plain field ("user:{user_id}") and positional
        # arguments, reads everything from this one tuple (attribute lookups are most of what
        # the decorator would add to get_or_load): see __call__ for the layout.
        self._single: tuple[Any, ...] | None = None
        # Keys already built for int and str arguments (the ids functions are cached by):
        # a dictionary lookup instead of str(), the safety check and the concatenation.
        # Only those two types: 1, True and 1.0 are equal keys of a dict but not one text.
        self._known: dict[int | str, str] = {}
        if self._fast is not None and len(fields) == 1 and "." not in fields[0]:
            index, default = self._fast[0]
            self._single = (
                self._min_args,
                self._max_args,
                index if index >= 0 else self._max_args,  # past any args: use the default
                default,
                literals[0],
                literals[1],
                MAX_KEY_LENGTH - len(literals[0]) - len(literals[1]),
                cache.get_or_load if ttl is None else functools.partial(cache.get_or_load, ttl=ttl),
                namespace,
                function,
            )

    @property
    def cache(self) -> CacheLike:
        return self._cache

    @property
    def namespace(self) -> Namespace[Any]:
        return self._namespace

    @property
    def function(self) -> Callable[P, Awaitable[R]]:
        """The undecorated function (also ``__wrapped__``)."""
        return self._function

    @property
    def ttl(self) -> float | None:
        return self._ttl

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The cached result for these arguments; on a miss, the function's, then cached."""
        plan = self._single
        if plan is not None and not kwargs and plan[0] <= len(args) <= plan[1]:
            # min args, max args, index, default, text before, text after, room for the
            # value, get_or_load, namespace, function
            index = plan[2]
            argument = args[index] if index < len(args) else plan[3]
            known = self._known
            key = known.get(argument) if type(argument) in _REMEMBERED else None
            if key is None:
                text = str(argument)
                if not text or _unsafe(text) or len(text) > plan[6]:
                    self._refuse(0, text)
                key = plan[4] + text + plan[5]
                if type(argument) in _REMEMBERED:
                    if len(known) >= _KNOWN_KEYS:
                        known.clear()
                    known[argument] = key
            function = plan[9]
            value: R = await plan[7](plan[8], key, lambda: function(*args))
            return value
        function = self._function
        return await self._cache.get_or_load(
            self._namespace, self._key_of(args, kwargs), lambda: function(*args, **kwargs),
            ttl=self._ttl,
        )  # fmt: skip

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key (within the namespace) a call with these arguments reads."""
        return self._key_of(args, kwargs)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry of these arguments (after the write commits); False if the store
        could not be reached. A call loading it meanwhile will not store its result."""
        return await self._cache.delete(self._namespace, self._key_of(args, kwargs))

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function now and store its result unless the entry was invalidated or
        replaced meanwhile (warm-up); returns the result."""
        function = self._function
        value = await self._cache.refresh(
            self._namespace,
            self._key_of(args, kwargs),
            lambda: function(*args, **kwargs),
            ttl=self._ttl,
        )
        return cast("R", value)  # None only if the function returned it: then R admits None

    def _key_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        fast = self._fast
        if fast is not None and not kwargs and self._min_args <= len(args) <= self._max_args:
            values = [args[index] if 0 <= index < len(args) else default for index, default in fast]
        else:
            bound = self._signature.bind(*args, **kwargs)  # a TypeError as the call would
            bound.apply_defaults()
            named = bound.arguments
            values = [named[root] for root in self._roots]
        literals = self._literals
        parts = [literals[0]]
        for index, (getter, value) in enumerate(zip(self._getters, values, strict=True)):
            text = str(getter(value))
            if not text or _UNSAFE.search(text):
                self._refuse(index, text)
            parts.append(text)
            parts.append(literals[index + 1])
        key = "".join(parts)
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidKeyError(
                f"{_name(self.function)}: key is {len(key)} characters; the limit is "
                f"{MAX_KEY_LENGTH} (key on an id or a hash instead of a long value)"
            )
        return key

    def _refuse(self, index: int, text: str) -> NoReturn:
        if text and not _UNSAFE.search(text):  # too long, then
            raise InvalidKeyError(
                f"{_name(self.function)}: key for {{{self._roots[index]}}} = {text[:40]!r}... "
                f"is longer than {MAX_KEY_LENGTH} characters (key on an id or a hash instead)"
            )
        raise InvalidKeyError(
            f"{_name(self.function)}: key field {{{self._roots[index]}}} is {text!r}; "
            "key values must be non-empty without whitespace or control characters "
            "(pass another argument, or key on a normalised form of it)"
        )

    def __repr__(self) -> str:
        return f"<cached {_name(self.function)} in namespace {self.namespace.name!r}>"


def _name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


def _parse(namespace: Namespace[Any], template: str) -> tuple[list[str], list[str]]:
    """The template's literal texts (one more than its fields) and its field names."""
    where = f"cached(namespace {namespace.name!r}, key={template!r})"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise CacheConfigurationError(
            f"{where}: {exc}; write fields as {{parameter}} and a literal brace as {{{{ or }}}}"
        ) from None
    literals = [""]
    fields: list[str] = []
    for literal, field, spec, conversion in parsed:
        literals[-1] += literal
        if field is None:
            continue
        if not _FIELD.match(field):
            raise CacheConfigurationError(
                f"{where}: field {{{field}}} must name a parameter, optionally with attributes "
                "({user_id} or {user.id}); positional {} fields and [index] are not supported"
            )
        if spec or conversion:
            raise CacheConfigurationError(
                f"{where}: field {{{field}}} has a conversion or format spec; keys use str() "
                "of the value: drop the '!…' or ':…' part"
            )
        fields.append(field)
        literals.append("")
    if not fields:
        raise CacheConfigurationError(
            f"{where}: the template names no parameter, so every call would share one entry; "
            "name the arguments that identify the result, e.g. key='user:{user_id}'"
        )
    text = "".join(literals)
    if _UNSAFE.search(text) or len(text) > MAX_KEY_LENGTH:
        raise CacheConfigurationError(
            f"{where}: the template's literal text must be printable, without whitespace, and "
            f"shorter than {MAX_KEY_LENGTH} characters"
        )
    return literals, fields


def _getter(field: str) -> Callable[[Any], Any]:
    _, dot, path = field.partition(".")
    return operator.attrgetter(path) if dot else _identity


def _identity(value: Any) -> Any:
    return value


def _fast_plan(
    function: Callable[..., Any],
    signature: inspect.Signature,
    template: str,
    roots: list[str],
) -> list[tuple[int, Any]] | None:
    """Check each field's parameter; for each, where a positional-only call finds its value:
    ``(index into args, default)`` (index -1: a keyword-only parameter's default). None when
    such calls cannot be complete (a keyword-only parameter without default)."""
    where = f"cached({_name(function)}, key={template!r})"
    parameters = signature.parameters
    has_var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    positional = [name for name, p in parameters.items() if p.kind in _POSITIONAL]
    plan: list[tuple[int, Any]] = []
    for root in roots:
        parameter = parameters.get(root)
        if parameter is None:
            raise CacheConfigurationError(
                f"{where}: {{{root}}} is not a parameter of the function (it has "
                f"{', '.join(parameters) or 'none'}); name one of them in the key"
            )
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise CacheConfigurationError(
                f"{where}: {{{root}}} is a *args or **kwargs parameter, which has no single "
                "value to key on; give the function a named parameter for it"
            )
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY and has_var_keyword:
            raise CacheConfigurationError(
                f"{where}: {{{root}}} is positional-only and the function takes **kwargs, "
                f"so a keyword '{root}=' would land in **kwargs instead; make the parameter "
                "positional-or-keyword or rename it"
            )
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            plan.append((-1, parameter.default))
        else:
            plan.append((positional.index(root), parameter.default))
    if any(
        p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is _NO_DEFAULT
        for p in parameters.values()
    ):
        return None
    return plan
