#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson install step: puts the default configuration at DEST unless a file is already there,
# so that re-running `meson install` never overwrites an edited configuration.
#   install-config.sh SOURCE DEST
set -eu
dest="${DESTDIR:-}$2"
if [ -e "$dest" ]; then
    echo "Keeping $dest (the default is $1)"
    exit 0
fi
install -D -m 0644 "$1" "$dest"
echo "Installing $1 to $dest"
