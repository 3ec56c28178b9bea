#!/bin/sh
# Adds this unpacked Parley bundle to your desktop: `parley` on your PATH (~/.local/bin), a menu
# entry and its icon. Run it again after moving the folder; `--remove` takes them away again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin="$HOME/.local/bin" apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
if [ "${1:-}" = --remove ]; then
  rm -f "$bin/parley" "$apps/parley.desktop" "$icons/parley.png"
  echo "Parley's menu entry and command are removed; delete $here to remove Parley itself."
  exit 0
fi
mkdir -p "$bin" "$apps" "$icons"
ln -sf "$here/parley" "$bin/parley"
cp "$here/parley.png" "$icons/parley.png"
sed "s|^Exec=parley|Exec=$here/parley|" "$here/parley.desktop" > "$apps/parley.desktop"
echo "Parley is in your applications menu, and \`parley\` runs it from a terminal"
case ":$PATH:" in *":$bin:"*) ;; *) echo "(add $bin to your PATH for the command)";; esac
