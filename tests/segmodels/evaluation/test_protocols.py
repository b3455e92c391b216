"""The sources' test protocols: the keep-ratio resize, mmsegmentation's slide grids of each preset computed by hand,
and evaluate.py with every preset composed and one run end to end on a generated ADE20K layout."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from segmodels import SegmentationModule
from segmodels.models.inference import fitted_size, predict_probabilities, window_grid
from tests.helpers import ROOT, saved_checkpoint
from tests.helpers.replicas import ade20k

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "protocol").glob("*.yaml"))


def test_the_keep_ratio_resize_is_mmcvs_rescale_size_by_hand():
    # factor = min(long / longer side, short / shorter side); sides rounded half up
    assert fitted_size(384, 512, [2048, 512]) == (512, 683)  # 512 * 4/3 = 682.67 -> 683
    assert fitted_size(300, 2000, [2048, 512]) == (307, 2048)  # the long side binds: 2048 / 2000
    assert fitted_size(1024, 2048, [2049, 1025]) == (1025, 2049)  # mmsegmentation's 769 Cityscapes pipeline
    assert fitted_size(1024, 2048, [2048, 1024]) == (1024, 2048)
    assert fitted_size(900, 600, [2048, 512]) == (768, 512)  # portrait: the box turns with the image
    assert fitted_size(300, 2000, [None, 512]) == (512, 3413)  # EoMT's: the shorter side only, 2000 * 512/300


def test_each_cityscapes_presets_windows_are_mmsegmentations_slide_grid_by_hand():
    def mmseg(height, width, crop, stride):  # mmsegmentation's slide_inference, written out
        rows = max(height - crop[0] + stride[0] - 1, 0) // stride[0] + 1
        cols = max(width - crop[1] + stride[1] - 1, 0) // stride[1] + 1
        return [(max(min(r * stride[0] + crop[0], height) - crop[0], 0),
                 max(min(c * stride[1] + crop[1], width) - crop[1], 0)) for r in range(rows) for c in range(cols)]

    assert window_grid(1025, 2049, (769, 769), (513, 513)) == mmseg(1025, 2049, (769, 769), (513, 513)) == [
        (0, 0), (0, 513), (0, 1026), (0, 1280), (256, 0), (256, 513), (256, 1026), (256, 1280)]
    assert window_grid(1024, 2048, (1024, 1024), (768, 768)) == mmseg(1024, 2048, (1024, 1024), (768, 768)) == [
        (0, 0), (0, 768), (0, 1024)]


def test_eomts_windows_are_the_fewest_that_cover_the_longer_side_spread_evenly_by_hand():
    from segmodels.models.inference import evenly_spread

    # EoMT's window_imgs_semantic written out: ceil(L / t) windows at int(j * (t - overlap / (count - 1)))
    assert evenly_spread(683, 512) == [0, 171]  # overlap 341, both windows flush with an edge
    assert evenly_spread(1500, 512) == [0, 494, 988]  # overlap 36, 18 each
    assert evenly_spread(1024, 512) == [0, 512] and evenly_spread(400, 512) == [0]
    assert window_grid(512, 683, (512, 512), (384, 384), grid="even") == [(0, 0), (0, 171)]


def test_fit_runs_the_model_at_the_fitted_size_and_resizes_its_logits_to_the_image():
    torch.manual_seed(0)
    model = SegmentationModule(backbone="efficientnet_lite0", decoder="segformer", num_classes=3, pretrained=False,
                               decoder_kwargs={"decoder_channels": 8}).model.eval()
    images = torch.randn(1, 3, 30, 40)
    with torch.no_grad():
        logits = model(F.interpolate(images, size=(48, 64), mode="bilinear", align_corners=False))
        expected = F.interpolate(logits, size=(30, 40), mode="bilinear", align_corners=False).softmax(1)
    actual = predict_probabilities(model, images, fit=[2048, 48])  # the short side 30 -> 48, the long 40 -> 64
    assert torch.allclose(actual, expected, atol=1e-6)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_with_its_source_and_the_command_line_still_wins(preset):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", [f"protocol={preset}", "ckpt_path=x"])
        assert cfg.protocol_record.name == preset and "configs/" in cfg.protocol_record.source
        assert len(cfg.fit) == 2 and cfg.scales
        assert compose("evaluate", [f"protocol={preset}", "ckpt_path=x", "flip=true"]).flip is True


def test_evaluate_py_under_mmsegmentations_ade20k_protocol_records_it(tmp_path):
    import json
    import subprocess
    import sys

    from tests.helpers import subprocess_env

    root = ade20k(tmp_path / "data" / "ADEChallengeData2016", per_split=2, size=40)
    torch.manual_seed(0)
    module = SegmentationModule(backbone="efficientnet_lite0", decoder="segformer", num_classes=150, pretrained=False,
                                decoder_kwargs={"decoder_channels": 8})
    checkpoint = saved_checkpoint(module, tmp_path / "model.ckpt")
    out = tmp_path / "evaluation"
    result = subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), f"ckpt_path={checkpoint}", "dataset=ade20k",
         f"data_dir={Path(root).parent}", "split=val", "protocol=mmseg_ade20k", "engine=torch", "worst=0",
         f"hydra.run.dir={out}"], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    protocol = json.loads((out / "metrics.json").read_text())["protocol"]
    assert protocol["name"] == "mmseg_ade20k" and protocol["fit"] == [2048, 512] and protocol["tile"] is None
    assert "ade20k.py" in protocol["source"]
