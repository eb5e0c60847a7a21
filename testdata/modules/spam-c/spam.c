// SPDX-License-Identifier: GPL-2.0
/*
 * Floods the kernel log for the load tests: a kernel thread prints "spam: line I/N" for
 * I = 1..lines, then "spam: done N". With pause_us > 0 it sleeps that long after every
 * batch lines, so a reader can keep up with the ring buffer (the lossless case); with
 * pause_us=0 it prints as fast as the kernel lets it, and outpaces any reader once the
 * ring buffer (CONFIG_LOG_BUF_SHIFT) is full. At KERN_INFO each line also goes to the serial
 * console, which slows printk down to what the console takes; debug=1 skips the console.
 */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/module.h>

static unsigned int lines = 1000;
module_param(lines, uint, 0444);
MODULE_PARM_DESC(lines, "How many numbered lines to print");

static unsigned int batch = 100;
module_param(batch, uint, 0444);
MODULE_PARM_DESC(batch, "Lines between pauses");

static unsigned int pause_us;
module_param(pause_us, uint, 0444);
MODULE_PARM_DESC(pause_us, "Sleep after every batch lines, in microseconds; 0: never");

static bool debug;
module_param(debug, bool, 0444);
MODULE_PARM_DESC(debug, "Print at KERN_DEBUG, which loglevel=7 keeps off the serial console: much faster");

static struct task_struct *spammer;

static int spam_thread(void *unused)
{
	unsigned int i;

	for (i = 1; i <= lines && !kthread_should_stop(); i++) {
		if (debug)
			printk(KERN_DEBUG "spam: line %u/%u\n", i, lines);
		else
			printk(KERN_INFO "spam: line %u/%u\n", i, lines);
		if (pause_us && batch && i % batch == 0)
			usleep_range(pause_us, pause_us + pause_us / 4);
		else if (i % 64 == 0)
			cond_resched();
	}
	pr_info("spam: done %u\n", i - 1);
	/* Stay until rmmod: kthread_stop needs the thread to still exist. */
	while (!kthread_should_stop())
		schedule_timeout_interruptible(HZ);
	return 0;
}

static int __init spam_init(void)
{
	spammer = kthread_run(spam_thread, NULL, "spam");
	return PTR_ERR_OR_ZERO(spammer);
}

static void __exit spam_exit(void)
{
	kthread_stop(spammer);
}

module_init(spam_init);
module_exit(spam_exit);
MODULE_DESCRIPTION("kmodvm load test: numbered kernel log lines");
MODULE_LICENSE("GPL");
