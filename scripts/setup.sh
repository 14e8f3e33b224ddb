#!/usr/bin/env bash
# Set up a machine for actedit: virtual environment with the pinned packages, the offline datasets and
# browser (Debian packages), and the book's offline web assets (npm). Idempotent: every step leaves a
# marker and is skipped when its inputs are unchanged, so a second run takes seconds.
#
#   scripts/setup.sh            # or: make setup
#
# Environment: PYTHON (default python3.11) builds the venv; VENV (default .venv) is where it goes;
# ACTEDIT_SKIP_APT=1 skips the Debian packages; ACTEDIT_SKIP_NPM=1 skips the web assets; ACTEDIT_TORCH=cpu installs
# torch's CPU-only wheels (from ACTEDIT_TORCH_INDEX, default PyTorch's CPU index) instead of PyPI's CUDA ones.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
APT_PACKAGES=(dataset-fashion-mnist chromium chromium-driver)
VENDOR=book/_static/vendor

say() { printf '== setup: %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# 1. Virtual environment -----------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "setup: $PYTHON not found. Install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)" \
             "or run with PYTHON=/path/to/python3.11." >&2
        exit 1
    fi
    say "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# 2. Pinned Python packages, hash-checked (requirements.lock: one resolution for every platform, `make lock`).
#    Default: torch and torchvision from PyPI (on Linux with their CUDA wheels; on the project's machines from the
#    local wheel mirror that pip is configured with, whose files carry PyPI's hashes). ACTEDIT_TORCH=cpu: torch's
#    CPU-only wheels from PyTorch's index (no CUDA stack), then requirements-cpu.lock (the same pins without torch,
#    torchvision and their CUDA packages). --------------------------------------------------------------------------
TORCH_VARIANT=${ACTEDIT_TORCH:-default}
TORCH_INDEX=${ACTEDIT_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
case "$TORCH_VARIANT" in
    default) LOCKS=(requirements.lock) ;;
    cpu)     LOCKS=(requirements-cpu.lock) ;;
    *) echo "setup: ACTEDIT_TORCH=$TORCH_VARIANT: use 'cpu' for torch's CPU-only wheels, or leave it unset" >&2; exit 1 ;;
esac
pinned() { sed -n "s/^$1==\([^ ;\\]*\).*/\1/p" requirements.lock | head -1; }
LOCK_MARK="$VENV/.actedit-lock-$TORCH_VARIANT-$(hash_of "${LOCKS[@]}")"
if [ ! -e "$LOCK_MARK" ]; then
    if [ "$TORCH_VARIANT" = cpu ]; then
        say "installing torch $(pinned torch), torchvision $(pinned torchvision) (CPU-only) from $TORCH_INDEX"
        "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --index-url "$TORCH_INDEX" \
            "torch==$(pinned torch)" "torchvision==$(pinned torchvision)"
    fi
    say "installing ${LOCKS[*]} into $VENV (first run: several minutes)"
    # (this machine's pip configuration names local index folders per package; its "is ignored" notes are noise)
    "$PY" -m pip install --quiet --disable-pip-version-check -r "${LOCKS[@]}" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    rm -f "$VENV"/.actedit-lock-*
    touch "$LOCK_MARK"
else
    say "${LOCKS[*]} already installed"
fi

EDITABLE_MARK="$VENV/.actedit-editable-$(hash_of pyproject.toml)"
if [ ! -e "$EDITABLE_MARK" ] || ! "$PY" -c "import actedit" >/dev/null 2>&1; then
    say "installing actedit (editable)"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
        || "$PY" -m pip install --quiet --disable-pip-version-check --no-deps -e .
    rm -f "$VENV"/.actedit-editable-*
    touch "$EDITABLE_MARK"
else
    say "actedit already installed (editable)"
fi

# 3. Debian packages: the Fashion-MNIST files, and Chromium for the offline browser test -----------------
if [ "${ACTEDIT_SKIP_APT:-0}" = 1 ]; then
    say "skipping Debian packages (ACTEDIT_SKIP_APT=1)"
else
    missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "Debian packages present: ${APT_PACKAGES[*]}"
    elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        cat >&2 <<EOF
setup: missing Debian packages: ${missing[*]}
  - dataset-fashion-mnist gives the offline default dataset (/usr/share/datasets/fashion-mnist);
    without apt, download Fashion-MNIST in torchvision's layout and pass data_root= to the notebooks.
  - chromium (and chromium-driver) run the offline browser test of the built book; it is skipped without them.
  As root on Debian/Ubuntu:  apt-get update && apt-get install -y ${missing[*]}
EOF
    fi
    # optional: tcmalloc, the allocator PyTorch's CPU performance guide recommends; workflow/book.py preloads it
    # into the training jobs and kernels when present (same numbers, ~8 % less time on this machine's 2 cores)
    if ! dpkg-query -W -f='${Status}' libtcmalloc-minimal4 2>/dev/null | grep -q "install ok installed"; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            tcmalloc() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                             libtcmalloc-minimal4 >/dev/null 2>&1; }
            if tcmalloc || { apt-get update -qq >/dev/null 2>&1 && tcmalloc; }; then
                say "apt-get install libtcmalloc-minimal4"
            else
                say "libtcmalloc-minimal4 not installed: the build uses glibc's allocator (same numbers, slower)"
            fi
        else
            say "optional: apt-get install libtcmalloc-minimal4 (a faster allocator for the build; same numbers)"
        fi
    fi
fi

# 4. Offline web assets of the book: MathJax 3, RequireJS, the Jupyter widgets HTML manager --------------
if [ "${ACTEDIT_SKIP_NPM:-0}" = 1 ]; then
    say "skipping web assets (ACTEDIT_SKIP_NPM=1)"
else
    ASSET_HASH=$(hash_of package-lock.json scripts/setup.sh)
    if [ -e "$VENDOR/.stamp-$ASSET_HASH" ]; then
        say "web assets present in $VENDOR"
    else
        if ! command -v npm >/dev/null 2>&1; then
            if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
                say "apt-get install npm"
                DEBIAN_FRONTEND=noninteractive apt-get update -qq
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
            else
                echo "setup: npm not found; install Node.js 18+ with npm, then re-run scripts/setup.sh" >&2
                exit 1
            fi
        fi
        if [ ! -e "node_modules/.stamp-$ASSET_HASH" ]; then
            say "npm ci (MathJax, RequireJS, @jupyter-widgets/html-manager)"
            npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
            touch "node_modules/.stamp-$ASSET_HASH"
        fi
        say "copying web assets into $VENDOR"
        rm -rf "$VENDOR"
        mkdir -p "$VENDOR/mathjax" "$VENDOR/requirejs" "$VENDOR/html-manager"
        cp -R node_modules/mathjax/es5/. "$VENDOR/mathjax/"
        cp node_modules/mathjax/LICENSE "$VENDOR/mathjax/"
        cp node_modules/requirejs/require.js "$VENDOR/requirejs/"
        # embed-amd.js finds its fonts next to itself; the other bundles and source maps are not loaded.
        find node_modules/@jupyter-widgets/html-manager/dist -maxdepth 1 -type f \
            \( -name embed-amd.js -o -name '*.woff' -o -name '*.woff2' -o -name '*.ttf' \
               -o -name '*.eot' -o -name '*.svg' -o -name '*.LICENSE.txt' \) \
            -exec cp {} "$VENDOR/html-manager/" \;
        cp node_modules/@jupyter-widgets/html-manager/LICENSE* "$VENDOR/html-manager/" 2>/dev/null || true
        touch "$VENDOR/.stamp-$ASSET_HASH"
    fi
fi

say "done (activate with: source $VENV/bin/activate)"
