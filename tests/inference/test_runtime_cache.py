"""The converted-network cache: hits, keys, stale entries reconverted, two processes writing at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.inference.runtime_cache import CACHE_FORMAT, IrKey, cached_model, network_sha256

pytestmark = pytest.mark.openvino

ROOT = Path(__file__).resolve().parents[2]


def _conv(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv3d(1, 3, 3, padding=1).eval()


def _convert(network: torch.nn.Module, calls: list):
    def convert():
        import openvino

        calls.append(1)
        return openvino.convert_model(network, example_input=torch.zeros(1, 1, 8, 8, 8))

    return convert


def _key(network: torch.nn.Module) -> IrKey:
    import openvino

    return IrKey(network_sha256=network_sha256(network), input_shape=(1, 8, 8, 8), batch="dynamic",
                 openvino=openvino.get_version())


def _run(model, x: np.ndarray) -> np.ndarray:
    import openvino

    f32 = {"INFERENCE_PRECISION_HINT": "f32"}  # OpenVINO's CPU default is bfloat16 where the CPU has AMX
    return openvino.Core().compile_model(model, "CPU", f32).create_infer_request().infer({0: x})[0]


def test_network_sha256_follows_the_weights_not_the_object():
    a, b = _conv(0), _conv(0)
    assert network_sha256(a) == network_sha256(b)  # same content: same entry
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert network_sha256(a) != network_sha256(b)
    assert network_sha256(_conv(1)) != network_sha256(a)
    assert network_sha256(torch.nn.Conv3d(1, 3, 3, padding=2)) != network_sha256(torch.nn.Conv3d(1, 3, 3, padding=1))


def test_hit_after_one_conversion_and_the_cached_model_computes_the_network(tmp_path):
    network, calls = _conv(), []
    key = _key(network)
    _, converted = cached_model(tmp_path, key, _convert(network, calls))
    assert converted and calls == [1]
    second, converted = cached_model(tmp_path, key, _convert(network, calls))
    assert not converted and calls == [1]  # read from the cache, not converted again
    entry = tmp_path / key.digest()
    assert sorted(p.name for p in entry.iterdir()) == ["key.json", "model.bin", "model.xml"]
    recorded = json.loads((entry / "key.json").read_text())
    assert recorded["key"] == {"network_sha256": network_sha256(network), "input_shape": [1, 8, 8, 8],
                               "batch": "dynamic", "openvino": key.openvino, "format": CACHE_FORMAT}
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(second, x), expected, atol=1e-5)  # float32 weights kept (no float16 compression)


@pytest.mark.parametrize("change", ["openvino", "input_shape", "network"])
def test_a_changed_key_converts_again(tmp_path, change):
    network, calls = _conv(), []
    key = _key(network)
    cached_model(tmp_path, key, _convert(network, calls))
    other = {"openvino": IrKey(key.network_sha256, key.input_shape, key.batch, "2027.0.0"),
             "input_shape": IrKey(key.network_sha256, (1, 16, 8, 8), key.batch, key.openvino),
             "network": _key(_conv(1))}[change]
    _, converted = cached_model(tmp_path, other, _convert(network, calls))
    assert converted and calls == [1, 1] and other.digest() != key.digest()
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


@pytest.mark.parametrize("damage", ["truncated bin", "edited xml", "missing bin", "other key", "bad json"])
def test_a_stale_entry_is_never_trusted(tmp_path, damage):
    network, calls = _conv(), []
    key = _key(network)
    cached_model(tmp_path, key, _convert(network, calls))
    entry = tmp_path / key.digest()
    if damage == "truncated bin":
        data = (entry / "model.bin").read_bytes()
        (entry / "model.bin").write_bytes(data[: len(data) // 2])
    elif damage == "edited xml":
        (entry / "model.xml").write_text((entry / "model.xml").read_text().replace("<net", "<net ", 1))
    elif damage == "missing bin":
        (entry / "model.bin").unlink()
    elif damage == "other key":
        recorded = json.loads((entry / "key.json").read_text())
        recorded["key"]["network_sha256"] = "0" * 64
        (entry / "key.json").write_text(json.dumps(recorded))
    else:
        (entry / "key.json").write_text("{")
    _, converted = cached_model(tmp_path, key, _convert(network, calls))
    assert converted and calls == [1, 1]
    _, converted = cached_model(tmp_path, key, _convert(network, calls))
    assert not converted and calls == [1, 1]  # the rewritten entry is valid again
    assert sorted(p.name for p in tmp_path.iterdir()) == [key.digest()]  # the stale one removed


def test_an_unwritable_cache_still_gives_the_model(tmp_path, caplog):
    network, calls = _conv(), []
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")  # no folder can be made below it, even by root
    model, converted = cached_model(blocked / "cache", _key(network), _convert(network, calls))
    assert converted and model is not None and "could not cache the converted network" in caplog.text


_CHILD = textwrap.dedent("""
    import json, logging, sys, time
    from pathlib import Path
    import openvino, torch
    from medseg.inference.runtime_cache import IrKey, cached_model, network_sha256

    logging.basicConfig(level=logging.INFO)
    cache, barrier, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    network = torch.nn.Conv3d(1, 3, 3, padding=1).eval()
    key = IrKey(network_sha256(network), (1, 8, 8, 8), "dynamic", openvino.get_version())

    def convert():  # both processes inside convert() before either writes: both write, one rename loses
        (barrier / name).touch()
        deadline = time.time() + 60
        while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.01)
        return openvino.convert_model(network, example_input=torch.zeros(1, 1, 8, 8, 8))

    model, converted = cached_model(cache, key, convert)
    print(json.dumps({"converted": converted, "digest": key.digest()}))
""")


def test_two_processes_converting_at_once_leave_one_valid_entry(tmp_path):
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, str(cache), str(barrier), name], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    results, logs = [], []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
        logs.append(err)
    assert [r["converted"] for r in results] == [True, True]  # both converted (the barrier) ...
    assert sum("another process cached this network first" in log for log in logs) == 1  # one rename lost
    digest = results[0]["digest"]
    assert sorted(p.name for p in cache.iterdir()) == [digest]  # ... one entry, no temporary folder left
    network, calls = _conv(0), []
    _, converted = cached_model(cache, _key(network), _convert(network, calls))
    assert not converted and calls == []  # the entry they left is complete and verified
