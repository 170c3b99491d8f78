# Source this from the repository root: `source bench/checkout_pythonpath.sh SCRATCH_DIR`.
# Makes `python3 -m rar_edge` run from a checkout without installing (a lent GPU machine, a server
# without write access to site-packages). export/, quantize/ and runtime/ are subpackages of rar_edge
# (pyproject's package-dir), so PYTHONPATH=$PWD alone misses them: SCRATCH_DIR/src/rar_edge is a folder
# of links that mirrors the installed package, and PYTHONSAFEPATH keeps the checkout's own rar_edge/
# (first on sys.path under `python -m`) from shadowing it. tests/test_layout.py checks it.
mkdir -p "$1/src/rar_edge"
ln -sfn "$PWD"/rar_edge/* "$1/src/rar_edge/"
for d in export quantize runtime; do ln -sfn "$PWD/$d" "$1/src/rar_edge/$d"; done
export PYTHONPATH="$1/src" PYTHONSAFEPATH=1
