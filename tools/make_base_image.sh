#!/usr/bin/env bash
# Make a local stand-in for the official python slim image, for machines that can't pull images.
#
# Usage: tools/make_base_image.sh [TAG]   (default: screening-base:bookworm)
#
# Debootstraps a minimal Debian bookworm with Debian's python3 (3.11, as requires-python asks),
# python3-venv and ca-certificates, and imports it as TAG. Idempotent: does nothing when TAG
# exists, so CI pays the few minutes once per machine. Needs root, debootstrap and a running
# Docker engine. The mirror is the one apt uses here (override with DEBIAN_MIRROR).
set -euo pipefail

tag="${1:-screening-base:bookworm}"
suite=bookworm

if docker image inspect "$tag" > /dev/null 2>&1; then
    echo "base image $tag exists; nothing to do"
    exit 0
fi

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    # The archive apt already uses for bookworm, whatever name this machine's sources give it.
    # shellcheck disable=SC2016 # $(REPO_URI) is apt's placeholder, not a shell expansion.
    mirror="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' \
        2> /dev/null | awk -v s="$suite" '$2 == s { print $1; exit }' || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

work="$(mktemp -d)"
rootfs="$work/rootfs"
clean_up() {
    # debootstrap mounts /proc and /sys inside the tree; should it stop halfway, unmount them
    # before deleting, and never let rm cross into a mounted file system.
    awk -v r="$rootfs/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mount; do umount -l "$mount" || true; done
    rm -rf --one-file-system "$work"
}
trap clean_up EXIT

echo "debootstrap $suite from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror"

# Trust the CA certificates this machine added locally (a TLS-inspecting egress proxy, say), so
# pip inside `docker build` reaches the package index the way the host does. On a machine
# without local CAs this adds nothing.
if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates > /dev/null
fi

# What the image doesn't need: package lists, caches, documentation.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/*.log "$rootfs"/tmp/*

tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $suite minbase + python3, python3-venv, ca-certificates" \
    - "$tag"
echo "base image $tag made"
