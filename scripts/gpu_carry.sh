#!/usr/bin/env bash
# Rebuild the git-ignored folders a GPU call carries (they do not survive a new checkout):
#   .whl/               cp312 wheels the device image lacks: diffusers, lpips, pypng, importlib-metadata (6.5 MB)
#   .nbwhl/             what scripts/execute_notebooks.py needs there: nbclient, ipykernel, ipywidgets and their
#                       pure-Python needs, less what the image already has (≈ 4.5 MB; no jedi, debugpy or the
#                       classic-notebook widget extension: none is imported when a kernel only executes)
#   .whl-slim/          the same wheels with diffusers repacked without its pipelines (2.3 MB): for a call that
#                       carries LPIPS-VGG and no data (the trainers and benchmarks import no pipeline)
#   .gpu/weights-alex/  LPIPS-Alex ImageNet backbone in float16 (4.9 MB; VGG16 is 29 MB: WITH_VGG=1 adds
#                       .gpu/weights-vgg, VGG16 alone: with the tree and .whl-slim ≈ 64 MB, no room for data)
#   .gpu/shared/rgba-train  a copy of the training clip art (16.2 MB), for ALPHAVAE_SHARED_DATA=$PWD/.gpu/shared
#   .gpu/shared/rgba-extra  with EXTRA=DIR/rgba-extra (the folder scripts/rebuild_rgba_extra.py wrote): a copy (8.2 MB)
#                       for configs/free_alpha_overshoot_extra.json (--lpips-net alex). With the tree (34.7 MB),
#                       .whl-slim, LPIPS-Alex and rgba-train it is 66.4 MB = 63.3 MiB of the 64: to score the
#                       out-of-domain set (.gpu/ood-rgba, 3.3 MB) in the same call, move data/models/embedded-generator
#                       and notebooks/ out of the tree for it (a tracked file missing from the working tree does not
#                       travel: benchmarks/NOTES.md, stop 26), or score it in a second call that carries the model
# The device image's package list is in /work/.library/device/KINDS.md; a call carries at most 64 MiB with the tree.
# Usage: bash scripts/gpu_carry.sh   (from the repository root, with the project installed: it runs `alphavae`)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import wheel" 2>/dev/null || { echo "gpu_carry.sh: needs the wheel package to repack diffusers: pip install wheel"; exit 2; }

download() {  # download DIR SPEC...: binary cp312 wheels, no dependencies
  local dir=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dir" "$@" 2>&1 | grep -v "is ignored" || true
}

rm -rf .whl .nbwhl
download .whl diffusers==0.42.1 lpips==0.1.4 pypng==0.20220715.0 importlib-metadata
rm -rf .whl-slim && mkdir .whl-slim && cp .whl/*.whl .whl-slim/ && rm .whl-slim/diffusers-*.whl
slim=$(mktemp -d)
python3 -m zipfile -e .whl/diffusers-*.whl "$slim"
rm -rf "$slim"/diffusers/modular_pipelines
find "$slim"/diffusers/pipelines -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
python3 -m wheel pack "$slim" -d .whl-slim >/dev/null
rm -rf "$slim"
download .nbwhl nbclient==0.11.0 ipykernel==7.4.0 ipywidgets==8.1.9 nbformat==5.11.1 jupyter-client jupyter-core \
  traitlets comm ipython ipython-pygments-lexers prompt-toolkit wcwidth decorator matplotlib-inline stack-data \
  executing asttokens pure-eval pexpect ptyprocess pyzmq tornado nest-asyncio2 platformdirs fastjsonschema \
  jsonschema jsonschema-specifications referencing rpds-py jupyterlab-widgets

if [ ! -d .gpu/weights-alex ]; then
  mkdir -p .gpu/weights-alex
  alphavae weights fetch --dir .gpu/weights-alex --half
  rm -f .gpu/weights-alex/*vgg*
fi
if [ "${WITH_VGG:-0}" = 1 ] && [ ! -d .gpu/weights-vgg ]; then
  alphavae weights fetch --dir .gpu/weights-vgg --half
  rm -f .gpu/weights-vgg/*alex*
fi
src=$(python3 -c "from alphavae.paths import shared_data_dir; print(shared_data_dir())")/rgba-train
mkdir -p .gpu/shared
rm -rf .gpu/shared/rgba-train
cp -r "$src" .gpu/shared/rgba-train
rm -rf .gpu/shared/rgba-extra
if [ -n "${EXTRA:-}" ]; then
  [ -f "$EXTRA/packages.csv" ] || { echo "EXTRA=$EXTRA: not a set made by scripts/rebuild_rgba_extra.py (no packages.csv)"; exit 2; }
  cp -r "$EXTRA" .gpu/shared/rgba-extra
fi
du -sh .whl .whl-slim .nbwhl .gpu/* .gpu/shared/rgba-train
