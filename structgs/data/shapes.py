"""Surface samplers for the procedural scene: points, unit normals and an area per shape."""

from __future__ import annotations

import math

import torch


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def sample_sphere(n: int, radius: float, g: torch.Generator):
    nrm = _unit(torch.randn(n, 3, generator=g))
    return nrm * radius, nrm


def sample_box(n: int, half: tuple[float, float, float], g: torch.Generator):
    hx, hy, hz = half
    areas = torch.tensor([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy, hx * hy])
    face = torch.multinomial(areas, n, replacement=True, generator=g)
    uv = torch.rand(n, 2, generator=g) * 2 - 1
    pts = torch.zeros(n, 3)
    nrm = torch.zeros(n, 3)
    h = torch.tensor(half)
    for f in range(6):
        sel = face == f
        axis, sign = f // 2, 1.0 if f % 2 == 0 else -1.0
        others = [a for a in range(3) if a != axis]
        pts[sel, axis] = sign * h[axis]
        pts[sel, others[0]] = uv[sel, 0] * h[others[0]]
        pts[sel, others[1]] = uv[sel, 1] * h[others[1]]
        nrm[sel, axis] = sign
    return pts, nrm


def sample_cylinder(n: int, radius: float, half_height: float, g: torch.Generator):
    side, cap = 2 * math.pi * radius * 2 * half_height, math.pi * radius**2
    part = torch.multinomial(torch.tensor([side, cap, cap]), n, replacement=True, generator=g)
    theta = torch.rand(n, generator=g) * 2 * math.pi
    z = (torch.rand(n, generator=g) * 2 - 1) * half_height
    r = radius * torch.sqrt(torch.rand(n, generator=g))
    pts = torch.stack([radius * torch.cos(theta), radius * torch.sin(theta), z], -1)
    nrm = torch.stack([torch.cos(theta), torch.sin(theta), torch.zeros(n)], -1)
    for p, sign in ((1, 1.0), (2, -1.0)):
        sel = part == p
        pts[sel] = torch.stack([r[sel] * torch.cos(theta[sel]), r[sel] * torch.sin(theta[sel]),
                                torch.full_like(r[sel], sign * half_height)], -1)
        nrm[sel] = torch.tensor([0.0, 0.0, sign])
    return pts, nrm


def sample_cone(n: int, radius: float, height: float, g: torch.Generator):
    """Cone with its base at z=-height/2 and apex at +height/2."""
    slant = math.hypot(radius, height)
    side, cap = math.pi * radius * slant, math.pi * radius**2
    part = torch.multinomial(torch.tensor([side, cap]), n, replacement=True, generator=g)
    theta = torch.rand(n, generator=g) * 2 * math.pi
    t = torch.sqrt(torch.rand(n, generator=g))  # area-uniform along the slant (0 apex, 1 base)
    rr = radius * t
    pts = torch.stack([rr * torch.cos(theta), rr * torch.sin(theta), height / 2 - t * height], -1)
    nrm = _unit(torch.stack([height * torch.cos(theta), height * torch.sin(theta), torch.full_like(t, radius)], -1))
    sel = part == 1
    rb = radius * torch.sqrt(torch.rand(int(sel.sum()), generator=g))
    pts[sel] = torch.stack([rb * torch.cos(theta[sel]), rb * torch.sin(theta[sel]), torch.full_like(rb, -height / 2)], -1)
    nrm[sel] = torch.tensor([0.0, 0.0, -1.0])
    return pts, nrm


def sample_torus(n: int, major: float, minor: float, g: torch.Generator):
    """Torus lying flat (axis z); rejection-free area weighting through the (R + r cos v) factor."""
    u = torch.rand(n, generator=g) * 2 * math.pi
    # sample v with density proportional to (R + r cos v)
    v = torch.rand(4 * n, generator=g) * 2 * math.pi
    accept = torch.rand(4 * n, generator=g) * (major + minor) < (major + minor * torch.cos(v))
    v = v[accept][:n]
    if v.numel() < n:
        v = torch.cat([v, torch.rand(n - v.numel(), generator=g) * 2 * math.pi])
    nrm = torch.stack([torch.cos(v) * torch.cos(u), torch.cos(v) * torch.sin(u), torch.sin(v)], -1)
    ring = torch.stack([major * torch.cos(u), major * torch.sin(u), torch.zeros(n)], -1)
    return ring + minor * nrm, nrm


def sample_disk(n: int, radius: float, g: torch.Generator):
    theta = torch.rand(n, generator=g) * 2 * math.pi
    r = radius * torch.sqrt(torch.rand(n, generator=g))
    pts = torch.stack([r * torch.cos(theta), r * torch.sin(theta), torch.zeros(n)], -1)
    return pts, torch.tensor([0.0, 0.0, 1.0]).expand(n, 3).clone()


def quat_from_z_to(normals: torch.Tensor) -> torch.Tensor:
    """wxyz quaternions rotating +z onto each normal (then a random spin is not needed: discs)."""
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    axis = torch.linalg.cross(z, normals)
    w = 1.0 + (normals * z).sum(-1)
    q = torch.cat([w[:, None], axis], -1)
    flip = w < 1e-6  # normal == -z: rotate 180 deg about x
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return q / q.norm(dim=-1, keepdim=True)
