#!/usr/bin/env bash
# Debian packages the tests and benches use, installed where they are missing:
#   dicom3tools  dciodvfy validates the DICOM Secondary Captures and Structured Reports (tests/test_reports.py)
#   xvfb + xcb   a real X screen for the viewer's screenshots (bench/screenshot.py; ../shared/RECIPES.md)
#   orthanc + orthanc-dicomweb   a real DICOMweb archive for the archive tests (tests/archive; ../shared/RECIPES.md)
# Needs root (CI runs as root); elsewhere it says what to install and goes on.
set -euo pipefail
packages=(dicom3tools xvfb imagemagick libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
          libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
          libegl1 libgl1 libfontconfig1 libdbus-1-3 orthanc orthanc-dicomweb)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-packages: not root or no apt-get; install by hand: ${missing[*]}" >&2
    exit 0
fi
echo "system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
