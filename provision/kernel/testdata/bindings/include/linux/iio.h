/* Found by name, not by directory: the option that builds iio/ is the likely cause. */
struct iio_channel_map {
	int id;
};
extern int iio_map_array_register(struct iio_channel_map *maps);
