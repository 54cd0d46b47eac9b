#!/usr/bin/env bash
# Builds a minimal Debian + Node.js base image with no container registry:
# debootstrap a root filesystem from the Debian mirror apt already uses,
# then `docker import` it. The agent Dockerfile takes the result as BASE_IMAGE.
#
#   sandbox-images/offline-base.sh [TAG]      (default TAG: clawbar-base:offline)
#
# Needs root, debootstrap and a running Docker engine. Set DEBIAN_MIRROR to
# override the mirror, DEBIAN_SUITE to override the release (default: bookworm).
set -euo pipefail

tag="${1:-clawbar-base:offline}"
suite="${DEBIAN_SUITE:-bookworm}"

step() { printf '[offline-base] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "offline-base: debootstrap needs root; run it with sudo" >&2
  exit 1
fi
for tool in debootstrap docker tar; do
  command -v "$tool" >/dev/null || { echo "offline-base: $tool is not installed (apt-get install -y debootstrap docker.io)" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "offline-base: the Docker engine is not answering; start dockerd first" >&2; exit 1; }

# Use the mirror this machine's apt is configured with, so an air-gapped host
# with a local mirror works unchanged.
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | head -n1 | awk '{print $2}' || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
fi

rootfs=$(mktemp -d /tmp/clawbar-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

step "debootstrap $suite from $mirror (minbase + nodejs); this takes a few minutes"
debootstrap --variant=minbase --include=nodejs,ca-certificates "$suite" "$rootfs" "$mirror" \
  | while IFS= read -r line; do case "$line" in I:\ Retrieving*|I:\ Validating*) ;; *) step "$line" ;; esac; done

# Trim what a container never needs: apt lists, docs, man pages and locales.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*

node_version=$(chroot "$rootfs" node --version)
step "node $node_version in the root filesystem"

step "importing as $tag"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["node"]' \
  - "$tag" >/dev/null
step "done: $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
