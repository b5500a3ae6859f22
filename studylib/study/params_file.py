"""From values to a validated params object: a params file (`params/<study>.yaml`), a
`--set key=value` override, or the overrides the runner injects into a notebook.

A study file has two required keys and two optional ones::

    notebook: notebooks/00_testbed.ipynb     # the template papermill executes
    defaults: {limit: 0}                     # optional: what every run changes from the
                                             # dataclass defaults (`studylib.study.params`)
    runs: [{key: teacher, model: toy-llava}, ...]   # a run is {**defaults, **run}
    profiles: {smoke: {defaults: {...}, runs: [...]}}  # optional named overrides

Profiles: `default` (what `make book` runs), `smoke` (CI-sized) and `full` (the paper's
complete grid, for those with more time: the default profile's knobs, then its own).

Unknown keys and bad types are one `StudyError` line naming the file, the run and the key.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from studylib.errors import StudyError
from studylib.study.params import STUDIES, StudyParams

FILE_KEYS = ("notebook", "defaults", "runs", "profiles")
PROFILE_KEYS = ("defaults", "runs")
PROFILES = ("smoke", "default", "full")

def _fields(cls: type[StudyParams]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check one value against its field type (YAML gives int where float is meant: allow)."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint, origin = args[0], typing.get_origin(args[0])
    if origin in (tuple, list, Sequence):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        if isinstance(value, str | int | float):
            value = [value]
        if not isinstance(value, list | tuple):
            raise StudyError(f"{name}: expected a list, got {value!r}")
        return tuple(_coerce(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise StudyError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise StudyError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise StudyError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if isinstance(value, bool) or value is None:
            raise StudyError(f"{name}: expected a string, got {value!r}")
        return str(value)
    return value


def validate(study: str, values: Mapping[str, Any], where: str = "") -> StudyParams:
    """Values -> the study's params object; unknown keys and bad types are one-line errors."""
    prefix = f"{where}: " if where else ""
    if study not in STUDIES:
        raise StudyError(f"{prefix}unknown study {study!r}; known: {', '.join(sorted(STUDIES))}")
    cls = STUDIES[study]
    fields = _fields(cls)
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise StudyError(f"{prefix}unknown key {unknown[0]!r} for study {study}; "
                         f"valid keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    try:
        clean = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
        return cls(**clean)
    except StudyError as exc:
        raise StudyError(f"{prefix}{exc}") from None


def from_notebook(study: str, overrides: Mapping[str, Any]) -> StudyParams:
    """A notebook's params: the dataclass defaults updated by its `overrides` (what the
    runner injects into the `parameters` cell; `{}` runs the defaults)."""
    return validate(study, overrides, where=f"notebook {study}")


def non_defaults(p: StudyParams) -> dict[str, Any]:
    """The knobs of `p` that differ from its study's defaults, as YAML/JSON-able values:
    what the runner injects, so that `from_notebook` rebuilds exactly `p`."""
    default = type(p)()
    return {f.name: list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(p) if (v := getattr(p, f.name)) != getattr(default, f.name)}


def parse_value(text: str) -> Any:
    """A `--set` value, YAML-parsed: `0.5` -> 0.5, `[0.3,0.5]` -> list, `toy-bunny` -> str."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StudyError(f"cannot parse value {text!r}: {str(exc).splitlines()[0]}") from None


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StudyError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


# --- study files --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StudyFile:
    path: Path
    study: str
    notebook: Path
    runs: tuple[StudyParams, ...]


class _StrictLoader(yaml.SafeLoader):
    """yaml's SafeLoader, but a key given twice in one mapping is an error: PyYAML keeps the
    last one silently, so a second `limit:` further down would quietly win."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key.value!r} (line {key.start_mark.line + 1})")
                seen.add(key.value)
        return super().construct_mapping(node, deep=deep)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """A mapping from the file (empty for a missing or null one), else one StudyError line."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudyError(f"{where} must be a mapping, got {value!r}")
    return value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)
    except FileNotFoundError:
        raise StudyError(f"params file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path}: expected a mapping with notebook, defaults, runs")
    return data


def load_study(path: str | os.PathLike, profile: str = "default",
               overrides: Mapping[str, Any] | None = None,
               strict_overrides: bool = True, only: Sequence[str] = ()) -> StudyFile:
    """Read, merge and validate a study file: run = {**defaults, **run, **overrides}.

    With a profile other than "default", the file's `profiles.<name>.defaults` update the
    defaults and `profiles.<name>.runs`, when given, replace the runs. Every profile is
    validated, not only the selected one. With `only`, the selected profile keeps the runs
    whose own key (before `overrides`) is one of them: possibly none.
    """
    path = Path(path)
    data = read_yaml(path)
    unknown = [k for k in data if k not in FILE_KEYS]
    if unknown:
        raise StudyError(f"{path}: unknown top-level key {unknown[0]!r}; "
                         f"expected {', '.join(FILE_KEYS)}")
    for key in ("notebook", "runs"):
        if key not in data:
            raise StudyError(f"{path}: missing top-level key {key!r}")
    notebook = Path(str(data["notebook"]))
    study = notebook.stem
    if study not in STUDIES:
        raise StudyError(f"{path}: notebook {notebook} is not a known study; "
                         f"known: {', '.join(sorted(STUDIES))}")
    if profile not in PROFILES:
        raise StudyError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    profiles = _mapping(data.get("profiles"), f"{path}: profiles")
    for name, prof in profiles.items():
        if name not in PROFILES:
            raise StudyError(f"{path}: unknown profile {name!r}; choose from {', '.join(PROFILES)}")
        bad = [k for k in _mapping(prof, f"{path}: profiles.{name}") if k not in PROFILE_KEYS]
        if bad:
            raise StudyError(f"{path}: profiles.{name}: unknown key {bad[0]!r}; "
                             f"expected {', '.join(PROFILE_KEYS)}")
    fields = _fields(STUDIES[study])
    sets = {k: v for k, v in (overrides or {}).items() if k in fields}
    if strict_overrides and len(sets) != len(overrides or {}):
        bad = next(k for k in overrides or {} if k not in fields)
        raise StudyError(f"--set: unknown key {bad!r} for study {study}; "
                         f"valid keys: {', '.join(sorted(fields))}")
    runs = _profile_runs(path, data, study, profile, sets, only)
    for other in PROFILES:  # a broken profile fails now, not when someone first selects it
        if other != profile:
            _profile_runs(path, data, study, other, {})
    return StudyFile(path, study, notebook, runs)


def _profile_runs(path: Path, data: dict[str, Any], study: str, profile: str,
                  sets: Mapping[str, Any], only: Sequence[str] = ()) -> tuple[StudyParams, ...]:
    """One profile's runs, each {**defaults, **run, **sets}, validated; with `only`, those
    whose own key is in it."""
    profiles = _mapping(data.get("profiles"), f"{path}: profiles")
    chosen = profiles.get(profile) or {}
    # "full" is the default profile with more: the default's knobs, then its own
    base = (profiles.get("default") or {}).get("defaults") if profile == "full" else None
    defaults = {**_mapping(data.get("defaults"), f"{path}: defaults"),
                **_mapping(base, f"{path}: profiles.default.defaults"),
                **_mapping(chosen.get("defaults"), f"{path}: profiles.{profile}.defaults")}
    runs = data["runs"] if chosen.get("runs") is None else chosen["runs"]
    in_profile = "" if profile == "default" else f" in profile {profile}"
    if not isinstance(runs, list) or not runs:
        raise StudyError(f"{path}: runs must be a non-empty list of mappings{in_profile}")
    merged: list[StudyParams] = []
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise StudyError(f"{path}: runs[{i}] must be a mapping, got {run!r}")
        where = f"{path}: runs[{i}]" + (f" ({run['key']})" if "key" in run else "") + in_profile
        params = validate(study, {**defaults, **run, **sets}, where=where)
        if not only or validate(study, {**defaults, **run}, where=where).key in only:
            merged.append(params)
    names = [p.output_name() for p in merged]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StudyError(f"{path}: two runs write the same notebook {dupes[0]}.ipynb "
                         f"(give them different keys){in_profile}")
    return tuple(merged)


def validate_file(path: str | os.PathLike) -> list[StudyParams]:
    """Every profile of a file validates (used by the tests and `studylib study --check`)."""
    out: list[StudyParams] = []
    for profile in PROFILES:
        out.extend(load_study(path, profile=profile).runs)
    return out
