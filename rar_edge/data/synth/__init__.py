"""Degradation models, one file per type; ``rar_edge.data.degrade`` draws among them.

Every model is ``f(x, s, gen) -> (y, param)``: a batch ``x`` (N,3,H,W) in [0,1], a severity ``s``
(N,) in [0,1], a torch.Generator on ``x``'s device; it returns the degraded batch (not yet clamped)
and the physical parameter of each image (the units of docs/degradations.md's tables).
"""
