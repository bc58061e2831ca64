"""What the cache key and the in-process model reuse cover (README: the resolved config, the checkpoint's sha256 or
the random-init seed, the image, the test pipeline, the recorder spec, the device type, the library versions), and
the summary's cache counters. Models are planned (config resolved, files hashed), never built: fast."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from featvis_run.experiments.common import cache_summary
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import ImageFeatures
from featvis_run.models.pool import ModelPool, shared_pool
from featvis_run.models.registry import plan_model
from featvis_run.models.source import FeatureSource
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import ModelConfig, RecorderConfig
from featvis_run.store import cache as cache_module
from featvis_run.store.cache import ActivationCache
from featvis_run.store.images import InputImage
from featvis_run.timing import Timer

#: the shipped demo detector's config: self-contained (no ``_base_`` chain), so planning it takes ~0.1 s
DEMO = "pkg://featvis_run/demo/demo_shapes_config.py"


def identity(config: str = DEMO, **fields) -> str:
    mc = ModelConfig(name="demo", mmdet_config=config, **fields)
    return plan_model(mc, pool=ModelPool()).identity  # a fresh pool: never a plan kept from elsewhere


def test_the_model_identity_covers_pipeline_seed_checkpoint_device_and_config(tmp_path):
    base = identity()
    assert identity() == base  # deterministic: the same model, the same identity
    ck_a, ck_b = tmp_path / "a.pth", tmp_path / "b.pth"
    ck_a.write_bytes(b"weights a")
    ck_b.write_bytes(b"weights b")
    others = {
        "test scale (pipeline only)": identity(test_scale=[320, 320]),
        "seed": identity(seed=1),
        "checkpoint a": identity(checkpoint=str(ck_a)),
        "checkpoint b": identity(checkpoint=str(ck_b)),
        "device": identity(device="cuda:0"),  # planned, not built: no CUDA needed
        "model config": identity(cfg_options=["model.neck.out_channels=8"]),
    }
    assert base not in others.values()
    assert len(set(others.values())) == len(others), others


def test_the_cache_key_covers_model_image_recorder_and_library_versions(monkeypatch):
    cache = ActivationCache(None)
    base = cache.key("m", "img", {"neck": "p3"})
    assert base == cache.key("m", "img", {"neck": "p3"})
    changed = {cache.key("m2", "img", {"neck": "p3"}), cache.key("m", "img2", {"neck": "p3"})}
    changed.add(cache.key("m", "img", {"backbone": "c3"}))
    monkeypatch.setattr(cache_module, "library_versions", lambda: {"torch": "0.0.0-other"})
    changed.add(cache.key("m", "img", {"neck": "p3"}))
    assert base not in changed and len(changed) == 4


def recorder(name: str, source: str, prefix: str) -> RecorderConfig:
    return RecorderConfig(
        name=name, recorders={name: {"type": "module_outputs", "source": source, "level_prefix": prefix}}
    )


def test_a_feature_source_never_serves_another_recorders_cached_maps(tmp_path):
    """README: the cache key holds the recorder spec; recorder=backbone after recorder=fpn on one cache must not
    draw the neck."""
    cache = ActivationCache(tmp_path / "cache")
    mc = ModelConfig(name="demo", mmdet_config=DEMO)
    image = InputImage("im", tmp_path / "im.png", np.zeros((16, 16, 3), np.uint8), "sha-of-the-image")
    calls: list[str] = []

    def source(rec: RecorderConfig, layer: str) -> FeatureSource:
        src = FeatureSource(mc, rec, cache, Timer(), pool=ModelPool())

        def forward(arrays):  # stands in for the model: maps named by the recorder's layer
            calls.append(layer)
            maps = {LevelKey(layer, "x"): np.full((2, 2, 2), len(calls), np.float32)}
            return [ImageFeatures(Geometry.identity((16, 16)), None, maps) for _ in arrays]

        src._forward = forward
        return src

    (fpn,) = source(recorder("fpn", "neck", "p"), "neck").features([image])
    (backbone,) = source(recorder("backbone", "backbone", "c"), "backbone").features([image])
    (again,) = source(recorder("fpn", "neck", "p"), "neck").features([image])
    assert list(fpn.features) == [LevelKey("neck", "x")] and list(backbone.features) == [LevelKey("backbone", "x")]
    assert calls == ["neck", "backbone"]  # the third is served from the cache: the same recorder, the same key
    np.testing.assert_array_equal(again.features[LevelKey("neck", "x")], fpn.features[LevelKey("neck", "x")])
    assert cache.stats.hits == 1 and cache.stats.misses == 2


def test_the_summary_counts_cache_hits_and_forward_passes(tmp_path):
    cache = ActivationCache(tmp_path / "cache")
    cache.stats.hits, cache.stats.misses, cache.stats.written_bytes = 3, 1, 1234
    mixed = cache_summary(cache, [SimpleNamespace(forward_passes=1), SimpleNamespace(forward_passes=0)])
    assert mixed["forward_passes"] == 1 and mixed["cache_hit"] is False  # it ran the model: not served from cache
    assert mixed["cache"]["hits"] == 3 and mixed["cache"]["misses"] == 1 and mixed["cache"]["written_bytes"] == 1234
    assert mixed["cache"]["enabled"] is True and mixed["cache"]["dir"] == str(tmp_path / "cache")
    served = cache_summary(cache, [SimpleNamespace(forward_passes=0)])
    assert served["cache_hit"] is True and served["forward_passes"] == 0
    off = cache_summary(ActivationCache(None), [SimpleNamespace(forward_passes=0)])
    assert off["cache_hit"] is False and off["cache"]["enabled"] is False


def test_a_model_pool_reuses_by_identity_and_forgets_the_least_recently_used():
    pool = ModelPool(keep=2)
    built: list[str] = []

    def build(name):
        return lambda: built.append(name) or SimpleNamespace(name=name)

    first, reused = pool.get("a", build("a"))
    assert not reused and pool.get("a", build("a")) == (first, True) and built == ["a"]
    pool.get("b", build("b"))
    pool.get("a", build("a"))  # a is now the most recently used
    pool.get("c", build("c"))  # evicts b
    assert pool.get("a", build("a"))[1] and not pool.get("b", build("b"))[1]
    assert built == ["a", "b", "c", "b"]
    pool.clear()
    assert len(pool) == 0 and not pool.get("a", build("a"))[1]


@pytest.mark.parametrize("step", ["fill", "check"])
def test_the_shared_pool_starts_empty_in_every_test(step):
    """The autouse fixture clears the process's pool: whichever of these runs second (in any order) sees it empty."""
    pool = shared_pool()
    assert len(pool) == 0 and not pool._plans
    pool.get(f"left-by-{step}", lambda: SimpleNamespace())
    pool.plan(f"plan-left-by-{step}", lambda: SimpleNamespace())


def test_build_model_reuses_a_model_built_earlier_in_this_process(monkeypatch):
    """README: within one process (Hydra's basic launcher) a built model is reused; another seed is another model."""
    from featvis_run.models import registry

    built = []

    class CountingAdapter:
        def build(self, plan, check=None):
            built.append(plan.config.seed)
            return SimpleNamespace(plan=plan)

    pool = ModelPool()
    plans = [plan_model(ModelConfig(name="demo", mmdet_config=DEMO, seed=seed), pool=pool) for seed in (0, 0, 5)]
    monkeypatch.setattr(registry, "adapter_for", lambda repo, key="model": CountingAdapter())  # no real build
    (first, reused_first), (again, reused_again), (other, reused_other) = (registry.build_model(p, pool) for p in plans)
    assert (reused_first, reused_again, reused_other) == (False, True, False)
    assert again is first and other is not first and built == [0, 5]
