"""The project's settings: ``settings.configure(**SETTINGS)`` in-process,
or ``DJANGO_SETTINGS_MODULE=tests.django_project.settings`` for a server."""

from __future__ import annotations

DEBUG = False
SECRET_KEY = "samplez-tests"
ALLOWED_HOSTS = ["localhost", "testserver", "127.0.0.1"]
ROOT_URLCONF = "tests.django_project.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["samplez.routes.DjangoRouteMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

SETTINGS = {name: value for name, value in dict(globals()).items() if name.isupper()}
