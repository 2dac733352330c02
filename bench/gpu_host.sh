#!/usr/bin/env bash
# `make bench-gpu` on a lent GPU host: PyTorch with CUDA, Python 3.12, no network.
#
#   bench/gpu_host.sh download [PYTHON_VERSION]   here, with network: the wheels the host
#       lacks into .gpu-wheels/ (git-ignored), at the versions .venv has (default 3.12)
#   bench/gpu_host.sh install                      there: install them offline into python3's
#       environment, clipsearch itself editable, and check that everything imports
#   bench/gpu_host.sh run [BENCH_GPU_ARGS...]      there: install, then python3 -m bench.gpu
#
# With the device tool: carry [".gpu-wheels"], command `bench/gpu_host.sh run`.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=${GPU_WHEELS:-.gpu-wheels}
PYTHON=${PYTHON:-python3}
# What clipsearch's encoder, indexer and server import that the host's image does not hold
# (or holds too old: grpcio, protobuf); timm rides along because open_clip needs >= 1.0.17,
# tokenizers at the release whose ids are tested against open_clip's.
PACKAGES=(open_clip_torch timm ftfy wcwidth faiss-cpu grpcio protobuf grpcio-health-checking
    grpcio-reflection starlette uvicorn httptools tokenizers)
MODULES=(open_clip timm ftfy tokenizers faiss grpc google.protobuf grpc_health.v1.health
    grpc_reflection.v1alpha.reflection starlette uvicorn httptools
    clipsearch.indexer clipsearch.server.app bench.encoder_speed)

download() {
    local version=${1:-3.12} pins=() platforms=()
    for name in "${PACKAGES[@]}"; do
        pins+=("$name==$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))")")
    done
    # pip matches each manylinux tag exactly; the host's glibc (2.39) runs all of these.
    for n in 39 35 34 31 28 27 24 17 5; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
    platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    rm -rf "$WHEELS"
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --implementation cp \
        --python-version "$version" "${platforms[@]}" -d "$WHEELS" "${pins[@]}"
    printf '%s\n' "${pins[@]}" >"$WHEELS/requirements.txt"
    echo "$(ls "$WHEELS"/*.whl | wc -l) wheels for Python $version in $WHEELS/ ($(du -sh "$WHEELS" | cut -f1))"
}

install() {
    test -f "$WHEELS/requirements.txt" || {
        echo "no $WHEELS/requirements.txt: run 'bench/gpu_host.sh download' where pip has network" >&2
        exit 1
    }
    # Exactly the pinned wheels, no resolving: the image's own packages stay as they are, and
    # the import check below is what proves the set complete.
    if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --find-links "$WHEELS" \
        -r "$WHEELS/requirements.txt"; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . ||
            export PYTHONPATH=$PWD
    else
        # An environment pip cannot write to: the wheels beside it, first on the path.
        echo "installing into $("$PYTHON" -c 'import sys; print(sys.prefix)') failed;" \
            "using --target /tmp/clipsearch-site" >&2
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade \
            --target /tmp/clipsearch-site "$WHEELS"/*.whl
        export PYTHONPATH=/tmp/clipsearch-site:$PWD
    fi
    "$PYTHON" - "${MODULES[@]}" <<'EOF'
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
import google.protobuf, grpc, torch
print(f"imports ok: torch {torch.__version__}, grpc {grpc.__version__}, "
      f"protobuf {google.protobuf.__version__}, CUDA {torch.cuda.is_available()}")
EOF
}

case ${1:-} in
download) download "${@:2}" ;;
install) install ;;
run) install && exec "$PYTHON" -m bench.gpu "${@:2}" ;;
*)
    echo "usage: bench/gpu_host.sh download [PYTHON_VERSION] | install | run [ARGS...]" >&2
    exit 2
    ;;
esac
