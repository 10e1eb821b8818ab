# shellcheck shell=bash
# Helpers shared by scripts/run.sh and scripts/test.sh: install what status-tracker needs
# from Debian's packages when it is missing.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "missing: $* - install it with your package manager" >&2
    return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    # Another apt may hold the lock for a while (unattended upgrades); wait for it.
    as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@"
}

# need_cmd COMMAND PACKAGE: install PACKAGE when COMMAND is not on PATH.
need_cmd() {
  command -v "$1" >/dev/null || { echo "installing $2 (for $1)" >&2; apt_install "$2"; }
}

need_cargo() {
  if ! command -v cargo >/dev/null; then
    echo "cargo (Rust) is needed: install it from https://rustup.rs and run this again" >&2
    exit 1
  fi
}
