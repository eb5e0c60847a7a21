# shellcheck shell=sh
# Shell functions that read the guest's kernel log. kmodvm prepends them to the scripts it
# runs in the guest (provision/guestlog.Functions). They read the open file on fd 3 (the
# caller opens it: `exec 3<"$KMSG"`) and write the records as /dev/kmsg gives them, one
# "PRIO,SEQ,USEC,FLAGS;TEXT" line per record (continuation lines start with a space), to
# stdout. A reader that falls more than the kernel's log buffer behind gets one EPIPE, and the
# kernel moves that open file on to the oldest record left: both functions read on after it.
# The records lost in between show as a gap in the sequence numbers (guestlog.Scan counts it).

# kmsg_drain writes every record not yet read from fd 3 and returns at the end of the log.
# dd forks once per call; it stops with "Broken pipe" after an overrun (then it runs again on
# the same file) and with "Resource temporarily unavailable" at the end.
kmsg_drain() {
	exec 4>&1
	while :; do
		kmsg_e=$(LC_ALL=C dd iflag=nonblock bs=65536 status=none <&3 2>&1 >&4) && break
		case $kmsg_e in
		*'Broken pipe'*) ;;
		*) break ;;
		esac
	done
	exec 4>&-
}

# kmsg_follow writes the records of fd 3 as they come, until the session ends. cat runs again
# on the same open file whenever it ends with status 1 (its read error, after an overrun); a
# cat killed by SIGPIPE (the session is gone) ends the loop, and the trap stops cat when
# kmodvm ends the session.
kmsg_follow() {
	trap 'kill "$kmsg_c" 2>/dev/null; exit 143' TERM HUP
	while :; do
		cat <&3 &
		kmsg_c=$!
		wait "$kmsg_c"
		kmsg_rc=$?
		[ "$kmsg_rc" -eq 1 ] || return "$kmsg_rc"
	done
}
