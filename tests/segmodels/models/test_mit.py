"""SegFormer's Mix Transformer: the published weight layouts load exactly, and a missing file says where to get one."""
from __future__ import annotations

import pytest
import torch

from segmodels import PretrainedWeightsUnavailable, build_model
from segmodels.models.backbones.mit import MixTransformerBackbone


def nvlabs_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys written as NVlabs' mit_b*.pth names them (stages from 1, keys and values fused into kv, a head)."""
    out = {"head.weight": torch.zeros(1000, 256), "head.bias": torch.zeros(1000)}
    for key, value in state.items():
        parts = key.split(".")
        stage = int(parts[1]) + 1
        if parts[2] == "embed":
            out[f"patch_embed{stage}.{parts[3]}.{parts[4]}"] = value
        elif parts[2] == "norm":
            out[f"norm{stage}.{parts[3]}"] = value
        else:
            block, rest = parts[3], ".".join(parts[4:])
            if rest.startswith("attn.k."):
                kind = rest.rsplit(".", 1)[1]
                out[f"block{stage}.{block}.attn.kv.{kind}"] = torch.cat([value, state[key.replace("attn.k.", "attn.v.")]])
            elif not rest.startswith("attn.v."):
                rest = rest.replace("attn.sr_norm.", "attn.norm.").replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
                out[f"block{stage}.{block}.{rest}"] = value
    return out


def test_nvlabs_weights_load_exactly_and_a_missing_file_names_the_sources(tmp_path):
    torch.manual_seed(0)
    source = MixTransformerBackbone("mit_b0", pretrained=False).eval()
    torch.save(nvlabs_layout(source.state_dict()), tmp_path / "mit_b0.pth")
    loaded = MixTransformerBackbone("mit_b0", weights=str(tmp_path / "mit_b0.pth")).eval()
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(source(x), loaded(x)))
    assert [level.shape[-2:] for level in loaded(x)] == [(12, 16), (6, 8), (3, 4), (2, 2)]
    with pytest.raises(PretrainedWeightsUnavailable, match=r"nvidia/mit-b0 .*backbone.weights=<file>"):
        build_model("mit_b0", "segformer", 3)
