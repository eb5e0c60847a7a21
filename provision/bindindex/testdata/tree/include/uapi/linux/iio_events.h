/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _UAPI_IIO_EVENTS_H_
#define _UAPI_IIO_EVENTS_H_

#include <linux/ioctl.h>
#include <linux/types.h>

struct iio_event_data {
	__u64	id;
	__s64	timestamp;
};

enum iio_event_type {
	IIO_EV_TYPE_THRESH,
	IIO_EV_TYPE_MAG,
	IIO_EV_TYPE_ROC = 2,
};

#define IIO_GET_EVENT_FD_IOCTL _IOR('i', 0x90, int)

#endif
