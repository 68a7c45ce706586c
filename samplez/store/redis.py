"""Redis (or Valkey), one server or several, behind the :class:`Store`
interface, through redis-py (``pip install 'samplez[redis]'``).

Each round of a flush is one pipeline per server: the ops go as
``EVAL`` calls of one small Lua script (:data:`SCRIPT`), a thousand ops
per call, and the script applies them in order, one after the other, with
memcached's meaning. A script, rather than WATCH/MULTI, because the flush
mixes ``add``, ``incr`` and ``cas`` in one round and must not spend a round
trip per key: WATCH needs its read answered before the MULTI is sent, a
script decides on the server, and Redis runs a script whole, so nothing
comes between a ``cas``'s read and its write. ``EVAL`` with the script's
text rather than ``EVALSHA``: a restarted server has forgotten loaded
scripts, and redis-py's own script loading costs a round trip per pipeline.

What each op becomes:

* ``get`` ``GET``; ``set`` ``SET``; ``add`` ``SET NX``; ``delete`` ``DEL``;
  ``touch`` ``EXPIRE``.
* ``incr``: ``INCRBY`` on a key that holds plain digits; a missing key
  stays missing (``None``), anything else is refused, as memcached does.
  Redis counts in signed 64 bits, memcached in unsigned ones: a count past
  2**63 is refused rather than wrapped (samplez stops counts at 2**53).
* ``gets``/``cas``: the token is the first 52 bits of the value's SHA-1,
  so a value needs no version key beside it; ``cas`` stores only when the
  value still hashes to the token. A value that changed and changed back
  passes, which for a value read, changed and written back is the same as
  having read it after the other writers.
* TTLs: an op's TTL is relative seconds, 0 for none, whatever its length;
  Redis has no memcached's 30-day rule, so nothing is made absolute.
* Values over 1 MB are refused here, as memcached refuses them, so a
  site can move between the two stores.

Several servers are independent Redis servers with the keys spread on the
client by rendezvous hashing, with the dead-node rules of
:mod:`samplez.store.cluster`: the same rules as for memcached. (A Redis
Cluster moves slots between nodes by itself and needs a cluster-aware
client; it is not supported.)

redis-py never retries here (``Retry(NoBackoff(), 0)``): a pipeline cut off
mid-answer may have been applied, and sending it again would count its
increments twice. It does reconnect a pooled connection that a restarted
server closed, before sending on it.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

from ..errors import ConfigError, StoreError
from .base import MAX_VALUE_LENGTH, REFUSED, Op
from .cluster import DOWN_ERRNOS, ClusterStore, Node, ServerDown, check_timeouts, listed

__all__ = ["SCRIPT", "RedisStore", "import_redis"]

#: Applies KEYS[i] with the op read from ARGV (a command letter, then its
#: arguments); returns one reply per op: the value (get), {value, token}
#: (gets), the new count as digits (incr), false for a missing key, 1 or 0
#: for stored/existed or not, -1 for refused.
SCRIPT = """
local out, a = {}, 1
local function refused(r) return type(r) == 'table' and r.err ~= nil end
local function put(key, value, ttl, nx)
  local args = {'SET', key, value}
  if tonumber(ttl) > 0 then args[#args + 1] = 'EX'; args[#args + 1] = ttl end
  if nx then args[#args + 1] = 'NX' end
  local r = redis.pcall(unpack(args))
  if refused(r) then return -1 end
  return r and 1 or 0
end
local function token(value) return string.sub(redis.sha1hex(value), 1, 13) end
for i, key in ipairs(KEYS) do
  local cmd, r = ARGV[a], -1
  if cmd == 'g' or cmd == 'G' then
    a = a + 1
    local v = redis.pcall('GET', key)
    if not refused(v) then
      r = v
      if v and cmd == 'G' then r = {v, token(v)} end
    end
  elseif cmd == 's' or cmd == 'a' then
    r = put(key, ARGV[a + 1], ARGV[a + 2], cmd == 'a'); a = a + 3
  elseif cmd == 'c' then
    local v = redis.pcall('GET', key)
    if refused(v) then r = -1
    elseif not v or token(v) ~= ARGV[a + 3] then r = 0
    else r = put(key, ARGV[a + 1], ARGV[a + 2], false) end
    a = a + 4
  elseif cmd == 'i' then
    local v = redis.pcall('GET', key)
    if not refused(v) then
      if not v then r = false
      elseif #v < 20 and string.match(v, '^%d+$') then
        if not refused(redis.pcall('INCRBY', key, ARGV[a + 1])) then r = redis.call('GET', key) end
      end
    end
    a = a + 2
  elseif cmd == 't' then
    if tonumber(ARGV[a + 1]) > 0 then r = redis.pcall('EXPIRE', key, ARGV[a + 1])
    else r = redis.pcall('EXISTS', key); if r == 1 then redis.pcall('PERSIST', key) end end
    if refused(r) then r = -1 end
    a = a + 2
  elseif cmd == 'd' then
    r = redis.pcall('DEL', key); if refused(r) then r = -1 end
    a = a + 1
  end
  out[i] = r
end
return out
"""

#: Ops per ``EVAL``: Redis runs nothing else while a script runs, so a long
#: flush is cut into calls that each hold the server for about a millisecond.
CHUNK = 1000
_LETTER = {"get": "g", "gets": "G", "set": "s", "add": "a", "cas": "c", "incr": "i", "touch": "t", "delete": "d"}


def import_redis() -> Any:
    """redis-py, imported only when a RedisStore is made."""
    try:
        import redis
    except ImportError:
        raise ImportError("RedisStore needs redis-py: pip install 'samplez[redis]' (or pip install redis)") from None
    return redis


def _encode(ops: Sequence[Op], keys: list[str], argv: list[Any]) -> None:
    for cmd, key, value, ttl, token, delta in ops:
        keys.append(key)
        letter = _LETTER.get(cmd)
        if letter is None:
            raise ValueError(f"unknown store command {cmd!r}")
        argv.append(letter)
        if letter == "s" or letter == "a":
            argv += (value, ttl)
        elif letter == "c":
            argv += (value, ttl, format(token % 2**52, "013x"))
        elif letter == "i":
            argv.append(delta)
        elif letter == "t":
            argv.append(ttl)


def _decode(cmd: str, reply: Any) -> Any:
    if reply == -1 or isinstance(reply, Exception):
        return REFUSED
    if cmd == "get":
        return reply
    if cmd == "gets":
        return None if reply is None else (reply[0], int(reply[1], 16))
    if cmd == "incr":
        return None if reply is None else int(reply)
    return reply == 1


def _reason(exc: BaseException) -> OSError | None:
    """The socket error behind a redis-py error, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _Node(Node):
    """One Redis server: a redis-py client (its pool is thread-safe)."""

    def __init__(self, name: str, url: str, connect_timeout: float, timeout: float) -> None:
        super().__init__(name)
        self.url, self.connect_timeout, self.timeout = url, connect_timeout, timeout
        self.client = self._connect()

    def _connect(self) -> Any:
        redis = import_redis()
        self._timeout = redis.exceptions.TimeoutError
        return redis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=self.timeout,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        )

    def execute(self, ops: Sequence[Op]) -> list[Any]:
        results: list[Any] = [REFUSED] * len(ops)
        sent = [i for i, op in enumerate(ops) if len(op.value) <= MAX_VALUE_LENGTH]
        if not sent:
            return results
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(sent), CHUNK):
            keys: list[str] = []
            argv: list[Any] = []
            _encode([ops[i] for i in sent[start : start + CHUNK]], keys, argv)
            pipe.execute_command("EVAL", SCRIPT, len(keys), *keys, *argv)
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception as exc:  # redis-py's errors, and any socket error under them
            raise self._error(exc) from exc
        for start, reply in zip(range(0, len(sent), CHUNK), replies):
            indices = sent[start : start + CHUNK]
            if not isinstance(reply, list) or len(reply) != len(indices):
                continue  # the whole call refused (out of memory, a busy server): its ops stay REFUSED
            for i, answer in zip(indices, reply):
                results[i] = _decode(ops[i].cmd, answer)
        return results

    def _error(self, exc: Exception) -> StoreError:
        """What a redis-py error means for the ring: a refused connection
        is a server down, anything else a failed round trip."""
        reason = _reason(exc)
        if reason is not None and reason.errno in DOWN_ERRNOS:
            return ServerDown(f"redis {self.name}: {exc}")
        if isinstance(exc, self._timeout) or isinstance(reason, TimeoutError):
            return StoreError(f"redis {self.name}: timed out ({exc})")
        return StoreError(f"redis {self.name}: {exc or type(exc).__name__}")

    def close(self) -> None:
        self.client.connection_pool.disconnect()

    def reset_after_fork(self) -> None:
        # The parent's connections stay open for the parent; the child
        # makes its own.
        self.client = self._connect()


def _node_name(url: str) -> str:
    """``host:port/db`` (or ``unix:path/db``) for a Redis URL, without its
    credentials; raise :class:`ConfigError` for what is not a Redis URL."""
    example = "'redis://127.0.0.1:6379/0'"
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"redis server must be a URL such as {example}, got {url!r}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"redis server must be a URL such as {example}, got {url!r}") from None
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"a unix:// redis URL needs a socket path, got {url!r}")
        return f"unix:{parts.path}"
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or not (db == "" or db.isdigit()):
        raise ConfigError(f"redis server must be a URL such as {example}, got {url!r}")
    return f"{parts.hostname}:{port or 6379}/{db or 0}"


class RedisStore(ClusterStore):
    """Redis (or Valkey) through redis-py: the same contract as
    :class:`~samplez.MemcacheStore`, one pipeline per server per flush
    round, and counters that outlive a restart when the server persists
    its data (``appendonly yes``).

    :param urls: ``'redis://host:port/db'`` (``rediss://`` for TLS,
        ``unix:///path``), a comma-separated string of them, or a list: a
        list is spread over independent servers by rendezvous hashing, as
        for memcached (not a Redis Cluster).
    :param connect_timeout: seconds to wait for a connection.
    :param timeout: seconds to wait for any answer; a server that accepts
        and never answers costs the flusher at most this, never a request.
    :param dead_timeout: seconds a node that is down stays out of the ring.

    >>> store = RedisStore('redis://127.0.0.1:6379/0')
    """

    kind = "redis"
    shared = True

    def __init__(
        self,
        urls: str | Iterable[str] = "redis://127.0.0.1:6379/0",
        connect_timeout: float = 0.25,
        timeout: float = 0.5,
        dead_timeout: float = 0.5,
    ) -> None:
        import_redis()
        names = listed(urls, "urls", "Redis server")
        check_timeouts(connect_timeout, timeout, dead_timeout)
        nodes = []
        for url in names:
            name = _node_name(url)
            try:
                nodes.append(_Node(name, url.strip(), connect_timeout, timeout))
            except ValueError as exc:  # redis-py's own reading of the URL
                raise ConfigError(f"redis server {url!r}: {exc}") from None
        super().__init__(nodes, dead_timeout)
