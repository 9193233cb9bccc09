"""The Jinja2 environments: every substituted value reaches the shell as one quoted word.

Template authors never write quotes around ``{{ }}``: ``finalize`` quotes each value, and the
``{% remote %}…{% endremote %}`` block quotes its rendered body once more, so a command that
crosses ssh (two shells) is still one literal word per value on the far side.
"""
from __future__ import annotations

import shlex
from typing import Any, Iterable, Mapping

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.ext import Extension


class Shell(str):
    """Text that is already shell code (quoted words); ``finalize`` passes it through."""


def quote(value: Any) -> str:
    if isinstance(value, Shell):
        return str(value)
    if value is None:
        return "''"
    if isinstance(value, (list, tuple)):
        return " ".join(quote(v) for v in value)
    return shlex.quote(str(value))


def words(argv: Iterable[str]) -> Shell:
    """A command line from a list of words, each quoted: used for settings such as ``ssh``."""
    return Shell(" ".join(shlex.quote(str(w)) for w in argv))


class RemoteExtension(Extension):
    """``{% remote %}cmd {{ x }}{% endremote %}``: the body, quoted again as one word for ssh."""

    tags = {"remote"}

    def parse(self, parser: jinja2.parser.Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endremote",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_remote"), [], [], body).set_lineno(lineno)

    def _remote(self, caller: Any) -> Shell:
        return Shell(shlex.quote(str(caller()).strip()))


def _make_env(*, shell: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        finalize=quote if shell else _plain,
        autoescape=False,
        keep_trailing_newline=False,
        extensions=[RemoteExtension] if shell else [],
    )
    env.filters["signal_name"] = signal_name
    return env


def signal_name(number: Any) -> str:
    """``9`` -> ``SIGKILL``: an exit code's signal as people know it ("" if none is known)."""
    import signal

    try:
        return signal.Signals(int(str(number))).name
    except ValueError:
        return ""


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


_SHELL_ENV: jinja2.Environment | None = None
_TEXT_ENV: jinja2.Environment | None = None


def shell_env() -> jinja2.Environment:
    global _SHELL_ENV
    if _SHELL_ENV is None:
        _SHELL_ENV = _make_env(shell=True)
    return _SHELL_ENV


def text_env() -> jinja2.Environment:
    global _TEXT_ENV
    if _TEXT_ENV is None:
        _TEXT_ENV = _make_env(shell=False)
    return _TEXT_ENV


class TemplateError(ValueError):
    pass


def compile_template(source: str, allowed: Iterable[str], *, shell: bool) -> jinja2.Template:
    """Parse once, refuse unknown variables, return the compiled template.

    Raises TemplateError with a message fit to follow ``file: key:``.
    """
    env = shell_env() if shell else text_env()
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    unknown = sorted(jinja2.meta.find_undeclared_variables(ast) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed))
        raise TemplateError(f"unknown variable {', '.join(unknown)} (known: {known})")
    return env.from_string(source)


def render(template: jinja2.Template, values: Mapping[str, Any]) -> str:
    return template.render(values).strip()
