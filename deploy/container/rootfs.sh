#!/bin/sh
# Stages the image's file system in DIR/rootfs from a static xdsbridge binary:
#   rootfs.sh BINARY DIR
# Used by `make image` on the host and by Containerfile.multistage inside the Go image.
set -eu

bin=$1
root=$2/rootfs
here=$(dirname "$0")
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/local/bin/xdsbridge"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp "$here/passwd" "$here/group" "$root/etc/"
