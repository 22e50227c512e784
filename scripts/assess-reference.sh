#!/bin/sh
# Regenerates tests/fixtures/nist/*.json: the outputs of NIST's SP 800-90B reference tool
# (SP800-90B_EntropyAssessment, `ea_non_iid`) on the seeded data sets of tests/assess.rs.
#
#   scripts/assess-reference.sh /path/to/SP800-90B_EntropyAssessment
#
# The tool is not built in CI: the fixtures are committed, each with the command line, the tool's
# version and git commit, and the SHA-256 of the file it assessed (which tests/assess.rs checks
# against its own generated data). Building the tool needs, on Debian: g++ make libbz2-dev
# libdivsufsort-dev libjsoncpp-dev libssl-dev libmpfr-dev libgmp-dev.
set -eu

ref="${1:?usage: $0 PATH/TO/SP800-90B_EntropyAssessment}"
ref="$(cd "$ref" && pwd)"
cd "$(dirname "$0")/.."
out="$PWD/tests/fixtures/nist"

[ -x "$ref/cpp/ea_non_iid" ] || make -C "$ref/cpp" non_iid
commit="$(git -C "$ref" rev-parse HEAD)"
version="$("$ref/cpp/ea_non_iid" --version | head -1)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
QEAAS_ASSESS_OUT="$work" cargo test --locked --test assess -- --ignored --exact write_datasets \
    --nocapture | grep -E '^[a-z0-9-]+ [0-9]$' > "$work/list"

mkdir -p "$out"
while read -r name bits; do
    echo "ea_non_iid: $name ($bits bits)" >&2
    # Relative file name, so the recorded command line does not name this machine's paths.
    (cd "$work" && "$ref/cpp/ea_non_iid" -i -a -q -o "$name.out.json" "$name.bin" "$bits" >/dev/null)
    python3 - "$work/$name.out.json" "$out/$name.json" "$commit" "$version" "$ref/cpp/ea_non_iid" <<'PY'
import json, sys
src, dst, commit, version, tool = sys.argv[1:]
d = json.load(open(src))
d["commandline"] = d["commandline"].replace(tool, "ea_non_iid")
d["toolCommit"] = commit
d["toolVersionLine"] = version
d["producedBy"] = "scripts/assess-reference.sh"
json.dump(d, open(dst, "w"), indent=1, sort_keys=True)
open(dst, "a").write("\n")
PY
done < "$work/list"
echo "fixtures written to $out" >&2
