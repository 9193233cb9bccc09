"""The Jinja2 environments: every substituted value reaches the shell as one quoted word.

Template authors never write quotes around ``{{ }}``: ``finalize`` quotes each value, and the
``{% remote %}…{% endremote %}`` block quotes its rendered body once more, so a command that
crosses ssh (two shells) is still one literal word per value on the far side.
"""
from __future__ import annotations

import re
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
    env.filters["first_host"] = first_host
    env.filters.update(MEASURES)
    return env


def first_host(nodelist: Any) -> str:
    """A SLURM NodeList's first host: ``gpu[07-08,12]`` -> ``gpu07``, ``a1,b2`` -> ``a1`` (where
    a job's server listens); "" for none (``(null)``, ``None assigned``)."""
    import re

    text = str(nodelist or "").strip()
    match = re.match(r"([A-Za-z0-9._-]+)(?:\[([0-9]+)[^\]]*\])?", text)
    if match is None or text.startswith(("(", "None")):
        return ""
    return match.group(1) + (match.group(2) or "")


def signal_name(number: Any) -> str:
    """``9`` -> ``SIGKILL``: an exit code's signal as people know it ("" if none is known)."""
    import signal

    try:
        return signal.Signals(int(str(number))).name
    except ValueError:
        return ""


# Filters for formulas over what a scheduler prints (metrics' ``values``): each reads one of
# its usual spellings and raises ValueError on any other, so that a value it cannot compute is
# left out, never guessed.
_DURATION = re.compile(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def number(text: Any) -> float | int:
    """``"8"`` -> 8, ``"2.5"`` -> 2.5; unlike Jinja2's ``int``, never 0 for ``UNLIMITED``."""
    value = float(str(text).strip())
    return int(value) if value.is_integer() else value


def seconds(text: Any) -> float:
    """``1-02:03:04``, ``02:03:04``, ``03:04.5`` (sacct's Elapsed, TotalCPU) or plain seconds."""
    text = str(text).strip()
    match = _DURATION.fullmatch(text)
    if match is None:
        return float(text)
    days, hours, minutes, secs = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)


def hms(value: Any) -> str:
    """Seconds as SLURM prints a duration: ``02:41:07``, ``1-02:00:00``."""
    total = int(round(float(value)))
    if total < 0:
        raise ValueError(f"negative duration {total}")
    days, rest = divmod(total, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def to_bytes(text: Any) -> float:
    """``2.5G``, ``4000M``, ``500K``, ``1024`` (binary units, as SLURM's) -> bytes. Older ReqMem's
    ``4000Mc`` (per CPU) or ``4000Mn`` (per node) is refused: it is not the job's total."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)([KMGTP]?)\s*", str(text), re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2).upper()]


def size(value: Any) -> str:
    """Bytes in the largest binary unit that keeps a number >= 1: ``64G``, ``2.5G``, ``512M``."""
    amount = float(value)
    for unit in ("P", "T", "G", "M", "K"):
        if amount >= _UNITS[unit]:
            return f"{amount / _UNITS[unit]:.1f}".removesuffix(".0") + unit
    return f"{amount:.0f}"


def epoch(text: Any) -> float:
    """Epoch seconds (sacct's Submit, Start under SLURM_TIME_FORMAT=%s) -> seconds; an ISO time
    (the cluster's local time, in older captured outputs) is read as UTC, so only a difference
    of two within one UTC offset means anything. ``Unknown``, ``None`` (never started): refused."""
    from datetime import datetime, timezone

    text = str(text).strip()
    if text.isascii() and text.isdigit():
        return float(text)
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def pairs(text: Any, sep: str = ",", eq: str = "=") -> dict[str, str]:
    """``billing=2,cpu=2,gres/gpu=8`` -> a mapping (SLURM's TRES lists)."""
    return dict(p.split(eq, 1) for p in str(text).split(sep) if eq in p)


MEASURES = {"number": number, "seconds": seconds, "hms": hms, "bytes": to_bytes, "size": size, "epoch": epoch,
            "pairs": pairs}


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


def compile_expression(source: str, allowed: Iterable[str]) -> Any:
    """A Jinja2 expression (``(start | epoch) - (submit | epoch)``), parsed once, refusing unknown
    variables as ``compile_template`` does; called with the values, it returns a Python value."""
    env = text_env()
    try:
        expression = env.compile_expression(source, undefined_to_none=False)
        unknown = sorted(jinja2.meta.find_undeclared_variables(env.parse("{{ (" + source + ") }}")) - set(allowed))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error: {exc.message}") from None
    if unknown:
        raise TemplateError(f"unknown variable {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    return expression


def render(template: jinja2.Template, values: Mapping[str, Any]) -> str:
    return template.render(values).strip()
