"""The project's WSGI entry point: Django wrapped in samplez.Middleware."""

from __future__ import annotations

from django.core.wsgi import get_wsgi_application

import samplez

application = samplez.Middleware(get_wsgi_application())
