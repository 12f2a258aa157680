#!/usr/bin/env bash
# Sluice's main job on a default that needs no outside service: back up a
# sample directory into a local restic-format repository, list it, restore
# it, and compare. Everything happens in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release -q -p sluice-mover
mover="$CARGO_TARGET_DIR/release/sluice-mover"

work=$(mktemp -d -t sluice-quickstart-XXXXXX)
trap 'rm -rf "$work"' EXIT
export RESTIC_REPOSITORY="$work/repo" RESTIC_PASSWORD="quickstart"

echo "==> sample data in $work/data"
mkdir -p "$work/data/docs" "$work/data/db"
for i in $(seq 1 200); do echo "document $i: $(date -u)" > "$work/data/docs/doc-$i.txt"; done
head -c $((32 << 20)) /dev/urandom > "$work/data/db/table.bin"
ln -s docs/doc-1.txt "$work/data/latest-doc"

echo "==> sluice-mover init"
"$mover" init
echo "==> sluice-mover backup . (twice: the second reads nothing unchanged)"
(cd "$work/data" && "$mover" backup . && "$mover" backup .)
echo "==> sluice-mover snapshots"
"$mover" snapshots
echo "==> sluice-mover restore latest --verify"
"$mover" restore latest --target "$work/restored" --verify
diff -r "$work/data" "$work/restored" && echo "==> restored tree is identical to the source"
restic=$(command -v "$HOME/.cache/sluice/bin/restic" restic 2>/dev/null | head -n1 || true)
if [ -n "$restic" ]; then
  echo "==> restic check --read-data on the same repository ($("$restic" version | cut -d' ' -f1-2))"
  "$restic" check --read-data -q --no-cache && echo "restic: no errors were found"
fi
echo
echo "Explore: sluice-mover --help; RESTIC_REPOSITORY and RESTIC_PASSWORD work as with restic."
