"""The notebook round trip: train with a plain Trainer, restore in a fresh process without Hydra."""
from __future__ import annotations

import subprocess
import sys

import lightning as L
import torch

from datamodules import VOCSegmentationDataModule
from segmodels import SegmentationModule
from tests.helpers import subprocess_env


def test_checkpoint_restores_the_same_logits_in_a_fresh_process(tiny_demo, tmp_path):
    module = SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=4, pretrained=True,
                                decoder_kwargs={"decoder_channels": [16, 32, 64, 128]})
    datamodule = VOCSegmentationDataModule(str(tiny_demo), num_classes=4, backbone="efficientnet_lite0",
                                           crop_size=32, batch_size=4, num_workers=0)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=1)
    trainer.fit(module, datamodule=datamodule)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    module.eval()
    x = torch.randn(1, 3, 40, 44)
    with torch.no_grad():
        torch.save({"x": x, "logits": module(x)}, tmp_path / "expected.pt")
    script = (
        "import sys, torch\n"
        "from segmodels import SegmentationModule\n"
        "assert 'hydra' not in sys.modules\n"
        f"m = SegmentationModule.load_from_checkpoint(r'{tmp_path / 'model.ckpt'}', map_location='cpu').eval()\n"
        f"e = torch.load(r'{tmp_path / 'expected.pt'}')\n"
        "with torch.no_grad(): print(torch.equal(m(e['x']), e['logits']), m.hparams.pretrained)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["True", "False"]
