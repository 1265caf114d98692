"""Tiny randomly initialised SAM 2 / SAM 2 video / Grounding DINO checkpoints (built in seconds).

They exercise the real transformers classes on CPU: shapes, prompting and id bookkeeping,
not mask quality.
"""

from __future__ import annotations

from pathlib import Path

SIZE = 128  # model input resolution (the real models use 1024)


def _vision() -> dict:
    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1,
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                    num_attention_heads_per_stage=[1, 1, 2, 2], window_size_per_stage=[4, 4, 4, 4],
                    global_attention_blocks=[3], image_size=[SIZE, SIZE],
                    window_positional_embedding_background_size=[4, 4])
    return dict(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                backbone_feature_sizes=[[SIZE // 4] * 2, [SIZE // 8] * 2, [SIZE // 16] * 2], fpn_hidden_size=256)


def _heads() -> dict:
    # hidden size 256 is what the video model's memory path assumes
    return dict(prompt_encoder_config=dict(hidden_size=256, image_size=SIZE, patch_size=16),
                mask_decoder_config=dict(hidden_size=256, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))


def save_tiny_sam2(path: Path) -> Path:
    import torch
    from transformers import Sam2Config, Sam2Model

    torch.manual_seed(0)
    Sam2Model(Sam2Config(vision_config=_vision(), **_heads())).save_pretrained(path)
    return path


def save_tiny_sam2_video(path: Path) -> Path:
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    torch.manual_seed(0)
    cfg = Sam2VideoConfig(vision_config=_vision(), **_heads(), image_size=SIZE, num_maskmem=3,
                          memory_attention_hidden_size=256, memory_attention_num_layers=1,
                          memory_attention_feed_forward_hidden_size=64,
                          memory_attention_rope_feat_sizes=[SIZE // 16, SIZE // 16], memory_encoder_hidden_size=256,
                          memory_encoder_output_channels=64, mask_downsampler_embed_dim=256,
                          memory_fuser_embed_dim=256, memory_fuser_intermediate_dim=64,
                          max_object_pointers_in_encoder=4)
    Sam2VideoModel(cfg).save_pretrained(path)
    return path


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "red", "apple", "cone", "sphere", "torus", "a", "the"]


def save_tiny_grounding_dino(path: Path) -> Path:
    import torch
    from transformers import BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection

    torch.manual_seed(0)
    cfg = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                             window_size=4, image_size=64, out_features=["stage2", "stage3", "stage4"]),
        text_config=dict(model_type="bert", vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64),
        num_queries=20, encoder_layers=1, decoder_layers=2, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, max_text_len=32, encoder_n_points=2,
        decoder_n_points=2)
    GroundingDinoForObjectDetection(cfg).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    return path


def save_tiny_dinov2(path: Path) -> Path:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       patch_size=8, image_size=64)
    Dinov2Model(cfg).save_pretrained(path)
    return path
