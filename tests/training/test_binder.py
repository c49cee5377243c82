"""The one binder: plain YAML values -> frozen dataclasses, with messages naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from medseg.errors import ConfigError
from medseg.training.binder import bind


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5
    sizes: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    count: int = 1
    flag: bool = False
    pair: tuple[float, float] = (0.0, 1.0)
    optional: int | None = None
    mixed: tuple[int | tuple[int, ...], ...] = ()
    inner: Inner = field(default_factory=Inner)
    table: dict[str, str] = field(default_factory=dict)


def test_values_are_converted():
    out = bind(Outer, {"count": 3, "pair": [1, 2], "mixed": [1, [2, 2]], "inner": {"sizes": [4]}, "table": {1: "a"}})
    assert out == Outer(count=3, pair=(1.0, 2.0), mixed=(1, (2, 2)), inner=Inner(sizes=(4,)), table={"1": "a"})
    assert isinstance(out.pair[0], float) and bind(Outer, None) == Outer()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"count": "3"}, "count: expected an integer, got '3'"),
        ({"count": True}, "count: expected an integer, got True"),
        ({"flag": 1}, "flag: expected true or false, got 1"),
        ({"name": 5}, "name: expected a string, got 5"),
        ({"pair": [1]}, r"pair: expected 2 values, got [1]"),
        ({"pair": 1.0}, "pair: expected a list, got 1.0"),
        ({"inner": {"rate": float("inf")}}, "inner.rate: expected a finite number, got inf"),
        ({"inner": {"rate": float("nan")}}, "inner.rate: expected a finite number, got nan"),
        ({"inner": {"sizes": [1, "a"]}}, "inner.sizes[1]: expected an integer, got 'a'"),
        ({"inner": [1]}, "inner: expected a mapping, got [1]"),
        ({"optional": 1.5}, "optional: expected an integer, got 1.5"),
        ({"mixed": [[1, "a"]]}, "mixed[0]: expected int | tuple[int, ...], got [1, 'a']"),
        ({"table": {"a": 1}}, "table.a: expected a string, got 1"),
        ({"cuont": 1}, "unknown key cuont; valid keys: name, count"),
        ({"inner": {"rte": 1, "szes": 2}}, "unknown keys inner.rte, inner.szes; valid keys in inner: rate, sizes"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        bind(Outer, data)
    assert message in str(info.value)


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="pipeline: expected a mapping, got 'text'"):
        bind(Outer, "text")
