"""Key-value stores holding Calico's keys: the `KVStore` interface (`kv`), etcd v3 (`etcd`)
and the embedded SQLite store (`sqlite`), opened by URL with `kv.open_kv`."""
