"""End-to-end jobs behind the CLI (demo, rendering views, fitting, shaping)."""
