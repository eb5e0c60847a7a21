/* SPDX-License-Identifier: GPL-2.0-only */
/* The industrial I/O core. */
#ifndef _INDUSTRIAL_IO_H_
#define _INDUSTRIAL_IO_H_

#include <linux/device.h>

struct iio_dev {
	int modes;
	void *priv;
};

struct iio_dev *iio_device_alloc(struct device *parent,
				 int sizeof_priv);
void iio_device_free(struct iio_dev *indio_dev);
static inline void *iio_priv(const struct iio_dev *indio_dev)
{
	return indio_dev->priv;
}
#endif /* _INDUSTRIAL_IO_H_ */
