# Shared by the image build scripts: one-line progress reports on stderr.
# Sourced, not run.

build_started=$(date +%s)

# progress STEP MESSAGE: "[kernel 1m05s] compiling: 812 files"
progress() {
  local elapsed=$(( $(date +%s) - build_started ))
  printf '[%s %dm%02ds] %s\n' "$1" $((elapsed / 60)) $((elapsed % 60)) "$2" >&2
}

# fail STEP MESSAGE [HINT]: one clear line, an optional hint, exit 1.
fail() {
  printf '%s: %s\n' "$1" "$2" >&2
  [ -n "${3:-}" ] && printf 'Hint: %s\n' "$3" >&2
  exit 1
}

# watch_log STEP PID LOG PATTERN EXPECTED: while PID runs, report every 15 s how many
# lines of LOG match PATTERN (files compiled, files copied), as a share of EXPECTED.
watch_log() {
  local step=$1 pid=$2 log=$3 pattern=$4 expected=$5 done_count pct
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null || break
    done_count=$(grep -c -E "$pattern" "$log" 2>/dev/null || true)
    pct=$(( done_count * 100 / expected )); [ "$pct" -gt 99 ] && pct=99
    progress "$step" "$done_count files compiled (about ${pct}%)"
  done
}

# publish TMP OUT NAME...: moves a finished build (a directory holding NAME...) to OUT in one
# rename. OUT names its inputs' hash, so a build that ran at the same time and got there first
# made the same thing: its copy stays (it may be in use), and TMP goes. A leftover OUT without
# its NAMEs (a crash between two steps, long ago) is replaced.
publish() {
  local tmp=$1 out=$2 name
  shift 2
  for name in "$@"; do [ -e "$out/$name" ] || { rm -rf "$out"; break; }; done
  if mv -T "$tmp" "$out" 2>/dev/null; then return 0; fi
  rm -rf "$tmp"
}
