"""Command-line flags generated from the options dataclasses of a method registry.

Every method has its own frozen options dataclass; each field is one flag (its name, type, default
and help come from the field: `option(default, help, flag=...)` of `methods.base`). A command that
runs "any method" (`discover`, `sweep`) offers the union of those flags, one per field name:

1. `merge_fields({method: fields})` -> one `MethodFlag` per name, with the methods that take it
   (a name used by several methods must mean the same flag of the same type everywhere);
2. `flags_from_fields(flags)` -> typer options, built by typer itself from an `Annotated`
   signature, so they parse, validate (`Literal[...]` becomes a choice) and render in `--help`
   exactly like a hand-written option; each help ends with the methods that take the flag;
3. `given_values(ctx, flags)` -> only the values given on the command line (a flag left at its
   default is absent, so the method's own default applies, whatever the flag's default says);
4. `refuse_unused(given, flags, method)` -> a `UserError` (exit 2, one line) for a flag the
   chosen method does not take, naming the flags it does take.

`method_flags_command(load)` is a typer command class that adds the generated flags to a command
when it is parsed or its help is shown, not when the app is built: `load()` may import the method
registry (and torch) without slowing down `subcircuit --help` or `subcircuit models`.

`registry_flags()` is `load` for subcircuit's own registry (`subcircuit.methods.METHODS`): every
registered method's option fields, plus the selection fields (`SelectOptions`) for the methods
whose circuit the run chooses from their scores (`MethodSpec.selects_circuit` False).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
import typer.core
import typer.main
from rich.markup import escape

from subcircuit.errors import UserError

META_KEY = "subcircuit.method_flags"  # ctx.meta[META_KEY]: the generated flags' values, by field name
_GIVEN_SOURCES = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")  # ParameterSource names of a value that was given


@dataclass(frozen=True)
class MethodFlag:
    """One flag of a method option: `name` (the field's, a Python identifier), `flag` ('--ig-steps'),
    `type` (int, float, bool, str, Literal[...] or X | None), `default`, `help` and the `methods`
    that take it. Any object with these attributes does for the functions of this module."""

    name: str
    flag: str
    type: Any
    default: Any
    help: str
    methods: tuple[str, ...]


def merge_fields(per_method: Mapping[str, Iterable[Any]]) -> list[MethodFlag]:
    """One `MethodFlag` per field name over the methods' fields (each with `name, flag, type,
    default, help`), in the order first met. A name with two flags or two types is a bug in the
    registry (ValueError); with two defaults the flag has none and its help lists them; a method
    whose help for the name differs from the first one's adds it ("... acdc: <its help>")."""
    merged: dict[str, MethodFlag] = {}
    defaults: dict[str, dict[str, Any]] = {}
    for method, fields in per_method.items():
        for f in fields:
            seen = merged.get(f.name)
            if seen is None:
                merged[f.name] = MethodFlag(f.name, f.flag, f.type, f.default, f.help, (method,))
            elif (seen.flag, seen.type) != (f.flag, f.type):
                raise ValueError(f"option {f.name!r}: {seen.flag} {seen.type} in {', '.join(seen.methods)}, "
                                 f"{f.flag} {f.type} in {method}")
            else:
                other = f.help.strip() and f.help.strip() not in seen.help
                helps = f"{seen.help.rstrip()} {method}: {f.help.strip()}" if other else seen.help
                merged[f.name] = MethodFlag(seen.name, seen.flag, seen.type, seen.default, helps,
                                            seen.methods + (method,))
            defaults.setdefault(f.name, {})[method] = f.default
    out = []
    for name, flag in merged.items():
        values = defaults[name]
        if len({repr(v) for v in values.values()}) > 1:
            listed = ", ".join(f"{v} ({m})" for m, v in values.items())
            flag = MethodFlag(flag.name, flag.flag, flag.type, None, f"{flag.help} Default: {listed}.", flag.methods)
        out.append(flag)
    return out


def help_text(flag: Any) -> str:
    """The flag's help followed by the methods that take it."""
    return f"{flag.help.rstrip()} (methods: {', '.join(flag.methods)})"


def _check_type(flag: Any) -> None:
    """Only the types of DESIGN's options dataclasses: int, float, bool, str, Literal[...], X | None."""
    t = flag.type
    if isinstance(t, str):
        raise TypeError(f"{flag.flag}: type {t!r} is a string; resolve it first (typing.get_type_hints)")
    args = tuple(a for a in get_args(t) if a is not type(None))
    if get_origin(t) is Literal:
        if not all(isinstance(a, str) for a in get_args(t)):
            raise TypeError(f"{flag.flag}: Literal choices must be strings, got {get_args(t)}")
        return
    if args and len(args) == 1 and len(get_args(t)) == 2:  # X | None
        _check_type(MethodFlag(flag.name, flag.flag, args[0], None, "", ()))
        return
    if t not in (int, float, bool, str):
        raise TypeError(f"{flag.flag}: unsupported option type {t!r}; use int, float, bool, str, Literal or X | None")


def _is_bool(t: Any) -> bool:
    return t is bool or (set(get_args(t)) == {bool, type(None)})


def flags_from_fields(flags: Iterable[Any]) -> list[typer.core.TyperOption]:
    """Typer options for `flags` (see the module docstring), named by field name so that
    `ctx.params[name]` holds the value. A bool flag whose default is not False gets its negation
    too (`--prune/--no-prune`)."""
    flags = list(flags)
    params = []
    for f in flags:
        _check_type(f)
        if not f.name.isidentifier() or not f.flag.startswith("--"):
            raise ValueError(f"option {f.name!r}: bad name or flag {f.flag!r}")
        decl = f"{f.flag}/--no-{f.flag[2:]}" if _is_bool(f.type) and f.default is not False else f.flag
        option = typer.Option(decl, help=escape(help_text(f)), show_default=f.default is not None)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                        annotation=Annotated[f.type, option]))

    def signature_only(**_: Any) -> None:  # typer reads the options off this signature
        return None

    signature_only.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    scratch = typer.Typer(add_completion=False)
    scratch.command()(signature_only)
    return list(typer.main.get_command(scratch).params)


def _values(ctx: Any) -> Mapping[str, Any]:
    return ctx.meta.get(META_KEY, ctx.params)


def given_values(ctx: Any, flags: Iterable[Any]) -> dict[str, Any]:
    """{field name: value} of the flags given on the command line (or through an environment
    variable), in the order of `flags`; a flag left at its default is absent."""
    values = _values(ctx)
    given = {}
    for f in flags:
        source = ctx.get_parameter_source(f.name)
        if source is not None and source.name in _GIVEN_SOURCES:
            given[f.name] = values[f.name]
    return given


def refuse_unused(given: Mapping[str, Any], flags: Sequence[Any], method: str,
                  order: Sequence[str] | None = None) -> None:
    """A one-line UserError for the given flags that `method` does not take, e.g.
    `--abs is not an option of eap-ig (its options: --ig-steps, --ig, --edges, ...)`; the method's
    options are listed in the order of `flags`, or of the field names in `order` (its own)."""
    by_name = {f.name: f for f in flags}
    bad = [by_name[name].flag for name in given if method not in by_name[name].methods]
    if not bad:
        return
    mine = [f for f in flags if method in f.methods]
    if order is not None:
        rank = {name: i for i, name in enumerate(order)}
        mine.sort(key=lambda f: rank.get(f.name, len(rank)))
    own = [f.flag for f in mine]
    its = f"its options: {', '.join(own)}" if own else "it takes none"
    what = f"{bad[0]} is not an option" if len(bad) == 1 else f"{', '.join(bad[:-1])} and {bad[-1]} are not options"
    raise UserError(f"{what} of {method} ({its})")


def method_flags_command(load: Callable[[], Sequence[Any]]) -> type[typer.core.TyperCommand]:
    """A typer command class (`@app.command(cls=method_flags_command(load))`) whose command also
    takes the flags of `load()` (MethodFlag-like objects), built the first time the command is
    parsed or shows its help. Their values are moved from `ctx.params` to `ctx.meta[META_KEY]`
    before the command's function runs (its signature does not list them): read them with
    `given_values(ctx, load())` in the function, which takes `ctx: typer.Context`."""

    class MethodFlagsCommand(typer.core.TyperCommand):
        _generated: tuple[str, ...] | None = None

        def _add_flags(self) -> None:
            if self._generated is not None:
                return
            options = flags_from_fields(load())
            taken = {o.name for o in self.params} | {d for o in self.params for d in (*o.opts, *o.secondary_opts)}
            clash = [d for o in options for d in (o.name, *o.opts, *o.secondary_opts) if d in taken]
            if clash:
                raise ValueError(f"command {self.name!r}: generated flags clash with its own: {', '.join(clash)}")
            self.params.extend(options)
            self._generated = tuple(o.name for o in options)

        def get_params(self, ctx: Any) -> list[Any]:
            self._add_flags()
            return super().get_params(ctx)

        def invoke(self, ctx: Any) -> Any:
            self._add_flags()
            ctx.meta[META_KEY] = {name: ctx.params.pop(name) for name in self._generated or () if name in ctx.params}
            return super().invoke(ctx)

    return MethodFlagsCommand


def _hint(f: Any) -> Any:
    """The type hint of a `methods.base.OptionField` (scalar type, Literal choices, optional)."""
    hint: Any = Literal.__getitem__(tuple(f.choices)) if f.choices is not None else f.type
    return hint | None if f.optional else hint


def _registry_fields(selection: bool) -> dict[str, list[Any]]:
    """{method: its option fields (and the selection's, for a score method)} of the registry."""
    from subcircuit.methods import METHODS, SelectOptions, option_fields

    select = option_fields(SelectOptions)
    names = {f.name for f in select}
    return {name: [f for f in option_fields(spec.options) + ([] if spec.selects_circuit else select)
                   if selection or f.name not in names] for name, spec in METHODS.items()}


def registry_order(method: str, selection: bool = True) -> list[str]:
    """The option names of a registered method in its own order (for `refuse_unused`)."""
    return [f.name for f in _registry_fields(selection).get(method, [])]


def registry_flags(selection: bool = True) -> tuple[MethodFlag, ...]:
    """The flags of subcircuit's method registry (see the module docstring). `selection=False`
    leaves out the selection fields and every method field of the same name (a sweep gives each
    run its threshold or size and chooses the top k edges). Built from the registry as it is now
    (a method registered later, e.g. by a test, gets its flags too)."""
    per_method = {name: [MethodFlag(f.name, f.flag, _hint(f), f.default, f.help, ()) for f in fields]
                  for name, fields in _registry_fields(selection).items()}
    return tuple(merge_fields(per_method))
