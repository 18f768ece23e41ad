#!/bin/sh
# Packs src/ into dist/app.tar the naive way. The names are sorted and the owner is fixed,
# but the staged copies are new files, so their modes come from the umask, and each keeps
# the mtime of its source file, which is when the source was checked out.
set -eu
rm -rf stage dist
mkdir -p stage dist
for f in $(cd src && ls | LC_ALL=C sort); do
    cat "src/$f" > "stage/$f"
    touch -r "src/$f" "stage/$f"
done
cd stage
tar --format=gnu --sort=name --owner=0 --group=0 --numeric-owner \
    -cf ../dist/app.tar $(ls | LC_ALL=C sort)
