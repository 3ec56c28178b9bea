#!/usr/bin/env bash
# Undoes packaging/install-service.sh for the current user: stops and disables the systemd
# user unit, removes it and the desktop autostart entry, and reloads systemd. Whatever is
# already gone is skipped, so it is safe to run again. Your own drop-ins
# (~/.config/systemd/user/parley.service.d/) are left alone.
set -euo pipefail

config="${XDG_CONFIG_HOME:-$HOME/.config}"
unit="$config/systemd/user/parley.service"
entry="$config/autostart/parley-kiosk.desktop"

# The unit: stopped and disabled while systemd still knows it, then removed, with any
# enable link left behind (say, by a unit file deleted by hand).
if [ -e "$unit" ] && systemctl --user show-environment >/dev/null 2>&1; then
  systemctl --user disable --now parley.service >/dev/null 2>&1 || true
fi
if [ -e "$unit" ] || [ -n "$(find "$config/systemd/user" -name parley.service -type l 2>/dev/null)" ]; then
  find "$config/systemd/user" -name parley.service -type l -delete
  rm -f "$unit"
  if systemctl --user show-environment >/dev/null 2>&1; then
    systemctl --user daemon-reload
    # Forget a failed state or a hit start limit, which would otherwise outlive the unit.
    systemctl --user reset-failed parley.service >/dev/null 2>&1 || true
  fi
  echo "uninstall-service: parley.service is stopped, disabled and removed"
fi

# The desktop entry. A Parley it started is still running in this session: its restart
# loop ends at logout, or quit it now.
if [ -e "$entry" ]; then
  rm -f "$entry"
  echo "uninstall-service: removed $entry; a Parley it started runs until you log out"
fi
