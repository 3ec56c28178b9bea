#!/usr/bin/env bash
# `make bundle`: Parley as a one-dir PyInstaller bundle in dist/parley (models not included:
# the first run offers them), a tarball of it, and a report of what takes the room.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('parley'))")
tarball="dist/parley-$version-linux-$(uname -m).tar.gz"
echo "bundle: building dist/parley (PyInstaller, ~2 min)"
.venv/bin/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
  packaging/parley.spec

# Debug information only: CTranslate2's extension carries 67 MB of it and libpython 17 MB.
# The auditwheel-repaired libraries in *.libs/ are left alone (stripping breaks their layout).
find dist/parley/_internal -name '*.so*' -type f -not -path '*.libs/*' -print0 |
  while IFS= read -r -d '' lib; do
    if readelf -S "$lib" 2>/dev/null | grep -q '\.debug_info'; then strip --strip-debug "$lib"; fi
  done

cp packaging/parley.desktop resources/parley.png dist/parley/
cp packaging/bundle-install.sh dist/parley/install.sh
mkdir -p dist/parley/service  # start at login / boot (docs/rockchip.md)
cp packaging/{install-service.sh,uninstall-service.sh,parley.service,parley-kiosk.desktop} \
  dist/parley/service/
packaging/source-stamp.sh > dist/parley/.source-stamp

echo "bundle: packing $tarball"
tar -C dist -czf "$tarball" parley
{
  echo "Parley $version bundle, $(uname -m), without models"
  echo "unpacked:   $(du -sh dist/parley | cut -f1)"
  echo "compressed: $(du -h "$tarball" | cut -f1) ($tarball)"
  echo "largest parts (unpacked):"
  du -s dist/parley/_internal/* | sort -rn | head -12 |
    awk '{ printf "  %6.1f MB  %s\n", $1 / 1024, substr($2, 23) }'
} | tee dist/parley-sizes.txt
