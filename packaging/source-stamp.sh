#!/usr/bin/env bash
# One hash of everything a bundle is built from, so a test can tell a stale bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
find app engines audio resources packaging pyproject.toml -type f \
  \( -name '*.py' -o -name '*.toml' -o -name '*.qss' -o -name '*.png' -o -name '*.spec' \
     -o -name '*.sh' -o -name '*.desktop' \) -not -path '*/__pycache__/*' -print0 |
  sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
