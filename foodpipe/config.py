"""Settings as typed, frozen dataclasses, each setting defined once: its default, its help and its
choices sit in the field (``setting``). One helper turns any config into command-line flags
(``add_flags``), another builds the config back (``from_args``), and ``flatten``/``to_yaml`` write
it as ``--config FILE.yaml`` reads it.

A config may hold others (``TrainConfig`` holds ``InputConfig`` and ``ModelConfig``); their settings
become flags of the same command, flat: ``TrainConfig.input.image_size`` is ``--image-size``, and
``image_size: 64`` in a config file. So a setting name is unique within a command, which argparse
checks when the flags are built.

    @dataclasses.dataclass(frozen=True)
    class EvaluateConfig:
        model: str = setting(help="the model URI")
        split: str = setting("test", "the split to evaluate", choices=("train", "val", "test"))
"""

import argparse
import dataclasses
import types
import typing

from foodpipe.errors import FoodpipeError

MISSING = dataclasses.MISSING


def setting(default=MISSING, help: str = "", *, choices: tuple | None = None, parse=None,
            metavar: str | None = None, aliases: tuple = (), positional: bool = False, nargs: str | None = None,
            repeat: bool = False):
    """A dataclass field that is also a flag. No ``default``: the flag is required. ``choices``:
    shown in the usage, checked by the config itself (so the error is the config's one line).
    ``parse``: turns the flag's text into the value (``"0.75,0.2,0.05"`` -> a tuple). ``repeat``:
    the flag may be given several times, the value is the list (a list in a config file)."""
    metadata = {"help": help, "choices": choices, "parse": parse, "metavar": metavar, "aliases": aliases,
                "positional": positional, "nargs": nargs, "repeat": repeat}
    return dataclasses.field(metadata=metadata) if default is MISSING else \
        dataclasses.field(default=default, metadata=metadata)


def repeated(config_class) -> frozenset:
    """The settings of ``config_class`` whose flag may be given several times."""
    return frozenset(field.name for field in settings(config_class) if field.metadata.get("repeat"))


def check_choices(config) -> None:
    """An error for a setting of ``config`` (not those it holds) whose value is not one of its choices."""
    for field in dataclasses.fields(config):
        choices, value = field.metadata.get("choices"), getattr(config, field.name)
        if choices and value not in choices and not (value is None and field.default is None):
            raise FoodpipeError(f"unknown {field.name} {value!r}: choose one of {', '.join(choices)}")


def nested(config_class):
    """A field holding another config, its settings flags of the same command."""
    return dataclasses.field(default_factory=config_class)


def is_nested(field: dataclasses.Field) -> bool:
    return isinstance(field.type, type) and dataclasses.is_dataclass(field.type)


def settings(config_class) -> list[dataclasses.Field]:
    """Every setting of ``config_class``, those of the configs it holds included, in order."""
    return [field for _, field in owned_settings(config_class)]


def owned_settings(config_class) -> list[tuple[type, dataclasses.Field]]:
    """``(the config class defining it, setting)`` for every setting of ``config_class``."""
    found = []
    for field in dataclasses.fields(config_class):
        found.extend(owned_settings(field.type) if is_nested(field) else [(config_class, field)])
    return found


def origin(owner: type, field: dataclasses.Field) -> str:
    """Where the setting's default and help are written: ``module.Class.name``."""
    return field.metadata.get("origin") or f"{owner.__module__}.{owner.__qualname__}.{field.name}"


def like(config_class, name: str, **changes):
    """The setting ``name`` of ``config_class`` (its default, help, choices), for another command
    that takes it too: the default stays written in one place."""
    field = config_class.__dataclass_fields__[name]
    metadata = {**field.metadata, "origin": origin(config_class, field), **changes}
    return dataclasses.field(default=field.default, metadata=metadata)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def value_type(field: dataclasses.Field):
    """``int`` for ``int`` and ``int | None``; ``str`` for anything else without a number in it."""
    kinds = [kind for kind in typing.get_args(field.type) if kind is not type(None)] \
        if isinstance(field.type, types.UnionType) else [field.type]
    return kinds[0] if kinds and kinds[0] in (int, float, bool) else str


def add_flags(parser: argparse.ArgumentParser, config_class) -> None:
    """One flag per setting of ``config_class`` (``image_size`` -> ``--image-size``)."""
    for owner, field in owned_settings(config_class):
        meta = field.metadata
        options = {"help": meta.get("help")}
        if meta.get("choices"):
            options["metavar"] = "{" + ",".join(meta["choices"]) + "}"
        if meta.get("metavar"):
            options["metavar"] = meta["metavar"]
        if meta.get("nargs"):
            options["nargs"] = meta["nargs"]
        kind = value_type(field)
        if meta.get("repeat"):
            options["action"] = "append"
        elif kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif kind in (int, float):
            options["type"] = kind
        if meta.get("positional"):
            action = parser.add_argument(field.name, **options)
        elif field.default is MISSING:
            action = parser.add_argument(flag(field.name), *meta.get("aliases", ()), dest=field.name, required=True,
                                         **options)
        else:
            action = parser.add_argument(flag(field.name), *meta.get("aliases", ()), dest=field.name,
                                         default=field.default, **options)
        action.origin = origin(owner, field)


def from_flat(config_class, values: dict):
    """``config_class`` built from flat ``{setting: value}`` (the nested configs' settings among
    them); a setting left out keeps its default, an unknown one is an error."""
    names = {field.name for field in settings(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise FoodpipeError(f"{config_class.__name__} has no setting {', '.join(unknown)}")
    return _build(config_class, values)


def _build(config_class, values: dict):
    given = {}
    for field in dataclasses.fields(config_class):
        if is_nested(field):
            given[field.name] = _build(field.type, values)
        elif field.name in values:
            value, parse = values[field.name], field.metadata.get("parse")
            given[field.name] = parse(value) if parse and isinstance(value, str) else value
    config = config_class(**given)
    check_choices(config)  # also for a config without checks of its own
    return config


def from_args(config_class, args: argparse.Namespace):
    """``config_class`` from flags that ``add_flags`` made."""
    return _build(config_class, vars(args))


def flatten(config) -> dict:
    """``{setting: value}`` of ``config`` and the configs it holds."""
    values = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values.update(flatten(value) if is_nested(field) else {field.name: value})
    return values


def to_yaml(config, leave_out: tuple = ()) -> str:
    """``config`` as a flat YAML file that ``--config`` reads back: one key per flag, a value of
    None written as ``none`` only where a setting parses it (elsewhere left out: the default)."""
    import yaml

    parsed = {field.name for field in settings(type(config)) if field.metadata.get("parse")}
    values = {}
    for name, value in flatten(config).items():
        if name in leave_out or (value is None and name not in parsed):
            continue
        values[name] = "none" if value is None else ",".join(map(str, value)) if isinstance(value, tuple) \
            else list(value) if isinstance(value, list) else value
    return yaml.safe_dump(values, sort_keys=False)


CONFIG_FLAG = "--config"


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``, expanded by ``expand_config_file`` before the parser sees the command line."""
    parser.add_argument(CONFIG_FLAG, metavar="FILE.yaml",
                        help="settings from a YAML file (flag names as keys, e.g. 'image_size: 64'; local or "
                             "s3://); flags given here win; train: a run's own config.yaml reruns it")


def config_file_flags(location: str, spell=flag, repeatable: frozenset = frozenset()) -> dict[str, str]:
    """``{flag: setting}`` of a YAML config file: ``image_size: 64`` -> ``--image-size=64``,
    ``flip: false`` -> ``--no-flip``, a list of a ``repeatable`` setting -> the flag once per
    item; a null leaves the default. ``spell``: a setting's flag."""
    import yaml

    from foodpipe import storage

    try:
        values = yaml.safe_load(storage.read(location))
    except FileNotFoundError:
        raise FoodpipeError(f"config file {location} does not exist") from None
    except yaml.YAMLError as exc:
        raise FoodpipeError(f"config file {location} is not YAML: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        raise storage.describe(exc, location, f"reading {location}") from None
    if not isinstance(values, dict):
        raise FoodpipeError(f"config file {location} must map setting names to values, e.g. 'image_size: 64'")
    flags = {}
    for key, value in values.items():
        name = spell(str(key))
        if value is None:
            continue
        if isinstance(value, bool):
            flags[name if value else "--no-" + name[2:]] = str(key)
        elif isinstance(value, (str, int, float)):
            flags[f"{name}={value}"] = str(key)
        elif key in repeatable and isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            flags.update({f"{name}={item}": str(key) for item in value})
        else:
            raise FoodpipeError(f"config file {location}: {key} must be a single value, got {value!r}")
    return flags


def expand_config_file(argv: list[str], spell=flag, repeatable: frozenset = frozenset()) \
        -> tuple[list[str], str | None, dict[str, str]]:
    """``(argv, FILE, {flag: setting} of FILE)``: ``argv`` (a command and its flags) with ``--config
    FILE`` replaced by the file's settings, put before the first flag so that flags given on the
    command line, which come later, win."""
    rest, locations = [], []
    args = iter(argv)
    for arg in args:
        if arg == CONFIG_FLAG:
            locations.append(next(args, None))
            if locations[-1] is None:
                raise FoodpipeError(f"{CONFIG_FLAG} needs a file: {CONFIG_FLAG} FILE.yaml")
        elif arg.startswith(CONFIG_FLAG + "="):
            locations.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    if len(locations) > 1:
        raise FoodpipeError(f"{CONFIG_FLAG} given {len(locations)} times: name one file")
    from_file = config_file_flags(locations[0], spell, repeatable) if locations else {}
    at = next((index for index, arg in enumerate(rest) if arg.startswith("-")), len(rest))
    return rest[:at] + list(from_file) + rest[at:], (locations or [None])[0], from_file


def check_unknown(unknown: list[str], location: str | None, from_file: dict[str, str], command: str) -> None:
    """A setting of the config file that no flag of ``command`` takes: one line naming the file."""
    named = {given.split("=", 1)[0]: key for given, key in from_file.items()}
    for given in unknown:
        if given.split("=", 1)[0] in named:
            raise FoodpipeError(f"config file {location}: {named[given.split('=', 1)[0]]} is not a setting of {command}")
