"""Posts: their bodies and SQL, the cache-aside read path with coalesced misses, and the filters
a viewer may list them by."""
