#!/usr/bin/env bash
# Sets up contactcenter on a Debian/Ubuntu machine and starts the desk. Safe to run again.
#   ./setup.sh               set up, then run the desk (contactcenter run) until Ctrl-C
#   ./setup.sh --setup-only  set up and stop there (what CI runs)
#   ./setup.sh --no-model    do not try to download the Mandarin speech model
set -euo pipefail
cd "$(dirname "$0")"

SETUP_ONLY=0
FETCH_MODEL=1
for arg in "$@"; do
  case "$arg" in
    --setup-only) SETUP_ONLY=1 ;;
    --no-model) FETCH_MODEL=0 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }

# Debian packages: the SIP registrar and test peers (SIPp, baresip), PostgreSQL for the tests, PortAudio for
# headsets, and PulseAudio with its ALSA plugin (the tests run the headset on its null sinks). Chromium, its WebDriver
# and CJK fonts for the reviewer console's browser tests.
DEBIAN_PACKAGES=(kamailio kamailio-tls-modules sip-tester baresip-core espeak-ng postgresql libportaudio2 libasound2-plugins pulseaudio
  pulseaudio-utils python3-venv chromium chromium-driver fonts-noto-cjk)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The Debian packages start their services; the desk and the tests start their own on loopback.
  for service in kamailio postgresql; do
    $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || $SUDO service "$service" stop >/dev/null 2>&1 || true
  done
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  step "creating the virtual environment .venv"
  "$PYTHON" -m venv .venv
fi

step "installing contactcenter and its first-party plugins"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
for plugin in plugins/*/; do  # each through its entry point, as a third-party plugin would be installed
  .venv/bin/python -m pip install --quiet -e "$plugin"
done

step "preparing the call store"
.venv/bin/contactcenter db upgrade

step "prompts (stand-ins spoken by espeak-ng where no recording exists yet)"
.venv/bin/contactcenter prompts build

if [ "$FETCH_MODEL" -eq 1 ]; then
  step "speech model"
  if ! .venv/bin/contactcenter models fetch; then
    echo "warning: the Mandarin speech model could not be fetched (no internet?)." >&2
    echo "         The desk runs without live transcription; fetch it later with: .venv/bin/contactcenter models fetch" >&2
  fi
fi

if [ "$SETUP_ONLY" -eq 1 ]; then
  step "set-up done"
  exit 0
fi

step "starting the desk (Ctrl-C stops)"
exec .venv/bin/contactcenter run
