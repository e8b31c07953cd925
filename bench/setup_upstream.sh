#!/usr/bin/env bash
# Install the upstream Ephys Link server (PyPI ephys-link 2.3.6) into bench/.venv-upstream,
# a venv of its own (git-ignored) so that its pins never touch the project's .venv.
#
#   bench/setup_upstream.sh            # idempotent: does nothing when already installed
#   PYTHON=python3.12 bench/setup_upstream.sh
#
# Two workarounds, both needed on this machine and harmless elsewhere:
# - ephys-link pins sensapex==1.504.1, which exists only as a source build that downloads a
#   binary at build time; every package is installed with --no-deps from the fully pinned
#   bench/upstream-requirements.txt, which carries the sensapex 1.504.3 wheel instead.
# - ephys-link uses typing.override (Python 3.12+); on 3.11 a sitecustomize.py in the venv
#   aliases it from typing_extensions.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-upstream"
reqs="$here/upstream-requirements.txt"
stamp="$venv/.bench-installed"
python="${PYTHON:-python3}"

want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/python" -c 'import ephys_link.back_end.server' 2>/dev/null; then
    echo "upstream ephys-link already installed in $venv"
    exit 0
fi

command -v "$python" >/dev/null \
    || { echo "setup_upstream: no $python on PATH (set PYTHON=...)" >&2; exit 1; }
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "setup_upstream: $python is older than 3.10, ephys-link needs 3.10+" >&2; exit 1; }

rm -f "$stamp"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$reqs"

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$site/sitecustomize.py" <<'PY'
# Written by bench/setup_upstream.sh: ephys-link imports typing.override (Python 3.12+).
import typing

if not hasattr(typing, "override"):
    import typing_extensions

    typing.override = typing_extensions.override
PY

"$venv/bin/python" -c 'import ephys_link.back_end.server'
echo "$want" > "$stamp"
echo "upstream ephys-link installed in $venv"
