"""Find the config layers, merge them key by key, validate once, hand out typed records.

Layers, later wins: packaged defaults -> $XDG_CONFIG_HOME/jobmon -> ./monitor.yaml ->
$JOBMON_CONFIG -> --config. A layer is a ``monitor.yaml`` (settings, types, clusters) and, for a
folder, its ``checkers.d/*.yaml`` (one or more job types each). Every error is one line:
``file: key.path: what is wrong``. A ./monitor.yaml or $JOBMON_CONFIG that someone else could
have written is skipped, with one line saying why (trust.py): a config declares commands.
"""
from __future__ import annotations

import fnmatch
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from jobmon import schema
from jobmon.jobtype import (  # noqa: F401  (the records are config's vocabulary too)
    BATCH_VARS, BUILTIN_PATTERNS, CATEGORIES, CHECK_VARS, RESULT_VARS, STANDARD_FIELDS, Delegate, Discover,
    FieldSpec, JobType, JsonSpec, Pattern, Probe, build, build_patterns,
)
from jobmon.settings import Delivery, Settings  # config.Settings too: plan and the tests name it so
from jobmon.where import ConfigError, Where  # config.ConfigError too: cli and the tests catch it so

if TYPE_CHECKING:
    from types import ModuleType

    from jobmon.eventlog import EventLog
    from jobmon.notify import Notifier, Routes, Target

DEFAULT_SETTINGS: dict[str, Any] = {
    "interval": 30.0,
    "timeout": 60.0,
    "action_timeout": 120.0,
    "max_parallel": 8,
    "max_parallel_total": 32,
    "unreachable_after": 3,
    "lost_after": 600.0,
    "aggregate_after": 5,
    "max_line": 400,
    "ssh": ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"],
    "max_read": 8 << 20,
    "hosts": [],
}


# ---------------------------------------------------------------- typed records


def _routes() -> "ModuleType":
    """jobmon.notify, imported only when a config is built: apprise and its threads are not
    every command's business, and `jobmon list` starts faster without them."""
    from jobmon import notify

    return notify


@dataclass(frozen=True)
class Cluster:
    name: str
    hosts: tuple[str, ...]

    def matches(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, glob) for glob in self.hosts)


@dataclass(frozen=True)
class Config:
    settings: Settings
    types: Mapping[str, JobType]
    clusters: tuple[Cluster, ...]
    files: tuple[str, ...]
    _raw: Mapping[str, Any] = field(repr=False, compare=False)
    _origins: Mapping[tuple[str, ...], str] = field(repr=False, compare=False)
    _cache: dict[tuple[str, tuple[str, ...]], tuple[JobType, Settings]] = field(
        default_factory=dict, repr=False, compare=False
    )
    notify: "Routes" = field(default_factory=lambda: _routes().Routes(), repr=False, compare=False)
    delivery: Delivery = field(default_factory=Delivery)

    def resolve(self, type_name: str, host: str = "") -> tuple[JobType, Settings]:
        """The job type and settings in force for a host, after cluster overrides."""
        names = tuple(c.name for c in self.clusters if host and c.matches(host))
        if not names:
            return self.types[type_name], self.settings
        key = (type_name, names)
        if key not in self._cache:
            self._cache[key] = _build_for_clusters(self._raw, self._origins, type_name, names)
        return self._cache[key]

    def notify_targets(self, type_name: str, host: str = "") -> tuple["Target", ...]:
        """Who is told of a job of this type on this host (``notify:``, the most specific list)."""
        return self.notify.targets(type_name, tuple(c.name for c in self.clusters if host and c.matches(host)))

    def notifier(self, log: "EventLog") -> "Notifier | None":
        """What tells people of a polling process's events, or None when no target is named."""
        every = self.notify.every()
        if not every:
            return None
        return _routes().Notifier(every, lambda e: self.notify_targets(e.type, e.host), log, os.environ,
                                  max_line=self.settings.max_line)


# ---------------------------------------------------------------- loading


def packaged_dir() -> Path:
    """Where monitor.yaml and checkers.d/ ship: inside the wheel, or the repository root."""
    here = Path(__file__).resolve().parent
    installed = here / "defaults"
    return installed if (installed / "monitor.yaml").is_file() else here.parent


def layer_paths(cli_config: str | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "jobmon"
    paths = [packaged_dir(), xdg, Path.cwd() / "monitor.yaml"]
    if env.get("JOBMON_CONFIG"):
        paths.append(Path(env["JOBMON_CONFIG"]))
    if cli_config:
        paths.append(Path(cli_config))
    return paths


def files_of(layer: Path, *, explicit: bool) -> list[Path]:
    """The YAML files of one layer: a folder's monitor.yaml and checkers.d/, or one file."""
    if layer.is_dir():
        found = [layer / "monitor.yaml"] if (layer / "monitor.yaml").is_file() else []
        found += sorted((layer / "checkers.d").glob("*.yaml")) + sorted(
            (layer / "checkers.d").glob("*.yml")
        )
        return found
    if layer.is_file():
        return [layer]
    if explicit:
        raise ConfigError(f"{layer}: no such file or folder")
    return []


def load(cli_config: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    layers = layer_paths(cli_config, env)
    explicit = set(layers[3:])
    # Found, not named: ./monitor.yaml and $JOBMON_CONFIG are loaded only if no one else could
    # have written them (trust.py); --config, the XDG config and the packaged one are yours.
    found = {layers[2], *layers[3:3 + bool(env.get("JOBMON_CONFIG"))]} - ({Path(cli_config)} if cli_config else set())
    seen: set[Path] = set()
    files: list[Path] = []
    said: dict[Path, bool] = {}
    for layer in layers:
        if layer in found and _skipped(layer, said):
            continue
        for path in files_of(layer, explicit=layer in explicit):
            if path.resolve() in seen:
                continue
            if layer in found and any(_skipped(p, said) for p in (path.parent, path) if p != layer):
                continue
            seen.add(path.resolve())
            files.append(path)
    return from_files(files)


def _skipped(path: Path, said: dict[Path, bool]) -> bool:
    """Refused by trust.py: said on stderr once per file or folder (``said`` remembers)."""
    from loguru import logger

    from jobmon import trust

    if path not in said:
        why = trust.refusal(path)
        if why is not None:
            logger.warning("{}: skipped: {}", path, why)
        said[path] = why is not None
    return said[path]


def from_files(files: Iterable[Path]) -> Config:
    raw: dict[str, Any] = {"settings": {}, "types": {}, "clusters": {}, "diagnosis": []}
    origins: dict[tuple[str, ...], str] = {}
    names = []
    for path in files:
        name = _display(path)
        names.append(name)
        data = _read_yaml(path, name)
        if data is None:
            continue
        is_monitor = path.parent.name != "checkers.d"
        shape = schema.MONITOR if is_monitor else schema.CHECKERS
        problems = schema.check(data, shape)
        if problems:
            p = problems[0]
            raise ConfigError(f"{name}: {'.'.join(p.path) or '(top)'}: {p.message}")
        layer = data if is_monitor else {"types": data}
        _merge(raw, layer, (), origins, name)
    _extend(raw, origins)
    return _build(raw, origins, tuple(names))


EXTENDED_LISTS = ("events", "diagnosis", "metrics")  # an extending type adds to these


def _extend(raw: dict[str, Any], origins: dict[tuple[str, ...], str]) -> None:
    """A type that ``extends`` another is that type's whole body, as every file left it, with its
    own keys merged on top (mappings key by key, the rest replaced), except that its ``events``,
    ``diagnosis`` and ``metrics`` come before the other's (one of the same name replaces it):
    deploy is slurm's check, actions and NEVER_STARTS, plus its own events and causes, tried
    first. Its own items keep the places they have in its file, which its errors name. An
    inherited key's errors name where the other type set it."""
    types = raw["types"]
    for name, body in types.items():
        base = body.get("extends")
        if base is None:
            continue
        where = Where(origins, ("types", name))
        if base not in types or base == name:
            raise where.error(("extends",), _unknown_type(base, [t for t in types if t != name]))
        if "extends" in types[base]:
            raise where.error(("extends",), f"{base} extends {types[base]['extends']} itself: extend that one")
        merged = {k: _copy(v) for k, v in types[base].items() if k != "notify"}  # who is told is each type's own
        own = {k: v for k, v in body.items() if k != "extends"}
        for key in EXTENDED_LISTS:
            if key in own and isinstance(own[key], list) and isinstance(merged.get(key), list):
                names = {item.get("name") for item in own[key] if isinstance(item, dict)}
                own[key] = own[key] + [i for i in merged[key] if not (isinstance(i, dict) and i.get("name") in names)]
        _merge(merged, own, (), {}, "")
        merged["extends"] = base  # built after its base (``_build``)
        for key, origin in list(origins.items()):
            inherited = key[:2] == ("types", base) and ("types", name) + key[2:] not in origins
            if inherited:
                _set(origins, ("types", name) + key[2:], origin)
        types[name] = merged


def _display(path: Path) -> str:
    try:
        rel = path.resolve().relative_to(packaged_dir())
        return str(rel)
    except ValueError:
        return str(path)


def _read_yaml(path: Path, name: str) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader: no tag makes an object
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}{where}: YAML syntax error: {what}") from None


@functools.cache
def _loader() -> type:
    """PyYAML's SafeLoader, except that a key is the word written: YAML 1.1 reads ``on:`` (a
    notify target's kinds, as people write it) as ``true``."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            for key, _ in node.value:
                if key.tag == "tag:yaml.org,2002:bool":
                    key.tag = "tag:yaml.org,2002:str"
            return super().construct_mapping(node, deep)
    return Loader


def _merge(
    into: dict[str, Any],
    layer: Mapping[str, Any],
    path: tuple[str, ...],
    origins: dict[tuple[str, ...], str],
    name: str,
) -> None:
    """Deep merge: mappings key by key, everything else (lists too) replaced whole."""
    for key, value in layer.items():
        key = str(key)
        here = path + (key,)
        _set(origins, here, name)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, here, origins, name)
        else:
            into[key] = _copy(value)
            if isinstance(value, dict):
                _mark(value, here, origins, name)


def _mark(value: Mapping[str, Any], path: tuple[str, ...], origins: dict, name: str) -> None:
    for key, item in value.items():
        _set(origins, path + (str(key),), name)
        if isinstance(item, dict):
            _mark(item, path + (str(key),), origins, name)


def _set(origins: dict, key: tuple[str, ...], name: str) -> None:
    """Record where a key was last set; origins keep the order keys were last set in."""
    origins.pop(key, None)
    origins[key] = name


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# ---------------------------------------------------------------- building


def _build(raw: dict[str, Any], origins: dict, files: tuple[str, ...]) -> Config:
    settings = _settings(raw["settings"], Where(origins, ("settings",)))
    for name, body in raw["types"].items():
        others = [t for t, b in raw["types"].items() if t != name and "check" in b]
        if "check" not in body and _near(name, others):
            # An override of a misspelled type would otherwise read as a new, incomplete type.
            raise Where(origins, ("types", name)).error((), f"{_unknown_type(name, others)}: a new job type needs check and states")
    common = _common(raw, origins)
    # A type that others extend is built first: an error in what they inherit is named as its own.
    order = sorted(raw["types"], key=lambda name: "extends" in raw["types"][name])
    built = {name: build(name, raw["types"][name], settings, Where(origins, ("types", name)), origins, common)
             for name in order}
    types = {name: built[name] for name in raw["types"]}
    for name, jtype in types.items():
        if jtype.delegate is not None and jtype.delegate.type not in types:
            raise Where(origins, ("types", name)).error(("delegate", "type"), _unknown_type(jtype.delegate.type, types))
    _no_delegate_cycle(types, Where(origins, ()))
    clusters = []
    for cname, body in raw["clusters"].items():
        where = Where(origins, ("clusters", cname))
        if not body.get("hosts"):
            raise where.error(("hosts",), "a cluster needs at least one host glob")
        for tname in body.get("types", {}):
            if tname not in types:
                raise where.error(("types", tname), _unknown_type(tname, types))
        clusters.append(Cluster(cname, tuple(body["hosts"])))
    # Every override is validated once, now, not at first use.
    built = {(t, (c.name,)): _build_for_clusters(raw, origins, t, (c.name,)) for c in clusters for t in types}
    for cluster in clusters:
        _no_delegate_cycle({t: built[(t, (cluster.name,))][0] for t in types}, Where(origins, ("clusters", cluster.name)))
    # A target may ask for any key event a type has, on a cluster too.
    kinds = [p.name for t in [*types.values(), *(b[0] for b in built.values())] for p in t.events]
    config = Config(settings, types, tuple(clusters), files, raw, origins, notify=_routes().routes(raw, origins, kinds),
                    delivery=_delivery(raw.get("delivery", {}), settings, Where(origins, ())))
    config._cache.update(built)
    return config


def _no_delegate_cycle(types: Mapping[str, JobType], where: Where) -> None:
    """A type that delegates, directly or not, to itself would ask itself forever (``confirm``
    asks the other type, whose ``confirm`` asks back)."""
    for start in types:
        path = [start]
        while (d := types[path[-1]].delegate) is not None and d.type in types:
            if d.type in path:  # blamed on the delegate that closes the loop, said from there
                loop = [path[-1], *path[path.index(d.type):]]
                raise where.error(("types", path[-1], "delegate", "type"),
                                  f"delegates in a cycle: {' -> '.join(loop)}")
            path.append(d.type)


def _near(name: str, names: Iterable[str]) -> str | None:
    import difflib

    near = difflib.get_close_matches(name, list(names), n=1)
    return near[0] if near else None


def _unknown_type(name: str, types: Iterable[str]) -> str:
    near = _near(name, types)
    return f"unknown job type '{name}'" + (f" (did you mean '{near}'?)" if near else "")


def _build_for_clusters(
    raw: Mapping[str, Any], origins: Mapping, type_name: str, names: tuple[str, ...]
) -> tuple[JobType, Settings]:
    settings_raw = _copy(raw["settings"])
    body = _copy(raw["types"][type_name])
    merged_origins = dict(origins)
    moved: dict[tuple[str, ...], tuple[str, ...]] = {}  # merged key -> where the cluster set it
    for cname in names:
        cluster = raw["clusters"][cname]
        overrides = cluster.get("settings", {})
        _merge(settings_raw, overrides, ("settings",), {}, "")
        for key in overrides:
            moved[("settings", key)] = ("clusters", cname, "settings", key)
            _set(merged_origins, ("settings", key), origins[moved[("settings", key)]])
        type_over = cluster.get("types", {}).get(type_name, {})
        scratch: dict[tuple[str, ...], str] = {}
        _merge(body, type_over, (), scratch, "")
        for rel in scratch:
            moved[("types", type_name) + rel] = ("clusters", cname, "types", type_name) + rel
            _set(merged_origins, ("types", type_name) + rel, origins[moved[("types", type_name) + rel]])
    settings = _settings(settings_raw, Where(merged_origins, ("settings",), moved))
    where = Where(merged_origins, ("types", type_name), moved)
    return build(type_name, body, settings, where, merged_origins, _common(raw, origins)), settings


def _common(raw: Mapping[str, Any], origins: Mapping) -> tuple[Pattern, ...]:
    """Diagnosis patterns of monitor.yaml, tried after each type's own."""
    return build_patterns(raw.get("diagnosis", []), "diagnosis", Where(origins, ()))


def _delivery(raw: Mapping[str, Any], settings: Settings, where: Where) -> Delivery:
    """``delivery:``: the reader's harness (a Monitor) as jobmon must fit it."""
    d = Delivery(**{k: float(v) if k in ("join", "gap", "refill") else v for k, v in raw.items()})
    checks = ((("delivery", "line"), d.line >= 80, "must be at least 80"),
              (("delivery", "notification"), d.notification >= d.line, f"must be at least delivery.line ({d.line})"),
              (("delivery", "join"), d.join >= 0, "must be 0 or more"),
              (("delivery", "gap"), d.gap > d.join, f"must be more than delivery.join ({d.join:g} s): "
                                                    "else two notifications join into one"),
              (("delivery", "burst"), d.burst >= 1, "must be at least 1"),
              (("delivery", "refill"), d.refill > 0, "must be greater than 0"),
              (("settings", "max_line"), settings.max_line <= d.line,
               f"{settings.max_line} is past delivery.line ({d.line}): the reader would see lines cut"))
    for key, ok, message in checks:
        if not ok:
            raise where.error(key, message)
    return d


def _settings(raw: Mapping[str, Any], where: Where) -> Settings:
    values = {**DEFAULT_SETTINGS, **raw}
    for key in ("interval", "timeout", "action_timeout", "lost_after"):
        if values[key] <= 0:
            raise where.error((key,), "must be greater than 0")
    for key in ("max_parallel", "max_parallel_total", "unreachable_after", "aggregate_after"):
        if values[key] < 1:
            raise where.error((key,), "must be at least 1")
    if values["max_line"] < 80:
        raise where.error(("max_line",), "must be at least 80")
    if not values["ssh"]:
        raise where.error(("ssh",), "needs at least the ssh command")
    values["ssh"] = tuple(values["ssh"])
    values["hosts"] = tuple(values["hosts"])
    if values["max_read"] < 4096:
        raise where.error(("max_read",), "must be at least 4096")
    values = {k: float(v) if k in ("interval", "timeout", "action_timeout", "lost_after") else v for k, v in values.items()}
    return Settings(**values)
