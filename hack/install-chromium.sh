#!/usr/bin/env bash
# Installs Debian's chromium, the headless browser the HTML report tests
# (internal/htmlreport, cmd/kubectl-snoop, internal/collector) drive. Does
# nothing when it is already there. Needs root (apt-get).
#
# Usage: hack/install-chromium.sh
# Prints the browser's path on its last line.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-chromium.sh: $CHROMIUM is missing and installing it needs root (apt-get)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# fonts-liberation: a sans-serif face, so that screenshots have legible text.
	apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
fi
"$CHROMIUM" --version >&2
echo "$CHROMIUM"
