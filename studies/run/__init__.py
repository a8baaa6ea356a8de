"""The machinery every study runs on: specs, shards and their executors, the store, the toy-model runner."""
