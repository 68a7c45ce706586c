"""Stores: where samples and counters live (memcached, Redis, or this process)."""

from .base import Store
from .memcache import MemcacheStore
from .memory import MemoryStore
from .redis import RedisStore

__all__ = ["MemcacheStore", "MemoryStore", "RedisStore", "Store"]
