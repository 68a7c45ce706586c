"""A minimal Django project for tests/test_django.py: the test configures
the settings, ``wsgi.py`` wraps Django the way a user would."""
