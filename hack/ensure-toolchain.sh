#!/usr/bin/env bash
# rust-toolchain.toml pins 1.95.0. Machines of this kind ship that release as rustup's "stable" and
# cannot download toolchains; if rustup does not know the name "1.95.0", link it to stable when stable
# is that release, so cargo works offline. Changes nothing otherwise.
set -euo pipefail
command -v rustup >/dev/null || exit 0
want=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
rustup toolchain list | grep -q "^$want" && exit 0
stable=$(rustup toolchain list | awk '/^stable/{print $1; exit}')
[ -n "$stable" ] || exit 0
if rustc +"$stable" --version | grep -q "^rustc $want "; then
  dir=$(dirname "$(dirname "$(rustup which --toolchain "$stable" rustc)")")
  rustup toolchain link "$want" "$dir"
  echo "linked toolchain $want -> $dir"
fi
