#!/usr/bin/env bash
# The project's test command: bash scripts/test.sh [pytest args...]
#
# From a fresh clone on Debian it installs what a headless napari viewer needs (Xvfb, Mesa and
# the X/xcb libraries PyQt6 loads; only when missing, only as root), creates .venv, installs
# torch==2.13.0 (CPU build) BEFORE the package so pip never pulls a CUDA build, then
# `pip install -e ".[qt,test]"`, and runs ruff, ruff format --check, lint-imports and pytest under
# Xvfb. Extra arguments go to pytest. Exits non-zero if any step fails or pytest collects no test.
#
# Environment: PYTHON (interpreter for the venv, default python3), VENV (default .venv),
# FANET_SKIP_APT=1 (never call apt-get), FANET_FORCE_INSTALL=1 (re-run pip even if up to date).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_PIN="torch==2.13.0"
APT_PACKAGES=(
    xvfb xauth
    libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri
    libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
    libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0
    libxcb-cursor0 # Qt >= 6.5's xcb platform plugin will not load without it
    libdbus-1-3 libfontconfig1
)

SECONDS=0
section() { printf '\n==== %s  [t=%ss] ====\n' "$*" "$SECONDS"; }
die() {
    printf 'test.sh: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
section "System packages (Xvfb, Mesa, X/xcb libraries for Qt)"
pkg_missing() { # prints the packages of "$@" that dpkg does not list as installed
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            printf '%s\n' "$p"
    done
}
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "not a Debian system: skipping apt (install Xvfb and Mesa yourself)"
else
    wanted=("${APT_PACKAGES[@]}")
    # Debian's own python3 needs python3-venv for `python3 -m venv`.
    if ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
        wanted+=(python3-venv)
    fi
    mapfile -t missing < <(pkg_missing "${wanted[@]}")
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all present"
    elif [ "${FANET_SKIP_APT:-0}" = 1 ]; then
        echo "FANET_SKIP_APT=1: not installing ${missing[*]}"
    elif [ "$(id -u)" -ne 0 ]; then
        echo "not root: not installing ${missing[*]}" >&2
        echo "  run: sudo apt-get install -y ${missing[*]}" >&2
    else
        echo "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null ||
            die "apt-get install failed"
    fi
fi

# ---------------------------------------------------------------------------------------------
section "Python environment ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV with $PYTHON -m venv"
fi
PY="$VENV/bin/python"
"$PY" --version

# pip runs only when pyproject.toml changed since the last successful install (or on demand).
stamp="$VENV/.napari-fanet-install-stamp"
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) $TORCH_PIN"
if [ "${FANET_FORCE_INSTALL:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; then
    echo "dependencies up to date (pyproject.toml unchanged; FANET_FORCE_INSTALL=1 to reinstall)"
else
    # torch first: the package's own torch range would otherwise let pip choose a CUDA build.
    "$PY" -m pip install --no-input "$TORCH_PIN" </dev/null || die "pip install $TORCH_PIN failed"
    "$PY" -m pip install --no-input -e ".[qt,test]" </dev/null ||
        die 'pip install -e ".[qt,test]" failed'
    printf '%s\n' "$want_stamp" >"$stamp"
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda:", torch.version.cuda)'

# ---------------------------------------------------------------------------------------------
failed=()
run_step() { # run_step NAME CMD...: runs CMD, records NAME on failure
    local name="$1"
    shift
    section "$name"
    echo "+ $*"
    "$@"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "---- $name FAILED (exit $rc)"
        failed+=("$name")
    fi
    return 0
}

lint_paths=()
for d in src tests benchmarks; do
    [ -d "$d" ] && lint_paths+=("$d")
done

run_step "ruff check" "$VENV/bin/ruff" check "${lint_paths[@]}"
run_step "ruff format --check" "$VENV/bin/ruff" format --check "${lint_paths[@]}"
run_step "lint-imports" "$VENV/bin/lint-imports"

# ---------------------------------------------------------------------------------------------
# napari's vispy canvas needs a real X server with GL (Mesa llvmpipe under Xvfb).
pytest_cmd=("$PY" -m pytest "$@")
if command -v xvfb-run >/dev/null 2>&1; then
    pytest_cmd=(xvfb-run -a -s "-screen 0 1280x1024x24" "${pytest_cmd[@]}")
    pytest_name="pytest (under xvfb-run)"
elif [ -n "${DISPLAY:-}" ]; then
    pytest_name="pytest (DISPLAY=$DISPLAY)"
else
    echo "WARNING: no xvfb-run and no DISPLAY: using QT_QPA_PLATFORM=offscreen;" \
        "viewer tests may fail without a GL context" >&2
    export QT_QPA_PLATFORM=offscreen
    pytest_name="pytest (QT_QPA_PLATFORM=offscreen)"
fi
section "$pytest_name"
echo "+ ${pytest_cmd[*]}"
"${pytest_cmd[@]}" </dev/null
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "---- pytest collected no tests (exit 5): counted as a failure"
    failed+=("pytest (no tests collected)")
elif [ "$rc" -ne 0 ]; then
    failed+=("pytest (exit $rc)")
fi

if [ "${#failed[@]}" -ne 0 ]; then
    printf '\ntest.sh: FAILED after %ss: %s\n' "$SECONDS" "$(IFS=,; echo "${failed[*]}")" >&2
    exit 1
fi
# On success pytest's summary line stays the last line of the output.
exit 0
