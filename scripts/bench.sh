#!/usr/bin/env bash
# imgcrawl's benchmark: the same generated gallery, written to disk and served by nginx on
# 127.0.0.1, crawled by imgcrawl and by wget2 -r (16 threads) as the reference, alternately, several
# times. Prints a table of medians: wall seconds, pages/s, images/s, MB/s, CPU seconds and peak RSS
# (from /usr/bin/time -v), and the ratio imgcrawl / wget2.
#
#   scripts/bench.sh            200 list pages x 20 images (about 4,200 pages and 4,000 images)
#   scripts/bench.sh --large    2,000 list pages x 20 images (about 42,000 pages and 40,000 images)
#   scripts/bench.sh --heavy    parse-heavy: 100 list pages x 20 images, every page 100 KiB of
#                               markup; imgcrawl on 1 and on 2 worker threads (and wget2)
#   RUNS=5 scripts/bench.sh     more alternating runs (default 3)
#   PROFILE=1 scripts/bench.sh --heavy   also records a perf profile of one imgcrawl run
#   BASE=/path/to/imgcrawl scripts/bench.sh   also runs that build (say, the one before a change)
#                               as "base", alternating with this one, for a before/after table
#
# Needs nginx, wget2 and GNU time; installs them from Debian packages when missing (as root).
# Everything it starts listens on 127.0.0.1 and is stopped at the end; nginx runs with its own
# configuration in a temporary directory, never the system's.
set -euo pipefail
cd "$(dirname "$0")/.."

pages=200
per_page=20
page_kb=0
fs_size=1G
mode=default
runs=${RUNS:-3}
for arg in "$@"; do
    case $arg in
        --large) pages=2000; fs_size=6G; mode=large ;;
        --heavy) pages=100; page_kb=100; mode=heavy ;;
        *) echo "usage: scripts/bench.sh [--large | --heavy]" >&2; exit 2 ;;
    esac
done
# The imgcrawl configurations, as "name:VAR=value ..." (its environment); wget2 runs after them.
if [ "$mode" = heavy ]; then
    crawlers=("imgcrawl-1t:IMGCRAWL_THREADS=1" "imgcrawl-2t:IMGCRAWL_THREADS=2")
else
    crawlers=("imgcrawl:" "imgcrawl-16:IMGCRAWL_HTTP__PER_HOST_CONCURRENCY=16")
fi
if [ -n "${BASE:-}" ]; then
    crawlers=("base:" "${crawlers[@]}")
fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wget2 || [ ! -x /usr/bin/time ]; then
    echo "installing nginx, wget2 and time from Debian packages..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wget2 time >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wget2 time >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
imgcrawl=$PWD/target/release/imgcrawl

work=$(mktemp -d /var/tmp/imgcrawl-bench.XXXXXX)
nginx_pid=""
cleanup() {
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; fi
    unmount_all
    rm -rf "$work"
}
trap cleanup EXIT

"$imgcrawl" sample-site --write "$work/site" --pages "$pages" --per-page "$per_page" \
    --page-kb "$page_kb" >&2
chmod -R a+rX "$work"   # nginx's workers run as an unprivileged user

# shellcheck source=scripts/serve-site.sh
source scripts/serve-site.sh
serve_site "$work" off

cat > "$work/bench.toml" <<EOF
page_template = "http://127.0.0.1:$port/list/{page}.html"
pages = [1, $pages]
[scope]
max_depth = 1
exclude = ["/index\\\\.html\$"]
EOF

# One measured run: "$@" is the command; prints "wall cpu maxrss_kb". Dirty pages left by the
# previous run are written out first, so that no crawler pays for another's writes (imgcrawl
# syncs its files before recording them; wget2 does not sync at all).
measure() {
    local log=$work/time.log
    sync
    /usr/bin/time -v -o "$log" "$@" >"$work/last-run.log" 2>&1 || true
    local wall cpu_u cpu_s rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log")
    cpu_u=$(awk -F': ' '/User time/ {print $2}' "$log")
    cpu_s=$(awk -F': ' '/System time/ {print $2}' "$log")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    echo "$wall $(echo "$cpu_u + $cpu_s" | bc -l) $rss"
}

# Pages and images each crawler fetched, counted from what it wrote.
count_imgcrawl() { python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["pages_fetched"], s["images_saved"] + s["duplicates"] + s["images_failed"], s["bytes_saved"])' "$1/stats.json"; }
count_wget2() {
    local pages images bytes
    pages=$(find "$1" -name '*.html' | wc -l)
    images=$(find "$1" -name '*.png' -o -name '*.jpg' -o -name '*.gif' | wc -l)
    bytes=$(du -sb "$1" | cut -f1)
    echo "$pages $images $bytes"
}

# Each run writes to a fresh ext4 file system of its own (a sparse loop-mounted image), so that no run
# inherits another's dirty pages or recently freed inodes: on a shared file system those made the
# same crawl vary by a factor of two depending on what ran just before. Without root (or loop
# devices) the runs share $work, and the figures are noisier.
mounts=()
# Sets $out to a fresh directory for run $1.
fresh_dir() {
    local dir=$work/$1
    out=$dir
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
        truncate -s "$fs_size" "$dir.img"
        if mkfs.ext4 -q -F "$dir.img" && mount -o loop "$dir.img" "$dir" 2>/dev/null; then
            mounts+=("$dir")
        else
            echo "warning: cannot mount a fresh file system for $1; using $work" >&2
        fi
    fi
}
unmount_all() {
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
    mounts=()
}

results=$work/results
: > "$results"
for run in $(seq "$runs"); do
    # Each round starts with the next configuration, so that no build always goes first (on a
    # small machine, the first run of a round was seen to be ahead by several per cent).
    n=${#crawlers[@]}
    shift_by=$(( (run - 1) % n ))
    round=("${crawlers[@]:$shift_by}" "${crawlers[@]:0:$shift_by}")
    for c in "${round[@]}"; do
        name=${c%%:*}
        read -r -a vars <<< "${c#*:}"
        fresh_dir "$name-$run"
        bin=$imgcrawl
        [ "$name" = base ] && bin=$BASE
        read -r wall cpu rss < <(measure env "${vars[@]}" "$bin" crawl \
            -c "$work/bench.toml" -o "$out/out")
        read -r p i b < <(count_imgcrawl "$out/out")
        echo "$name $run $wall $cpu $rss $p $i $b" >> "$results"
        echo "run $run $name: ${wall}s, $p pages, $i images" >&2
    done
    fresh_dir "wget2-$run"
    read -r wall cpu rss < <(measure wget2 -r -l inf -q --max-threads=16 -P "$out/out" "http://127.0.0.1:$port/list/1.html")
    read -r p i b < <(count_wget2 "$out/out")
    unmount_all
    echo "wget2 $run $wall $cpu $rss $p $i $b" >> "$results"
    echo "run $run wget2: ${wall}s, $p pages, $i images" >&2
done

if [ -n "${PROFILE:-}" ]; then
    # One more run of the last imgcrawl configuration under perf: where the time goes.
    name=${crawlers[-1]%%:*}
    read -r -a vars <<< "${crawlers[-1]#*:}"
    fresh_dir "$name-profile"
    sync
    command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null
    env "${vars[@]}" perf record -g -F 999 -o "$work/perf.data" -- "$imgcrawl" crawl \
        -c "$work/bench.toml" -o "$out/out" >"$work/perf.log" 2>&1 || true  # exit 3: 3 broken images
    [ -s "$work/perf.data" ] || { echo "perf record failed:" >&2; tail -5 "$work/perf.log" >&2; }
    echo "== perf profile of $name: CPU by thread" >&2
    { perf report -i "$work/perf.data" --no-children --sort comm -g none --stdio 2>/dev/null \
        | grep '%' | head -8 >&2; } || true
    echo "== top functions (self time)" >&2
    { perf report -i "$work/perf.data" --no-children --sort dso,sym -g none --stdio 2>/dev/null \
        | grep '%' | head -40 >&2; } || true
    unmount_all
fi

python3 - "$results" "$pages" "$per_page" "$page_kb" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for name, _run, wall, cpu, rss, p, i, b in rows:
    wall, cpu, rss, p, i, b = float(wall), float(cpu), int(rss), int(p), int(i), int(b)
    by.setdefault(name, []).append(dict(wall=wall, cpu=cpu, rss=rss, pps=(p + i) / wall,
                                         ips=i / wall, mbs=b / wall / 1e6, p=p, i=i))
med = {n: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for n, runs in by.items()}
names = list(by)
extra = f", {sys.argv[4]} KiB of markup per page" if sys.argv[4] != "0" else ""
print(f"site: {sys.argv[2]} list pages x {sys.argv[3]} images{extra}, "
      f"{len(by['wget2'])} alternating runs, medians")
print(f"{'crawler':<12}{'wall s':>8}{'pages':>8}{'images':>8}{'pages+images/s':>16}{'images/s':>10}{'MB/s':>8}{'CPU s':>8}{'peak RSS':>10}")
for n in names:
    m = med[n]
    print(f"{n:<12}{m['wall']:>8.2f}{m['p']:>8.0f}{m['i']:>8.0f}{m['pps']:>16.0f}{m['ips']:>10.0f}"
          f"{m['mbs']:>8.1f}{m['cpu']:>8.2f}{m['rss'] / 1024:>8.1f}MB")
w = med["wget2"]
for n in names[:-1]:
    a = med[n]
    print(f"{n} / wget2: pages+images/s x{a['pps'] / w['pps']:.2f}, images/s x{a['ips'] / w['ips']:.2f}, "
          f"peak RSS x{a['rss'] / w['rss']:.2f}")
EOF
