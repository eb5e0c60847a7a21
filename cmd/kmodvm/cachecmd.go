package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) cacheCmd() *cobra.Command {
	c := groupCmd("cache", "Inspect kmodvm's image and kernel caches")
	key := &cobra.Command{
		Use:   "key",
		Short: "Print the cache key of the image and kernel `up` would use, for a CI's cache",
		Long: `Print one key naming the toolchain root, kernel and guest disk that ` + "`kmodvm up`" + ` would
use with these settings (kmodvm.yaml and flags), computed before anything is built: the
root's own cache key, and a key of the kernel request that changes whenever the kernel's
cache key can (the kernel's own key needs the root and the kernel source). A CI caches the
cache directory (KMODVM_HOME/cache) under this key; see docs/ci.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sb, err := a.offline()
			if err != nil {
				return err
			}
			keys, err := sb.CacheKeys(cmd.Context())
			if err != nil {
				return withCode(exitUsage, err)
			}
			if a.jsonOut {
				return a.printJSON(cacheKeyJSON{Schema: schemaCacheKey, CacheKeys: keys})
			}
			fmt.Fprintln(a.stdout, keys.Key)
			return nil
		},
	}
	key.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON: the key and its parts")
	c.AddCommand(key)
	return c
}
