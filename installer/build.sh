#!/usr/bin/env bash
# Build the one-folder brainscan application (brainscan + brainscan-viewer) with PyInstaller.
#
#   installer/build.sh            -> installer/dist/brainscan/
#
# The build environment is installer/.venv-bundle (git-ignored): the base dependencies, the
# `desktop` extra and PyInstaller, nothing else (no torch: see installer/README.md). It is created
# on the first run and updated when pyproject.toml changes. build/ and dist/ are removed first, so
# running it twice gives the same result. PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=installer/.venv-bundle
PYINSTALLER_VERSION="${PYINSTALLER_VERSION:-6.22.3}"

if [ -x "$VENV/Scripts/python.exe" ]; then BIN="$VENV/Scripts"; else BIN="$VENV/bin"; fi  # Windows (Git Bash) or POSIX
if [ ! -x "$BIN/python" ] && [ ! -x "$BIN/python.exe" ]; then
    echo "build.sh: creating $VENV"
    "$PYTHON" -m venv "$VENV"
    if [ -x "$VENV/Scripts/python.exe" ]; then BIN="$VENV/Scripts"; else BIN="$VENV/bin"; fi
fi
STAMP="$VENV/.installed-$(cksum pyproject.toml | cut -d' ' -f1)-$PYINSTALLER_VERSION"
if [ ! -f "$STAMP" ]; then
    echo "build.sh: installing the base dependencies, the desktop extra and PyInstaller $PYINSTALLER_VERSION"
    "$BIN/python" -m pip install --quiet --upgrade pip
    "$BIN/python" -m pip install --quiet -e '.[desktop]' "pyinstaller==$PYINSTALLER_VERSION"
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi
# The guard of the spec's excludes, checked at the source: this environment must not hold torch or the GPL codec.
"$BIN/python" - <<'PY'
import importlib.util, sys
found = [m for m in ("torch", "timm", "triton", "libjpeg") if importlib.util.find_spec(m)]
if found:
    sys.exit(f"build.sh: the bundle environment holds {found}; remove them (the app must not ship them)")
PY

rm -rf installer/build installer/dist
started=$(date +%s)
"$BIN/python" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath installer/dist --workpath installer/build installer/brainscan.spec
echo "build.sh: built installer/dist/brainscan in $(( $(date +%s) - started )) s" \
     "($(du -sh installer/dist/brainscan | cut -f1))"
