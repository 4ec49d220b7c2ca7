#!/usr/bin/env bash
# Installs the system services the test suite talks to for real: mosquitto (MQTT publishing and
# Home Assistant discovery), PostgreSQL (the scale-out history store), Prometheus (scraping the
# gateway), and Chromium with its driver (the dashboard's browser tests). Debian packages; needs
# root, as CI has. Packages already present are not reinstalled, so a second run costs ~1 s.
# The tests start and stop these servers themselves on loopback; nothing is enabled as a service.
set -euo pipefail
packages=(mosquitto postgresql chromium chromium-driver prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${missing[*]}; run this script as root (or install them) first" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts services on install where an init system runs; the tests want them stopped.
for svc in mosquitto postgresql prometheus; do
  command -v service >/dev/null 2>&1 && service "$svc" stop >/dev/null 2>&1 || true
done
