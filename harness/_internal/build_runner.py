"""The build runner: the POSIX shell script every build runs (see `harness.build`), and the
idle script of a warm builder container (`harness.build_warm`)."""

from __future__ import annotations

SETUP_FAILED = 91
"""The runner's exit status when it could not set the build up."""
RUNNER_IDENTITY = "/cihub-etc"
"""Where a warm build's runner writes `passwd` and `group` (`CIHUB_PASSWD`, `CIHUB_GROUP`),
which the lab builder images' /etc/passwd and /etc/group link to (see `harness.build_warm`)."""
NOT_REUSABLE = 92
"""A warm runner's exit status when the build finished but the container could not be emptied
for another, or was not to be (`REUSE=0`); a warm runner exits 0 only after a complete reset."""
SEND_FAILED = 93
"""A warm runner's exit status when its output could not be sent on its stdout (fd 3)."""
ABANDONED = 95
"""The runner's exit status when its watchdog stopped the build (the driver's lease expired)."""
RUNNER_SHELL = "/usr/lib/cihub/sh"
"""The lab builder images' execute-only copy of /bin/sh (mode 0111, root's) a warm runner is
exec'd from: the kernel makes a process that execs a file it can't read non-dumpable, so no
process of the build (same uid, no CAP_SYS_PTRACE) can ptrace the runner or open its
/proc/<pid>/mem to make it skip the reset and exit 0 (see `harness.build_warm`)."""
UNTRACEABLE = "runner-untraceable"
"""A warm runner's first stderr line when the build's processes can't trace it (else
`runner-traceable`), said before any of them exists."""

RUNNER = r"""
# cihub build runner: sets up, builds and collects, as the build user (as root only for the
# opt-in disorderfs variation, which then drops to the build user with setpriv).
# Its inputs come as environment variables (no copy into the container before it starts).
export LC_ALL=C  # names are bytes: find, sort and the globs' regexes treat them as such
# Every file the runner makes is new (its folders start empty: a fresh tmpfs, or a reset one),
# so this gives them mode 0644 without a chmod (each process a build pays costs ~5 ms here).
# The build sets its own umask (build.sh).
umask 022
printf '%s' "$CIHUB_CONFIG" > /cihub/config || exit 90
printf '%s' "$CIHUB_BUILD_ENV" > /cihub/env
printf '%s' "$CIHUB_BUILD_SCRIPT" > /cihub/build.sh
PASSWD=$CIHUB_PASSWD GROUP=$CIHUB_GROUP
unset CIHUB_CONFIG CIHUB_BUILD_ENV CIHUB_BUILD_SCRIPT CIHUB_PASSWD CIHUB_GROUP
# A warm build's /etc/passwd and /etc/group, when the image links them to /cihub-etc.
write_identity() {
    [ -z "$PASSWD" ] && return 0
    rm -rf /cihub-etc/passwd /cihub-etc/group \
        && printf '%s' "$PASSWD" > /cihub-etc/passwd && printf '%s' "$GROUP" > /cihub-etc/group
}
write_identity || exit 90
. /cihub/config
# A warm runner says first, before any process of the build exists (so none can say it for
# it), whether the build's processes could trace it or write its memory, as they would to make
# it skip the reset and exit 0: not when it was exec'd from a file they can't read (then it is
# not dumpable). Only a container whose runner could not be traced is reused.
# Non-dumpable shows twice: the kernel gives the runner's /proc files to root (not to the
# runner's user, as a dumpable process's), and a subshell can't open its memory. Anything else
# (no such file: /proc is not what this check assumes) says "traceable".
if [ "$RESET" = 1 ]; then
    if [ -e "/proc/$$/mem" ] && ! [ -O "/proc/$$/mem" ] \
            && ! ( : < "/proc/$$/mem" ) 2>/dev/null; then
        echo runner-untraceable >&2
    else
        echo runner-traceable >&2
    fi
fi
# A warm build streams its output archive on stdout (fd 3, see the end): nothing else may write
# there, and nothing the build starts may hold it open (the driver reads it to its end).
[ "$RESET" = 1 ] && exec 3>&1 >/dev/null
OUT=${OUT:-/out}
M=$OUT/meta
ART=$OUT/artifacts
mkdir -p "$M" "$ART" || exit 90
note() { printf '%s\n' "$*" >> "$M/notes"; }
# The CPUs the build may use, as the kernel says (what num_cpus varies: the record names them).
while read -r key value; do
    [ "$key" = Cpus_allowed_list: ] && note "cpus=$value"
done < /proc/self/status
# The output of a warm build (its meta folder at least) goes back on stdout, even after a failure.
send_out() { [ "$RESET" = 1 ] && tar -C "${OUT%/*}" -cf - "${OUT##*/}" >&3 2>/dev/null; }
fail() { printf '%s\n' "$*" > "$M/setup-error"; send_out; exit 91; }
# No SysV IPC object is left when each /proc/sysvipc table is its header alone.
no_ipc_left() {
    for table in /proc/sysvipc/msg /proc/sysvipc/sem /proc/sysvipc/shm; do
        [ ! -e "$table" ] || [ "$(wc -l < "$table")" -le 1 ] || return 1
    done
}
# A shared memory segment goes only once its last process is gone, and `kill -KILL -1` doesn't
# wait for them: a few tries, so an innocent build's container stays reusable.
ipc_gone() {
    for _ in 1 2 3 4 5; do
        command -v ipcrm >/dev/null 2>&1 && ipcrm -a 2>/dev/null
        no_ipc_left && return 0
        sleep 0.01
    done
    return 1
}
# The roots the build user owns could be left setgid, sticky or with a (default) ACL: the next
# build's new files would get other groups or modes (a false difference). Mounted 0755, no ACL.
# $1: how many of the folders after it to put back (00755, not 755: GNU chmod keeps a folder's
# setgid bit unless told otherwise); an ACL no setfacl removes keeps the container from reuse.
roots_as_mounted() {
    keep=$1 n=$1
    shift
    # keep the first n arguments alone (the loop runs over the list as it was; a few processes
    # for all roots rather than a few per root, as every warm build pays this)
    for root do
        [ "$n" -gt 0 ] && set -- "$@" "$root"
        n=$((n - 1))
    done
    shift $(( $# - keep ))
    command -v setfacl >/dev/null 2>&1 && setfacl -b -k "$@" 2>/dev/null
    chmod 00755 "$@" || return 1
    [ -z "$(stat -c %a "$@" | grep -vx 755)" ] || return 1
    ! ls -ld "$@" | cut -c11 | grep -q '+'
}
AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1
# The tools it needs (find sort tar touch cp xargs env stat date ls setpriv) are checked once
# per image, by its probe (`harness.builder_image`), not by every build.

# The watchdog: when the driver's lease goes stale (the driver was killed), kill the build.
WATCHDOG=""
if [ -n "$LEASE_S" ] && [ -e /cihub-lease/beat ]; then
    (
        while sleep 2; do
            beat=$(stat -c %Y /cihub-lease/beat 2>/dev/null || echo 0)
            if [ $(( $(date +%s) - beat )) -gt "$LEASE_S" ]; then
                : > /cihub/abandoned
                kill -KILL -1 2>/dev/null
                exit 0
            fi
        done
    ) 3>&- &
    WATCHDOG=$!
fi

# HOME is a tmpfs of its own in a one-off container, a folder in a tmpfs at its parent in a
# warm one (see harness.build_warm)
SRC_DIR="$BUILD_PATH"
[ "$DISORDERFS" = 1 ] && SRC_DIR=/build/.disorderfs-backing
mkdir -p "$BUILD_HOME" "$SRC_DIR" || fail "cannot create HOME $BUILD_HOME or $SRC_DIR"
if [ "$SUBJECT" = stdin ]; then
    # A warm build: the driver sends the subject as a tar archive, already in the file order
    # asked for, on stdin (no folder of the driver's machine is mounted: the engine may be
    # remote); tar stops at the archive's end, so the driver need not close its side.
    tar -C "$SRC_DIR" -xpf - 2> "$M/copy.log" \
        || fail "cannot unpack the subject in $SRC_DIR ($(tail -n 1 "$M/copy.log"))"
    exec < /dev/null
else
    UNREADABLE="the build runs as a non-root user, which must be able to read every file"
    (cd /src && find . -mindepth 1 -print0 | sort -z $SORT_FLAGS \
        | tar --null --no-recursion -T - -cf -) 2> "$M/copy.log" | tar -C "$SRC_DIR" -xpf - \
        || fail "cannot copy the subject to $SRC_DIR ($(tail -n 1 "$M/copy.log"))"
    [ -s "$M/copy.log" ] && fail "cannot copy the subject: $UNREADABLE ($(tail -n 1 "$M/copy.log"))"
fi
if [ "$AS_ROOT" = 1 ]; then
    chown -R "$BUILD_UID:$BUILD_GID" "$SRC_DIR" || fail "cannot hand the source to the build user"
fi
if [ -n "$MTIME_SHIFT" ]; then
    find "$SRC_DIR" -mindepth 1 -exec sh -c 'for f; do touch -h -r "$f" -d "$0" "$f"; done' \
        "$MTIME_SHIFT" {} + || fail "cannot shift the source mtimes"
fi
if [ "$DISORDERFS" = 1 ]; then
    mkdir -p "$BUILD_PATH"
    if disorderfs --multi-user=yes --shuffle-dirents=yes "$SRC_DIR" "$BUILD_PATH" \
            > "$M/disorderfs.log" 2>&1; then
        note "disorderfs=applied"
    else
        note "disorderfs=not applied: $(tail -n 1 "$M/disorderfs.log")"
        rmdir "$BUILD_PATH" && mv "$SRC_DIR" "$BUILD_PATH" \
            || fail "cannot fall back from disorderfs"
    fi
fi
SETARCH=""
if [ "$ASLR_OFF" = 1 ]; then
    if setarch "$(uname -m)" -R true 2>/dev/null; then
        SETARCH="setarch $(uname -m) -R"
        note "aslr=disabled"
    else
        note "aslr=not applied: setarch -R is refused (personality syscall blocked)"
    fi
fi
DROP=""
[ "$AS_ROOT" = 1 ] && DROP="setpriv --reuid=$BUILD_UID --regid=$BUILD_GID --clear-groups --"

cd "$BUILD_PATH" || fail "cannot enter $BUILD_PATH"
$SETARCH $DROP env -i /bin/sh -c '. /cihub/env && cd "$1" && exec /bin/sh /cihub/build.sh' \
    cihub-build "$BUILD_PATH" < /dev/null > "$M/build.log" 2>&1 3>&-
echo "$?" > "$M/exit-code"
[ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
# only a watchdog says a build was abandoned (a build may write in /cihub too)
[ -n "$WATCHDOG" ] && [ -e /cihub/abandoned ] && exit 95

# Every entry type counts: files, links, fifos, sockets, devices, and empty folders (a folder
# with content comes with its content).
i=0
while [ "$i" -lt "$NGLOBS" ]; do
    eval "re=\$GLOB_$i"
    # the output stream (fd 3) is the runner's alone: a leftover could trace these commands.
    # The count comes from the tree, never from a file the build could have left in its way.
    n=$(find . -regextype posix-extended -regex "$re" \( ! -type d -o -empty \) -printf x 3>&- \
        | wc -c)
    echo "$i $n" >> "$M/matches"
    find . -regextype posix-extended -regex "$re" \( ! -type d -o -empty \) -print0 3>&- \
        | xargs -0 -r cp -a --parents -t "$ART" 2>> "$M/copy.log" 3>&- \
        || {
            # Part of the artifacts is no output to compare (a full /out, out of memory): the
            # build fails. What was copied goes first, so the error fits in a full /out.
            why=$(tail -n 1 "$M/copy.log")
            rm -rf "$ART"
            fail "copying the matches of glob $i failed: $why"
        }
    i=$((i + 1))
done
cd /
[ "$DISORDERFS" = 1 ] && { fusermount -u "$BUILD_PATH" 2>/dev/null || umount "$BUILD_PATH"; }
# Lets the driver remove the output whoever it runs as (folder modes are not part of any digest).
find "$OUT" -type d -exec chmod a+rwx {} + 2>/dev/null 3>&-
if [ "$RESET" = 1 ]; then
    # The output goes to the driver on stdout, in the exec's own stream (/out is a tmpfs of
    # the container: nothing is read back after the build). What the build left running is
    # ended first: a leftover writing to its inherited stdout (meta/build.log) would make tar
    # say "file changed as we read it", failing a good build.
    kill -KILL -1 2>/dev/null
    send_out || exit 93
    # no build follows in this container (REUSE=0): it goes as it is
    [ "$REUSE" = 1 ] && [ -n "$HOME_ROOT" ] && [ "$HOME_ROOT" != / ] || exit 92
    # A warm container builds again: end what the build left running and empty every folder
    # it could write, so the next build starts from nothing. Exit 0 (and `reset-ok`, the last
    # line on stderr) only after all of it: else 92, built but not reusable. A leftover
    # process may write `reset-ok` on our stderr too; it can't change the exec's exit status.
    # Besides folders: POSIX message queues (/dev/mqueue) and SysV IPC objects outlive
    # processes; /cihub too (the runner's inputs, or what a leftover process wrote there).
    kill -KILL -1 2>/dev/null
    set -- /build "$HOME_ROOT" /out /cihub
    [ -n "$PASSWD" ] && set -- "$@" /cihub-etc
    OWN=$#  # the build user's roots come first
    set -- "$@" /tmp /var/tmp /dev/shm
    [ -d /dev/mqueue ] && set -- "$@" /dev/mqueue
    chmod -R u+rwX "$@" 2>/dev/null
    if find "$@" -mindepth 1 -delete 2>/dev/null && roots_as_mounted "$OWN" "$@" && ipc_gone \
            && write_identity; then
        echo reset-ok >&2
        exit 0
    fi
    exit 92
fi
exit 0
"""

IDLE = r"""
# cihub warm builder: waits for builds (run with `docker exec`) and dies with the driver: its
# stdin is a stream the driver holds open, which ends when the driver's process does (killed
# too); then it exits 95, docker-init (pid 1) with it, and every build in the container dies.
# It runs as another user than the builds (see harness.build_warm): they can't hold its stdin
# open or signal it. Shell builtins only: nothing else to start in a container with a pids limit.
# First, the CPUs it may use as started (the engine's "every CPU": see harness.build_warm).
while read -r key value; do
    [ "$key" = Cpus_allowed_list: ] && echo "cpus=$value"
done < /proc/self/status
while read -r _; do :; done
exit 95
"""
