#!/usr/bin/env bash
# Runs the benchmarks and rewrites their sections of docs/benchmarks.md (between
# <!-- bench:NAME --> markers), recording the command and the machine.
#   scripts/bench.sh [NAME...]     NAME ∈ datastore ipam routes cluster (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(datastore ipam routes cluster)

machine() {
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))," \
       "$(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r), $(date -u +%Y-%m-%d)."
}

splice() { # name file
  python3 - "$1" "$2" <<'PY'
import sys, re, pathlib
name, body = sys.argv[1], pathlib.Path(sys.argv[2]).read_text()
doc = pathlib.Path("docs/benchmarks.md")
text = doc.read_text() if doc.exists() else "# Benchmarks\n"
start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
block = f"{start}\n{body.rstrip()}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + block + "\n"
doc.write_text(text)
PY
}

for n in "${names[@]}"; do
  out=$(mktemp)
  case "$n" in
    datastore)
      cmd="cargo bench -p calico-datastore --features test-util --bench datastore -- --ops 2000"
      BENCH_OUT="$out.table" $cmd
      { echo "Command: \`$cmd\` (or \`make bench\`)."; echo; machine; echo; cat "$out.table"; } > "$out"
      ;;
    ipam)
      cmd="cargo bench -p calico-ipam --bench ipam -- --ops 1000"
      BENCH_OUT="$out.table" $cmd
      { echo "Command: \`$cmd\` (or \`scripts/bench.sh ipam\`)."; echo; machine; echo; cat "$out.table"; } > "$out"
      ;;
    routes)
      cmd="cargo bench -p calico-dataplane --features test-util --bench routes -- --routes 5000 --rounds 7"
      cmd2="cargo bench -p calico-felix --bench felix_routes -- --blocks 5000 --rounds 5"
      BENCH_OUT="$out.table" $cmd
      BENCH_OUT="$out.table2" $cmd2
      { echo "Commands: \`$cmd\` and \`$cmd2\` (or \`scripts/bench.sh routes\`)."; echo; machine; echo
        cat "$out.table"; echo; cat "$out.table2"; } > "$out"
      rm -f "$out.table2"
      ;;
    cluster)
      cargo build --release -p calico-lab -p calico-cni -p calico-node
      cmd="cargo bench -p calico-node --bench cluster -- --singles 50 --bursts 3 --secs 5 --rounds 7 --idle 10"
      BENCH_OUT="$out.table" $cmd
      { echo "Command: \`$cmd\` after \`cargo build --release -p calico-lab -p calico-cni -p calico-node\` (or \`scripts/bench.sh cluster\`)."
        echo; machine; echo; cat "$out.table"; } > "$out"
      ;;
    cni)
      cmd="cargo bench -p calico-cni --bench cni -- --rounds 5"
      BENCH_OUT="$out.table" $cmd
      { echo "Command: \`$cmd\` (or \`scripts/bench.sh cni\`)."; echo; machine; echo; cat "$out.table"; } > "$out"
      ;;
    *) echo "unknown benchmark $n" >&2; exit 2 ;;
  esac
  splice "$n" "$out"
  rm -f "$out" "$out.table"
done
echo "docs/benchmarks.md updated"
