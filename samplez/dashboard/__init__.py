"""The dashboard: samplez's status pages as a WSGI app.

``app`` routes requests (with ``access`` deciding who may see them) to
``views``, which read the store, and ``render`` turns what they read into
HTML (jinja2 templates, ``svg`` charts, ``formatting`` of numbers) or JSON.
:class:`Dashboard` imports them with the first dashboard made: they pull in
jinja2 and werkzeug, which ``import samplez`` leaves out.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..store.base import Store

__all__ = ["Dashboard"]


class Dashboard:
    """The samplez dashboard as a standalone WSGI app (the middleware mounts
    the same app at its ``dashboard_path``).

    :param sections: the sections to show (a :class:`~samplez.Section` or an
        iterable of them); ``None`` shows every registered section, and
        configs and counters in no section under "Other", then every
        metric another process published in the store
        (:mod:`samplez.definitions`).
    :param store: the store to read (default: the one given to
        :func:`samplez.configure`); read with the engine's prefix and clock.
    :param auth: ``None`` answers loopback clients only (403 otherwise), a
        callable ``(environ) -> bool`` decides per request, and
        ``('user', 'password')`` asks for HTTP basic auth.
    :param metrics_auth: who may read ``/metrics`` (the Prometheus
        exposition), in the same forms as ``auth``; ``None`` leaves it to
        ``auth``. A Prometheus server is rarely on loopback: give it
        ``('prometheus', 'secret')`` here and ``basic_auth`` in its scrape
        config.

    >>> from werkzeug.middleware.dispatcher import DispatcherMiddleware
    >>> app = DispatcherMiddleware(app, {'/stats': samplez.Dashboard(auth=('ops', 's3cret'))})
    """

    def __init__(
        self, sections: Any = None, store: Store | None = None, auth: Any = None, metrics_auth: Any = None
    ) -> None:
        from .app import DashboardApp

        self._app = DashboardApp(sections, store, auth, metrics_auth)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return self._app(environ, start_response)
