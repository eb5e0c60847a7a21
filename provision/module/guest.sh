# shellcheck shell=sh
# guest.sh: what `kmodvm run` does in the guest, one SSH exec per build, load or unload.
# kmodvm runs it after provision/guestlog's kmsg.sh, as
#   bash -c SCRIPT kmodvm-guest COMMAND ARG...   (bash: see guestlog.Command)
# with every argument quoted once, and these files in the environment (tests point them into
# a temporary directory):
#   KMSG     the kernel log (/dev/kmsg)
#   TAINTED  the kernel's taint flags (/proc/sys/kernel/tainted)
#   MODULES  the loaded modules (/proc/modules)
#   JOB      the job file (/run/kmodvm.job): the process group of the running build or step
#   KUNIT    KUnit's debugfs dir (/sys/kernel/debug/kunit): one dir per registered suite;
#            absent when the kernel has no KUnit
#   KUNIT_FILTER  KUnit's filter_glob parameter (/sys/module/kunit/parameters/filter_glob)
#   SYSRQ    the magic SysRq trigger (/proc/sysrq-trigger)
#
# Commands:
#   load GLOB NAME KO [WORD...]
#                           unload a module NAME an earlier run left loaded, then insmod KO
#                           with the parameter WORDs; KUnit registers (and, with autorun,
#                           runs at insmod) only the module's tests GLOB matches
#                           ("suite.test" globs; "*.*" is all of them)
#   unload NAME             rmmod NAME
#   kunit-run SUITE         run the registered KUnit suite SUITE (a kernel without autorun)
#   build DIR               make the module in DIR against the running kernel's build tree;
#                           prints make's output, exits with make's status
#   abandon                 stop the running job (kmodvm was interrupted)
#   tainted                 print the taint flags as "kmodvm-taint N"
#   blocked                 print the stacks of the blocked tasks to the kernel log (SysRq w:
#                           a step hung; the console keeps them for the verdict)
#
# load, unload and kunit-run print lines of the step protocol (module.parseStep reads them):
#   kmodvm-taint N           the taint flags: before the command, and again after it
#   kmodvm-stale             (load) NAME was loaded, and was unloaded first
#   kmodvm-stale-failed MSG  (load) ... and could not be: rmmod said MSG (one line each)
#   kmodvm-run               the command starts: records above this line are older than it
#   kmodvm-rc N              the command's exit status
#   kmodvm-err MSG           a line the command printed (its error)
#   kmodvm-suite NAME        (load) a KUnit suite the module registered
#   kmodvm-kunit-off         (load) the kernel has no KUnit
#   kmodvm-end               the step is complete: the last line
#   anything else            a kernel log record (kmsg.sh's format); the records come from
#                            one open /dev/kmsg, so a gap in their numbers is a loss
# They fork little (under TCG every exec in the guest costs tens of milliseconds): one dd
# before the command and one after, the taint read with the shell's own read.

: "${KMSG:?}" "${TAINTED:?}" "${MODULES:?}" "${JOB:?}" "${KUNIT:?}" "${KUNIT_FILTER:?}"
nl='
'

# say PREFIX TEXT: print each line of TEXT after PREFIX, with the shell's builtins only.
say() {
	say_rest=$2
	while [ -n "$say_rest" ]; do
		printf '%s %s\n' "$1" "${say_rest%%"$nl"*}"
		case $say_rest in
		*"$nl"*) say_rest=${say_rest#*"$nl"} ;;
		*) say_rest= ;;
		esac
	done
}

# job_abandon stops the job the file names: closing the SSH session does not (no terminal,
# no SIGHUP), and a make left running, or a module left half-loaded, would spoil the next
# run. make removes the targets it was writing; an init sleeping interruptibly fails with
# -EINTR; one that does not listen stays loading, and the next run says so.
job_abandon() {
	if read -r job_p <"$JOB" 2>/dev/null; then
		kill -s TERM -- "-$job_p" 2>/dev/null
		rm -f "$JOB"
	fi
}

# job_begin makes this shell's process group the job. A job file already there names a job
# an earlier run left when its connection was cut (runs on one VM hold its lock, so no other
# run's job is live): that job is stopped first, or it would go on competing with this one.
# The file goes when this shell exits, however it does, unless a later job owns it by then.
job_begin() {
	job_abandon
	read -r job_stat </proc/$$/stat
	# After the command name: state, parent, process group.
	# shellcheck disable=SC2086 # split into fields on purpose
	set -- ${job_stat##*) }
	job_group=$3
	echo "$job_group" >"$JOB"
	trap job_end EXIT
}

job_end() {
	if read -r job_q <"$JOB" 2>/dev/null && [ "$job_q" = "$job_group" ]; then
		rm -f "$JOB"
	fi
}

# kunit_list: the registered KUnit suites, as " a  b " in kunit_l (no fork: a glob).
kunit_list() {
	kunit_l=' '
	for kunit_d in "$KUNIT"/*/; do
		[ -d "$kunit_d" ] || continue
		kunit_d=${kunit_d%/}
		kunit_l="$kunit_l${kunit_d##*/} "
	done
}

# kunit_filter GLOB: make KUnit filter the next module's tests by GLOB. Every load sets it
# ("*.*" when kmodvm was given no filter), so a filter never outlives its own load, even when
# that load was interrupted. The value is written without a newline: the parameter keeps
# what it is given, and a newline would be part of the glob.
kunit_filter() {
	if [ -w "$KUNIT_FILTER" ]; then
		printf '%s' "$1" >"$KUNIT_FILTER"
	fi
}

# kunit_run SUITE: run a registered suite; the write returns when the suite has finished.
kunit_run() {
	printf '1' >"$KUNIT/$1/run" || return
	# The kernel runs the suite within the write. Reading its results also waits for a run
	# that ends after the write (the tests' fake kernel runs it in the background).
	if [ -r "$KUNIT/$1/results" ]; then
		while read -r _; do :; done <"$KUNIT/$1/results"
	fi
}

# step COMMAND...: run the command between two reads of the kernel log and the taint flags.
# The caller ends the step with kmodvm-end.
step() {
	read -r step_t <"$TAINTED"
	echo "kmodvm-taint $step_t"
	kmsg_drain
	echo kmodvm-run
	step_out=$("$@" 2>&1)
	step_rc=$?
	read -r step_t <"$TAINTED"
	echo "kmodvm-taint $step_t"
	echo "kmodvm-rc $step_rc"
	kmsg_drain
	say kmodvm-err "$step_out"
}

# unload_stale NAME: unload a module NAME left loaded; it returns 1 when it cannot.
unload_stale() {
	while read -r stale_m _; do
		[ "$stale_m" = "$1" ] || continue
		echo kmodvm-stale
		if ! stale_e=$(rmmod "$1" 2>&1); then
			say kmodvm-stale-failed "${stale_e:-rmmod failed}"
			return 1
		fi
	done <"$MODULES"
}

cmd=$1
shift
case $cmd in
load)
	job_begin
	exec 3<"$KMSG"
	glob=$1
	name=$2
	shift 2
	unload_stale "$name" || exit 0
	kunit_filter "$glob"
	kunit_list
	kunit_before=$kunit_l
	step insmod "$@"
	if [ -d "$KUNIT" ]; then
		kunit_list
		for suite in $kunit_l; do
			case $kunit_before in
			*" $suite "*) ;;
			*) echo "kmodvm-suite $suite" ;;
			esac
		done
	else
		echo kmodvm-kunit-off
	fi
	echo kmodvm-end
	;;
unload)
	job_begin
	exec 3<"$KMSG"
	step rmmod "$1"
	echo kmodvm-end
	;;
kunit-run)
	job_begin
	exec 3<"$KMSG"
	step kunit_run "$1"
	echo kmodvm-end
	;;
build)
	job_begin
	cd "$1" || exit
	make -C "/lib/modules/$(uname -r)/build" M="$1" LLVM=1 modules
	;;
abandon)
	job_abandon
	;;
tainted)
	read -r t <"$TAINTED"
	echo "kmodvm-taint $t"
	;;
blocked)
	echo w >"$SYSRQ"
	;;
*)
	echo "guest.sh: unknown command $cmd" >&2
	exit 2
	;;
esac
