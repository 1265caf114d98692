"""Naive per-pixel rasterizer: the slow, obviously-correct reference the backends are tested against.

For every pixel, walk all Gaussians whose tile rectangle covers the pixel's tile, front to
back, applying gsplat's rules literally (one scalar at a time).
"""

from __future__ import annotations

import math

import torch

from structgs.render.projection import TILE_SIZE, project, tile_rects
from structgs.scene.cameras import Camera


@torch.no_grad()
def rasterize_naive(means, quats, scales, opacities, colors, camera: Camera, near=0.01, far=1e10, eps2d=0.3,
                    alpha_clamp=0.999):
    """Returns (image (H, W, C), alpha (H, W), weights dict {(y, x): [(gaussian id, w), ...]})."""
    cam = camera.to(means.device, means.dtype)
    W, H = cam.width, cam.height
    proj = project(means, quats, scales, cam.world_to_camera, cam.K, W, H, near, far, eps2d)
    tw, th = (W + TILE_SIZE - 1) // TILE_SIZE, (H + TILE_SIZE - 1) // TILE_SIZE
    rect = tile_rects(proj.means2d, proj.radii, tw, th).tolist()
    order = torch.argsort(proj.depths, stable=True).tolist()
    m2d, con, op = proj.means2d.tolist(), proj.conics.tolist(), opacities.tolist()
    cols = colors.tolist()
    image = torch.zeros(H, W, colors.shape[1], dtype=means.dtype)
    alpha_img = torch.zeros(H, W, dtype=means.dtype)
    weights = {}
    for y in range(H):
        for x in range(W):
            tx, ty = x // TILE_SIZE, y // TILE_SIZE
            T, acc, ws = 1.0, [0.0] * colors.shape[1], []
            for i in order:
                x0, y0, x1, y1 = rect[i]
                if not (x0 <= tx < x1 and y0 <= ty < y1):
                    continue
                dx, dy = x + 0.5 - m2d[i][0], y + 0.5 - m2d[i][1]
                a, b, c = con[i]
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                alpha = min(alpha_clamp, op[i] * math.exp(-sigma))
                if sigma < 0 or alpha < 1.0 / 255.0:
                    continue
                next_T = T * (1.0 - alpha)
                if next_T <= 1e-4:
                    break
                w = alpha * T
                acc = [s + w * v for s, v in zip(acc, cols[i])]
                ws.append((i, w))
                T = next_T
            image[y, x] = torch.tensor(acc, dtype=means.dtype)
            alpha_img[y, x] = 1.0 - T
            weights[(y, x)] = ws
    return image, alpha_img, weights
