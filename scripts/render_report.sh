#!/usr/bin/env bash
# Make an HTML explanation report with `bert-lrp explain --html` and render it to PNG with
# headless chromium (Debian package `chromium`; installed with apt-get if missing and we are root).
#
#   scripts/render_report.sh OUT.png [bert-lrp explain options] [TEXT...]
#
# Writes OUT.html (the report) and OUT.png (the screenshot). Without TEXT a sample review is used.
# Environment: WINDOW_SIZE (default 1200,1600), CHROMIUM (default: chromium from PATH).
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
png=$(realpath -m "$1")
shift
html="${png%.png}.html"
[[ "$html" == "$png" ]] && html="$png.html"

args=("$@")
has_text=0
for a in "${args[@]}"; do
    [[ "$a" != -* ]] && has_text=1
done
if [[ ${#args[@]} -eq 0 || $has_text -eq 0 ]]; then
    args+=(--methods "lrp,gi,gs,lat,rollout"
           "it 's a charming and often affecting journey , though the ending is a <b>bit</b> flat .")
fi

if command -v bert-lrp >/dev/null 2>&1; then
    bert-lrp explain --quiet --html "$html" "${args[@]}"
else
    python -m bert_lrp.cli explain --quiet --html "$html" "${args[@]}"
fi
echo "HTML report: $html"

browser=${CHROMIUM:-}
if [[ -z "$browser" ]]; then
    browser=$(command -v chromium || command -v chromium-browser || true)
fi
if [[ -z "$browser" ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "chromium is missing: apt-get install -y chromium" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >&2
        browser=$(command -v chromium)
    else
        echo "chromium is missing; install it (apt-get install -y chromium) or set CHROMIUM=/path/to/browser" >&2
        exit 1
    fi
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
timeout 180 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
    --user-data-dir="$profile" --screenshot="$png" --window-size="${WINDOW_SIZE:-1200,1600}" \
    "file://$(realpath "$html")" 2> >(grep -v -E 'dbus|Fontconfig|sandbox|gpu|GPU|viz|ERROR:.*(bus|crashpad)' >&2 || true)
if [[ ! -s "$png" ]]; then
    echo "chromium wrote no screenshot to $png" >&2
    exit 1
fi
echo "PNG: $png"
