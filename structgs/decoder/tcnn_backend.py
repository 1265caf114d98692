"""Optional tinycudann MLPs (CUDA only). Users build tinycudann themselves; import-guarded."""

from __future__ import annotations


def require_tcnn():
    try:
        import tinycudann  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "decoder backend 'tcnn' needs tinycudann, which has no wheel: build it with\n"
            "  pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch\n"
            "on a CUDA machine, or use backend='torch' (the reference implementation)") from e
    return tinycudann


class TcnnActivationEncoder:
    """Builds a tinycudann network that computes a branch's layers *before* the perturbable
    layer (the bulk of the work over N Gaussians). The perturbable layer and what follows stay
    in torch so that Jacobians, shaping and edits work unchanged. Untested on CI (no CUDA)."""

    @staticmethod
    def build(in_dim: int, width: int, num_layers: int):
        tcnn = require_tcnn()
        if width not in (16, 32, 64, 128):
            raise ValueError(f"tinycudann FullyFusedMLP needs a width of 16/32/64/128, got {width}")
        return tcnn.Network(in_dim, width, {"otype": "FullyFusedMLP", "activation": "ReLU",
                                            "output_activation": "ReLU", "n_neurons": width,
                                            "n_hidden_layers": num_layers - 1})
