"""Stores: where samples and counters live (memcached, or this process)."""

from .base import Store
from .memcache import MemcacheStore
from .memory import MemoryStore

__all__ = ["MemcacheStore", "MemoryStore", "Store"]
