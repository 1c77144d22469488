"""WSGI entry point: `gunicorn app:app` (see Procfile)."""

from glimpser.wsgi import app

__all__ = ["app"]
