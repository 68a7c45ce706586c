"""The project's ASGI entry point: Django wrapped in samplez.ASGIMiddleware."""

from __future__ import annotations

from django.core.asgi import get_asgi_application

import samplez

application = samplez.ASGIMiddleware(get_asgi_application())
