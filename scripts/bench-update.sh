#!/usr/bin/env bash
# imgcrawl's update benchmark: the generated gallery (2,000 list pages x 20 images by default),
# written to disk and served by nginx on 127.0.0.1 (which sends ETag and Last-Modified), crawled
# once by imgcrawl and by wget2 -r -N; then 1 % new images are added (20 to every 100th list page)
# and both run again: `imgcrawl crawl --update` against `wget2 -r -N`. Prints the wall time of each
# run, the requests nginx answered (and how many were 304), and what imgcrawl's update counted.
#
#   scripts/bench-update.sh                 2,000 list pages
#   PAGES=200 scripts/bench-update.sh       a smaller site
#   PROFILE=1 scripts/bench-update.sh       also records a perf profile of the imgcrawl update
#
# Needs nginx and wget2; installs them from Debian packages when missing (as root). Everything it
# starts listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

pages=${PAGES:-2000}
per_page=20

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wget2; then
    echo "installing nginx and wget2 from Debian packages..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wget2 >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wget2 >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
imgcrawl=$PWD/target/release/imgcrawl

work=$(mktemp -d /var/tmp/imgcrawl-update.XXXXXX)
nginx_pid=""
cleanup() {
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$imgcrawl" sample-site --write "$work/site" --pages "$pages" --per-page "$per_page" >&2
chmod -R a+rX "$work"

# shellcheck source=scripts/serve-site.sh
source scripts/serve-site.sh
serve_site "$work" "$work/nginx/logs/access.log"

cat > "$work/bench.toml" <<EOF
page_template = "http://127.0.0.1:$port/list/{page}.html"
pages = [1, $pages]
[scope]
max_depth = 1
exclude = ["/index\\\\.html\$"]
EOF

log=$work/nginx/logs/access.log
results=$work/results
: > "$results"
# One timed run: "$1" names it, the rest is the command. Records wall seconds and the requests
# nginx answered during it (all, and 304s).
run() {
    local name=$1
    shift
    sync
    local lines start end
    lines=$(wc -l < "$log")
    start=$(date +%s.%N)
    "$@" > "$work/$name.log" 2>&1 || true
    end=$(date +%s.%N)
    sleep 0.2   # nginx writes its log as requests end
    local requests not_modified
    requests=$(tail -n +"$((lines + 1))" "$log" | wc -l)
    not_modified=$(tail -n +"$((lines + 1))" "$log" | grep -c '^304 ' || true)
    echo "$name $(echo "$end - $start" | bc -l) $requests $not_modified" >> "$results"
    echo "$name: $(echo "$end - $start" | bc -l) s, $requests requests ($not_modified answered 304)" >&2
}

url="http://127.0.0.1:$port/list/1.html"
run imgcrawl-first "$imgcrawl" crawl -q -c "$work/bench.toml" -o "$work/ic"
run wget2-first wget2 -r -l inf -q --max-threads=16 -P "$work/wg" "$url"

# 1 % new images: 20 more on every 100th list page, each a new PNG of its own (about 12 KB).
python3 - "$work/site" "$pages" "$per_page" <<'EOF'
import os, random, struct, sys, zlib
site, pages, per_page = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def png(seed, w=64, h=64):
    rnd = random.Random(seed)
    raw = b"".join(b"\0" + bytes(rnd.getrandbits(8) for _ in range(w * 3)) for _ in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

added = 0
for p in range(100, pages + 1, 100):
    path = os.path.join(site, "list", f"{p}.html")
    html = open(path, encoding="utf-8").read()
    items = []
    for k in range(per_page):
        name = f"new-{p}-{k}.png"
        open(os.path.join(site, "img", name), "wb").write(png(p * 1000 + k))
        items.append(f'<li class="item"><img src="/img/{name}" alt="new {p} {k}"></li>')
        added += 1
    html = html.replace("</ul>", "\n".join(items) + "\n</ul>", 1)
    open(path, "w", encoding="utf-8").write(html)
print(f"added {added} images to {pages // 100} list pages", file=sys.stderr)
EOF
chmod -R a+rX "$work/site"

if [ -n "${PROFILE:-}" ]; then
    command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null
    run imgcrawl-update perf record -g -F 999 -o "$work/perf.data" -- \
        "$imgcrawl" crawl -q -c "$work/bench.toml" -o "$work/ic" --update
    echo "== perf profile of the update: CPU by thread" >&2
    { perf report -i "$work/perf.data" --no-children --sort comm -g none --stdio 2>/dev/null \
        | grep '%' | head -8 >&2; } || true
    echo "== top functions (self time)" >&2
    { perf report -i "$work/perf.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null \
        | grep '%' | head -40 >&2; } || true
else
    run imgcrawl-update "$imgcrawl" crawl -q -c "$work/bench.toml" -o "$work/ic" --update
fi
run wget2-update wget2 -r -l inf -N -q --max-threads=16 -P "$work/wg" "$url"

python3 - "$results" "$work/ic/stats.json" <<'EOF'
import json, sys
rows = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1]) if l.strip()}
print("run               wall s  requests  of them 304")
for name in ["imgcrawl-first", "wget2-first", "imgcrawl-update", "wget2-update"]:
    wall, req, nm = rows[name]
    print(f"{name:<16} {float(wall):7.2f} {int(req):9,d} {int(nm):12,d}")
s = json.load(open(sys.argv[2]))
keys = ["pages_unchanged", "pages_changed", "pages_fetched", "images_new", "images_unchanged"]
print("imgcrawl update: " + ", ".join(f"{k} {s.get(k)}" for k in keys))
iu, wu = float(rows["imgcrawl-update"][0]), float(rows["wget2-update"][0])
ifirst = float(rows["imgcrawl-first"][0])
print(f"imgcrawl update / first crawl: {iu / ifirst:.2f} of the time; wget2 -N update / imgcrawl update: x{wu / iu:.2f}")
EOF
