"""Per-scene fitting of the decoder (stage 1: attribute regression; stage 2: photometric)."""
