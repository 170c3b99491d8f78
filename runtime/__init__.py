"""rar_edge.runtime: the torch-free on-device runtime (the pipeline's last stage; see issue 5).

Nothing in this package may import torch (tests/test_layout.py checks it).
"""
