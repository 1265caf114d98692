"""Scaffold-style attribute decoder: per-Gaussian latent + view -> attributes, one MLP per branch."""

from structgs.decoder.config import BRANCHES, DecoderConfig
from structgs.decoder.decoder import AttributeDecoder, DecodedAttributes, activate
from structgs.decoder.mlp import BranchActivations, BranchMLP

__all__ = ["BRANCHES", "AttributeDecoder", "BranchActivations", "BranchMLP", "DecodedAttributes", "DecoderConfig",
           "activate"]
