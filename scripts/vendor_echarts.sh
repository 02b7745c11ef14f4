#!/usr/bin/env bash
# Vendor Apache ECharts into the package: the dashboard loads nothing from a CDN at run time.
# Fetches the pinned version from the npm registry (npm pack) and keeps dist/echarts.min.js
# as bot/web/static/echarts-<version>.min.js. To upgrade: change VERSION, run this script,
# update ECHARTS in bot/web/texts.py, delete the old file, check the pages (tests/test_web_browser.py).
set -euo pipefail
VERSION="${1:-5.6.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "echarts@${VERSION}" >/dev/null)
tar -xzf "$work/echarts-${VERSION}.tgz" -C "$work" package/dist/echarts.min.js package/LICENSE
cp "$work/package/dist/echarts.min.js" "$root/bot/web/static/echarts-${VERSION}.min.js"
cp "$work/package/LICENSE" "$root/bot/web/static/ECHARTS-LICENSE.txt"
sha256sum "$root/bot/web/static/echarts-${VERSION}.min.js"
