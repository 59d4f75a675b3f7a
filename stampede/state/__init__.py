"""The Redis layer: key names and key sets, record codecs, the script registry, stored answers."""
