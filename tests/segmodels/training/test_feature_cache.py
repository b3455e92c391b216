"""backbone.cache=true (issue 23): the decoder trains from features computed once, exactly as without the cache."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segmodels.cli.train import train
from segmodels.io.feature_cache import CacheLayout, FeatureCache
from segmodels.training.cached_training import CachedFeatures
from tests.helpers import compose_train, tiny_overrides

FROZEN = ["callbacks.freeze.unfreeze_at_epoch=-1", "decoder.decoder_channels=[8,16,16,16]", "trainer.max_epochs=2",
          "dataset.train_transforms=[]", "trainer.limit_val_batches=1"]


def decoder_weights(folder) -> dict[str, torch.Tensor]:
    state = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.decoder.")}


def test_cached_training_equals_uncached_training_in_float32(tiny_demo, tmp_path):
    plain = train(compose_train(tiny_overrides(tiny_demo, tmp_path / "plain", *FROZEN)))
    cached = train(compose_train(tiny_overrides(tiny_demo, tmp_path / "cached", *FROZEN, "backbone.cache=true",
                                                "backbone.cache_dtype=float32", f"backbone.cache_dir={tmp_path / 'cache'}")))
    a, b = decoder_weights(tmp_path / "plain"), decoder_weights(tmp_path / "cached")
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert cached["test/mIoU"] == pytest.approx(plain["test/mIoU"], abs=1e-6)
    (folder,) = (tmp_path / "cache").iterdir()
    assert (folder / "complete.json").is_file() and json.loads((folder / "progress.json").read_text())["written"] == 8
    # the second run finds the same cache and trains from it: features zeroed on disk give another decoder
    for shard in folder.glob("level*.npy"):
        features = np.load(shard, mmap_mode="r+")
        features[:] = 0
        features.flush()
    train(compose_train(tiny_overrides(tiny_demo, tmp_path / "zeroed", *FROZEN, "backbone.cache=true",
                                       "backbone.cache_dtype=float32", f"backbone.cache_dir={tmp_path / 'cache'}")))
    assert len(list((tmp_path / "cache").iterdir())) == 1
    zeroed = decoder_weights(tmp_path / "zeroed")
    assert any(not torch.allclose(zeroed[k].float(), b[k].float(), atol=1e-3) for k in b)


def test_a_backbone_that_can_change_is_refused_with_the_reason(tiny_demo, tmp_path):
    with pytest.raises(ValueError, match=r"backbone.cache=true .* unfreezes at epoch 1.*unfreeze_at_epoch=-1"):
        train(compose_train(tiny_overrides(tiny_demo, tmp_path, "backbone.cache=true")))
    with pytest.raises(ValueError, match=r"new weights \(adapter\) train with the decoder.*backbone.adapter=none"):
        train(compose_train(tiny_overrides(tiny_demo, tmp_path, "backbone=vit_small", "backbone.pretrained=false",
                                           "backbone.depth=2", "decoder=linear", "backbone.cache=true",
                                           "callbacks.freeze.unfreeze_at_epoch=-1")))


def small_cache(folder, views=2, images=3) -> FeatureCache:
    return FeatureCache.at(folder, CacheLayout(views, images, {1: [2, 2, 2]}, [4, 4], "float32"), {"test": True})


def test_an_interrupted_cache_is_finished_never_read_and_views_rotate_by_epoch(tmp_path):
    cache = small_cache(tmp_path)
    cache.open_for_writing()
    cache.write(0, {1: np.zeros((2, 2, 2, 2), np.float32)}, np.zeros((2, 4, 4), np.uint8))  # then killed
    again = small_cache(tmp_path)
    assert again.folder == cache.folder and not again.complete and again.written() == 2
    with pytest.raises(RuntimeError, match="is incomplete \\(2 of 6 rows\\)"):
        again.open_for_reading()
    again.open_for_writing()
    rows = np.arange(2, 6, dtype=np.float32)[:, None, None, None] * np.ones((4, 2, 2, 2), np.float32)
    again.write(2, {1: rows}, np.full((4, 4, 4), 7, np.uint8))
    again.finish()
    again.open_for_reading()
    dataset = CachedFeatures(again, levels=2)
    assert dataset[(0, 2)]["levels"]["1"][0, 0, 0] == 2  # epoch 0: view 0, image 2 is row 2
    assert dataset[(1, 2)]["levels"]["1"][0, 0, 0] == 5  # epoch 1: view 1 is row 3 + 2
    assert dataset[(2, 0)]["levels"]["1"].sum() == 0 and dataset[(2, 0)]["mask"].sum() == 0  # epoch 2: view 0 again
    huge = FeatureCache.at(tmp_path, CacheLayout(1, 10**9, {0: [1024, 512, 512]}, [512, 512]), {})
    with pytest.raises(OSError, match=r"needs .* GiB .* point backbone.cache_dir=<folder> at a larger disk"):
        huge.check_space()
