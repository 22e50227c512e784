#!/bin/sh
# Regenerates tests/fixtures/nist/*.json: the outputs of NIST's SP 800-90B reference tool
# (SP800-90B_EntropyAssessment: `ea_non_iid`, `ea_iid` and `ea_restart`) on the seeded data sets
# and restart matrices of tests/assess.rs.
#
#   scripts/assess-reference.sh /path/to/SP800-90B_EntropyAssessment [KINDS]
#
# KINDS (default "non-iid iid restart") selects which tools to run. The tool is not built in CI:
# the fixtures are committed, each with the command line, the tool's version and git commit, and
# the SHA-256 of the file it assessed (which tests/assess.rs checks against its own generated
# data). `ea_iid` and `ea_restart` put some of their figures only in their text output (the
# chi-square statistics, the unpermuted permutation-test statistics, X_cutoff and X_max), so
# those fixtures also carry that text, as `stdout` lines. Building the tool needs, on Debian:
# g++ make libbz2-dev libdivsufsort-dev libjsoncpp-dev libssl-dev libmpfr-dev libgmp-dev.
set -eu

ref="${1:?usage: $0 PATH/TO/SP800-90B_EntropyAssessment [KINDS]}"
ref="$(cd "$ref" && pwd)"
kinds="${2:-non-iid iid restart}"
cd "$(dirname "$0")/.."
out="$PWD/tests/fixtures/nist"

for t in non_iid iid restart; do
    [ -x "$ref/cpp/ea_$t" ] || make -C "$ref/cpp" "$t"
done
commit="$(git -C "$ref" rev-parse HEAD)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
QEAAS_ASSESS_OUT="$work" cargo test --locked --test assess -- --ignored --exact write_datasets \
    --nocapture | grep -E '^(non-iid|iid|restart) [a-z0-9-]+ [0-9]( [0-9.]+)?$' > "$work/list"

# record TOOL NAME: the tool's JSON (and text output, if any) as the fixture NAME.json.
record() {
    python3 - "$work/$2.out.json" "$work/$2.stdout" "$out/$2.json" "$commit" \
        "$("$ref/cpp/$1" --version | head -1)" "$ref/cpp/$1" "$1" <<'PY'
import json, os, sys
src, text, dst, commit, version, tool, name = sys.argv[1:]
d = json.load(open(src))
d["commandline"] = d["commandline"].replace(tool, name)
d["toolCommit"] = commit
d["toolVersionLine"] = version
d["producedBy"] = "scripts/assess-reference.sh"
if os.path.exists(text):
    d["stdout"] = open(text).read().splitlines()
json.dump(d, open(dst, "w"), indent=1, sort_keys=True)
open(dst, "a").write("\n")
PY
}

mkdir -p "$out"
while read -r kind name bits h_i; do
    case " $kinds " in *" $kind "*) ;; *) continue ;; esac
    echo "$kind: $name ($bits bits${h_i:+, H_I = $h_i})" >&2
    # Relative file names, so the recorded command lines do not name this machine's paths.
    case "$kind" in
    non-iid)
        (cd "$work" && "$ref/cpp/ea_non_iid" -i -a -q -o "$name.out.json" "$name.bin" "$bits" \
            >/dev/null)
        record ea_non_iid "$name"
        ;;
    iid)
        # -v -v: the statistics themselves, printed in full, besides the verdicts in the JSON.
        (cd "$work" && "$ref/cpp/ea_iid" -i -a -v -v -o "$name.out.json" "$name.bin" "$bits" \
            >"$name.stdout")
        record ea_iid "$name"
        ;;
    restart)
        # Exits non-zero when the sanity check or the validation fails; the JSON says which.
        (cd "$work" && "$ref/cpp/ea_restart" -n -o "$name.out.json" "$name.bin" "$bits" "$h_i" \
            >"$name.stdout") || true
        record ea_restart "$name"
        ;;
    esac
done < "$work/list"
echo "fixtures written to $out" >&2
