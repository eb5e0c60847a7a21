# shellcheck shell=sh
# read.sh MODE: print the guest's kernel log from the file KMSG names (/dev/kmsg) in the
# format of kmsg.sh; MODE "snapshot" prints what is there and ends, "follow" goes on printing
# new records until the session ends. kmodvm runs it after kmsg.sh's functions.
: "${KMSG:?}"
exec 3<"$KMSG"
case $1 in
snapshot) kmsg_drain ;;
follow) kmsg_follow ;;
*)
	echo "read.sh: unknown mode $1" >&2
	exit 2
	;;
esac
