"""Same inputs, same bits: batches that repeat a Gaussian and summed votes do not depend on thread
timing (PyTorch's CPU ``index_put_(accumulate=True)`` adds in parallel, in no fixed order)."""

import torch

from structgs.decoder import DecoderConfig
from structgs.model import SceneModel
from structgs.utils.indexing import add_at, select_rows


class _Threads:
    """At least two intra-op threads, where the order of parallel additions can vary."""

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(max(2, self.before))

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def test_gradients_of_a_batch_with_repeated_gaussians_are_reproducible():
    torch.manual_seed(0)
    model = SceneModel(DecoderConfig(position_frequencies=2, hidden_width=32), 3000)
    with torch.no_grad():
        model.latents.normal_()
        model.centroids.uniform_(-1, 1)
    g = torch.Generator().manual_seed(1)
    index = torch.randint(3000, (8192,), generator=g)  # drawn with replacement, as fitting draws
    assert index.unique().numel() < index.numel()
    weights = torch.randn(8192, 3, generator=g)
    digests = set()
    with _Threads():
        for _ in range(40):
            model.zero_grad(set_to_none=True)
            (model.decode(index=index).colors * weights).sum().backward()
            digests.add(hash(model.latents.grad.numpy().tobytes()))
    assert len(digests) == 1
    # and it is the sum of each occurrence's gradient (summed in float64 here)
    rows = model.latents.detach()[index].requires_grad_(True)
    out = model.decoder(rows, None, centroids=model.centroids.detach()[index])
    (per_occurrence,) = torch.autograd.grad((out.color * weights).sum(), rows)
    ref = torch.zeros(model.latents.shape, dtype=torch.float64).index_add_(0, index, per_occurrence.double())
    assert torch.allclose(model.latents.grad.double(), ref, atol=1e-6)


def test_select_rows_takes_ids_or_masks():
    t = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(select_rows(t, torch.tensor([4, 0, 4])), t[[4, 0, 4]])
    mask = torch.tensor([True, False, False, True, False, True])
    assert torch.equal(select_rows(t, mask), t[mask])
    assert select_rows(t, None) is t


def test_summed_votes_are_reproducible_and_exact():
    g = torch.Generator().manual_seed(2)
    rows = torch.randint(500, (200_000,), generator=g)
    cols = torch.randint(4, (200_000,), generator=g)
    values = torch.rand(200_000, generator=g)
    digests = set()
    with _Threads():
        for _ in range(20):
            digests.add(hash(add_at(torch.zeros(500, 4), rows, cols, values).numpy().tobytes()))
    assert len(digests) == 1
    ref = torch.zeros(500, 4, dtype=torch.float64).index_put_((rows, cols), values.double(), accumulate=True)
    assert torch.allclose(add_at(torch.zeros(500, 4), rows, cols, values).double(), ref, rtol=1e-5)
