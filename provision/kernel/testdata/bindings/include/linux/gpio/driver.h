/* SPDX-License-Identifier: GPL-2.0 */
#ifndef __LINUX_GPIO_DRIVER_H
#define __LINUX_GPIO_DRIVER_H

#ifdef CONFIG_GPIOLIB
struct gpio_chip {
	int base;
};
int gpiochip_add_data(struct gpio_chip *gc, void *data);
#else
static inline int gpiochip_add_data(struct gpio_chip *gc, void *data)
{
	return -EINVAL;
}
#endif /* CONFIG_GPIOLIB */
#endif
