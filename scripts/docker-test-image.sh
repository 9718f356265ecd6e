#!/usr/bin/env bash
# Builds the local image the Docker executor's tests run, `swarm-test/busybox:latest`: a root file
# system holding only Debian's static busybox and its applet links, imported with `docker import`
# (no registry is reachable and the engine starts with no images). Fast when the image exists.
# Usage: scripts/docker-test-image.sh [--force]   (DOCKER_HOST is honoured)
set -euo pipefail

image=swarm-test/busybox:latest

if ! command -v docker >/dev/null 2>&1; then
    echo "docker-test-image: the docker client is missing (Debian: apt-get install docker.io)" >&2
    exit 1
fi
if [[ "${1:-}" != "--force" ]] && docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi

busybox=/bin/busybox
if [[ ! -x $busybox ]]; then
    echo "docker-test-image: installing busybox-static"
    if ! apt-get install -y busybox-static >/dev/null 2>&1; then
        apt-get update >/dev/null
        apt-get install -y busybox-static >/dev/null
    fi
fi
# Debian's `busybox` package (dynamically linked) would not run in an empty root file system.
if ldd "$busybox" >/dev/null 2>&1; then
    echo "docker-test-image: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,etc,tmp,root,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [[ $applet == busybox ]] && continue
    ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . |
    docker import \
        --change 'ENV PATH=/bin' \
        --change 'CMD ["/bin/sh"]' \
        --change 'LABEL swarm-test.image=busybox' \
        - "$image" >/dev/null
echo "docker-test-image: built $image"
