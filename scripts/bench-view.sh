#!/usr/bin/env bash
# The gallery's benchmark: the generated site (200 list pages x 20 images: 4,000 images by
# default), served by nginx on 127.0.0.1 and crawled once; then `imgcrawl view` on the crawl, and
# the time to open a page of the grid as a browser does (the HTML, then its 60 thumbnails over 6
# connections at once): first while the thumbnails are made, then again from the cache, for the
# first page and a page further on. Prints a table of wall milliseconds (median of RUNS, 5).
#
#   scripts/bench-view.sh               4,000 images
#   PAGES=2000 scripts/bench-view.sh    40,000 images
#
# Needs nginx and curl; installs nginx from Debian packages when missing (as root). Everything it
# starts listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

pages=${PAGES:-200}
runs=${RUNS:-5}
command -v nginx >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
imgcrawl=$PWD/target/release/imgcrawl
work=$(mktemp -d /var/tmp/imgcrawl-view.XXXXXX)
nginx_pid=""
view_pid=""
cleanup() {
    [ -n "$view_pid" ] && kill "$view_pid" 2>/dev/null || true
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$imgcrawl" sample-site --write "$work/site" --pages "$pages" -q >&2
chmod -R a+rX "$work"
# shellcheck source=scripts/serve-site.sh
source scripts/serve-site.sh
serve_site "$work" off
"$imgcrawl" crawl -q -o "$work/out" --max-depth 1 "http://127.0.0.1:$port/list/1.html" \
    $(seq 2 "$pages" | sed "s#.*#http://127.0.0.1:$port/list/&.html#") >/dev/null 2>&1 || true
images=$(wc -l < "$work/out/manifest.jsonl")

# Opens grid page $1 like a browser: the HTML, then every thumbnail it shows, 6 at a time.
open_page() {
    local p=$1 start end
    start=$(date +%s%N)
    curl -s "http://$addr/?p=$p" -o "$work/page.html"
    grep -o 'src="/thumb/[0-9]*"' "$work/page.html" \
        | sed "s#src=\"\(.*\)\"#url = \"http://$addr\1\"\noutput = \"/dev/null\"#" > "$work/thumbs.txt"
    curl -s --no-progress-meter --parallel --parallel-max 6 --config "$work/thumbs.txt"
    end=$(date +%s%N)
    echo $(( (end - start) / 1000000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

declare -A result
for run in $(seq 1 "$runs"); do
    rm -rf "$work/out/.imgcrawl/thumbs"
    "$imgcrawl" view "$work/out" --addr 127.0.0.1:0 > "$work/view.log" 2>&1 &
    view_pid=$!
    for _ in $(seq 1 100); do grep -q "serving" "$work/view.log" 2>/dev/null && break; sleep 0.05; done
    addr=$(grep -o 'http://[0-9.:]*' "$work/view.log" | head -1 | sed 's#http://##')
    for p in 1 40; do
        result[first-$p]+="$(open_page "$p") "
        result[cached-$p]+="$(open_page "$p") "
    done
    kill "$view_pid"; wait "$view_pid" 2>/dev/null || true
    view_pid=""
done

echo "gallery of $images images (60 a page), $runs runs, median wall ms to open a page and its thumbnails"
printf "%-28s %8s\n" "open" "ms"
for p in 1 40; do
    printf "%-28s %8s\n" "page $p, thumbnails made" "$(echo "${result[first-$p]}" | tr ' ' '\n' | grep . | median)"
    printf "%-28s %8s\n" "page $p, from the cache" "$(echo "${result[cached-$p]}" | tr ' ' '\n' | grep . | median)"
done
