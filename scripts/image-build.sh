#!/usr/bin/env bash
# Builds Sluice's container image with no registry and no base image (none can be pulled
# here): buildah from scratch (storage driver vfs, storage under the output's folder, so
# nothing is left in the machine's), the `sluice` binary plus every shared library it
# links and the dynamic loader, entrypoint `sluice` with default arguments `queue-proxy`
# (Knative runs config-deployment's queue-sidecar-image with no command or args; the
# activator and autoscaler Deployments give `args: [activator]` / `[autoscaler]`), user
# 65532 (nonroot, like Knative's images), committed to an OCI archive.
#   scripts/image-build.sh [SLUICE_BINARY] [OUT.tar]
# Prints the archive's path. The archive loads with `podman load`, `skopeo copy
# oci-archive:... docker://REGISTRY/sluice:TAG` or `ctr images import`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sluice=$(realpath "${1:-$root/build/src/cli/sluice}")
out=$(realpath -m "${2:-$root/build/image/sluice.tar}")
if [[ ! -x "$sluice" ]]; then
  echo "image-build: $sluice is not an executable (build first: cmake --build build)" >&2
  exit 1
fi
if ! command -v buildah >/dev/null; then
  echo "image-build: buildah is not installed (apt-get install buildah)" >&2
  exit 1
fi
work=$(dirname "$out")/buildah
mkdir -p "$work"
B=(buildah --root "$work/root" --runroot "$work/run" --storage-driver vfs)
ctr=$("${B[@]}" from --name "sluice-image-$$" scratch)
trap '"${B[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$("${B[@]}" mount "$ctr")
install -D -m 0755 "$sluice" "$mnt/usr/local/bin/sluice"
strip --strip-debug "$mnt/usr/local/bin/sluice"  # the build keeps its symbols; the image need not
# Every library the binary loads, at the path the loader looks for it, and the loader.
while read -r lib; do
  install -D -m 0755 "$(realpath "$lib")" "$mnt$lib"
done < <(ldd "$sluice" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
mkdir -p "$mnt/etc" "$mnt/tmp" "$mnt/var/run/secrets/kubernetes.io/serviceaccount"
chmod 1777 "$mnt/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$mnt/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$mnt/etc/group"
version=$("$sluice" version | awk '{print $2}')
"${B[@]}" unmount "$ctr" >/dev/null
"${B[@]}" config --entrypoint '["/usr/local/bin/sluice"]' --cmd '["queue-proxy"]' --user 65532:65532 \
  --label org.opencontainers.image.title=sluice \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.description="Sluice: queue-proxy, activator and autoscaler for Knative Serving 1.18" \
  "$ctr"
rm -f "$out"
"${B[@]}" commit --quiet "$ctr" "oci-archive:$out" >/dev/null
echo "$out"
