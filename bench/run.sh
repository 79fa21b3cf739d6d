#!/usr/bin/env bash
# tilekit vs libvips `vips dzsave`, side by side, in one run.
#
# usage: bench/run.sh [-b TILEKIT] [-i IMAGES_DIR] [-o WORK_DIR] [-n RUNS] [-f IMAGE_REGEX]
#                     [-c FORMAT_REGEX] [-t TIMEOUT_S] [-W IDLE_WAIT_S] [-k] [-h]
#   -b TILEKIT      tilekit CLI binary (env TILEKIT). Default: build/examples/tilekit under
#                   the repo root; if that does not exist, the CLI is built with g++ into
#                   WORK_DIR/.build (command printed in the report; links -lpng -ljpeg too,
#                   which the PNG/JPEG row readers since 6e6f94a need).
#   -i IMAGES_DIR   input images, *.png and *.jpg (env IMAGES; default /work/images =
#                   ../shared/tools/make-test-images.sh output). If the directory does not
#                   exist or holds no images, test images are generated with
#                   `tilekit sample` into WORK_DIR/images (sizes: env SAMPLE_SIZES,
#                   default "4096x4096 5000x3001").
#   -o WORK_DIR     tile output, logs, results.tsv, report.md (env WORK; default
#                   /tmp/tilekit-bench). Tile trees are deleted after each (image, format).
#   -n RUNS         timed runs per tool per (image, format); the median is reported.
#                   Default: 3 for images up to 8192 px on the longer side, 1 above.
#   -f IMAGE_REGEX  only images whose label (e.g. map-4096-rgb-png) matches (grep -E)
#   -c FORMAT_REGEX only tile formats matching: png, jpg, webp, iiif (default all; iiif = the IIIF
#                   level-0 layout with JPEG Q85 tiles of 512 px against `vips dzsave --layout iiif3`)
#   -t TIMEOUT_S    per-run cap; a run over it is killed and reported (default 900)
#   -k              keep the last output tree of both tools per (image, format)
#   -W SECONDS      before each timed run wait up to SECONDS (default 60; 0 = off) for the
#                   machine to be idle (< 15% of all cores busy over 1 s); other processes'
#                   CPU time during each run is measured anyway (/proc/stat) and reported
#                   as "other CPU s", so contention from other users shows up in the table.
#   -T              TIFF input too: each PNG is also saved (vips tiffsave, compression env
#                   TIFF_COMPRESSION, default none) as a striped TIFF (<name>-strip.tif, vips'
#                   default strips) and a tiled one (<name>-tiled.tif, 256x256 tiles) under
#                   WORK_DIR/tiff-inputs, and those are benched as inputs like the PNG (tilekit
#                   needs its tiff part; `tilekit tile` reads the TIFF row by row). *.tif and
#                   *.tiff files in IMAGES_DIR are benched too, with or without -T.
#   env TILEKIT_ARGS  extra arguments appended to every `tilekit tile` command
#                     (e.g. "--threads 2"); default none (tilekit: one thread per core)
#
# Per (image, format) the two tools run interleaved: vips, tilekit, vips, tilekit, ...
# Each run is timed with GNU time (/usr/bin/time -f): wall, user+sys CPU, peak RSS (largest
# single process). The input is read once before the runs (warm page cache); the previous
# output tree is deleted (and `sync`ed) outside the timed region. After the runs: tile files
# (*.png / *.jpg only: .dzi, pyramid.json, vips-properties.xml excluded), their total bytes,
# levels, whether both tools wrote the same set of tile names, and pixel differences of a
# few sample tiles (vips subtract/abs/avg/max) as a sanity check on tilekit's output.
#
# Targets (PASS/FAIL per row): PNG tiles wall <= 0.5x vips, PNG tile bytes <= 0.9x vips,
# JPEG Q85 tiles wall <= 0.8x vips, WebP Q85 tiles wall <= 0.6x vips at tile bytes <= 1.0x vips
# (both at libwebp's quality 85; vips' webpsave effort 4 = libwebp method 4; tilekit's default
# method is 2, see bench/README.md). TIFF input (-T): tilekit/vips wall ratio no higher than the
# same tile format's ratio on the PNG it was made from.
# env WEBP_METHOD  tilekit's libwebp method for the WebP rows (--webp-method; default: the CLI's)
# IIIF rows have no target (reported side by side only);
# their tile names are compared without tilekit's full/ images (vips writes none), and the
# sample tiles are the first, middle and last of vips' tile names.
#
# Needs: bash, GNU time (Debian `time`), coreutils `timeout`, libvips-tools (vips,
# vipsheader), python3 (only to read tilekit's JSON), awk. g++ only if tilekit is built here.
# Exit status: 0 when every run succeeded (targets may still FAIL), 1 when a run failed,
# 2 on usage / setup errors.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
INVOCATION="bench/run.sh$(printf ' %q' "$@")"

TILEKIT=${TILEKIT:-}
IMAGES=${IMAGES:-/work/images}
WORK=${WORK:-/tmp/tilekit-bench}
RUNS=
IMG_RE=.
FMT_RE=.
TIMEOUT_S=900
KEEP=0
MAKE_TIFF=0
TIFF_COMPRESSION=${TIFF_COMPRESSION:-none}
IDLE_WAIT=60
SAMPLE_SIZES=${SAMPLE_SIZES:-"4096x4096 5000x3001"}
TILEKIT_ARGS=${TILEKIT_ARGS:-}
while getopts "b:i:o:n:f:c:t:kTW:h" opt; do
  case $opt in
    b) TILEKIT=$OPTARG ;; i) IMAGES=$OPTARG ;; o) WORK=$OPTARG ;; n) RUNS=$OPTARG ;;
    f) IMG_RE=$OPTARG ;; c) FMT_RE=$OPTARG ;; t) TIMEOUT_S=$OPTARG ;; k) KEEP=1 ;; T) MAKE_TIFF=1 ;; W) IDLE_WAIT=$OPTARG ;;
    h) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { echo "run.sh: unexpected argument '$1' (see -h)" >&2; exit 2; }
if [ -n "$RUNS" ] && ! [[ $RUNS =~ ^[1-9][0-9]*$ ]]; then echo "run.sh: -n expects a positive number" >&2; exit 2; fi

die() { echo "run.sh: $*" >&2; exit 2; }
GTIME=/usr/bin/time
[ -x "$GTIME" ] || die "need GNU time at /usr/bin/time (apt-get install time)"
command -v timeout >/dev/null || die "need coreutils timeout"
command -v vips >/dev/null && command -v vipsheader >/dev/null || die "need vips + vipsheader (apt-get install libvips-tools)"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3) || die "need python3"

mkdir -p "$WORK" || die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd)

# ---- tilekit binary -----------------------------------------------------------------------
BUILD_CMD=
TILEKIT_ORIGIN=
if [ -n "$TILEKIT" ]; then
  [ -x "$TILEKIT" ] || die "tilekit binary '$TILEKIT' is not executable"
  TILEKIT_ORIGIN="given (-b / TILEKIT)"
elif [ -x "$ROOT/build/examples/tilekit" ]; then
  TILEKIT=$ROOT/build/examples/tilekit
  TILEKIT_ORIGIN="default build/examples/tilekit"
else
  BUILD_DIR=$WORK/.build   # rebuilt on every invocation: the headers may have changed
  mkdir -p "$BUILD_DIR" || die "cannot create $BUILD_DIR"
  TILEKIT=$BUILD_DIR/tilekit
  BUILD_CMD="g++ -std=c++17 -O2 -DNDEBUG -I$ROOT/include -isystem /usr/include/stb $ROOT/examples/cli/tilekit_cli.cpp -o $TILEKIT -lstb -ldeflate -lturbojpeg -lpng -ljpeg -lwebp -lcrypto -lcurl -pthread"
  echo "# build/examples/tilekit not found; building: $BUILD_CMD" >&2
  # shellcheck disable=SC2086
  $BUILD_CMD || die "building tilekit failed"
  TILEKIT_ORIGIN="built by run.sh (build/examples/tilekit missing)"
fi
TILEKIT=$(cd "$(dirname "$TILEKIT")" && pwd)/$(basename "$TILEKIT")

# ---- images -------------------------------------------------------------------------------
shopt -s nullglob
list_images() { local f; for f in "$1"/*.png "$1"/*.jpg "$1"/*.tif "$1"/*.tiff; do [ -f "$f" ] && echo "$f"; done; }
IMAGE_NOTE="$IMAGES"
if [ -z "$(list_images "$IMAGES")" ]; then
  GEN=$WORK/images
  echo "# no images in '$IMAGES'; generating with 'tilekit sample' into $GEN ($SAMPLE_SIZES)" >&2
  mkdir -p "$GEN"
  for s in $SAMPLE_SIZES; do
    [ -f "$GEN/sample-$s.png" ] || "$TILEKIT" sample "$GEN/sample-$s.png" --size "$s" || die "tilekit sample $s failed"
  done
  IMAGES=$GEN
  IMAGE_NOTE="$GEN (generated by 'tilekit sample', sizes $SAMPLE_SIZES; '$IMAGE_NOTE' had no images)"
fi
# -T: striped and tiled TIFF copies of every PNG (made once; reused while the PNG is older).
TIFF_DIR=$WORK/tiff-inputs
if [ "$MAKE_TIFF" = 1 ]; then
  mkdir -p "$TIFF_DIR"
  for f in "$IMAGES"/*.png; do
    b=$(basename "$f" .png)
    for kind in strip tiled; do
      out=$TIFF_DIR/$b-$kind.tif
      [ "$out" -nt "$f" ] && continue
      opts=(--compression "$TIFF_COMPRESSION"); [ $kind = tiled ] && opts+=(--tile --tile-width 256 --tile-height 256)
      w=$(vipsheader -f width "$f") h=$(vipsheader -f height "$f") bands=$(vipsheader -f bands "$f")
      [ $((w * h * bands)) -gt 4000000000 ] && opts+=(--bigtiff)
      echo "# -T: vips tiffsave $f $out ${opts[*]}" >&2
      vips tiffsave "$f" "$out" "${opts[@]}" || die "vips tiffsave $f failed"
    done
  done
  IMAGE_NOTE="$IMAGE_NOTE, plus striped and tiled TIFF copies of each PNG in $TIFF_DIR (vips tiffsave --compression $TIFF_COMPRESSION; tiled: 256x256)"
fi
# order by pixel count (small first) so quick results come first: "pixels w h path"
mapfile -t IMAGE_LIST < <(
  while read -r f; do
    w=$(vipsheader -f width "$f" 2>/dev/null) || continue
    h=$(vipsheader -f height "$f" 2>/dev/null) || continue
    echo "$((w * h)) $w $h $f"
  done < <(list_images "$IMAGES"; [ "$MAKE_TIFF" = 1 ] && list_images "$TIFF_DIR") | sort -n -k1,1 -k4,4)
[ ${#IMAGE_LIST[@]} -gt 0 ] || die "no readable images in $IMAGES"

# ---- configurations -----------------------------------------------------------------------
# vips: output prefix {out} -> {out}.dzi + {out}_files/; tilekit: output directory {out}.
FORMATS=(png jpg webp)
FORMATS+=(iiif)   # IIIF level 0, JPEG Q85, 512 px tiles (both tools' IIIF default tile size)
vips_args() {  # IN OUT FORMAT
  case $3 in
    png) echo "dzsave|$1|$2|--tile-size|256|--overlap|0|--depth|onepixel|--suffix|.png" ;;
    jpg) echo "dzsave|$1|$2|--tile-size|256|--overlap|0|--depth|onepixel|--suffix|.jpg[Q=85]" ;;
    webp) echo "dzsave|$1|$2|--tile-size|256|--overlap|0|--depth|onepixel|--suffix|.webp[Q=85]" ;;
    iiif) echo "dzsave|$1|$2|--layout|iiif3|--tile-size|512|--suffix|.jpg[Q=85]" ;;
  esac
}
tilekit_args() {  # IN OUT FORMAT
  local extra=""
  [ -n "$TILEKIT_ARGS" ] && extra="|${TILEKIT_ARGS// /|}"
  case $3 in
    png) echo "tile|$1|$2|--tile-size|256|--overlap|0|--format|png$extra" ;;
    jpg) echo "tile|$1|$2|--tile-size|256|--overlap|0|--format|jpg|--quality|85$extra" ;;
    webp) echo "tile|$1|$2|--tile-size|256|--overlap|0|--format|webp|--quality|85${WEBP_METHOD:+|--webp-method|$WEBP_METHOD}$extra" ;;
    iiif) echo "tile|$1|$2|--layout|iiif|--tile-size|512|--format|jpg|--quality|85$extra" ;;
  esac
}
fmt_label() { case $1 in png) echo "PNG" ;; jpg) echo "JPEG Q85" ;; webp) echo "WebP Q85" ;; iiif) echo "IIIF JPEG Q85" ;; esac; }
tile_ext() { case $1 in iiif) echo jpg ;; *) echo "$1" ;; esac; }
shq() { if [[ $1 =~ ^[A-Za-z0-9_./=:,+@%{}-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi; }
show_cmd() {  # BIN ARGS_PIPE -> shell-quoted command line
  local IFS='|' x; local -a a; read -r -a a <<< "$2"
  shq "$1"; for x in "${a[@]}"; do printf ' '; shq "$x"; done; echo
}

# ---- helpers ------------------------------------------------------------------------------
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "NA"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
minv() { sort -g | head -1; }
maxv() { sort -g | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf "%.3f", a / b }'; }
fmt2() { awk -v a="$1" 'BEGIN { if (a == "NA") print "NA"; else printf "%.2f", a }'; }
fmt_r() { awk -v a="$1" 'BEGIN { if (a == "NA") print "NA"; else printf "%.2f", a }'; }
mb() { awk -v a="$1" 'BEGIN { if (a == "NA") print "NA"; else printf "%.2f", a / 1e6 }'; }
tile_root() {  # TOOL BASE [FORMAT] -> directory holding the level directories (IIIF: info.json)
  [ "${3:-}" = iiif ] && { echo "$2/$1/out"; return; }
  case $1 in vips) echo "$2/vips/out_files" ;; tilekit) echo "$2/tilekit/out/image_files" ;; esac
}
tile_files() { find "$1" -type f \( -name '*.png' -o -name '*.jpg' -o -name '*.webp' \) ! -name blank.png 2>/dev/null; }
count_levels() {  # IIIF: the scale factors info.json lists (vips < 8.17 leaves the last one out)
  if [ -f "$1/info.json" ]; then "$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["tiles"][0]["scaleFactors"]))' "$1/info.json"
  else find "$1" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' 2>/dev/null | wc -l; fi
}

# machine-wide busy jiffies (user+nice+system+irq+softirq+steal) and total jiffies
cpu_jiffies() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
# wait_idle: up to IDLE_WAIT s until < 15% of all cores are busy over 1 s; sets R_IDLE
wait_idle() {
  local t0=$SECONDS b0 t0j b1 t1j pct=0
  R_IDLE=idle
  [ "${IDLE_WAIT:-0}" -gt 0 ] || { R_IDLE=nowait; return 0; }
  while :; do
    read -r b0 t0j < <(cpu_jiffies); sleep 1; read -r b1 t1j < <(cpu_jiffies)
    pct=$(( (b1 - b0) * 100 / ( (t1j - t0j) > 0 ? (t1j - t0j) : 1 ) ))
    [ "$pct" -lt 15 ] && return 0
    if [ $((SECONDS - t0)) -ge "$IDLE_WAIT" ]; then R_IDLE="busy ${pct}% after ${IDLE_WAIT}s wait"; return 0; fi
  done
}

# run_once TOOL ARGS_PIPE OUTDIR_TO_CLEAN LOGPREFIX -> sets R_WALL R_CPU R_USER R_SYS R_RSS R_STATUS R_OTHER R_IDLE
run_once() {
  local tool=$1 argspec=$2 clean=$3 logp=$4 bin
  local IFS='|'; local -a a; read -r -a a <<< "$argspec"; IFS=$' \t\n'
  case $tool in vips) bin=vips ;; tilekit) bin=$TILEKIT ;; esac
  rm -rf "$clean"; mkdir -p "$clean"; sync   # outside the timed region
  wait_idle
  local jb0 jb1 _j
  read -r jb0 _j < <(cpu_jiffies)
  "$GTIME" -o "$logp.time" -f 'GTIME %e %U %S %M %x' timeout -s KILL "$TIMEOUT_S" "$bin" "${a[@]}" \
    > "$logp.stdout" 2> "$logp.stderr"
  read -r jb1 _j < <(cpu_jiffies)
  local line; line=$(grep '^GTIME ' "$logp.time" | tail -1)
  read -r _ R_WALL R_USER R_SYS R_RSS R_EXIT <<< "$line"
  R_CPU=$(awk -v u="${R_USER:-0}" -v s="${R_SYS:-0}" 'BEGIN { printf "%.2f", u + s }')
  # CPU seconds used by everything else on the machine while this run was timed
  R_OTHER=$(awk -v b=$((jb1 - jb0)) -v hz="$HZ" -v c="$R_CPU" 'BEGIN { o = b / hz - c; if (o < 0) o = 0; printf "%.2f", o }')
  if grep -q 'terminated by signal' "$logp.time"; then
    R_STATUS="signal($(grep -o 'signal [0-9]*' "$logp.time" | head -1))"
  elif [ "${R_EXIT:-1}" = 137 ]; then R_STATUS="TIMEOUT>${TIMEOUT_S}s"
  elif [ "${R_EXIT:-1}" != 0 ]; then R_STATUS="exit=${R_EXIT:-?}"
  else R_STATUS=ok
  fi
}

# tile_diff A B -> "mean/max" absolute per-band difference, or a reason
tile_diff() {
  local va=$1 tb=$2 ha hb t
  [ -f "$va" ] || { echo "vips tile missing"; return; }
  [ -f "$tb" ] || { echo "tilekit tile missing"; return; }
  ha=$(vipsheader "$va" 2>/dev/null | sed 's/^[^:]*: //' | cut -d, -f1,3)
  hb=$(vipsheader "$tb" 2>/dev/null | sed 's/^[^:]*: //' | cut -d, -f1,3)
  [ -n "$hb" ] || { echo "tilekit tile unreadable"; return; }
  if [ "$ha" != "$hb" ]; then echo "shape differs: vips '$ha' vs tilekit '$hb'"; return; fi
  t=$(mktemp -d "$WORK/.diff.XXXXXX")
  if vips subtract "$va" "$tb" "$t/d.v" 2>/dev/null && vips abs "$t/d.v" "$t/ad.v" 2>/dev/null; then
    printf '%s/%s\n' "$(vips avg "$t/ad.v" | awk '{printf "%.2f", $1}')" "$(vips max "$t/ad.v" | awk '{printf "%g", $1}')"
  else
    echo "diff failed"
  fi
  rm -rf "$t"
}

# ---- header -------------------------------------------------------------------------------
RES=$WORK/results.tsv
REPORT=$WORK/report.md
printf 'image\tformat\ttool\truns_ok\truns\twall_s_median\twall_s_min\twall_s_max\tcpu_s_median\tuser_s_median\tsys_s_median\tpeak_rss_mib_median\ttiles\ttile_bytes\tlevels\tstatus\tcommand\tother_cpu_s_max\tidle_notes\n' > "$RES"
CHECKS=$WORK/checks.tsv
printf 'image\tformat\ttiles_vips\ttiles_tilekit\tlevels_vips\tlevels_tilekit\tnames\tjson\tsample_diffs\n' > "$CHECKS"

CPU_MODEL=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
MEM_GIB=$(free -g 2>/dev/null | awk '/Mem:/ { print $2 }')
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
GIT_DIRTY=$(GIT_OPTIONAL_LOCKS=0 git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
MACHINE=(
  "- date: $(date -u +%FT%TZ)"
  "- nproc: $(nproc); RAM: ${MEM_GIB:-?} GiB; CPU: ${CPU_MODEL:-?}; $(uname -sr)"
  "- vips --version: $(vips --version)"
  "- VIPS_CONCURRENCY: ${VIPS_CONCURRENCY:-unset (libvips default = number of cores)}"
  "- tilekit: $TILEKIT ($TILEKIT_ORIGIN), sha256 $(sha256sum "$TILEKIT" | cut -c1-16), built $(date -u -r "$TILEKIT" +%FT%TZ); repo $ROOT at $GIT_REV, $GIT_DIRTY modified/untracked paths"
  "- compiler: $(g++ --version 2>/dev/null | head -1 || echo n/a)"
  "- images: $IMAGE_NOTE"
  "- work dir: $WORK"
)
echo "# tilekit vs vips dzsave"
printf '%s\n' "${MACHINE[@]}"
echo

FAILED=0
declare -a ROWS=()   # "img|fmt|runs" in run order

# ---- main loop ----------------------------------------------------------------------------
for entry in "${IMAGE_LIST[@]}"; do
  read -r _ W H IN <<< "$entry"
  base=$(basename "$IN"); img="${base%.*}-${base##*.}"
  echo "$img" | grep -Eq -- "$IMG_RE" || continue
  runs=$RUNS
  if [ -z "$runs" ]; then
    if [ "$W" -le 8192 ] && [ "$H" -le 8192 ]; then runs=3; else runs=1; fi
  fi
  cat "$IN" > /dev/null   # warm the page cache (read once before any timed run)
  for fmt in "${FORMATS[@]}"; do
    echo "$fmt" | grep -Eq -- "$FMT_RE" || continue
    d=$WORK/$img/$fmt
    rm -rf "$d"; mkdir -p "$d/vips" "$d/tilekit" "$d/logs"
    vspec=$(vips_args "$IN" "$d/vips/out" "$fmt")
    tspec=$(tilekit_args "$IN" "$d/tilekit/out" "$fmt")
    declare -A WALLS=() CPUS=() USERS=() SYSS=() RSSS=() STAT=() OKN=() OTHERS=() IDLES=()
    for tool in vips tilekit; do WALLS[$tool]=""; CPUS[$tool]=""; USERS[$tool]=""; SYSS[$tool]=""; RSSS[$tool]=""; STAT[$tool]=ok; OKN[$tool]=0; OTHERS[$tool]=""; IDLES[$tool]=""; done
    echo "## $img ($W x $H) $(fmt_label "$fmt") tiles, $runs run(s) per tool"
    for r in $(seq 1 "$runs"); do
      for tool in vips tilekit; do
        [ "${STAT[$tool]}" = ok ] || continue   # a failed tool is not rerun
        if [ $tool = vips ]; then spec=$vspec; clean=$d/vips; else spec=$tspec; clean=$d/tilekit; fi
        run_once "$tool" "$spec" "$clean" "$d/logs/$tool-$r"
        printf '  run %d %-7s wall %6ss cpu %6ss (user %s + sys %s) peak %5s MiB  other CPU %ss  %s  [%s]\n' "$r" "$tool" \
          "$R_WALL" "$R_CPU" "$R_USER" "$R_SYS" "$(( ${R_RSS:-0} / 1024 ))" "$R_OTHER" "$R_STATUS" "$R_IDLE"
        OTHERS[$tool]+="$R_OTHER "
        [ "$R_IDLE" = idle ] || [ "$R_IDLE" = nowait ] || IDLES[$tool]+="run $r: $R_IDLE; "
        if [ "$R_STATUS" = ok ]; then
          WALLS[$tool]+="$R_WALL "; CPUS[$tool]+="$R_CPU "; USERS[$tool]+="$R_USER "; SYSS[$tool]+="$R_SYS "
          RSSS[$tool]+="$(awk -v k="$R_RSS" 'BEGIN { printf "%.1f", k / 1024 }') "
          OKN[$tool]=$(( OKN[$tool] + 1 ))
        else
          STAT[$tool]=$R_STATUS; FAILED=1
          echo "  !! $tool run $r failed ($R_STATUS); stderr tail:"; tail -5 "$d/logs/$tool-$r.stderr" | sed 's/^/     /'
        fi
      done
    done
    # ---- per-tool summary (tile stats from the last run's output tree)
    for tool in vips tilekit; do
      root=$(tile_root "$tool" "$d" "$fmt")
      if [ "${STAT[$tool]}" = ok ]; then
        tiles=$(tile_files "$root" | wc -l)
        bytes=$(tile_files "$root" | xargs -r -d '\n' stat -c %s | awk '{ s += $1 } END { print s + 0 }')
        levels=$(count_levels "$root")
      else
        tiles=NA; bytes=NA; levels=NA
      fi
      wl() { printf '%s\n' ${WALLS[$tool]}; }
      if [ "${OKN[$tool]}" -gt 0 ]; then
        wmed=$(wl | median); wmin=$(wl | minv); wmax=$(wl | maxv)
        cmed=$(printf '%s\n' ${CPUS[$tool]} | median); umed=$(printf '%s\n' ${USERS[$tool]} | median)
        smed=$(printf '%s\n' ${SYSS[$tool]} | median); rmed=$(printf '%s\n' ${RSSS[$tool]} | median)
      else
        wmed=NA; wmin=NA; wmax=NA; cmed=NA; umed=NA; smed=NA; rmed=NA
      fi
      if [ $tool = vips ]; then cmdline=$(show_cmd vips "$vspec"); else cmdline=$(show_cmd "$TILEKIT" "$tspec"); fi
      omax=$(printf '%s\n' ${OTHERS[$tool]} | maxv); omax=${omax:-NA}
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$img" "$fmt" "$tool" \
        "${OKN[$tool]}" "$runs" "$wmed" "$wmin" "$wmax" "$cmed" "$umed" "$smed" "$rmed" "$tiles" "$bytes" \
        "$levels" "${STAT[$tool]}" "$cmdline" "$omax" "${IDLES[$tool]:-}" >> "$RES"
      printf '  %-7s median wall %ss (min %s, max %s) cpu %ss peak %s MiB  tiles %s  tile bytes %s  levels %s  [%s]\n' \
        "$tool" "$wmed" "$wmin" "$wmax" "$cmed" "$rmed" "$tiles" "$bytes" "$levels" "${STAT[$tool]}"
    done
    # ---- sanity checks on the last output trees
    vroot=$(tile_root vips "$d" "$fmt"); troot=$(tile_root tilekit "$d" "$fmt")
    names=NA; json=NA; diffs=NA
    if [ "${STAT[vips]}" = ok ] && [ "${STAT[tilekit]}" = ok ]; then
      (cd "$vroot" && tile_files . | sort) > "$d/names-vips.txt"
      (cd "$troot" && tile_files . | sort) > "$d/names-tilekit.txt"
      nfull=$(grep -c '^\./full/' "$d/names-tilekit.txt")
      nd=$(grep -v '^\./full/' "$d/names-tilekit.txt" | diff "$d/names-vips.txt" - | grep -c '^[<>]')
      if [ "$nd" = 0 ]; then names=same; else names="DIFFER ($nd names)"; fi
      [ "$nfull" = 0 ] || names="$names (+$nfull full/ by tilekit)"
      last=$(ls "$d/logs"/tilekit-*.stdout | sort -V | tail -1)
      json=$("$PY" - "$last" "$troot" <<'EOF'
import json, os, sys
try:
    m = json.load(open(sys.argv[1]))
except Exception as e:
    print("stdout not JSON (%s)" % type(e).__name__); sys.exit()
files = [os.path.join(dp, f) for dp, _, fs in os.walk(sys.argv[2]) for f in fs if f.endswith((".png", ".jpg", ".webp"))]
disk_n, disk_b = len(files), sum(os.path.getsize(f) for f in files)
n, b = m.get("tile_count"), m.get("total_bytes")
print("ok" if (n, b) == (disk_n, disk_b) else "MISMATCH json %s tiles/%s B vs disk %d/%d" % (n, b, disk_n, disk_b))
EOF
)
      # sample tiles: max level corner/middle/last, and the middle tile 1 and 3 levels down
      L=$(find "$vroot" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' -printf '%f\n' | sort -n | tail -1)
      samples=()
      [ "$fmt" = iiif ] && L=-9   # no level directories: first, middle and last of vips' names below
      for lv in "$L" "$((L - 1))" "$((L - 3))"; do
        [ "$lv" -ge 0 ] && [ -d "$vroot/$lv" ] || continue
        mc=$(find "$vroot/$lv" -maxdepth 1 -name "*_*.$fmt" -printf '%f\n' | cut -d_ -f1 | sort -n | tail -1)
        mr=$(find "$vroot/$lv" -maxdepth 1 -name "*_*.$fmt" -printf '%f\n' | cut -d_ -f2 | cut -d. -f1 | sort -n | tail -1)
        if [ "$lv" = "$L" ]; then
          samples+=("$lv/0_0" "$lv/$((mc / 2))_$((mr / 2))" "$lv/${mc}_${mr}")
        else
          samples+=("$lv/$((mc / 2))_$((mr / 2))")
        fi
      done
      if [ "$fmt" = iiif ]; then
        nv=$(wc -l < "$d/names-vips.txt")
        for k in 1 $(( (nv + 1) / 2 )) "$nv"; do
          s=$(sed -n "${k}p" "$d/names-vips.txt"); s=${s#./}; samples+=("${s%.jpg}")
        done
      fi
      diffs=""
      for s in "${samples[@]}"; do
        diffs+="$s:$(tile_diff "$vroot/$s.$(tile_ext "$fmt")" "$troot/$s.$(tile_ext "$fmt")") "
      done
      diffs=${diffs% }
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$img" "$fmt" \
      "$(awk -F'\t' -v i="$img" -v f="$fmt" '$1==i && $2==f && $3=="vips" {print $13}' "$RES")" \
      "$(awk -F'\t' -v i="$img" -v f="$fmt" '$1==i && $2==f && $3=="tilekit" {print $13}' "$RES")" \
      "$(awk -F'\t' -v i="$img" -v f="$fmt" '$1==i && $2==f && $3=="vips" {print $15}' "$RES")" \
      "$(awk -F'\t' -v i="$img" -v f="$fmt" '$1==i && $2==f && $3=="tilekit" {print $15}' "$RES")" \
      "$names" "$json" "$diffs" >> "$CHECKS"
    echo "  checks: tile names $names; tilekit JSON vs disk $json"
    echo "  sample tile |vips - tilekit| mean/max per band: $diffs"
    ROWS+=("$img|$fmt|$runs")
    [ "$KEEP" = 1 ] || rm -rf "$d/vips" "$d/tilekit"
    unset WALLS CPUS USERS SYSS RSSS STAT OKN OTHERS IDLES
  done
done

[ ${#ROWS[@]} -gt 0 ] || die "no image matched -f '$IMG_RE' / -c '$FMT_RE'"

# ---- report -------------------------------------------------------------------------------
field() {  # IMG FMT TOOL COLUMN_NUMBER
  awk -F'\t' -v i="$1" -v f="$2" -v t="$3" -v c="$4" '$1==i && $2==f && $3==t { print $c }' "$RES"
}
{
  echo "## Machine"
  printf '%s\n' "${MACHINE[@]}"
  echo
  echo "## Commands"
  echo "- invocation: \`$INVOCATION\`${TILEKIT_ARGS:+ (TILEKIT_ARGS=\"$TILEKIT_ARGS\")}"
  [ -n "$BUILD_CMD" ] && echo "- tilekit build: \`$BUILD_CMD\`"
  echo "- measurement: \`/usr/bin/time -f '%e %U %S %M %x' timeout -s KILL $TIMEOUT_S CMD\` per run;" \
       "input read once beforehand (cat > /dev/null); output tree deleted + sync before each run (untimed);" \
       "then up to ${IDLE_WAIT} s wait for an idle machine (-W);" \
       "runs interleaved vips, tilekit, vips, tilekit, ...; medians reported"
  for fmt in "${FORMATS[@]}"; do
    echo "$fmt" | grep -Eq -- "$FMT_RE" || continue
    echo "- $(fmt_label "$fmt") vips:    \`$(show_cmd vips "$(vips_args '{in}' '{out}' "$fmt")")\`"
    echo "- $(fmt_label "$fmt") tilekit: \`$(show_cmd "$TILEKIT" "$(tilekit_args '{in}' '{out}' "$fmt")")\`"
  done
  echo
  echo "## Results (median of runs; ratio = tilekit / vips)"
  echo
  echo "| image | format | runs | wall s vips | wall s tilekit | wall ratio | CPU s vips | CPU s tilekit | CPU ratio | peak RSS MiB vips | peak RSS MiB tilekit | RSS ratio | tile MB vips | tile MB tilekit | bytes ratio | tiles vips / tilekit | other CPU s (max) vips / tilekit | status |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for row in "${ROWS[@]}"; do
    IFS='|' read -r img fmt runs <<< "$row"
    vw=$(field "$img" "$fmt" vips 6); tw=$(field "$img" "$fmt" tilekit 6)
    vc=$(field "$img" "$fmt" vips 9); tc=$(field "$img" "$fmt" tilekit 9)
    vr=$(field "$img" "$fmt" vips 12); tr=$(field "$img" "$fmt" tilekit 12)
    vb=$(field "$img" "$fmt" vips 14); tb=$(field "$img" "$fmt" tilekit 14)
    vn=$(field "$img" "$fmt" vips 13); tn=$(field "$img" "$fmt" tilekit 13)
    vs=$(field "$img" "$fmt" vips 16); ts=$(field "$img" "$fmt" tilekit 16)
    vmin=$(field "$img" "$fmt" vips 7); vmax=$(field "$img" "$fmt" vips 8)
    tmin=$(field "$img" "$fmt" tilekit 7); tmax=$(field "$img" "$fmt" tilekit 8)
    span() { [ "$runs" -gt 1 ] && [ "$1" != NA ] && printf ' (%s-%s)' "$2" "$3"; }
    echo "| $img | $(fmt_label "$fmt") | $runs | $(fmt2 "$vw")$(span "$vw" "$vmin" "$vmax") | $(fmt2 "$tw")$(span "$tw" "$tmin" "$tmax") | $(fmt_r "$(ratio "$tw" "$vw")") | $(fmt2 "$vc") | $(fmt2 "$tc") | $(fmt_r "$(ratio "$tc" "$vc")") | $(fmt2 "$vr" | sed 's/\.[0-9]*$//') | $(fmt2 "$tr" | sed 's/\.[0-9]*$//') | $(fmt_r "$(ratio "$tr" "$vr")") | $(mb "$vb") | $(mb "$tb") | $(fmt_r "$(ratio "$tb" "$vb")") | $vn / $tn | $(field "$img" "$fmt" vips 18) / $(field "$img" "$fmt" tilekit 18) | vips $vs, tilekit $ts |"
  done
  echo
  echo "## Output checks (last run of each tool)"
  echo
  echo "Sample tiles: LEVEL/COL_ROW at the full-resolution level (first, middle, last tile) and the middle tile" \
       "1 and 3 levels down; value = mean/max absolute per-band pixel difference vips vs tilekit (0/0 = identical pixels)."
  echo
  echo "| image | format | levels vips / tilekit | tile names | tilekit JSON vs disk | sample tile diffs (mean/max) |"
  echo "|---|---|---|---|---|---|"
  tail -n +2 "$CHECKS" | while IFS=$'\t' read -r img fmt _ _ lvv lvt names json diffs; do
    echo "| $img | $(fmt_label "$fmt") | $lvv / $lvt | $names | $json | $diffs |"
  done
  echo
  echo "## Targets"
  echo
  echo "| image | format | target | vips | tilekit | ratio | limit | result |"
  echo "|---|---|---|---|---|---|---|---|"
  npass=0; nall=0
  for row in "${ROWS[@]}"; do
    IFS='|' read -r img fmt runs <<< "$row"
    if [[ $img =~ ^(.*)-(strip|tiled)-tif$ ]]; then
      # TIFF input: the wall ratio no higher than on the PNG this TIFF was made from.
      png_row="${BASH_REMATCH[1]}-png"
      png_ratio=$(ratio "$(field "$png_row" "$fmt" tilekit 6)" "$(field "$png_row" "$fmt" vips 6)")
      targets=("wall time (vs PNG input ratio)|6|$png_ratio|s")
    elif [ "$fmt" = png ]; then
      targets=("wall time|6|0.5|s" "tile bytes|14|0.9|MB")
    elif [ "$fmt" = webp ]; then
      targets=("wall time|6|0.6|s" "tile bytes|14|1.0|MB")
    elif [ "$fmt" = iiif ]; then
      continue   # no target: side by side only
    else
      targets=("wall time|6|0.8|s")
    fi
    for t in "${targets[@]}"; do
      IFS='|' read -r tname col limit unit <<< "$t"
      v=$(field "$img" "$fmt" vips "$col"); k=$(field "$img" "$fmt" tilekit "$col")
      rt=$(ratio "$k" "$v")
      if [ "$limit" = NA ]; then res="FAIL (no PNG row to compare with: run with the PNG too)"
      elif [ "$rt" = NA ]; then res="FAIL (no result: vips $(field "$img" "$fmt" vips 16), tilekit $(field "$img" "$fmt" tilekit 16))"
      elif awk -v r="$rt" -v l="$limit" 'BEGIN { exit !(r <= l) }'; then res=PASS; npass=$((npass + 1))
      else res=FAIL
      fi
      nall=$((nall + 1))
      if [ "$unit" = MB ]; then vv="$(mb "$v") MB"; kv="$(mb "$k") MB"; else vv="$(fmt2 "$v") s"; kv="$(fmt2 "$k") s"; fi
      vv=${vv/#NA */NA}; kv=${kv/#NA */NA}
      echo "| $img | $(fmt_label "$fmt") | $tname | $vv | $kv | $(fmt_r "$rt") | <= $limit | $res |"
    done
  done
  echo
  echo "Targets met: $npass of $nall."
  busy=$(awk -F'\t' 'NR > 1 && $19 != "" { print $1 " " $2 " " $3 ": " $19 }' "$RES")
  [ -z "$busy" ] || { echo; echo "Runs started on a busy machine (-W wait expired):"; echo "$busy" | sed 's/^/- /'; }
  [ "$FAILED" = 0 ] || echo "WARNING: at least one run failed; see the status column and $WORK/<image>/<format>/logs/."
  echo
  echo "Raw data: $RES, $CHECKS; logs under $WORK/<image>/<format>/logs/."
} > "$REPORT"
echo
cat "$REPORT"
exit $FAILED
