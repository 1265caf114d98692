"""Information shaping: lift 2D masks to 3D and fine-tune the decoder with InfoNCE."""
