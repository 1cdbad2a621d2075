#!/usr/bin/env bash
# Renders a cellflux-client report.html in headless Chromium and saves a screenshot to look at.
#
#   scripts/check_report.sh [REPORT.html] [SCREENSHOT.png]
#
# Without REPORT.html it makes one: it runs the client's screen test against the fake service
# (real BBBC047 control site + real L1000 column, plus bank-control rows) with TMPDIR pointed at a
# scratch folder and uses the report that test leaves there. Build dir: $CELLFLUX_BUILD_DIR or
# build/. Needs Debian's `chromium` (apt-get install -y chromium). Checks that the page is
# self-contained (no http(s) or file references besides data: URIs) before rendering.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${CELLFLUX_BUILD_DIR:-build}"
report="${1:-}"
shot="${2:-/tmp/cellflux_report.png}"

if [[ -z "$report" ]]; then
  scratch="$(mktemp -d)"
  TMPDIR="$scratch" CELLFLUX_BUILD_DIR="$build_dir" "$build_dir/tests/client/screen_test" \
    --gtest_filter='ScreenTest.ReportShowsControlAndGeneratedPanels' >/dev/null
  report="$(ls "$scratch"/cf_client_report_*/out/report.html | head -1)"
fi
[[ -f "$report" ]] || { echo "no report at $report" >&2; exit 1; }

# Self-contained: every src/href is a data: URI or an in-page anchor.
if grep -oE "(src|href)=['\"][^'\"#][^'\"]*" "$report" | grep -vE "=['\"]data:" | head -1 | grep -q .; then
  echo "report references external files:" >&2
  grep -oE "(src|href)=['\"][^'\"#][^'\"]*" "$report" | grep -vE "=['\"]data:" | head -5 >&2
  exit 1
fi

command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install -y chromium)" >&2; exit 1; }
profile="$(mktemp -d)"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --screenshot="$shot" --window-size=1280,2000 \
  "file://$(realpath "$report")" >/dev/null 2>&1
rm -rf "$profile"
[[ -s "$shot" ]] || { echo "chromium wrote no screenshot" >&2; exit 1; }
echo "report:     $report"
echo "screenshot: $shot"
