"""Builds samplez's optional C module, the request path (``samplez/_speedups.c``).

Everything else is in setup.cfg. Without a compiler the build goes on
without it, and samplez runs its pure-Python twin of the same code.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("samplez._speedups", ["samplez/_speedups.c"], optional=True)])
