"""Config loading: TOML + dotted overrides into dataclasses, with errors that name the key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from herd.core.config import (
    ConfigError,
    config_hash,
    dump_toml,
    from_dict,
    load_config,
    save_resolved,
    to_dict,
)


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, ...] = (0.9, 0.95)
    schedule: Literal["cosine", "linear", "wsd"] = "cosine"
    warmup: int = 100


@dataclass
class SourceConfig:
    path: Path
    weight: float = 1.0


@dataclass
class DataConfig:
    sources: list[str] = field(default_factory=lambda: ["web"])
    weights: dict[str, float] = field(default_factory=dict)
    mix: dict[str, SourceConfig] = field(default_factory=dict)
    root: Path = Path("data")
    cache: Path | None = None


@dataclass
class ParallelConfig:
    tp: int = 1
    dp: int = 1


@dataclass
class RunConfig:
    name: str
    seed: int = 0
    compile: bool = False
    max_steps: int | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)


@dataclass
class Positive:
    n: int = 1

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError(f"n must be positive, got {self.n}")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_load_file_and_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[optim]\nlr = 1\n[data]\nsources = ["x", "y"]\n')
    cfg = load_config(RunConfig, path)
    assert cfg.name == "a"
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.warmup == 100
    assert cfg.data.sources == ["x", "y"]
    assert cfg.parallel == ParallelConfig()


def test_overrides_parse_as_toml_values_else_strings() -> None:
    cfg = load_config(
        RunConfig,
        overrides=[
            "name=debug",
            "optim.lr=3e-4",
            "parallel.tp=2",
            'data.sources=["a","b"]',
            "compile=true",
            "optim.betas=[0.8, 0.9]",
            "data.root=/tmp/x y",
            "data.weights.web=0.5",
            "optim.schedule=wsd",
        ],
    )
    assert cfg.name == "debug"
    assert cfg.optim.lr == 3e-4
    assert cfg.parallel.tp == 2
    assert cfg.data.sources == ["a", "b"]
    assert cfg.compile is True
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.data.root == Path("/tmp/x y")
    assert cfg.data.weights == {"web": 0.5}
    assert cfg.optim.schedule == "wsd"


def test_override_beats_file_and_keeps_siblings(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[optim]\nlr = 0.1\nwarmup = 7\n')
    cfg = load_config(RunConfig, path, ["optim.lr=0.2"])
    assert (cfg.optim.lr, cfg.optim.warmup) == (0.2, 7)


def test_number_like_override_of_str_field_stays_text() -> None:
    assert load_config(RunConfig, overrides=["name=2024"]).name == "2024"
    assert load_config(RunConfig, overrides=["name=8e3"]).name == "8e3"


def test_unknown_key_in_file_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[optim]\nlrr = 0.1\n')
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, path)
    assert str(e.value) == f"{path}: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"
    assert "\n" not in str(e.value)


def test_unknown_key_in_override_names_override_and_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'parallel\.ttp' \(did you mean 'parallel\.tp'\?\)"):
        load_config(RunConfig, overrides=["name=a", "parallel.ttp=2"])


def test_key_at_wrong_level_suggests_its_real_place() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'lr' \(did you mean 'optim\.lr'\?\)"):
        from_dict(RunConfig, {"name": "a", "lr": 0.1})


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'parallel\.zzzz' \(valid keys here: tp, dp\)"):
        from_dict(RunConfig, {"name": "a", "parallel": {"zzzz": 1}})


def test_wrong_type_names_dotted_field_expected_and_got(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[optim]\nlr = "abc"\n')
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, path)
    assert str(e.value) == f"{path}: optim.lr: expected float, got 'abc' (str)"


def test_wrong_type_in_override() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, overrides=["name=a", "parallel.tp=two"])
    assert str(e.value) == "override 'parallel.tp=two': parallel.tp: expected int, got 'two' (str)"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"compile": 1}, "compile: expected bool, got 1 (int)"),
        ({"seed": True}, "seed: expected int, got True (bool)"),
        ({"seed": 1.5}, "seed: expected int, got 1.5 (float)"),
        ({"max_steps": "x"}, "max_steps: expected int | None, got 'x' (str)"),
        ({"data": {"sources": ["a", 2]}}, "data.sources[1]: expected str, got 2 (int)"),
        ({"data": {"sources": "a"}}, "data.sources: expected list[str], got 'a' (str)"),
        ({"data": {"weights": {"web": "hi"}}}, "data.weights.web: expected float, got 'hi' (str)"),
        ({"data": {"mix": {"web": {"weight": 1}}}}, "missing required field(s) 'data.mix.web.path'"),
        ({"optim": {"betas": 0.9}}, "optim.betas: expected tuple[float, ...], got 0.9 (float)"),
        ({"optim": 3}, "optim: expected a table (OptimConfig), got 3 (int)"),
    ],
)
def test_type_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(RunConfig, {"name": "a", **data})
    assert str(e.value) == message


def test_literal_rejects_values_outside_the_set() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, overrides=["name=a", "optim.schedule=cosin"])
    assert "optim.schedule: expected one of 'cosine', 'linear', 'wsd', got 'cosin' (str)" in str(e.value)


def test_non_table_value_for_a_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim: expected a table \(OptimConfig\), got 3 \(int\)"):
        load_config(RunConfig, overrides=["name=a", "optim=3"])
    path = write(tmp_path, 'name = "a"\n[parallel]\ntp = 2\n')
    with pytest.raises(ConfigError, match=r"'parallel\.tp' is int, not a table; cannot set 'x'"):
        load_config(RunConfig, path, ["parallel.tp.x=1"])


def test_missing_required_field_is_named() -> None:
    with pytest.raises(ConfigError, match=r"missing required field\(s\) 'name'"):
        load_config(RunConfig)


def test_malformed_override_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(RunConfig, overrides=["optim.lr"])
    path = write(tmp_path, "name = \n")
    with pytest.raises(ConfigError, match=rf"{path.name}: invalid TOML"):
        load_config(RunConfig, path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(RunConfig, tmp_path / "absent.toml")


def test_post_init_errors_become_config_errors() -> None:
    with pytest.raises(ConfigError, match="n must be positive, got 0"):
        from_dict(Positive, {"n": 0})


def test_round_trip_through_toml(tmp_path: Path) -> None:
    cfg = load_config(
        RunConfig,
        overrides=[
            "name=rt",
            "max_steps=10",
            "optim.betas=[0.5, 0.6]",
            "data.cache=/tmp/c",
            'data.mix.web={path="w.jsonl", weight=0.25}',
            "data.weights.code=2",
        ],
    )
    text = dump_toml(cfg)
    assert "cache = " in text and "None" not in text
    path = save_resolved(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.resolved.toml"
    assert load_config(RunConfig, path) == cfg
    default = RunConfig(name="d")
    path.write_text(dump_toml(default))
    assert load_config(RunConfig, path) == default


def test_to_dict_is_plain_data() -> None:
    cfg = RunConfig(name="a", data=DataConfig(root=Path("r")))
    d = to_dict(cfg)
    assert d["data"]["root"] == "r"
    assert d["optim"]["betas"] == [0.9, 0.95]
    assert "max_steps" not in d and "cache" not in d["data"]


def test_config_hash_is_stable_and_sensitive() -> None:
    a = RunConfig(name="a")
    assert config_hash(a) == config_hash(RunConfig(name="a"))
    assert config_hash(a) == config_hash(to_dict(a))
    assert config_hash(a) != config_hash(dataclasses.replace(a, seed=1))
    assert len(config_hash(a)) == 64


@dataclass
class Tuned:
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, warmup=7))


@dataclass
class Outer:
    tuned: Tuned = field(default_factory=Tuned)


def test_a_partial_table_keeps_the_fields_own_defaults() -> None:
    # Before, `[optim] schedule = "wsd"` rebuilt OptimConfig from its class defaults (lr 3e-4,
    # warmup 100) and silently dropped the field's lr 1e-5 and warmup 7.
    cfg = from_dict(Tuned, {"optim": {"schedule": "wsd"}})
    assert (cfg.optim.lr, cfg.optim.warmup, cfg.optim.schedule) == (1e-5, 7, "wsd")
    nested = from_dict(Outer, {"tuned": {"optim": {"warmup": 3}}})
    assert (nested.tuned.optim.lr, nested.tuned.optim.warmup) == (1e-5, 3)
    assert load_config(Tuned, None, ["optim.lr=2e-3"]).optim == OptimConfig(lr=2e-3, warmup=7)
    with pytest.raises(ConfigError, match="optim: expected a table"):
        from_dict(Tuned, {"optim": 3})
