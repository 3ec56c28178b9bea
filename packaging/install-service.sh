#!/usr/bin/env bash
# Starts Parley at login and keeps it running, for the current user (no root needed).
#
#   packaging/install-service.sh               the kiosk window as a systemd user service
#   packaging/install-service.sh --headless    audio only, for a board with no display
#   packaging/install-service.sh --autostart   a desktop autostart entry instead, for a
#                                              session without a systemd user manager
# Options: --command 'ARGS' (Parley's arguments, instead of `run --kiosk`), --parley PATH
# (default: the bundle's parley when run from an unpacked bundle's service/ folder, else this
# checkout's .venv/bin/parley), --no-start (enable for the next login only).
#
# It writes packaging/parley.service (or parley-kiosk.desktop) with Parley's absolute path
# into ~/.config/systemd/user/ (or ~/.config/autostart/), then reloads systemd and enables
# and starts the unit. Running it again rewrites the same file: it is safe to repeat, and
# the way to change the command. packaging/uninstall-service.sh undoes it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
parley="$(dirname "$here")/.venv/bin/parley"
[ -f "$(dirname "$here")/parley" ] && parley="$(dirname "$here")/parley"  # a bundle
args="run --kiosk"
autostart=false
start=true

usage() { sed -n '2,15s/^# \{0,1\}//p' "$0"; exit "${1:-0}"; }
while (($#)); do
  case "$1" in
    --kiosk) args="run --kiosk" ;;
    --headless) args="run --headless" ;;
    --command) args="${2:?--command needs arguments}"; shift ;;
    --parley) parley="${2:?--parley needs a path}"; shift ;;
    --autostart) autostart=true ;;
    --no-start) start=false ;;
    -h|--help) usage ;;
    *) echo "install-service: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done

# The path and arguments go into a unit file and a desktop entry, each with its own quoting
# and % specifiers; rather than escape for both, refuse the few characters that need it.
parley="$(realpath -m "$parley")"
[ -x "$parley" ] || { echo "install-service: $parley is not an executable (run make setup, or pass --parley PATH)" >&2; exit 1; }
case "$parley $args" in
  *[\'\"\\\$\`%\&\|]*)
    echo "install-service: quotes, \\, \$, \`, %, & and | are not supported in the path or arguments" >&2
    exit 1 ;;
esac
# A headless command needs no display, wherever --headless came from.
case " $args " in *" --headless "*) headless=true ;; *) headless=false ;; esac
config="${XDG_CONFIG_HOME:-$HOME/.config}"

if $autostart; then
  # The desktop entry: the session runs it at login, with its display.
  mkdir -p "$config/autostart"
  sed -e "s|@PARLEY@|$parley|" -e "s|@ARGS@|$args|" "$here/parley-kiosk.desktop" \
    > "$config/autostart/parley-kiosk.desktop"
  echo "install-service: Parley will start at your next login ($config/autostart/parley-kiosk.desktop)"
  exit 0
fi

systemctl --user show-environment >/dev/null 2>&1 || {
  echo "install-service: no systemd user manager answers here (systemctl --user); use --autostart" >&2
  exit 1
}
unit_dir="$config/systemd/user"
mkdir -p "$unit_dir"
# The unit with this Parley's path and command. Headless needs no display, so it starts
# with the user's manager (default.target) instead of with a graphical session.
filters=(-e "s|^ExecStart=@PARLEY@ run --kiosk\$|ExecStart=\"$parley\" $args|")
if $headless; then
  filters+=(-e "s|^Description=.*|Description=Parley voice agent (headless)|"
            -e "/^After=graphical-session.target/d" -e "/^PartOf=graphical-session.target/d"
            -e "s|^WantedBy=graphical-session.target|WantedBy=default.target|")
fi
# A reinstall may change the target: drop the old links before writing the new unit.
systemctl --user disable parley.service >/dev/null 2>&1 || true
sed "${filters[@]}" "$here/parley.service" > "$unit_dir/parley.service.tmp"
mv "$unit_dir/parley.service.tmp" "$unit_dir/parley.service"
systemctl --user daemon-reload
systemctl --user enable parley.service

# Start it now where it can run now: a kiosk needs the graphical session. restart, not
# start, so that a running Parley takes a changed command; --no-block, as Parley is only
# ready once its models are loaded.
if $start && { $headless || systemctl --user is-active --quiet graphical-session.target; }; then
  systemctl --user restart --no-block parley.service
  echo "install-service: Parley is starting, and will at every login; journalctl --user -u parley shows its log"
elif $headless; then
  echo "install-service: Parley will start at your next login"
else
  echo "install-service: Parley will start when your desktop starts graphical-session.target" \
       "(GNOME and KDE Plasma do at login). If yours does not (XFCE, LXDE, labwc...), use" \
       "--autostart instead."
fi
