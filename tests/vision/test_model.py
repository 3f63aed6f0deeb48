"""The vision model against transformers' Mllama (Llama 3.2 Vision): logits parity after an HF → herd → HF
round trip, the zero-gate identity, and the tiling/mask helpers against the reference processor."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from herd.model.config import ModelConfig
from herd.vision.adapter import VisionLanguageModel
from herd.vision.config import ENCODER_PRESETS, VISION_PRESETS, EncoderConfig, VisionConfig, get_vision_preset
from herd.vision.convert import config_from_hf_dict, from_hf_state, load_hf_vision, save_hf_vision, to_hf_state
from herd.vision.tiling import aspect_ratios, best_canvas, cross_attention_mask, fit_size, pack, tile_image

transformers = pytest.importorskip("transformers")
VOCAB = 96


def hf_small_config():
    """A random small Mllama: 4 local + 2 global encoder layers, 2-tile max, 7 text layers of which 2 are
    cross-attention (HF indices 2 and 5 → herd: before self layers 2 and 4), GQA 4:2."""
    return transformers.MllamaConfig(
        vision_config=dict(
            hidden_size=32, num_hidden_layers=4, num_global_layers=2, attention_heads=4, intermediate_size=64,
            vision_output_dim=32 * 3, image_size=28, patch_size=7, intermediate_layers_indices=[1, 3],
            max_num_tiles=2, supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
        ),
        text_config=dict(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=7, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, cross_attention_layers=[2, 5], pad_token_id=0, bos_token_id=1, eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        image_token_index=VOCAB,
    )  # fmt: skip


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random (gates included), so no branch hides behind a zero gate."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def inputs(seed: int = 0):
    """Two samples: one 2-tile image with text before and after it; one 1-tile image plus a padding tile."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, VOCAB, (2, 9), generator=g)
    tokens[0, 3] = VOCAB  # <|image|> after 3 text tokens: those 3 rows may see no image
    tokens[1, 0] = VOCAB
    pixels = torch.randn(2, 1, 2, 3, 28, 28, generator=g)
    pixels[1, 0, 1] = 0
    ar_ids = torch.tensor([[2], [1]])  # (1, 2) and (1, 1)
    ar_mask = torch.tensor([[[1, 1]], [[1, 0]]])
    cross = torch.stack([cross_attention_mask(t.tolist(), VOCAB, [n], 2) for t, n in zip(tokens, (2, 1))])
    return tokens, pixels, ar_ids, ar_mask, cross


def herd_logits(model: VisionLanguageModel, tokens, pixels, ar_ids, ar_mask, cross):
    return model(tokens, model.encode_images(pixels, ar_ids, ar_mask), cross)


def test_logits_match_mllama_after_round_trip(tmp_path):
    torch.manual_seed(0)
    hf = transformers.MllamaForConditionalGeneration(hf_small_config()).eval()
    randomize(hf, seed=1)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    model = load_hf_vision(tmp_path / "hf").eval()  # HF → herd
    assert model.cfg.cross_layers == (2, 4)
    save_hf_vision(model, tmp_path / "herd")  # herd → HF
    back = transformers.MllamaForConditionalGeneration.from_pretrained(tmp_path / "herd").eval()
    tokens, pixels, ar_ids, ar_mask, cross = inputs()
    with torch.no_grad():
        ref = hf(input_ids=tokens, pixel_values=pixels, aspect_ratio_ids=ar_ids, aspect_ratio_mask=ar_mask,
                 cross_attention_mask=cross).logits  # fmt: skip
        again = back(input_ids=tokens, pixel_values=pixels, aspect_ratio_ids=ar_ids, aspect_ratio_mask=ar_mask,
                     cross_attention_mask=cross).logits  # fmt: skip
        ours = herd_logits(model, tokens, pixels, ar_ids, ar_mask, cross)
    assert ref.abs().max() > 1  # non-trivial logits
    # fp32 with different kernels (SDPA vs eager softmax): agreement to 1e-4 absolute is the bar.
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(again, ref, atol=1e-4, rtol=0)
    # The round trip is lossless tensor by tensor.
    a, b = hf.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_encoder_matches_mllama_vision_model():
    torch.manual_seed(0)
    hf = transformers.MllamaForConditionalGeneration(hf_small_config()).eval()
    randomize(hf, seed=2)
    model = from_hf_state(config_from_hf_dict(hf.config.to_dict()), hf.state_dict(), "memory").eval()
    _, pixels, ar_ids, ar_mask, _ = inputs(seed=3)
    with torch.no_grad():
        ref = hf.model.vision_model(pixel_values=pixels, aspect_ratio_ids=ar_ids, aspect_ratio_mask=ar_mask)
        ours = model.encoder(pixels, ar_ids, ar_mask)
    assert ours.shape == (2, 1, 2, 17, 96)  # 4×4 patches + class token; 32 × (1 + 2 taps)
    torch.testing.assert_close(ours, ref.last_hidden_state, atol=1e-4, rtol=0)


def test_text_only_path_matches_mllama_without_images():
    hf = transformers.MllamaForConditionalGeneration(hf_small_config()).eval()
    randomize(hf, seed=4)
    model = from_hf_state(config_from_hf_dict(hf.config.to_dict()), hf.state_dict(), "memory").eval()
    tokens = inputs()[0]
    tokens[tokens == VOCAB] = 5
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(input_ids=tokens).logits, atol=1e-4, rtol=0)


def test_zero_gates_give_the_text_model_exactly():
    cfg = get_vision_preset("tiny")
    model = VisionLanguageModel(cfg)
    model.text.init_weights(seed=0)
    model.init_adapter(seed=1)
    assert all(float(p) == 0 for n, p in model.cross_layers.named_parameters() if "gate" in n)
    tokens = torch.randint(0, cfg.text.vocab_size, (2, 12))
    pixels = torch.randn(2, 1, 4, 3, 64, 64)
    ar_ids, ar_mask = torch.tensor([[6], [1]]), torch.tensor([[[1, 1, 1, 1]], [[1, 0, 0, 0]]])
    cross = torch.ones(2, 12, 1, 4, dtype=torch.long)
    with torch.no_grad():
        image = model.encode_images(pixels, ar_ids, ar_mask)
        assert image.abs().sum() > 0
        assert torch.equal(model(tokens, image, cross), model.text(tokens))
        # One open gate and the image changes the logits.
        model.cross_layers["1"].gate_attn.fill_(1.0)
        assert not torch.allclose(model(tokens, image, cross), model.text(tokens))


def test_frozen_text_gets_no_gradient():
    model = VisionLanguageModel(get_vision_preset("tiny"))
    model.text.init_weights(seed=0)
    model.init_adapter(seed=1)
    model.freeze_text()
    with torch.no_grad():
        model.cross_layers["1"].gate_attn.fill_(0.5)
    tokens = torch.randint(0, 512, (1, 6))
    image = model.encode_images(torch.randn(1, 1, 4, 3, 64, 64), torch.tensor([[1]]), torch.tensor([[[1, 0, 0, 0]]]))
    model(tokens, image, torch.ones(1, 6, 1, 4, dtype=torch.long)).sum().backward()
    assert all(p.grad is None for p in model.text.parameters())
    assert model.encoder.conv1.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------
# Presets and config round trips


def count_on_meta(cfg: EncoderConfig) -> int:
    from herd.vision.encoder import ImageEncoder

    with torch.device("meta"):
        return sum(p.numel() for p in ImageEncoder(cfg).parameters())


def test_vit_h14_has_the_paper_sizes():
    cfg = ENCODER_PRESETS["ViT-H/14"]
    assert cfg.output_dim == 7680 and cfg.n_layers + cfg.n_global_layers == 40  # [P §7.1]
    assert (cfg.image_size // cfg.patch_size) ** 2 == 256  # 16×16 patches at 224²
    # 850M with the 8 gated layers [P §7.1] (at 448-px tiles, whose tile-position tables the count
    # includes); ViT-H/14's 32 layers alone are the paper's ~630M.
    n = count_on_meta(replace(cfg, image_size=448))
    assert 0.83e9 < n < 0.86e9, n
    per_layer = 4 * 1280**2 + 2 * 1280 * 5120 + 5120 + 1280 + 4 * 1280
    assert 0.60e9 < 32 * per_layer < 0.66e9


def test_presets_match_the_released_configs():
    ref = transformers.MllamaConfig()  # defaults = Llama-3.2-11B-Vision
    ours = config_from_hf_dict(ref.to_dict())
    eleven = VISION_PRESETS["11B"]
    assert ours.encoder == replace(eleven.encoder, image_size=448)  # the released 11B uses 560-px tiles
    assert ours.cross_layers == eleven.cross_layers
    assert ours.text.n_layers == eleven.text.n_layers == 32 and ours.text.hidden_dim == eleven.text.hidden_dim
    ninety = VISION_PRESETS["90B"]
    assert len(ninety.cross_layers) == 20 and ninety.text.n_layers == 80  # 100 layers in the 90B release


def test_config_round_trip_through_hf_dict():
    from herd.vision.convert import config_to_hf_dict

    for name in VISION_PRESETS:
        cfg = VISION_PRESETS[name]
        d = json.loads(json.dumps(config_to_hf_dict(cfg)))
        back = config_from_hf_dict(d)
        assert back.encoder == cfg.encoder and back.cross_layers == cfg.cross_layers
        assert back.text.hidden_dim == cfg.text.hidden_dim and back.text.rope_scaling == cfg.text.rope_scaling
        assert config_to_hf_dict(back) == d
        hf = transformers.MllamaConfig(**d)
        assert hf.text_config.cross_attention_layers == d["text_config"]["cross_attention_layers"]


def test_bad_checkpoint_names_the_tensor():
    hf = transformers.MllamaForConditionalGeneration(hf_small_config())
    cfg = config_from_hf_dict(hf.config.to_dict())
    state = dict(hf.state_dict())
    state.pop("model.multi_modal_projector.bias")
    with pytest.raises(ValueError, match=re.escape("missing tensor 'model.multi_modal_projector.bias'")):
        from_hf_state(cfg, state, "ckpt")
    model = from_hf_state(cfg, hf.state_dict(), "ckpt")
    assert to_hf_state(model).keys() == hf.state_dict().keys()


# ---------------------------------------------------------------------------------------------------
# Tiling against the reference processor


def test_aspect_ratios_and_canvas_match_reference():
    from transformers.models.mllama import image_processing_pil_mllama as ref

    assert aspect_ratios(4) == ref.get_all_supported_aspect_ratios(4)
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(x) for x in rng.integers(1, 2000, 2))
        ref.get_optimal_tiled_canvas.cache_clear()
        canvas = ref.get_optimal_tiled_canvas(h, w, 4, 336)
        rows, cols = best_canvas(h, w, 4, 336)
        assert (rows * 336, cols * 336) == tuple(int(c) for c in canvas), (h, w)
        assert fit_size(h, w, rows * 336, cols * 336, 336) == ref.get_image_size_fit_to_canvas(h, w, *canvas, 336)


@pytest.mark.parametrize("size", [(50, 30), (64, 64), (200, 60), (90, 150), (20, 300)])
def test_tiles_match_reference_processor(size):
    from PIL import Image

    proc = transformers.MllamaImageProcessorPil(size={"height": 64, "width": 64}, max_image_tiles=4,
                                                 image_mean=[0.48145466, 0.4578275, 0.40821073],
                                                 image_std=[0.26862954, 0.26130258, 0.27577711])  # fmt: skip
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ref = proc([[img]], return_tensors="pt")
    ours = tile_image(img, tile=64, max_num_tiles=4)
    pixels, ids, mask = pack([[ours]], 4)
    assert torch.equal(ids, ref["aspect_ratio_ids"]) and torch.equal(mask, ref["aspect_ratio_mask"])
    torch.testing.assert_close(pixels, ref["pixel_values"], atol=1e-5, rtol=0)


def test_tile_embeddings_are_gated_by_aspect_ratio():
    """Identical tiles encode identically while the tile gates are shut; opening them makes the features
    depend on the tile's place in the layout, and on the layout (aspect-ratio id) itself."""
    model = VisionLanguageModel(get_vision_preset("tiny"))
    model.init_adapter(seed=0)
    model.eval()
    tile = torch.randn(3, 64, 64)
    pixels = tile.expand(1, 1, 4, 3, 64, 64).clone()
    mask = torch.tensor([[[1, 1, 1, 1]]])
    with torch.no_grad():
        shut = model.encoder(pixels, torch.tensor([[6]]), mask)  # (2, 2)
        assert shut.shape == (1, 1, 4, 65, 64 * 3)
        torch.testing.assert_close(shut[0, 0, 0], shut[0, 0, 3], atol=1e-5, rtol=0)
        for emb in (model.encoder.pre_tile_pos_embed, model.encoder.post_tile_pos_embed):
            emb.gate.fill_(1.0)
        model.encoder.gated_positional_embedding.gate.fill_(1.0)
        two_by_two = model.encoder(pixels, torch.tensor([[6]]), mask)
        one_by_four = model.encoder(pixels, torch.tensor([[4]]), mask)
    assert (two_by_two[0, 0, 0] - two_by_two[0, 0, 3]).abs().max() > 1e-3
    assert (two_by_two - one_by_four).abs().max() > 1e-3


@pytest.mark.parametrize(
    "tokens",
    [[5, 9, 7], [96, 5, 6, 7], [5, 96, 6, 96, 7, 8], [96, 96, 5, 6], [5, 96, 96, 6, 96, 7], [96, 5, 96, 96, 6]],
)
def test_cross_attention_mask_matches_reference(tokens):
    from transformers.models.mllama.processing_mllama import (
        convert_sparse_cross_attention_mask_to_dense,
        get_cross_attention_token_mask,
    )

    n = tokens.count(96)
    if n == 0:
        with pytest.raises(ValueError, match=re.escape("0 <|image|> tokens for 1 images")):
            cross_attention_mask(tokens, 96, [1], 4)
        return
    tiles = [1 + (i % 4) for i in range(n)]
    ref = convert_sparse_cross_attention_mask_to_dense(
        [get_cross_attention_token_mask(tokens, 96)], [tiles], 4, len(tokens)
    )
    assert torch.equal(cross_attention_mask(tokens, 96, tiles, 4)[None], torch.from_numpy(ref))


def test_config_errors_are_one_line():
    with pytest.raises(ValueError, match=re.escape("cross layer 9 is outside text layers 0..1")):
        VisionConfig(encoder=ENCODER_PRESETS["tiny"], text=ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                     vocab_size=64, ffn_dim=96, rope_scaling=None), cross_layers=(9,))  # fmt: skip
    with pytest.raises(ValueError, match="did you mean '11B'"):
        get_vision_preset("11b")
