# Sourced by hack/test.sh and hack/reliability.sh (needs ROOT and CARGO_TARGET_DIR).
#
# Cargo keys the workspace's own crates by their path inside the workspace, not by the clone's
# absolute path: a target dir last used by a clone elsewhere counts as fresh here and hands out
# test binaries with the other clone's paths compiled in (env!("CARGO_MANIFEST_DIR"), fixtures,
# binaries). When the clone differs from the last one, rebuild the workspace's own crates (the
# dependencies stay cached).
mkdir -p "$CARGO_TARGET_DIR"
last_root=$(cat "$CARGO_TARGET_DIR/.clone-root" 2>/dev/null || true)
if [ "$last_root" != "$ROOT" ]; then
  if [ -d "$CARGO_TARGET_DIR/debug" ]; then
    echo "target dir last used by ${last_root:-an unknown clone}: rebuilding the workspace crates"
    mapfile -t members < <(cargo metadata --no-deps --format-version 1 --locked \
      | python3 -c 'import json, sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
    cargo clean --locked $(printf -- '-p %s ' "${members[@]}") >/dev/null 2>&1
  fi
  printf '%s\n' "$ROOT" > "$CARGO_TARGET_DIR/.clone-root"
fi
